"""Other libraries' ViTs in: timm's VisionTransformer and Hugging Face transformers' ViTForImageClassification.

- `from_timm(model_or_state_dict, config=None, heads=None)`: an explorer.ViT with exactly those weights.
- `from_transformers(model_or_path)`: the same for a ViTForImageClassification, or a folder it was saved to.
- `load(source)`: a ModelBundle from a local folder or file, or from a Hugging Face Hub id, with the class names and
  the preprocessing of the checkpoint's own config, so that a photo is read as its authors' pipeline reads it.
- `PAPER_CHECKPOINTS`: the paper's fine-tuned checkpoints as published on the Hub, as data (no network).

Conversions follow explorer.weights: an explicit key table per family, each shape asserted, every source key used,
the model built on the meta device and given the tensors with load_state_dict(strict=True, assign=True).

What is refused. A model the explorer's ViT (Eq. 1-4, one module each in explorer.model) would compute differently
is refused with UnsupportedModel, one sentence saying why: no class token, pooling other than reading the class token
(global average, attention pooling), register or distillation tokens, position embeddings that skip the class token
(no_embed_class), layer scale, fc_norm, a norm before the blocks (pre_norm), qk_norm, other activations or norms,
another block or patch-embedding type, and a model without a classification head (timm num_classes=0, a ViTModel):
the explorer shows class probabilities, and an identity head has none. It never runs such a model approximately.
What is the same computation is accepted: a layer without bias (qkv_bias=False, proj_bias=False) becomes a zero bias,
and timm's dynamic_img_size only matters at other sizes, which the explorer's ViT refuses anyway.

A bare timm state dict says nothing of pooling, activation or LayerNorm epsilon: it is read as timm's default ViT
(class-token pooling, exact GELU, eps 1e-6) and its features are checked by key. Give the model, or the folder timm
saved, and those are checked on the module too. The number of heads is not in any weights: pass heads= or config=.

Pickles are never unpickled: a folder whose weights are only pytorch_model.bin, *.pth or *.ckpt is refused with a
sentence (unlike torchvision's own files, a user's file is not read even with torch.load(weights_only=True)).
Weights are read from model.safetensors (or its shards listed in model.safetensors.index.json).

Hub ids are downloaded with huggingface_hub (its cache, its progress bar). EXPLORER_OFFLINE=1 or HF_HUB_OFFLINE=1
(read at each call) allow only the cache; a file that is then missing, or a network error, raises WeightsUnavailable
with one sentence naming the files and where to put them. HF_ENDPOINT, HF_HOME and HF_HUB_CACHE are also read at
each call. A cached safetensors file of a Hub id is checked before use (its size against its header; its SHA-256
against its blob's name, which is that SHA-256 for weights, stored in Git LFS); a damaged one is downloaded again
(force_download) where the network is allowed, and offline is one sentence naming it. transformers, timm and
huggingface_hub are imported only inside the functions that need them, so `import explorer` stays fast; a saved
transformers folder is read without importing transformers at all.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import CONFIGS, ViTConfig
from .common import reason
from .deferred import deferred
from .images import _INTERPOLATIONS, Preprocessing
from .weights import PRETRAINED, ModelBundle, WeightsUnavailable, load_checkpoint, offline

# Imported when first used (explorer/deferred.py): the app's menu reads PAPER_CHECKPOINTS and model folders' configs
# without them. explorer.model is imported by the function that builds a ViT.
torch = deferred("torch")
safetensors_torch = deferred("safetensors.torch")

__all__ = [
    "UnsupportedModel", "from_timm", "from_transformers", "load", "PaperCheckpoint", "PAPER_CHECKPOINTS",
    "config_from_timm_model", "config_from_timm_state_dict", "config_from_transformers",
    "preprocessing_from_timm", "preprocessing_from_transformers", "hub_cache_dir",
]


class UnsupportedModel(WeightsUnavailable, ValueError):
    """A model the explorer cannot represent faithfully; str(error) is one sentence that says why.

    Both a ValueError (a bad argument to from_timm / from_transformers) and a WeightsUnavailable (what load's callers
    already catch at the edge)."""


# A source for one of our parameters: the names of the tensors concatenated along dim 0 (one name: copied as is).
Source = tuple[str, ...]
# Our parameter name -> its possible sources, newest first.
KeyTable = dict[str, tuple[Source, ...]]

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


# ---------------------------------------------------------------------------------------------------------------
# Shared: the conversion, and Table 1 names

def _convert(state_dict: dict[str, torch.Tensor], table: KeyTable, config: ViTConfig, family: str,
             zero: frozenset[str] = frozenset(), ignore: frozenset[str] = frozenset(), copy: bool = True) -> ViT:
    """A ViT(config) holding `state_dict`'s tensors, renamed by `table`. Keys in `zero` are biases the source layer
    does not have (b = 0, the same computation); keys in `ignore` are source tensors its own forward never reads."""
    from .model import ViT

    with torch.device("meta"):
        model = ViT(config)
    ours = model.state_dict()
    assert set(table) == set(ours), f"{family} key table out of date: {sorted(set(table) ^ set(ours))[:5]}"
    device = next(iter(state_dict.values())).device if state_dict else torch.device("cpu")
    converted, used = {}, set()
    for our_key, sources in table.items():
        if our_key in zero:
            converted[our_key] = torch.zeros(ours[our_key].shape, dtype=ours[our_key].dtype, device=device)
            continue
        source = next((s for s in sources if all(k in state_dict for k in s)), None)
        if source is None:
            raise ValueError(f"The {family} weights lack {sources[0][0]} (needed for {our_key}).")
        parts = [state_dict[k].detach() for k in source]
        tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)  # e.g. [W_q; W_k; W_v]: (3D, D)
        if tensor.shape != ours[our_key].shape:
            raise ValueError(f"The {family} tensor {'+'.join(source)} has shape {tuple(tensor.shape)}; "
                             f"expected {tuple(ours[our_key].shape)}.")
        tensor = tensor.to(dtype=ours[our_key].dtype)  # float32 like a fresh ViT; no copy if it already is
        converted[our_key] = tensor.clone() if copy and len(parts) == 1 else tensor
        used.update(source)
    unused = set(state_dict) - used - ignore
    if unused:
        raise ValueError(f"The {family} weights have tensors this model would not use: {sorted(unused)[:5]}.")
    model.load_state_dict(converted, strict=True, assign=True)
    return model.eval()


def _table_1_name(config: ViTConfig) -> str:
    """"ViT-B/16" when the shapes are a Table 1 model's (any image size), else the config's own name."""
    for name in PRETRAINED:
        row = CONFIGS[name]
        if (row.patch_size, row.hidden_dim, row.depth, row.heads, row.mlp_dim, row.channels) == (
                config.patch_size, config.hidden_dim, config.depth, config.heads, config.mlp_dim, config.channels):
            return name
    return config.name


def _named(config: ViTConfig, name: str) -> ViTConfig:
    """The config with the given name, else its Table 1 row's ("ViT-B/16"), else "ViT-<D>d/<P>"."""
    if name:
        return config.replace(name=name)
    return config.replace(name=_table_1_name(config.replace(name=f"ViT-{config.hidden_dim}d/{config.patch_size}")))


