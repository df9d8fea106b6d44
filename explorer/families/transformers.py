"""Hugging Face transformers' ViTs in: their key tables, their configs, their preprocessing, a folder.

The classes read (model_type -> class): vit -> ViTForImageClassification; deit -> DeiTForImageClassificationWithTeacher
(a distillation token, two heads averaged); dinov2 -> Dinov2Model and dinov2_with_registers -> Dinov2WithRegistersModel
(layer scale; registers; backbones: the forward returns pooler_output, LN(z_L^0)); clip_vision_model -> CLIPVisionModel
(pre_layrnorm before the blocks, QuickGELU; a backbone returning pooler_output).

- `from_transformers(model_or_path)`: an explorer.ViT with exactly those weights, from the model object or a folder
  it was saved to (read without importing transformers).
- `load_transformers_folder(folder, hf_config, hub_id)`: a ModelBundle with the class names and ViTImageProcessor's
  preprocessing of the checkpoint's own preprocessor_config.json (its defaults at the model's size without one).

What is refused (UnsupportedModel, one sentence): another model_type or class (a ViTModel has no classification
head), an activation other than exact GELU or QuickGELU, SwiGLU MLPs, heads that don't split D evenly, a
preprocessing the explorer does not reproduce exactly. A layer without bias becomes a zero bias, the same computation.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..config import ViTConfig
from ..deferred import deferred
from ..images import _INTERPOLATIONS, Preprocessing
from ..weights import ModelBundle
from .catalogue import paper_entry
from .configs import UnsupportedModel, image_size, named, square, table_1_name
from .engine import KeyTable, convert
from .files import read_json, read_weights

# Imported when first used (explorer/deferred.py).
torch = deferred("torch")


# transformers' ViTConfig defaults, for the fields an older config.json leaves out.
HF_VIT_DEFAULTS = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16, "num_channels": 3,
    "qkv_bias": True,
}


# model_type -> the one transformers class of it the explorer reads.
HF_CLASSES = {"vit": "ViTForImageClassification", "deit": "DeiTForImageClassificationWithTeacher",
              "dinov2": "Dinov2Model", "dinov2_with_registers": "Dinov2WithRegistersModel",
              "clip_vision_model": "CLIPVisionModel"}
# The defaults of each config class, for the fields a config.json leaves out (save_pretrained writes only changes).
HF_DEFAULTS = {
    "vit": HF_VIT_DEFAULTS,
    "deit": HF_VIT_DEFAULTS,
    "dinov2": {**HF_VIT_DEFAULTS, "mlp_ratio": 4, "layer_norm_eps": 1e-6, "patch_size": 14, "use_swiglu_ffn": False},
    "dinov2_with_registers": {**HF_VIT_DEFAULTS, "mlp_ratio": 4, "layer_norm_eps": 1e-6, "use_swiglu_ffn": False,
                              "num_register_tokens": 4},
    "clip_vision_model": {**HF_VIT_DEFAULTS, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "patch_size": 32},
}


def _hf_key_table(config: ViTConfig, model_type: str) -> KeyTable:
    """Our parameter name -> its transformers sources: first as saved (on the Hub, and as save_pretrained writes
    them), then as transformers >= 5 names them in memory. Our qkv is [query; key; value] concatenated along the rows;
    each keeps heads at rows h*d .. (h+1)*d, as ours."""
    if model_type == "clip_vision_model":
        return _clip_key_table(config.depth)
    top = {"vit": "vit.", "deit": "deit."}.get(model_type, "")  # the backbone's prefix in a model with heads
    embeddings = f"{top}embeddings."
    table: KeyTable = {
        "class_token": (embeddings + "cls_token",),
        "distillation_token": (embeddings + "distillation_token",),
        "register_tokens": (embeddings + "register_tokens",),
        "position_embedding": (embeddings + "position_embeddings",),
        "patch_embedding.projection.weight": (embeddings + "patch_embeddings.projection.weight",),
        "patch_embedding.projection.bias": (embeddings + "patch_embeddings.projection.bias",),
        "norm.weight": (top + "layernorm.weight",),
        "norm.bias": (top + "layernorm.bias",),
        "head.weight": ("cls_classifier.weight" if model_type == "deit" else "classifier.weight",),
        "head.bias": ("cls_classifier.bias" if model_type == "deit" else "classifier.bias",),
        "head_distillation.weight": ("distillation_classifier.weight",),
        "head_distillation.bias": ("distillation_classifier.bias",),
    }
    dinov2 = model_type.startswith("dinov2")
    norms = ("norm1", "norm2") if dinov2 else ("layernorm_before", "layernorm_after")
    mlp = (("mlp.fc1", "mlp.fc2"),) * 2 if dinov2 else (("intermediate.dense", "output.dense"), ("mlp.fc1", "mlp.fc2"))
    for i in range(config.depth):
        ours, saved = f"blocks.{i}.", f"{top}encoder.layer.{i}."
        live = saved if dinov2 else f"{top}layers.{i}."
        table[ours + "gamma_1"] = (saved + "layer_scale1.lambda1",)
        table[ours + "gamma_2"] = (saved + "layer_scale2.lambda1",)
        for p in ("weight", "bias"):
            table[ours + f"norm_1.{p}"] = (saved + f"{norms[0]}.{p}", live + f"{norms[0]}.{p}")
            table[ours + f"msa.qkv.{p}"] = (
                tuple(saved + f"attention.attention.{n}.{p}" for n in ("query", "key", "value")),
                tuple(live + f"attention.{n}_proj.{p}" for n in ("q", "k", "v")),
            )
            table[ours + f"msa.projection.{p}"] = (saved + f"attention.output.dense.{p}",
                                                   live + f"attention.o_proj.{p}")
            table[ours + f"norm_2.{p}"] = (saved + f"{norms[1]}.{p}", live + f"{norms[1]}.{p}")
            table[ours + f"mlp.fc1.{p}"] = (saved + f"{mlp[0][0]}.{p}", live + f"{mlp[1][0]}.{p}")
            table[ours + f"mlp.fc2.{p}"] = (saved + f"{mlp[0][1]}.{p}", live + f"{mlp[1][1]}.{p}")
    return _only_ours(table, config)


def _clip_key_table(depth: int) -> KeyTable:
    """CLIPVisionModel's names, with and without the "vision_model." of older transformers (and of CLIPModel files).
    class_embedding (D,) and position_embedding.weight (T, D) are E's own shapes without the leading 1s (engine)."""
    names = {
        "class_token": "embeddings.class_embedding",
        "position_embedding": "embeddings.position_embedding.weight",
        "patch_embedding.projection.weight": "embeddings.patch_embedding.weight",
        "norm_pre.weight": "pre_layrnorm.weight", "norm_pre.bias": "pre_layrnorm.bias",
        "norm.weight": "post_layernorm.weight", "norm.bias": "post_layernorm.bias",
    }
    for i in range(depth):
        ours, theirs = f"blocks.{i}.", f"encoder.layers.{i}."
        for p in ("weight", "bias"):
            names[ours + f"norm_1.{p}"] = theirs + f"layer_norm1.{p}"
            names[ours + f"msa.qkv.{p}"] = tuple(theirs + f"self_attn.{n}_proj.{p}" for n in ("q", "k", "v"))
            names[ours + f"msa.projection.{p}"] = theirs + f"self_attn.out_proj.{p}"
            names[ours + f"norm_2.{p}"] = theirs + f"layer_norm2.{p}"
            names[ours + f"mlp.fc1.{p}"] = theirs + f"mlp.fc1.{p}"
            names[ours + f"mlp.fc2.{p}"] = theirs + f"mlp.fc2.{p}"
    table: KeyTable = {}
    for ours, theirs in names.items():
        prefixed = tuple("vision_model." + n for n in theirs) if isinstance(theirs, tuple) else "vision_model." + theirs
        table[ours] = (theirs, prefixed)
    table["patch_embedding.projection.bias"] = ("embeddings.patch_embedding.bias",)  # none in CLIP: a zero bias
    return table


