"""A model's family in words ("DINOv2 ViT-S/14 with 4 registers", "DeiT distilled ViT-B/16"), for the menu, the model
card and the survey: from its ViTConfig, or from a timm config.json alone (no timm, no weights read).

What the config says is always said: a distillation token, k registers, mean pooling, a backbone. Which family that
is comes from the library's own name of the architecture where one is given (a `hint`: timm's architecture,
"vit_small_patch14_reg4_dinov2", or transformers' model_type / class, "dinov2_with_registers"), else from what only
that family computes (a distillation token: DeiT; a norm before the blocks: CLIP's image tower). A layer-scaled model
without a hint is called "layer-scaled", not guessed to be DeiT III or DINOv2.
"""
from __future__ import annotations

import re

from ..config import ViTConfig

# (D, L) -> the size letter DeiT, DINOv2 and CLIP use (Ti, S, B, L, H as in the paper's Table 1 plus DeiT's; g: giant).
SIZE_LETTERS = {(192, 12): "Ti", (384, 12): "S", (768, 12): "B", (1024, 24): "L", (1280, 32): "H", (1536, 40): "g"}
# timm's size words -> (D, L) of its architectures of that name.
TIMM_SIZES = {"tiny": (192, 12), "small": (384, 12), "base": (768, 12), "large": (1024, 24), "huge": (1280, 32),
              "giant": (1536, 40)}
BACKBONE = "a backbone: features, no classes"

# Words in a library's name of the architecture -> the family, first match wins (deit3 before deit).
_HINTS = (("dinov2", "DINOv2"), ("deit3", "DeiT III"), ("distilled", "DeiT distilled"), ("clip", "CLIP image tower"),
          ("mae", "MAE fine-tune"), ("deit", "DeiT"))


def size_name(hidden_dim: int, depth: int, patch_size: int) -> str:
    """"ViT-S/14" for a size of DeiT's, DINOv2's or the paper's table, else "ViT-<D>d/<P>"."""
    letter = SIZE_LETTERS.get((hidden_dim, depth))
    return f"ViT-{letter}/{patch_size}" if letter else f"ViT-{hidden_dim}d/{patch_size}"


def _family(hint: str, *, distilled: bool, pre_norm: bool, layer_scale: bool) -> str:
    """The family's name ("" for the paper's ViT) from the library's name and what only one family computes."""
    if distilled:
        return "DeiT distilled"
    hint = hint.lower()
    named = next((family for word, family in _HINTS if word in hint), "")
    if named:
        return named
    if pre_norm:
        return "CLIP image tower"  # a LayerNorm on z_0 before the blocks: CLIP's ln_pre
    return "layer-scaled" if layer_scale else ""


def _words(family: str, size: str, registers: int, mean: bool) -> str:
    """"DINOv2 ViT-S/14 with 4 registers", "MAE fine-tune ViT-B/16, mean-pooled", "ViT-B/16"."""
    words = f"{family} {size}" if family else size
    if registers:
        words += f" with {registers} register{'s' if registers > 1 else ''}"
    return words + (", mean-pooled" if mean else "")


def family_name(config: ViTConfig, hint: str = "") -> str:
    """The family and size of a model in words: "DINOv2 ViT-S/14 with 4 registers", "DeiT distilled ViT-B/16",
    "ViT-B/16" (the paper's). `hint`: the library's name of the architecture, or a bundle's source line ("timm
    vit_small_patch14_reg4_dinov2.lvd142m from <where>": the folder after " from " is not read)."""
    family = _family(hint.split(" from ")[0], distilled=config.distillation_token, pre_norm=config.pre_norm,
                     layer_scale=config.layer_scale)
    return _words(family, size_name(config.hidden_dim, config.depth, config.patch_size), config.register_tokens,
                  config.pooling == "mean")


def classes_words(num_classes: int) -> str:
    """"1000 classes", or that the model is a backbone."""
    return f"{num_classes} classes" if num_classes else BACKBONE


def timm_family_name(hf_config: dict) -> str:
    """family_name for a timm save_pretrained config.json, read without timm: the architecture's name gives the
    family, its size word and patch size, and its registers ("reg4"); model_args (the arguments it was built with)
    and num_features (D) override them; global_pool "avg" is mean pooling."""
    architecture = str(hf_config.get("architecture", ""))
    args = hf_config.get("model_args") or {}
    size = next((word for word in TIMM_SIZES if f"_{word}_" in f"_{architecture}_"), None)
    width, depth = TIMM_SIZES.get(size, (None, None))
    width = int(args.get("embed_dim") or hf_config.get("num_features") or width or 0)
    depth = int(args.get("depth") or depth or 0)
    patch = args.get("patch_size") or next(iter(re.findall(r"patch(\d+)", architecture)), 0)
    registers = args.get("reg_tokens")
    if registers is None:
        registers = next(iter(re.findall(r"_reg(\d+)", architecture)), 0)
    tag = (hf_config.get("pretrained_cfg") or {}).get("tag") or ""  # "lvd142m", "mae", "openai_ft_in12k_in1k"
    family = _family(f"{architecture}.{tag}", distilled="distilled" in architecture,
                     pre_norm=bool(args.get("pre_norm")), layer_scale=args.get("init_values") is not None)
    size_words = size_name(width, depth, int(patch)) if width and depth and patch else architecture
    return _words(family, size_words, int(registers), hf_config.get("global_pool") == "avg")