def _image_size(size) -> int | tuple[int, int]:
    """An int, or (H, W) when not square, from an int or a pair."""
    if isinstance(size, int):
        return size
    height, width = (int(v) for v in size)
    return height if height == width else (height, width)


def _square(size, what: str) -> int:
    if isinstance(size, int):
        return size
    height, width = (int(v) for v in size)
    if height != width:
        raise UnsupportedModel(f"The model's {what} is {height}x{width}; the explorer's ViT needs square patches.")
    return height


# ---------------------------------------------------------------------------------------------------------------
# timm -> explorer

def _timm_key_table(depth: int) -> KeyTable:
    """Our parameter name -> timm's VisionTransformer name (one source each: the layouts are the same)."""
    names = {
        "class_token": "cls_token",
        "position_embedding": "pos_embed",
        "patch_embedding.projection.weight": "patch_embed.proj.weight",
        "patch_embedding.projection.bias": "patch_embed.proj.bias",
        "norm.weight": "norm.weight",
        "norm.bias": "norm.bias",
        "head.weight": "head.weight",
        "head.bias": "head.bias",
    }
    for i in range(depth):
        ours, theirs = f"blocks.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            names[ours + f"norm_1.{p}"] = theirs + f"norm1.{p}"
            # qkv rows are [W_q; W_k; W_v], head h at rows h*d .. (h+1)*d of each: our layout, nothing transposed.
            names[ours + f"msa.qkv.{p}"] = theirs + f"attn.qkv.{p}"
            names[ours + f"msa.projection.{p}"] = theirs + f"attn.proj.{p}"
            names[ours + f"norm_2.{p}"] = theirs + f"norm2.{p}"
            names[ours + f"mlp.fc1.{p}"] = theirs + f"mlp.fc1.{p}"
            names[ours + f"mlp.fc2.{p}"] = theirs + f"mlp.fc2.{p}"
    return {ours: ((theirs,),) for ours, theirs in names.items()}


# Why a timm ViT feature can't be represented, one clause each (used for modules and for state dicts alike).
_TIMM_WHY = {
    "no_class_token": "it has no class token (class_token=False), so there is no z_L^0 for Eq. 4 to read",
    "pooling": "it pools the tokens with global_pool={!r} instead of reading the class token as Eq. 4 does",
    "reg_tokens": "it has register tokens (reg_tokens > 0), extra tokens that Eq. 1 does not have",
    "distilled": "it has a distillation token and head (DeiT distilled), which Eq. 1 and Eq. 4 do not have",
    "no_embed_class": "its position embedding skips the class token (no_embed_class=True), unlike E_pos in Eq. 1",
    "no_pos_embed": "it has no learned position embedding (pos_embed='none'), which Eq. 1 adds",
    "fc_norm": "it normalises the pooled output (fc_norm) instead of the class token's LN of Eq. 4",
    "no_final_norm": "it has no final LayerNorm (final_norm=False), which Eq. 4 applies",
    "pre_norm": "it normalises the embeddings before the first block (pre_norm, as CLIP does), which Eq. 1 does not",
    "attn_pool": "it pools with attention (global_pool='map'), not by reading the class token as Eq. 4 does",
    "layer_scale": "it scales each residual branch (layer scale, init_values), which Eq. 2 and Eq. 3 do not",
    "qk_norm": "it normalises queries and keys (qk_norm), which the paper's attention does not",
    "attn_norm": "it normalises the attention output before its projection (scale_attn_norm), which Eq. 2 does not",
    "mlp_norm": "it normalises inside the MLP (scale_mlp_norm), which Eq. 3 does not",
    "gate": "it gates the attention output, which Eq. 2 does not",
    "patch_norm": "it normalises the patch embeddings, which Eq. 1 does not",
    "hybrid": "it has a convolutional stem (a hybrid ViT), not the linear patch embedding of Eq. 1",
    "no_head": "it has no classification head (num_classes=0), and the explorer shows class probabilities",
}

# Key patterns in a timm state dict -> the feature they reveal.
_TIMM_KEY_FEATURES = (
    (r"reg_token", "reg_tokens"),
    (r"dist_token|head_dist\.", "distilled"),
    (r"fc_norm\.", "fc_norm"),
    (r"norm_pre\.", "pre_norm"),
    (r"attn_pool\.", "attn_pool"),
    (r"blocks\.\d+\.ls[12]\.", "layer_scale"),
    (r"blocks\.\d+\.attn\.[qk]_norm\.", "qk_norm"),
    (r"blocks\.\d+\.attn\.norm\.", "attn_norm"),
    (r"blocks\.\d+\.mlp\.norm\.", "mlp_norm"),
    (r"blocks\.\d+\.attn\.gate\.", "gate"),
    (r"patch_embed\.norm\.", "patch_norm"),
    (r"patch_embed\.backbone\.", "hybrid"),
)


def _refuse_timm(feature: str, *args) -> UnsupportedModel:
    return UnsupportedModel(f"This timm ViT can't be shown faithfully: {_TIMM_WHY[feature].format(*args)}.")


def _refuse_timm_keys(state_dict) -> None:
    """UnsupportedModel when a key reveals a feature the explorer's ViT does not have."""
    for pattern, feature in _TIMM_KEY_FEATURES:
        if any(re.match(pattern, key) for key in state_dict):
            raise _refuse_timm(feature)