def _only_ours(table: KeyTable, config: ViTConfig) -> KeyTable:
    """The table's rows for the parameters ViT(config) has (a meta-device model: no memory, no initialisation)."""
    from ..model import ViT

    with torch.device("meta"):
        ours = set(ViT(config).state_dict())
    return {key: sources for key, sources in table.items() if key in ours}


# Tensors a file may hold that the forward never reads (transformers ignores them too): ViT's pooler, DINOv2's mask
# token (for masked image modelling), CLIP's position ids (a buffer 0..T-1).
_HF_IGNORED = frozenset({"vit.pooler.dense.weight", "vit.pooler.dense.bias", "deit.pooler.dense.weight",
                         "deit.pooler.dense.bias", "embeddings.mask_token", "embeddings.position_ids",
                         "vision_model.embeddings.position_ids"})


def config_from_transformers(hf_config: dict, name: str = "") -> ViTConfig:
    """Our config from a transformers ViT config (config.json's dict); UnsupportedModel for what Eq. 1-4 don't
    compute."""
    model_type = hf_config.get("model_type")
    if model_type not in HF_CLASSES:
        raise UnsupportedModel(f"The checkpoint is a transformers {model_type!r} model, not one of "
                               f"{', '.join(repr(t) for t in HF_CLASSES)}, so the explorer can't show it faithfully.")
    architectures = hf_config.get("architectures") or []
    if architectures and HF_CLASSES[model_type] not in architectures:
        raise _refuse_hf_class(architectures[0], model_type)
    c = {**HF_DEFAULTS[model_type], **{k: v for k, v in hf_config.items() if v is not None}}
    if c["hidden_act"] not in ("gelu", "quick_gelu") or c.get("use_swiglu_ffn"):
        act = "SwiGLU" if c.get("use_swiglu_ffn") else repr(c["hidden_act"])
        raise UnsupportedModel(f"Its MLP uses {act}, not the exact GELU of the paper (or CLIP's QuickGELU), so the "
                               f"explorer can't show this model faithfully.")
    D, heads = int(c["hidden_size"]), int(c["num_attention_heads"])
    if "head_dim" in hf_config and int(hf_config["head_dim"]) * heads != D:
        raise UnsupportedModel(f"Its attention has {heads} heads of {hf_config['head_dim']}, not D={D} split evenly "
                               f"as in the paper, so the explorer can't show this model faithfully.")
    num_classes = 0  # DINOv2 and CLIP's image tower: backbones
    if model_type in ("vit", "deit"):
        labels = hf_config.get("id2label") or {}
        num_classes = len(labels) if labels else int(hf_config.get("num_labels", 2))  # transformers' default: 2
        if num_classes == 0:
            raise UnsupportedModel(f"The {HF_CLASSES[model_type]} has no labels (an identity classifier), and the "
                                   f"explorer shows class probabilities.")
    dinov2 = model_type.startswith("dinov2")
    registers = int(c.get("num_register_tokens", 0)) if model_type == "dinov2_with_registers" else 0
    P = square(c["patch_size"], "patch size")
    return named(ViTConfig(
        image_size=image_size(c["image_size"]), patch_size=P, channels=int(c["num_channels"]), hidden_dim=D,
        depth=int(c["num_hidden_layers"]), heads=heads, num_classes=num_classes,
        mlp_dim=int(D * c["mlp_ratio"]) if dinov2 else int(c["intermediate_size"]),
        layer_norm_eps=float(c["layer_norm_eps"]), activation=c["hidden_act"],
        distillation_token=model_type == "deit", register_tokens=registers,
        position_covers="class_and_patches" if registers else "all", layer_scale=dinov2,
        pre_norm=model_type == "clip_vision_model",
        pooling="class_and_distillation" if model_type == "deit" else "class",
    ), name)


