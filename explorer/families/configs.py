"""What a converted model is: its config named after its Table 1 row, its sizes, and UnsupportedModel for a model
the explorer's ViT (Eq. 1-4) would compute differently."""
from __future__ import annotations

from ..config import CONFIGS, ViTConfig
from ..weights import PRETRAINED, WeightsUnavailable


class UnsupportedModel(WeightsUnavailable, ValueError):
    """A model the explorer cannot represent faithfully; str(error) is one sentence that says why.

    Both a ValueError (a bad argument to from_timm / from_transformers) and a WeightsUnavailable (what load's callers
    already catch at the edge)."""


def table_1_name(config: ViTConfig) -> str:
    """"ViT-B/16" when the shapes are a Table 1 model's (any image size), else the config's own name."""
    for name in PRETRAINED:
        row = CONFIGS[name]
        if (row.patch_size, row.hidden_dim, row.depth, row.heads, row.mlp_dim, row.channels) == (
                config.patch_size, config.hidden_dim, config.depth, config.heads, config.mlp_dim, config.channels):
            return name
    return config.name


def named(config: ViTConfig, name: str) -> ViTConfig:
    """The config with the given name, else its Table 1 row's ("ViT-B/16"), else "ViT-<D>d/<P>"."""
    if name:
        return config.replace(name=name)
    return config.replace(name=table_1_name(config.replace(name=f"ViT-{config.hidden_dim}d/{config.patch_size}")))


def image_size(size) -> int | tuple[int, int]:
    """An int, or (H, W) when not square, from an int or a pair."""
    if isinstance(size, int):
        return size
    height, width = (int(v) for v in size)
    return height if height == width else (height, width)


def square(size, what: str) -> int:
    """The side of a square size (an int or a pair); UnsupportedModel for a rectangle."""
    if isinstance(size, int):
        return size
    height, width = (int(v) for v in size)
    if height != width:
        raise UnsupportedModel(f"The model's {what} is {height}x{width}; the explorer's ViT needs square patches.")
    return height