def config_from_timm_model(model, name: str = "") -> ViTConfig:
    """The config of a timm VisionTransformer (any device, meta too); UnsupportedModel for what Eq. 1-4 don't
    compute."""
    from torch import nn
    from timm.layers import Attention, LayerNorm, Mlp, PatchEmbed
    from timm.layers.activations import GELU as TimmGELU
    from timm.models.vision_transformer import Block, VisionTransformer

    kind = type(model).__name__
    if "Distilled" in kind:
        raise _refuse_timm("distilled")
    if type(model) is not VisionTransformer:
        raise UnsupportedModel(f"timm's {kind} is not the plain VisionTransformer of the paper, so the explorer "
                               f"can't show it faithfully.")
    if model.cls_token is None:
        raise _refuse_timm("no_class_token")
    if model.num_reg_tokens:
        raise _refuse_timm("reg_tokens")
    if model.pos_embed is None:
        raise _refuse_timm("no_pos_embed")
    if model.no_embed_class:
        raise _refuse_timm("no_embed_class")
    if model.attn_pool is not None:
        raise _refuse_timm("attn_pool")
    if model.global_pool != "token":
        raise _refuse_timm("pooling", model.global_pool)
    if not isinstance(model.norm_pre, nn.Identity):
        raise _refuse_timm("pre_norm")
    if not isinstance(model.fc_norm, nn.Identity):
        raise _refuse_timm("fc_norm")
    if not isinstance(model.head, nn.Linear):
        raise _refuse_timm("no_head")
    patch_embed = model.patch_embed
    if type(patch_embed) is not PatchEmbed or not isinstance(patch_embed.proj, nn.Conv2d):
        raise _refuse_timm("hybrid")
    if not isinstance(patch_embed.norm, nn.Identity):
        raise _refuse_timm("patch_norm")
    if isinstance(model.norm, nn.Identity):
        raise _refuse_timm("no_final_norm")
    if not _is_layer_norm(model.norm, nn, LayerNorm):
        raise UnsupportedModel(f"Its final norm is {type(model.norm).__name__}, not the LayerNorm of Eq. 4, so the "
                               f"explorer can't show this model faithfully.")
    P = _square(patch_embed.patch_size, "patch size")
    projection = patch_embed.proj
    if projection.kernel_size != (P, P) or projection.stride != (P, P) or projection.padding != (0, 0):
        raise _refuse_timm("hybrid")
    eps, D = model.norm.eps, model.embed_dim
    heads = {block.attn.num_heads for block in model.blocks if hasattr(block, "attn")}
    for block in model.blocks:
        if type(block) is not Block:
            raise UnsupportedModel(f"timm's {type(block).__name__} blocks are not the pre-norm blocks of Eq. 2 and "
                                   f"Eq. 3, so the explorer can't show this model faithfully.")
        attn, mlp = block.attn, block.mlp
        if type(attn) is not Attention or type(mlp) is not Mlp:
            other = type(attn).__name__ if type(attn) is not Attention else type(mlp).__name__
            raise UnsupportedModel(f"timm's {other} is not the attention and MLP of Eq. 2 and Eq. 3, so the explorer "
                                   f"can't show this model faithfully.")
        if not (isinstance(block.ls1, nn.Identity) and isinstance(block.ls2, nn.Identity)):
            raise _refuse_timm("layer_scale")
        if not (isinstance(attn.q_norm, nn.Identity) and isinstance(attn.k_norm, nn.Identity)):
            raise _refuse_timm("qk_norm")
        if not isinstance(attn.norm, nn.Identity):
            raise _refuse_timm("attn_norm")
        if getattr(attn, "gate", None) is not None:
            raise _refuse_timm("gate")
        if not isinstance(mlp.norm, nn.Identity):
            raise _refuse_timm("mlp_norm")
        if attn.head_dim * attn.num_heads != D or len(heads) != 1:
            raise UnsupportedModel(f"Its attention has {attn.num_heads} heads of {attn.head_dim}, not D={D} split "
                                   f"evenly as in the paper, so the explorer can't show this model faithfully.")
        act = mlp.act
        if not ((type(act) is nn.GELU and act.approximate == "none") or type(act) is TimmGELU):
            raise UnsupportedModel(f"Its MLP uses {type(act).__name__}, not the exact GELU of the paper, so the "
                                   f"explorer can't show this model faithfully.")
        for norm in (block.norm1, block.norm2):
            if not _is_layer_norm(norm, nn, LayerNorm) or norm.eps != eps:
                raise UnsupportedModel(f"Its blocks use {type(norm).__name__} (eps {getattr(norm, 'eps', '?')}), "
                                       f"not the LayerNorm (eps {eps}) of its final norm, so the explorer can't show "
                                       f"this model faithfully.")
    return _named(ViTConfig(
        image_size=_image_size(patch_embed.img_size), patch_size=P, channels=patch_embed.proj.in_channels,
        hidden_dim=D, depth=len(model.blocks), heads=heads.pop(), mlp_dim=model.blocks[0].mlp.fc1.out_features,
        num_classes=model.head.out_features, layer_norm_eps=eps,
    ), name)


def _is_layer_norm(norm, nn, timm_layer_norm) -> bool:
    """nn.LayerNorm or timm's (same function, maybe a fused kernel), affine, over the last dimension only."""
    return (type(norm) in (nn.LayerNorm, timm_layer_norm) and norm.elementwise_affine
            and len(norm.normalized_shape) == 1 and getattr(norm, "bias", None) is not None)


def config_from_timm_state_dict(state_dict: dict[str, torch.Tensor], heads: int, name: str = "",
                                layer_norm_eps: float = 1e-6) -> ViTConfig:
    """The config of a timm VisionTransformer from its state dict's shapes; `heads` is not in the weights."""
    if "patch_embed.proj.weight" not in state_dict or "blocks.0.mlp.fc1.weight" not in state_dict:
        raise ValueError("Not a timm VisionTransformer state dict: it lacks patch_embed.proj.weight or "
                         "blocks.0.mlp.fc1.weight.")
    if "cls_token" not in state_dict:
        raise _refuse_timm("no_class_token")
    _refuse_timm_keys(state_dict)
    if "pos_embed" not in state_dict:
        raise _refuse_timm("no_pos_embed")
    if "head.weight" not in state_dict:
        raise _refuse_timm("no_head")
    if "norm.weight" not in state_dict:
        raise _refuse_timm("no_final_norm")
    D, C, P, P2 = state_dict["patch_embed.proj.weight"].shape
    if P != P2:
        raise UnsupportedModel(f"The model's patch size is {P}x{P2}; the explorer's ViT needs square patches.")
    T = state_dict["pos_embed"].shape[1]
    side = int(round(math.sqrt(T - 1)))
    if side * side != T - 1:
        if round(math.sqrt(T)) ** 2 == T:
            raise _refuse_timm("no_embed_class")
        raise ValueError(f"A position embedding of {T} tokens is not a square grid plus a class token; pass config= "
                         f"for a non-square image.")
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k)))
    return _named(ViTConfig(
        image_size=side * P, patch_size=P, channels=C, hidden_dim=D, depth=depth, heads=heads,
        mlp_dim=state_dict["blocks.0.mlp.fc1.weight"].shape[0], num_classes=state_dict["head.weight"].shape[0],
        layer_norm_eps=layer_norm_eps,
    ), name)


