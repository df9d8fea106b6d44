"""timm's VisionTransformer in: its key table, what of it the explorer refuses, its preprocessing, a saved folder.

- `from_timm(model_or_state_dict, config=None, heads=None)`: an explorer.ViT with exactly those weights.
- `load_timm_folder(folder, hf_config, hub_id)`: a ModelBundle from timm's save_pretrained (config.json +
  model.safetensors), read with timm's own data config.

The paper's descendants are taken as they are (explorer.config): DeiT's distillation token and second head
(VisionTransformerDistilled), register tokens, position embeddings that skip the prefix tokens (no_embed_class: DeiT
III, DINOv2 with registers), layer scale (ls1, ls2), a norm before the blocks (norm_pre: CLIP), global average pooling
with or without a class token and with or without fc_norm (MAE fine-tunes), QuickGELU (OpenAI's CLIP) and no
classifier (num_classes=0: a backbone, whose forward returns the pooled features).
A model the explorer's ViT would compute differently is refused with UnsupportedModel, one sentence saying why:
attention pooling (global_pool='map', SigLIP), pooling that includes the prefix tokens, qk_norm, other activations or
norms, relative position bias or rotary embeddings (BEiT, timm's VisionTransformerRelPos, EVA: other classes),
parallel or other blocks, a convolutional stem, no position embedding or no final norm. What is the same computation
is accepted: a layer without bias (qkv_bias=False, proj_bias=False) becomes a zero bias, and dynamic_img_size only
matters at other sizes, which the explorer's ViT refuses anyway. A bare state dict says nothing of pooling, activation
or LayerNorm epsilon: it is read as timm's default ViT (class-token pooling where it has a class token, else the mean;
mean with fc_norm where it has one; exact GELU, eps 1e-6), its tokens and layers by key. The number of heads is not in
any weights: pass heads= or config=. timm is imported only by the functions that need it.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..common import reason
from ..config import ViTConfig
from ..deferred import deferred
from ..images import _INTERPOLATIONS, Preprocessing
from ..tokens import TokenLayout
from ..weights import ModelBundle, WeightsUnavailable
from .catalogue import family_entry, paper_entry
from .configs import UnsupportedModel, image_size, named, square, table_1_name
from .engine import KeyTable, convert
from .files import read_weights

# Imported when first used (explorer/deferred.py).
torch = deferred("torch")


def _timm_key_table(config: ViTConfig) -> KeyTable:
    """Our parameter name -> timm's VisionTransformer name (the layouts are the same). Eq. 4's LN is timm's norm, or
    its fc_norm (after the mean; or on the class token, the same computation) where norm is an Identity."""
    names = {
        "class_token": "cls_token",
        "distillation_token": "dist_token",
        "register_tokens": "reg_token",
        "position_embedding": "pos_embed",
        "patch_embedding.projection.weight": "patch_embed.proj.weight",
        "patch_embedding.projection.bias": "patch_embed.proj.bias",
        "norm_pre.weight": "norm_pre.weight",
        "norm_pre.bias": "norm_pre.bias",
        "head.weight": "head.weight",
        "head.bias": "head.bias",
        "head_distillation.weight": "head_dist.weight",
        "head_distillation.bias": "head_dist.bias",
    }
    for i in range(config.depth):
        names[f"blocks.{i}.gamma_1"] = f"blocks.{i}.ls1.gamma"
        names[f"blocks.{i}.gamma_2"] = f"blocks.{i}.ls2.gamma"
    for i in range(config.depth):
        ours, theirs = f"blocks.{i}.", f"blocks.{i}."
        for p in ("weight", "bias"):
            names[ours + f"norm_1.{p}"] = theirs + f"norm1.{p}"
            # qkv rows are [W_q; W_k; W_v], head h at rows h*d .. (h+1)*d of each: our layout, nothing transposed.
            names[ours + f"msa.qkv.{p}"] = theirs + f"attn.qkv.{p}"
            names[ours + f"msa.projection.{p}"] = theirs + f"attn.proj.{p}"
            names[ours + f"norm_2.{p}"] = theirs + f"norm2.{p}"
            names[ours + f"mlp.fc1.{p}"] = theirs + f"mlp.fc1.{p}"
            names[ours + f"mlp.fc2.{p}"] = theirs + f"mlp.fc2.{p}"
    table: KeyTable = {ours: (theirs,) for ours, theirs in names.items()}
    table["norm.weight"], table["norm.bias"] = ("norm.weight", "fc_norm.weight"), ("norm.bias", "fc_norm.bias")
    return {ours: sources for ours, sources in table.items() if ours in _parameter_names(config)}


def _parameter_names(config: ViTConfig) -> set[str]:
    """The parameter names of ViT(config), from a model on the meta device (no memory, no initialisation)."""
    from ..model import ViT

    with torch.device("meta"):
        return set(ViT(config).state_dict())


# Why a timm ViT feature can't be represented, one clause each (used for modules and for state dicts alike).
_TIMM_WHY = {
    "no_class_token": "it has no class token (class_token=False), so there is no z_L^0 for Eq. 4 to read",
    "pooling": "it pools the tokens with global_pool={!r}, neither the class token nor the mean of the patch tokens",
    "pool_prefix": "its mean pooling includes the prefix tokens (pool_include_prefix=True), not the patches alone",
    "no_pos_embed": "it has no learned position embedding (pos_embed='none'), which Eq. 1 adds",
    "no_final_norm": "it has no final LayerNorm (final_norm=False), which Eq. 4 applies",
    "attn_pool": "it pools with attention (global_pool='map', as SigLIP does), not by reading the class token or the "
                 "mean as Eq. 4 does",
    "qk_norm": "it normalises queries and keys (qk_norm), which the paper's attention does not",
    "attn_norm": "it normalises the attention output before its projection (scale_attn_norm), which Eq. 2 does not",
    "mlp_norm": "it normalises inside the MLP (scale_mlp_norm), which Eq. 3 does not",
    "gate": "it gates the attention output, which Eq. 2 does not",
    "patch_norm": "it normalises the patch embeddings, which Eq. 1 does not",
    "hybrid": "it has a convolutional stem (a hybrid ViT), not the linear patch embedding of Eq. 1",
}

# timm classes (models, blocks) that compute what Eq. 1-4 don't, and why, in a clause each.
_RELATIVE = "it adds a learned relative position bias to the attention scores, which Eq. 2's softmax does not have"
_PARALLEL = "its blocks run attention and the MLP side by side on the same input, not Eq. 2 then Eq. 3"
_TIMM_CLASS_WHY = {
    "Beit": _RELATIVE + " (BEiT)",
    "VisionTransformerRelPos": _RELATIVE + " (timm's relpos ViT)",
    "Eva": "it rotates queries and keys by their positions (rotary embeddings, EVA-02), which Eq. 2 does not",
    "ParallelThingsBlock": _PARALLEL,
    "ParallelScalingBlock": _PARALLEL,
}

# Key patterns in a timm state dict -> the feature they reveal.
_TIMM_KEY_FEATURES = (
    (r"attn_pool\.", "attn_pool"),
    (r"blocks\.\d+\.attn\.[qk]_norm\.", "qk_norm"),
    (r"blocks\.\d+\.attn\.norm\.", "attn_norm"),
    (r"blocks\.\d+\.mlp\.norm\.", "mlp_norm"),
    (r"blocks\.\d+\.attn\.gate\.", "gate"),
    (r"patch_embed\.norm\.", "patch_norm"),
    (r"patch_embed\.backbone\.", "hybrid"),
)


def _refuse_timm(feature: str, *args) -> UnsupportedModel:
    return UnsupportedModel(f"This timm ViT can't be shown faithfully: {_TIMM_WHY[feature].format(*args)}.")


def refuse_timm_keys(state_dict) -> None:
    """UnsupportedModel when a key reveals a feature the explorer's ViT does not have."""
    for pattern, feature in _TIMM_KEY_FEATURES:
        if any(re.match(pattern, key) for key in state_dict):
            raise _refuse_timm(feature)