def _refuse_hf_class(kind: str, model_type: str = "vit") -> UnsupportedModel:
    if kind == "ViTModel":
        return UnsupportedModel("A ViTModel has no classification head (its pooler is not one); load a "
                                "ViTForImageClassification, since the explorer shows class probabilities.")
    return UnsupportedModel(f"transformers' {kind} is not a {HF_CLASSES.get(model_type, 'ViTForImageClassification')}, "
                            f"so the explorer can't show it faithfully.")


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
        hf_config = read_json(folder / "config.json")
        return _from_hf_dict(hf_config, read_weights(folder), copy=False)
    model = model_or_path
    kind = type(model).__name__
    model_type = getattr(getattr(model, "config", None), "model_type", "vit")
    if kind != HF_CLASSES.get(model_type):
        raise _refuse_hf_class(kind, model_type if model_type in HF_CLASSES else "vit")
    classifiers = [getattr(model, n) for n in ("classifier", "cls_classifier", "distillation_classifier")
                   if hasattr(model, n)]
    if not all(isinstance(classifier, torch.nn.Linear) for classifier in classifiers):
        raise UnsupportedModel(f"The {kind} has no labels (an identity classifier), and the explorer shows class "
                               f"probabilities.")
    hf_config = model.config.to_dict()
    hf_config["architectures"] = [kind]
    return _from_hf_dict(hf_config, model.state_dict(), copy=copy)


