"""torchvision's VisionTransformer in: its key table (data for the one conversion engine) and its config.

- `from_torchvision(model_or_state_dict, heads=None)`: an explorer.ViT with exactly those weights, config inferred
  from the shapes (the number of heads is not in any weights: given, or Table 1's for its width).
- `config_from_torchvision(state_dict)`: that config; explorer.weights also uses it to check a downloaded file.
torchvision's weight files themselves (download, cache, integrity) are explorer.weights' job.
"""
from __future__ import annotations

import re

from ..config import ViTConfig
from ..deferred import deferred
from ..tokens import TokenLayout
from .engine import KeyTable, convert

# Imported when first used (explorer/deferred.py): explorer.weights imports this module for the app's menu.
torch = deferred("torch")


def key_table(depth: int, pre_logits: bool) -> KeyTable:
    """Our parameter name -> the torchvision names it may come from (newest first): data for the one conversion
    engine (.engine)."""
    table: KeyTable = {
        "class_token": ("class_token",),
        "position_embedding": ("encoder.pos_embedding",),
        "patch_embedding.projection.weight": ("conv_proj.weight",),
        "patch_embedding.projection.bias": ("conv_proj.bias",),
        "norm.weight": ("encoder.ln.weight",),
        "norm.bias": ("encoder.ln.bias",),
        "head.weight": ("heads.head.weight",),
        "head.bias": ("heads.head.bias",),
    }
    if pre_logits:
        table["pre_logits.0.weight"] = ("heads.pre_logits.weight",)
        table["pre_logits.0.bias"] = ("heads.pre_logits.bias",)
    for i in range(depth):
        ours, theirs = f"blocks.{i}.", f"encoder.layers.encoder_layer_{i}."
        for p in ("weight", "bias"):
            table[ours + f"norm_1.{p}"] = (theirs + f"ln_1.{p}",)
            table[ours + f"norm_2.{p}"] = (theirs + f"ln_2.{p}",)
            table[ours + f"mlp.fc1.{p}"] = (theirs + f"mlp.0.{p}", theirs + f"mlp.linear_1.{p}")
            table[ours + f"mlp.fc2.{p}"] = (theirs + f"mlp.3.{p}", theirs + f"mlp.linear_2.{p}")
            table[ours + f"msa.projection.{p}"] = (theirs + f"self_attention.out_proj.{p}",)
        # in_proj rows are [W_q; W_k; W_v], the layout of our qkv: copied as is, nothing transposed.
        table[ours + "msa.qkv.weight"] = (theirs + "self_attention.in_proj_weight",)
        table[ours + "msa.qkv.bias"] = (theirs + "self_attention.in_proj_bias",)
    return table


_HEADS_BY_WIDTH = {768: 12, 1024: 16, 1280: 16}  # Table 1


def config_from_torchvision(state_dict: dict[str, torch.Tensor], heads: int | None = None, name: str = "") -> ViTConfig:
    """Infer the config from a torchvision ViT state dict. `heads` is not stored in the weights: given, or Table 1's."""
    required = ("class_token", "conv_proj.weight", "encoder.pos_embedding", "heads.head.weight")
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise ValueError(f"Not a torchvision ViT state dict: missing {missing}.")
    D, C, P, _ = state_dict["conv_proj.weight"].shape
    N = state_dict["encoder.pos_embedding"].shape[1] - TokenLayout().num_prefix  # the class token, then N patches
    side = int(round(N ** 0.5))
    if side * side != N:
        raise ValueError(f"Position embedding of {N} + 1 tokens is not a square grid plus a class token.")
    layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"encoder\.layers\.encoder_layer_(\d+)\.", k))}
    depth = max(layers) + 1 if layers else 0  # a missing layer then fails as a missing key, by name
    mlp_key = next((k for k in state_dict if re.fullmatch(r"encoder\.layers\.encoder_layer_0\.mlp\.(0|linear_1)\.weight", k)), None)
    if depth == 0 or mlp_key is None:
        raise ValueError("Not a torchvision ViT state dict: missing encoder.layers.encoder_layer_0.mlp.0.weight.")
    if heads is None:
        if D not in _HEADS_BY_WIDTH:
            raise ValueError(f"Can't infer the number of heads for D={D}; pass heads=.")
        heads = _HEADS_BY_WIDTH[D]
    pre_logits = state_dict.get("heads.pre_logits.weight")
    return ViTConfig(
        image_size=side * P, patch_size=P, channels=C, hidden_dim=D, depth=depth, heads=heads,
        mlp_dim=state_dict[mlp_key].shape[0], num_classes=state_dict["heads.head.weight"].shape[0],
        representation_size=None if pre_logits is None else pre_logits.shape[0],
        name=name or f"ViT-{D}d/{P}",
    )


def from_torchvision(model_or_state_dict, heads: int | None = None, name: str = "", copy: bool = True) -> ViT:
    """An explorer.ViT with exactly the weights of a torchvision VisionTransformer (or its state dict).

    The key table is applied by explorer.families.engine.convert: built on the meta device, every shape asserted,
    every key used. With copy=False the parameters share storage with the given tensors (fine for a state dict just
    read from a file); a meta-device state dict gives a meta-device model.
    """
    if isinstance(model_or_state_dict, torch.nn.Module):
        tv = model_or_state_dict
        heads = heads or tv.encoder.layers[0].self_attention.num_heads
        if not isinstance(tv.conv_proj, torch.nn.Conv2d):
            raise ValueError("ViTs with a convolutional stem are not supported; only the plain patch embedding.")
        state_dict = tv.state_dict()
    else:
        state_dict = dict(model_or_state_dict)
    config = config_from_torchvision(state_dict, heads, name)
    table = key_table(config.depth, config.representation_size is not None)
    return convert(state_dict, table, config, "torchvision", copy=copy)