def _timm_bias_free(state_dict, depth: int) -> frozenset[str]:
    """Our biases whose timm layers have none (qkv_bias=False, proj_bias=False): absent in every block, or a
    missing key (absent in some) that the conversion then names."""
    kinds = {"msa.qkv.bias": "attn.qkv.bias", "msa.projection.bias": "attn.proj.bias",
             "mlp.fc1.bias": "mlp.fc1.bias", "mlp.fc2.bias": "mlp.fc2.bias"}
    zero = set()
    for ours, theirs in kinds.items():
        if not any(f"blocks.{i}.{theirs}" in state_dict for i in range(depth)):
            zero.update(f"blocks.{i}.{ours}" for i in range(depth))
    if "patch_embed.proj.bias" not in state_dict:
        zero.add("patch_embedding.projection.bias")
    return frozenset(zero)


def from_timm(model_or_state_dict, config: ViTConfig | None = None, *, heads: int | None = None, name: str = "",
              copy: bool = True) -> ViT:
    """An explorer.ViT with exactly the weights of a timm VisionTransformer (or its state dict).

    For a model its own modules say everything (and are checked); for a state dict give `config` (then used as is)
    or `heads` (the rest is read from the shapes). UnsupportedModel (a ValueError) for what can't be represented.
    """
    if isinstance(model_or_state_dict, torch.nn.Module):
        derived = config_from_timm_model(model_or_state_dict, name)
        if config is not None and config.replace(name=derived.name) != derived:
            raise ValueError(f"The given config does not match the timm model ({derived}).")
        config = derived
        state_dict = model_or_state_dict.state_dict()
    else:
        state_dict = dict(model_or_state_dict)
        if config is None:
            if heads is None:
                raise ValueError("A timm state dict does not record the number of heads; pass heads= or config=.")
            config = config_from_timm_state_dict(state_dict, heads, name)
        else:
            _refuse_timm_keys(state_dict)
    zero = _timm_bias_free(state_dict, config.depth)
    return _convert(state_dict, _timm_key_table(config.depth), config, "timm", zero=zero, copy=copy)


def preprocessing_from_timm(data_config: dict, channels: int = 3) -> Preprocessing:
    """timm's eval transform (transforms_imagenet_eval) for a data config such as resolve_model_data_config returns:
    resize the shorter side to floor(size / crop_pct) and centre-crop `size` (crop_mode "center"), or resize both
    sides to that (crop_mode "squash") and centre-crop."""
    _, height, width = data_config["input_size"]
    if height != width:
        raise UnsupportedModel(f"The checkpoint expects {height}x{width} images; the explorer's preprocessing "
                               f"crops squares.")
    crop_pct = data_config.get("crop_pct") or 0.875  # timm's DEFAULT_CROP_PCT
    scale = math.floor(height / crop_pct)
    mode = data_config.get("crop_mode") or "center"
    if mode not in ("center", "squash"):
        raise UnsupportedModel(f"The checkpoint's preprocessing uses timm's crop_mode={mode!r}, which the explorer "
                               f"does not reproduce.")
    interpolation = data_config.get("interpolation") or "bilinear"
    if interpolation not in _INTERPOLATIONS:
        raise UnsupportedModel(f"The checkpoint's preprocessing uses {interpolation!r} interpolation, which the "
                               f"explorer does not reproduce.")
    return Preprocessing(
        resize_size=scale, crop_size=height, interpolation=interpolation,
        mean=tuple(float(m) for m in data_config["mean"]), std=tuple(float(s) for s in data_config["std"]),
        channels=channels, resize_to=(scale, scale) if mode == "squash" else None,
    )


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face transformers -> explorer

# transformers' ViTConfig defaults, for the fields an older config.json leaves out.
HF_VIT_DEFAULTS = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16, "num_channels": 3,
    "qkv_bias": True,
}


def _hf_key_table(depth: int) -> KeyTable:
    """Our parameter name -> its ViTForImageClassification sources: first as saved (on the Hub, and as
    save_pretrained writes them), then as transformers >= 5 names them in memory. Our qkv is [query; key; value]
    concatenated along the rows; each keeps heads at rows h*d .. (h+1)*d, as ours."""
    table: KeyTable = {
        "class_token": (("vit.embeddings.cls_token",),),
        "position_embedding": (("vit.embeddings.position_embeddings",),),
        "patch_embedding.projection.weight": (("vit.embeddings.patch_embeddings.projection.weight",),),
        "patch_embedding.projection.bias": (("vit.embeddings.patch_embeddings.projection.bias",),),
        "norm.weight": (("vit.layernorm.weight",),),
        "norm.bias": (("vit.layernorm.bias",),),
        "head.weight": (("classifier.weight",),),
        "head.bias": (("classifier.bias",),),
    }
    for i in range(depth):
        ours, saved, live = f"blocks.{i}.", f"vit.encoder.layer.{i}.", f"vit.layers.{i}."
        for p in ("weight", "bias"):
            table[ours + f"norm_1.{p}"] = ((saved + f"layernorm_before.{p}",), (live + f"layernorm_before.{p}",))
            table[ours + f"msa.qkv.{p}"] = (
                tuple(saved + f"attention.attention.{n}.{p}" for n in ("query", "key", "value")),
                tuple(live + f"attention.{n}_proj.{p}" for n in ("q", "k", "v")),
            )
            table[ours + f"msa.projection.{p}"] = ((saved + f"attention.output.dense.{p}",),
                                                   (live + f"attention.o_proj.{p}",))
            table[ours + f"norm_2.{p}"] = ((saved + f"layernorm_after.{p}",), (live + f"layernorm_after.{p}",))
            table[ours + f"mlp.fc1.{p}"] = ((saved + f"intermediate.dense.{p}",), (live + f"mlp.fc1.{p}",))
            table[ours + f"mlp.fc2.{p}"] = ((saved + f"output.dense.{p}",), (live + f"mlp.fc2.{p}",))
    return table