def _from_hf_dict(hf_config: dict, state_dict: dict, name: str = "", copy: bool = True) -> ViT:
    config = config_from_transformers(hf_config, name)
    model_type = hf_config["model_type"]
    zero = set()
    if not bool({**HF_DEFAULTS[model_type], **hf_config}.get("qkv_bias", True)):
        zero |= {f"blocks.{i}.msa.qkv.bias" for i in range(config.depth)}
    if model_type == "clip_vision_model":
        zero.add("patch_embedding.projection.bias")  # CLIP's patch embedding has no bias
    return convert(state_dict, _hf_key_table(config, model_type), config, "transformers", zero=frozenset(zero),
                   ignore=_HF_IGNORED, copy=copy)


# transformers' PILImageResampling numbers (PIL's) -> our interpolation names.
_HF_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def preprocessing_from_transformers(processor: dict | None, config: ViTConfig) -> Preprocessing:
    """ViTImageProcessor's recipe from a preprocessor_config.json: resize straight to (height, width) (aspect ratio not
    kept, no crop), rescale by 1/255, normalise. Without a file: its defaults (bilinear, mean = std = 0.5) at the
    model's own size."""
    height, width = config.image_hw
    p = {"do_resize": True, "size": {"height": height, "width": width}, "resample": 2, "do_rescale": True,
         "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * config.channels,
         "image_std": [0.5] * config.channels,
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



def load_transformers_folder(folder: Path, hf_config: dict, hub_id: str | None, where: str) -> ModelBundle:
    config = config_from_transformers(hf_config)
    model = _from_hf_dict(hf_config, read_weights(folder), copy=False)
    processor_path = folder / "preprocessor_config.json"
    processor = read_json(processor_path) if processor_path.is_file() else None
    notes = [] if processor else ["No preprocessor_config.json: ViTImageProcessor's defaults at the model's size."]
    label = hub_id or folder.name
    return ModelBundle(
        model=model, preprocessing=preprocessing_from_transformers(processor, config),
        class_names=_hf_class_names(hf_config, config.num_classes), name=table_1_name(config), weights=label,
        source=f"transformers {HF_CLASSES[hf_config['model_type']]} from {where}",
        meta={"family": "transformers", "hub_id": hub_id, "folder": str(folder), "notes": notes,
              "paper": paper_entry(hub_id)},
    )