def config_from_timm_model(model, name: str = "") -> ViTConfig:
    """The config of a timm VisionTransformer (any device, meta too); UnsupportedModel for what the explorer's ViT
    doesn't compute."""
    from torch import nn
    from timm.layers import Attention, LayerNorm, LayerScale, Mlp, PatchEmbed
    from timm.layers.activations import GELU as TimmGELU
    from timm.layers.activations import QuickGELU
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import Block, VisionTransformer

    kind = type(model).__name__
    distilled = type(model) is VisionTransformerDistilled
    if kind in _TIMM_CLASS_WHY:
        raise UnsupportedModel(f"This timm {kind} can't be shown faithfully: {_TIMM_CLASS_WHY[kind]}.")
    if type(model) is not VisionTransformer and not distilled:
        raise UnsupportedModel(f"timm's {kind} is not the plain VisionTransformer of the paper (nor DeiT's distilled "
                               f"one), so the explorer can't show it faithfully.")
    if model.pos_embed is None:
        raise _refuse_timm("no_pos_embed")
    if model.attn_pool is not None:
        raise _refuse_timm("attn_pool")
    if model.global_pool not in ("token", "avg"):
        raise _refuse_timm("pooling", model.global_pool)
    if model.global_pool == "avg" and getattr(model, "pool_include_prefix", False):
        raise _refuse_timm("pool_prefix")
    if model.cls_token is None and model.global_pool == "token":
        raise _refuse_timm("no_class_token")
    patch_embed = model.patch_embed
    if type(patch_embed) is not PatchEmbed or not isinstance(patch_embed.proj, nn.Conv2d):
        raise _refuse_timm("hybrid")
    if not isinstance(patch_embed.norm, nn.Identity):
        raise _refuse_timm("patch_norm")
    # Eq. 4's LN: timm's norm (on every token), or its fc_norm (after pooling) where norm is an Identity.
    final = model.fc_norm if isinstance(model.norm, nn.Identity) else model.norm
    if isinstance(final, nn.Identity):
        raise _refuse_timm("no_final_norm")
    if not isinstance(model.fc_norm, nn.Identity) and final is not model.fc_norm:
        raise UnsupportedModel("It normalises both every token and the pooled output (norm and fc_norm), two LNs "
                               "where Eq. 4 has one, so the explorer can't show this model faithfully.")
    if not _is_layer_norm(final, nn, LayerNorm):
        raise UnsupportedModel(f"Its final norm is {type(final).__name__}, not the LayerNorm of Eq. 4, so the "
                               f"explorer can't show this model faithfully.")
    eps, D = final.eps, model.embed_dim
    pre_norm = not isinstance(model.norm_pre, nn.Identity)
    if pre_norm and (not _is_layer_norm(model.norm_pre, nn, LayerNorm) or model.norm_pre.eps != eps):
        raise UnsupportedModel(f"Its norm before the blocks is {type(model.norm_pre).__name__}, not the LayerNorm "
                               f"(eps {eps}) of its final norm, so the explorer can't show this model faithfully.")
    if not isinstance(model.head, (nn.Linear, nn.Identity)):
        raise UnsupportedModel(f"Its head is {type(model.head).__name__}, not the linear head of Eq. 4, so the "
                               f"explorer can't show this model faithfully.")
    P = square(patch_embed.patch_size, "patch size")
    projection = patch_embed.proj
    if projection.kernel_size != (P, P) or projection.stride != (P, P) or projection.padding != (0, 0):
        raise _refuse_timm("hybrid")
    heads = {block.attn.num_heads for block in model.blocks if hasattr(block, "attn")}
    scaled, activations = set(), set()
    for block in model.blocks:
        if type(block).__name__ in _TIMM_CLASS_WHY:
            raise UnsupportedModel(f"This timm ViT can't be shown faithfully: {_TIMM_CLASS_WHY[type(block).__name__]}.")
        if type(block) is not Block:
            raise UnsupportedModel(f"timm's {type(block).__name__} blocks are not the pre-norm blocks of Eq. 2 and "
                                   f"Eq. 3, so the explorer can't show this model faithfully.")
        attn, mlp = block.attn, block.mlp
        if type(attn) is not Attention or type(mlp) is not Mlp:
            other = type(attn).__name__ if type(attn) is not Attention else type(mlp).__name__
            raise UnsupportedModel(f"timm's {other} is not the attention and MLP of Eq. 2 and Eq. 3, so the explorer "
                                   f"can't show this model faithfully.")
        scaled.update(type(ls) is LayerScale for ls in (block.ls1, block.ls2))
        if not all(type(ls) in (LayerScale, nn.Identity) for ls in (block.ls1, block.ls2)) or len(scaled) > 1:
            raise UnsupportedModel("Its blocks scale their residual branches in another way than layer scale on "
                                   "every branch, so the explorer can't show this model faithfully.")
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
        if (type(act) is nn.GELU and act.approximate == "none") or type(act) is TimmGELU:
            activations.add("gelu")
        elif type(act) is QuickGELU:
            activations.add("quick_gelu")
        else:
            raise UnsupportedModel(f"Its MLP uses {type(act).__name__}, not the exact GELU of the paper (or CLIP's "
                                   f"QuickGELU), so the explorer can't show this model faithfully.")
        for norm in (block.norm1, block.norm2):
            if not _is_layer_norm(norm, nn, LayerNorm) or norm.eps != eps:
                raise UnsupportedModel(f"Its blocks use {type(norm).__name__} (eps {getattr(norm, 'eps', '?')}), "
                                       f"not the LayerNorm (eps {eps}) of its final norm, so the explorer can't show "
                                       f"this model faithfully.")
    prefix = (model.cls_token is not None) + distilled + model.num_reg_tokens
    return named(ViTConfig(
        image_size=image_size(patch_embed.img_size), patch_size=P, channels=patch_embed.proj.in_channels,
        hidden_dim=D, depth=len(model.blocks), heads=heads.pop(), mlp_dim=model.blocks[0].mlp.fc1.out_features,
        num_classes=model.head.out_features if isinstance(model.head, nn.Linear) else 0, layer_norm_eps=eps,
        class_token=model.cls_token is not None, distillation_token=distilled, register_tokens=model.num_reg_tokens,
        position_covers="patches" if model.no_embed_class and prefix else "all", layer_scale=scaled == {True},
        pre_norm=pre_norm, activation=activations.pop() if len(activations) == 1 else "mixed",
        pooling="class_and_distillation" if distilled else "class" if model.global_pool == "token" else "mean",
        fc_norm=final is model.fc_norm and model.global_pool == "avg",
    ), name)