# Tensors a ViTForImageClassification file may hold that its forward never reads (transformers ignores them too).
_HF_IGNORED = frozenset({"vit.pooler.dense.weight", "vit.pooler.dense.bias"})


def config_from_transformers(hf_config: dict, name: str = "") -> ViTConfig:
    """Our config from a transformers ViT config (config.json's dict); UnsupportedModel for what Eq. 1-4 don't
    compute."""
    model_type = hf_config.get("model_type")
    if model_type != "vit":
        raise UnsupportedModel(f"The checkpoint is a transformers {model_type!r} model, not a plain 'vit', so the "
                               f"explorer can't show it faithfully.")
    architectures = hf_config.get("architectures") or []
    if architectures and "ViTForImageClassification" not in architectures:
        raise _refuse_hf_class(architectures[0])
    c = {**HF_VIT_DEFAULTS, **{k: v for k, v in hf_config.items() if v is not None}}
    if c["hidden_act"] != "gelu":
        raise UnsupportedModel(f"Its MLP uses {c['hidden_act']!r}, not the exact GELU of the paper, so the explorer "
                               f"can't show this model faithfully.")
    D, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
    if "head_dim" in hf_config and int(hf_config["head_dim"]) * heads != D:
        raise UnsupportedModel(f"Its attention has {heads} heads of {hf_config['head_dim']}, not D={D} split evenly "
                               f"as in the paper, so the explorer can't show this model faithfully.")
    labels = hf_config.get("id2label") or {}
    num_classes = len(labels) if labels else int(hf_config.get("num_labels", 2))  # transformers' default: 2
    if num_classes == 0:
        raise UnsupportedModel("The ViTForImageClassification has no labels (an identity classifier), and the "
                               "explorer shows class probabilities.")
    P = _square(c["patch_size"], "patch size")
    depth = int(c["num_hidden_layers"])
    return _named(ViTConfig(
        image_size=_image_size(c["image_size"]), patch_size=P, channels=int(c["num_channels"]), hidden_dim=D,
        depth=depth, heads=heads, mlp_dim=int(c["intermediate_size"]), num_classes=num_classes,
        layer_norm_eps=float(c["layer_norm_eps"]),
    ), name)


def _refuse_hf_class(kind: str) -> UnsupportedModel:
    if kind == "ViTModel":
        return UnsupportedModel("A ViTModel has no classification head (its pooler is not one); load a "
                                "ViTForImageClassification, since the explorer shows class probabilities.")
    return UnsupportedModel(f"transformers' {kind} is not a ViTForImageClassification, so the explorer can't show "
                            f"it faithfully.")


def _hf_class_names(hf_config: dict, num_classes: int) -> list[str]:
    labels = hf_config.get("id2label") or {}
    names = {int(k): str(v) for k, v in labels.items()}
    return [names.get(i, f"class {i}") for i in range(num_classes)]


def from_transformers(model_or_path, *, copy: bool = True) -> ViT:
    """An explorer.ViT with exactly the weights of a transformers ViTForImageClassification: the model object, or a
    folder holding config.json and model.safetensors (as save_pretrained writes it; transformers is not imported)."""
    if isinstance(model_or_path, (str, os.PathLike)):
        folder = Path(model_or_path)
        folder = folder.parent if folder.is_file() else folder
        hf_config = _read_json(folder / "config.json")
        return _from_hf_dict(hf_config, _read_weights(folder), copy=False)
    model = model_or_path
    kind = type(model).__name__
    if kind != "ViTForImageClassification":
        raise _refuse_hf_class(kind)
    if not isinstance(model.classifier, torch.nn.Linear):
        raise UnsupportedModel("The ViTForImageClassification has no labels (an identity classifier), and the "
                               "explorer shows class probabilities.")
    hf_config = model.config.to_dict()
    hf_config["architectures"] = [kind]
    return _from_hf_dict(hf_config, model.state_dict(), copy=copy)


def _from_hf_dict(hf_config: dict, state_dict: dict, name: str = "", copy: bool = True) -> ViT:
    config = config_from_transformers(hf_config, name)
    qkv_bias = bool({**HF_VIT_DEFAULTS, **hf_config}["qkv_bias"])
    zero = frozenset() if qkv_bias else frozenset(f"blocks.{i}.msa.qkv.bias" for i in range(config.depth))
    return _convert(state_dict, _hf_key_table(config.depth), config, "transformers", zero=zero, ignore=_HF_IGNORED,
                    copy=copy)


# transformers' PILImageResampling numbers (PIL's) -> our interpolation names.
_HF_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def preprocessing_from_transformers(processor: dict | None, config: ViTConfig) -> Preprocessing:
    """ViTImageProcessor's recipe from a preprocessor_config.json: resize straight to (height, width) (aspect ratio not
    kept, no crop), rescale by 1/255, normalise. Without a file: its defaults (bilinear, mean = std = 0.5) at the
    model's own size."""
    height, width = config.image_hw
    p = {"do_resize": True, "size": {"height": height, "width": width}, "resample": 2, "do_rescale": True,
         "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
         **(processor or {})}
    kind = p.get("image_processor_type") or p.get("feature_extractor_type") or "ViTImageProcessor"
    size = p["size"]
    size = {"height": size, "width": size} if isinstance(size, int) else size
    resample = _HF_RESAMPLE.get(p["resample"], p["resample"])
    why = None
    if not kind.startswith(("ViTImageProcessor", "ViTFeatureExtractor")):
        why = f"its {kind}"
    elif not p["do_resize"] or set(size) != {"height", "width"}:
        why = f"resizing to {size}" if p["do_resize"] else "no resizing"
    elif p.get("do_center_crop"):
        why = "a Hugging Face centre crop"
    elif not p["do_rescale"] or abs(float(p["rescale_factor"]) - 1 / 255) > 1e-12:
        why = "a rescale other than 1/255"
    elif resample not in _INTERPOLATIONS:
        why = f"resampling {resample!r}"
    elif (int(size["height"]), int(size["width"])) != (height, width):
        why = f"a {size['height']}x{size['width']} input for a {height}x{width} model"
    elif height != width:
        why = f"a non-square {height}x{width} input"
    if why is not None:
        raise UnsupportedModel(f"The checkpoint's preprocessing ({why}) is not one the explorer reproduces exactly.")
    mean, std = (p["image_mean"], p["image_std"]) if p["do_normalize"] else (0.0, 1.0)
    return Preprocessing(resize_size=height, crop_size=height, interpolation=resample,
                         mean=_per_channel(mean, config.channels), std=_per_channel(std, config.channels),
                         channels=config.channels, resize_to=(height, width))


def _per_channel(value, channels: int) -> tuple[float, ...]:
    """A mean or std as one float per channel (configs may give one number for all)."""
    values = [value] * channels if isinstance(value, (int, float)) else list(value)
    if len(values) != channels:
        raise UnsupportedModel(f"The checkpoint's preprocessing normalises {len(values)} channels; the model has "
                               f"{channels}.")
    return tuple(float(v) for v in values)


# ---------------------------------------------------------------------------------------------------------------
# Files: config.json, model.safetensors (or shards); never a pickle

def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise WeightsUnavailable(f"No {path.name} in {path.parent}; a model folder holds config.json and "
                                 f"model.safetensors.")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise WeightsUnavailable(f"{path} is not valid JSON ({reason(error)}); save the model again.") from None
    if not isinstance(data, dict):
        raise WeightsUnavailable(f"{path} does not hold a JSON object; save the model again.")
    return data



def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors_torch.load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error type for a damaged header
        raise WeightsUnavailable(f"{path} is not a readable safetensors file ({reason(error)}); save the model "
                                 f"again.") from None


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors in `folder`, or of the shards model.safetensors.index.json lists."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return _load_safetensors(single)
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        if not shards or any(Path(s).name != s for s in shards):
            raise WeightsUnavailable(f"{index} lists no shards in its folder; save the model again.")
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            if not (folder / shard).is_file():
                raise WeightsUnavailable(f"The shard {shard} listed in {index.name} is missing from {folder}.")
            tensors.update(_load_safetensors(folder / shard))
        return tensors
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES) if folder.is_dir() else []
    if pickles:
        raise WeightsUnavailable(
            f"{folder} holds only {pickles[0]}, a pickle file, which can run code when loaded; save the weights as "
            f"model.safetensors and pass the folder again."
        )
    raise WeightsUnavailable(f"No model.safetensors in {folder}; put the weights file next to its config.json.")


# ---------------------------------------------------------------------------------------------------------------
# load(): a folder, a file or a Hub id -> ModelBundle

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def load(source: str | os.PathLike, device: str | torch.device = "cpu") -> ModelBundle:
    """A ModelBundle from a folder (transformers' or timm's save_pretrained: config.json + model.safetensors), one of
    the project's checkpoints (.safetensors + .json), or a Hugging Face Hub id such as google/vit-base-patch16-224
    or timm/vit_base_patch16_224.augreg2_in21k_ft_in1k (downloaded into the Hugging Face cache)."""
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.exists():
        bundle = _load_local(path)
    else:
        repo_id = text.removeprefix("hf-hub:")
        if not _HUB_ID.fullmatch(repo_id) or repo_id.startswith((".", "/")):
            raise WeightsUnavailable(f"No file or folder at {path}, and {text!r} is not a Hugging Face Hub id such as "
                                     f"google/vit-base-patch16-224.")
        bundle = _load_folder(_hub_snapshot(repo_id), hub_id=repo_id)
    bundle.model = bundle.model.to(device).eval()
    return bundle


def _load_local(path: Path) -> ModelBundle:
    if path.is_dir():
        return _load_folder(path)
    if path.suffix in _PICKLE_SUFFIXES:
        raise WeightsUnavailable(
            f"{path.name} is a pickle file, which can run code when loaded; only .safetensors weights are accepted."
        )
    if path.name == "config.json" or (path.name.startswith("model") and path.suffix == ".safetensors"
                                      and (path.parent / "config.json").is_file()):
        return _load_folder(path.parent)
    if path.suffix in (".safetensors", ".json"):
        return load_checkpoint(path)
    raise WeightsUnavailable(f"{path.name} is not a checkpoint; give a folder with config.json and model.safetensors, "
                             f"or a .safetensors file.")


def _load_folder(folder: Path, hub_id: str | None = None) -> ModelBundle:
    if not (folder / "config.json").is_file():
        ours = [p for p in sorted(folder.glob("*.json")) if _is_project_checkpoint(p)]
        if len(ours) == 1:
            return load_checkpoint(ours[0])
        raise WeightsUnavailable(f"No config.json in {folder}; a model folder holds config.json and model.safetensors, "
                                 f"as transformers' and timm's save_pretrained write them.")
    hf_config = _read_json(folder / "config.json")
    where = f"Hugging Face Hub {hub_id}" if hub_id else str(folder)
    if "architecture" in hf_config:  # timm writes architecture + pretrained_cfg; transformers model_type
        return _load_timm_folder(folder, hf_config, hub_id, where)
    if "model_type" in hf_config:
        return _load_transformers_folder(folder, hf_config, hub_id, where)
    raise WeightsUnavailable(f"{folder / 'config.json'} is neither a timm nor a transformers config (it has no "
                             f"'architecture' or 'model_type').")