def _is_layer_norm(norm, nn, timm_layer_norm) -> bool:
    """nn.LayerNorm or timm's (same function, maybe a fused kernel), affine, over the last dimension only."""
    return (type(norm) in (nn.LayerNorm, timm_layer_norm) and norm.elementwise_affine
            and len(norm.normalized_shape) == 1 and getattr(norm, "bias", None) is not None)


def config_from_timm_state_dict(state_dict: dict[str, torch.Tensor], heads: int, name: str = "",
                                layer_norm_eps: float = 1e-6) -> ViTConfig:
    """The config of a timm VisionTransformer from its state dict's keys and shapes; `heads` is not in the weights.
    Its tokens, layer scale, norm_pre, fc_norm and heads come from the keys; pooling is read as timm's default for
    them (the class token; the mean of the patches without one, or with fc_norm); E_pos covers the prefix tokens
    unless its rows say otherwise (no_embed_class)."""
    if "patch_embed.proj.weight" not in state_dict or "blocks.0.mlp.fc1.weight" not in state_dict:
        raise ValueError("Not a timm VisionTransformer state dict: it lacks patch_embed.proj.weight or "
                         "blocks.0.mlp.fc1.weight.")
    refuse_timm_keys(state_dict)
    if "pos_embed" not in state_dict:
        raise _refuse_timm("no_pos_embed")
    if "norm.weight" not in state_dict and "fc_norm.weight" not in state_dict:
        raise _refuse_timm("no_final_norm")
    D, C, P, P2 = state_dict["patch_embed.proj.weight"].shape
    if P != P2:
        raise UnsupportedModel(f"The model's patch size is {P}x{P2}; the explorer's ViT needs square patches.")
    class_token, distilled = "cls_token" in state_dict, "dist_token" in state_dict
    registers = state_dict["reg_token"].shape[1] if "reg_token" in state_dict else 0
    layout = TokenLayout(("CLS",) * class_token + ("DIST",) * distilled + ("REG",) * registers)
    rows = state_dict["pos_embed"].shape[1]
    covers = next((covers for covers, covered in (("all", layout.num_prefix), ("patches", 0))
                   if rows >= covered and round(math.sqrt(rows - covered)) ** 2 == rows - covered), None)
    if covers is None:
        raise ValueError(f"A position embedding of {rows} rows is not a square grid (with or without the "
                         f"{layout.num_prefix} prefix tokens); pass config= for a non-square image.")
    side = round(math.sqrt(rows - (layout.num_prefix if covers == "all" else 0)))
    fc_norm = "fc_norm.weight" in state_dict
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k)))
    return named(ViTConfig(
        image_size=side * P, patch_size=P, channels=C, hidden_dim=D, depth=depth, heads=heads,
        mlp_dim=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        num_classes=state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0,
        layer_norm_eps=layer_norm_eps, class_token=class_token, distillation_token=distilled,
        register_tokens=registers, position_covers=covers if layout.num_prefix else "all",
        layer_scale="blocks.0.ls1.gamma" in state_dict, pre_norm="norm_pre.weight" in state_dict,
        pooling="class_and_distillation" if distilled else "class" if class_token and not fc_norm else "mean",
        fc_norm=fc_norm,
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
            refuse_timm_keys(state_dict)
    zero = _timm_bias_free(state_dict, config.depth)
    return convert(state_dict, _timm_key_table(config), config, "timm", zero=zero, copy=copy)


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



def load_timm_folder(folder: Path, hf_config: dict, hub_id: str | None, where: str) -> ModelBundle:
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
    state_dict = read_weights(folder)
    table = _timm_key_table(config)
    zero = frozenset(ours for ours, (theirs, *_) in table.items()
                     if ours.endswith(".bias") and ours.startswith("blocks.") and _timm_param(skeleton, theirs) is None)
    zero |= {"patch_embedding.projection.bias"} if skeleton.patch_embed.proj.bias is None else set()
    model = convert(state_dict, table, config, "timm", zero=zero, copy=False)
    pretrained_cfg = getattr(skeleton, "pretrained_cfg", {}) or {}
    tag = pretrained_cfg.get("tag")
    label = hub_id or folder.name
    return ModelBundle(
        model=model, preprocessing=preprocessing_from_timm(resolve_model_data_config(skeleton), config.channels),
        class_names=_timm_class_names(hf_config, config.num_classes), name=table_1_name(config), weights=label,
        source=f"timm {architecture}{'.' + tag if tag else ''} from {where}",
        meta={"family": "timm", "hub_id": hub_id, "folder": str(folder), "architecture": architecture, "tag": tag,
              "notes": [], "paper": paper_entry(hub_id), "family_checkpoint": family_entry(hub_id)},
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