def _is_project_checkpoint(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("format", "").startswith("vit-explorer/")
    except Exception:
        return False


def _load_transformers_folder(folder: Path, hf_config: dict, hub_id: str | None, where: str) -> ModelBundle:
    config = config_from_transformers(hf_config)
    model = _from_hf_dict(hf_config, _read_weights(folder), copy=False)
    processor_path = folder / "preprocessor_config.json"
    processor = _read_json(processor_path) if processor_path.is_file() else None
    notes = [] if processor else ["No preprocessor_config.json: ViTImageProcessor's defaults at the model's size."]
    label = hub_id or folder.name
    return ModelBundle(
        model=model, preprocessing=preprocessing_from_transformers(processor, config),
        class_names=_hf_class_names(hf_config, config.num_classes), name=_table_1_name(config), weights=label,
        source=f"transformers ViTForImageClassification from {where}",
        meta={"family": "transformers", "hub_id": hub_id, "folder": str(folder), "notes": notes,
              "paper": _paper_entry(hub_id)},
    )


def _load_timm_folder(folder: Path, hf_config: dict, hub_id: str | None, where: str) -> ModelBundle:
    architecture = hf_config.get("architecture")
    try:
        import timm
        from timm.data import resolve_model_data_config
    except ImportError:
        raise WeightsUnavailable(f"Reading the timm checkpoint {architecture} in {folder} needs the timm package "
                                 f"(pip install timm), which knows what its architecture computes.") from None
    try:  # timm's own reading of config.json (architecture, model_args, pretrained_cfg), on the meta device: no weights
        try:
            skeleton = timm.create_model(f"local-dir:{folder}", pretrained=False, device="meta")
        except TypeError:  # a timm without device=: built on the CPU, initialised, then dropped
            skeleton = timm.create_model(f"local-dir:{folder}", pretrained=False)
    except Exception as error:  # an unknown architecture, arguments it does not take, ...
        raise UnsupportedModel(f"timm can't build {architecture!r} from {folder / 'config.json'} "
                               f"({reason(error)}), so the explorer can't read it.") from None
    config = config_from_timm_model(skeleton)
    state_dict = _read_weights(folder)
    zero = frozenset(ours for ours, ((theirs,),) in _timm_key_table(config.depth).items()
                     if ours.endswith(".bias") and _timm_param(skeleton, theirs) is None)
    model = _convert(state_dict, _timm_key_table(config.depth), config, "timm", zero=zero, copy=False)
    pretrained_cfg = getattr(skeleton, "pretrained_cfg", {}) or {}
    tag = pretrained_cfg.get("tag")
    label = hub_id or folder.name
    return ModelBundle(
        model=model, preprocessing=preprocessing_from_timm(resolve_model_data_config(skeleton), config.channels),
        class_names=_timm_class_names(hf_config, config.num_classes), name=_table_1_name(config), weights=label,
        source=f"timm {architecture}{'.' + tag if tag else ''} from {where}",
        meta={"family": "timm", "hub_id": hub_id, "folder": str(folder), "architecture": architecture, "tag": tag,
              "notes": [], "paper": _paper_entry(hub_id)},
    )


def _timm_param(model, name: str):
    """A timm module's parameter by dotted name, or None where the layer has none (bias=False)."""
    module_name, _, attribute = name.rpartition(".")
    return getattr(model.get_submodule(module_name), attribute, None)


def _timm_class_names(hf_config: dict, num_classes: int) -> list[str]:
    """label_names (+ label_descriptions) from the config, else ImageNet's from timm (offline data) by class count."""
    names = hf_config.get("label_names") or hf_config.get("pretrained_cfg", {}).get("label_names")
    descriptions = hf_config.get("label_descriptions") or hf_config.get("pretrained_cfg", {}).get("label_descriptions")
    if isinstance(names, dict):
        names = [names.get(str(i), names.get(i, f"class {i}")) for i in range(num_classes)]
    if names and len(names) == num_classes:
        return [str(descriptions.get(n, n)) if isinstance(descriptions, dict) else str(n) for n in names]
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset({"num_classes": num_classes})
    if subset:
        return list(ImageNetInfo(subset).label_descriptions())
    return [f"class {i}" for i in range(num_classes)]


# ---------------------------------------------------------------------------------------------------------------
# The Hugging Face Hub, through huggingface_hub (its cache, its progress bar)

def _hub_offline() -> str | None:
    """The variable that forbids the network now (read at each call), or None."""
    if offline():
        return "EXPLORER_OFFLINE"
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return variable
    import huggingface_hub.constants

    return "HF_HUB_OFFLINE" if huggingface_hub.constants.HF_HUB_OFFLINE else None


def hub_cache_dir() -> Path:
    """Where huggingface_hub caches downloads now: $HF_HUB_CACHE, else $HF_HOME/hub, else its default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    import huggingface_hub.constants

    return Path(huggingface_hub.constants.HF_HUB_CACHE).expanduser()


def _hub_snapshot(repo_id: str) -> Path:
    """The cached snapshot folder of `repo_id` holding config.json, the safetensors weights and (transformers) its
    preprocessor_config.json, downloaded first where the network is allowed."""
    config_path = _hub_file(repo_id, "config.json")
    hf_config = _read_json(config_path)
    try:
        _hub_weights_file(repo_id, "model.safetensors")
    except _MissingOnHub:
        try:
            index = _hub_file(repo_id, "model.safetensors.index.json")
        except _MissingOnHub:
            raise WeightsUnavailable(f"{repo_id} has no model.safetensors on the Hub, and the explorer never unpickles "
                                     f"pytorch_model.bin; pick a checkpoint that offers safetensors.") from None
        for shard in sorted(set(_read_json(index).get("weight_map", {}).values())):
            _hub_weights_file(repo_id, shard)
    if "model_type" in hf_config:
        try:
            _hub_file(repo_id, "preprocessor_config.json")
        except _MissingOnHub:
            pass  # ViTImageProcessor's defaults apply, as in transformers
    return config_path.parent


class _MissingOnHub(Exception):
    """The repository exists but has no such file."""


def _hub_weights_file(repo_id: str, filename: str) -> Path:
    """_hub_file for a safetensors file, checked: a cached copy cut short or with changed bytes is downloaded again
    where the network is allowed (huggingface_hub checks a download's size, but never a cached file)."""
    path = _hub_file(repo_id, filename)
    damage = _safetensors_damage(path)
    if damage is None:
        return path
    flag = _hub_offline()
    if flag:
        raise WeightsUnavailable(f"The cached file {path} of {repo_id} is damaged ({damage}) and {flag} is set: unset "
                                 f"it to have it downloaded afresh, or delete it and run once with the network.")
    path = _hub_file(repo_id, filename, force_download=True)
    damage = _safetensors_damage(path)
    if damage is not None:
        raise WeightsUnavailable(f"{filename} of {repo_id} was damaged in the cache and came damaged again from the "
                                 f"Hub ({damage}); try again later, or put an intact copy in a folder and pass that "
                                 f"folder.")
    return path


_checked_blobs: set[tuple] = set()  # (blob, inode, size, mtime, ctime): hashed once per process, not at every load


def _safetensors_damage(path: Path) -> str | None:
    """Why a cached safetensors file can't be used as it is, in a clause, or None when it is intact."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):  # the header, and a size that covers every tensor it lists
            pass
    except Exception as error:  # safetensors raises its own error type for a damaged header or a short file
        return reason(error)
    blob = path.resolve()
    stat = blob.stat()
    key = (str(blob), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if not re.fullmatch(r"[0-9a-f]{64}", blob.name) or key in _checked_blobs:
        return None  # a blob named otherwise (a git hash, or a cache written by hand) has no SHA-256 to check
    digest = hashlib.sha256()
    with open(blob, "rb") as file:
        while chunk := file.read(1 << 24):
            digest.update(chunk)
    if digest.hexdigest() != blob.name:
        return "its SHA-256 is not the one the Hub named it by"
    _checked_blobs.add(key)
    return None


def _hub_file(repo_id: str, filename: str, force_download: bool = False) -> Path:
    """One file of a Hub repository: from the cache, or downloaded into it. One-sentence WeightsUnavailable else."""
    import huggingface_hub
    from huggingface_hub import errors

    flag = _hub_offline()
    cache = hub_cache_dir()
    by_hand = (f"put its config.json and model.safetensors (and preprocessor_config.json, if it has one) from "
               f"https://huggingface.co/{repo_id} in a folder and pass that folder")
    if flag:
        cached = huggingface_hub.try_to_load_from_cache(repo_id, filename, cache_dir=str(cache))
        if isinstance(cached, str):
            return Path(cached)
        if cached is not None:  # huggingface_hub's marker: the Hub said this file does not exist
            raise _MissingOnHub(filename)
        raise WeightsUnavailable(f"Offline ({flag} is set) and {filename} of {repo_id} is not in the Hugging Face "
                                 f"cache {cache}: {by_hand}, or run once with the network.")
    try:
        return Path(huggingface_hub.hf_hub_download(
            repo_id, filename, cache_dir=str(cache), endpoint=os.environ.get("HF_ENDPOINT") or None,
            force_download=force_download))
    except errors.RepositoryNotFoundError:
        raise WeightsUnavailable(f"There is no repository {repo_id} on the Hugging Face Hub (or it is private or "
                                 f"gated); check the id.") from None
    except errors.OfflineModeIsEnabled:
        raise WeightsUnavailable(f"Offline (HF_HUB_OFFLINE is set) and {filename} of {repo_id} is not in the "
                                 f"Hugging Face cache {cache}: {by_hand}.") from None
    except errors.LocalEntryNotFoundError as error:  # before the next: in older versions also an EntryNotFoundError
        cause = error.__cause__ or error.__context__ or error
        raise WeightsUnavailable(f"Could not download {filename} of {repo_id} ({reason(cause)}) and it is not in the "
                                 f"Hugging Face cache {cache}; with no network, {by_hand}.") from None
    except (getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError), errors.RevisionNotFoundError):
        raise _MissingOnHub(filename) from None
    except (errors.HfHubHTTPError, OSError) as error:
        cause = error.__cause__ or error.__context__ or error
        raise WeightsUnavailable(f"Could not download {filename} of {repo_id} ({reason(cause)}) and it is not in the "
                                 f"Hugging Face cache {cache}; with no network, {by_hand}.") from None


# ---------------------------------------------------------------------------------------------------------------
# The paper's checkpoints, as published (data; no network)

@dataclass(frozen=True)
class PaperCheckpoint:
    """A published fine-tuned ViT of Dosovitskiy et al. (or a later training of the same model), by Hub id."""

    hub_id: str
    library: str  # "transformers" | "timm"
    model: str  # the Table 1 row with its patch size, e.g. "ViT-B/16"
    resolution: int  # fine-tuning and inference image size (H = W)
    pretraining: str  # data set of pre-training
    finetuning: str  # data set of fine-tuning
    interpolation: str  # the checkpoint's own preprocessing
    crop_pct: float  # centre crop as a fraction of the resized side; 1.0: no crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    note: str = ""


_IN21K = "ImageNet-21k (14M images, 21,843 classes)"
_IN1K = "ImageNet-1k (ILSVRC-2012, 1.3M images, 1,000 classes)"
_HALF = (0.5, 0.5, 0.5)
_GOOGLE = ("Google's original JAX release, converted by Hugging Face; ViTImageProcessor resizes straight to the "
           "input size")
_TIMM_ORIG = "Google's original JAX release, converted by timm"
_AUGREG = "AugReg training (Steiner et al. 2021, 'How to train your ViT'), not the paper's own"

PAPER_CHECKPOINTS: tuple[PaperCheckpoint, ...] = (
    PaperCheckpoint("google/vit-base-patch16-224", "transformers", "ViT-B/16", 224, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE),
    PaperCheckpoint("google/vit-base-patch16-384", "transformers", "ViT-B/16", 384, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE),
    PaperCheckpoint("google/vit-base-patch32-384", "transformers", "ViT-B/32", 384, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE),
    PaperCheckpoint("google/vit-large-patch16-224", "transformers", "ViT-L/16", 224, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE),
    PaperCheckpoint("google/vit-large-patch16-384", "transformers", "ViT-L/16", 384, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE),
    PaperCheckpoint("google/vit-large-patch32-384", "transformers", "ViT-L/32", 384, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE),
    PaperCheckpoint("timm/vit_base_patch16_224.orig_in21k_ft_in1k", "timm", "ViT-B/16", 224, _IN21K, _IN1K,
                    "bicubic", 0.9, _HALF, _HALF, _TIMM_ORIG),
    PaperCheckpoint("timm/vit_base_patch16_384.orig_in21k_ft_in1k", "timm", "ViT-B/16", 384, _IN21K, _IN1K,
                    "bicubic", 1.0, _HALF, _HALF, _TIMM_ORIG),
    PaperCheckpoint("timm/vit_large_patch32_384.orig_in21k_ft_in1k", "timm", "ViT-L/32", 384, _IN21K, _IN1K,
                    "bicubic", 1.0, _HALF, _HALF, _TIMM_ORIG),
    PaperCheckpoint("timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "timm", "ViT-B/16", 224, _IN21K, _IN1K,
                    "bicubic", 0.9, _HALF, _HALF, _AUGREG + "; fine-tuned again on ImageNet-1k by timm"),
    PaperCheckpoint("timm/vit_base_patch32_224.augreg_in21k_ft_in1k", "timm", "ViT-B/32", 224, _IN21K, _IN1K,
                    "bicubic", 0.9, _HALF, _HALF, _AUGREG),
    PaperCheckpoint("timm/vit_large_patch16_224.augreg_in21k_ft_in1k", "timm", "ViT-L/16", 224, _IN21K, _IN1K,
                    "bicubic", 0.9, _HALF, _HALF, _AUGREG),
)


def _paper_entry(hub_id: str | None) -> dict | None:
    """The PAPER_CHECKPOINTS row of a Hub id as a plain dict (bundle.meta stays JSON-ready), or None."""
    entry = next((c for c in PAPER_CHECKPOINTS if c.hub_id == hub_id), None)
    return None if entry is None else {**asdict(entry), "mean": list(entry.mean), "std": list(entry.std)}
