"""Hugging Face transformers' ViTForImageClassification in: its key table, its config, its preprocessing, a folder.

- `from_transformers(model_or_path)`: an explorer.ViT with exactly those weights, from the model object or a folder
  it was saved to (read without importing transformers).
- `load_transformers_folder(folder, hf_config, hub_id)`: a ModelBundle with the class names and ViTImageProcessor's
  preprocessing of the checkpoint's own preprocessor_config.json.

What is refused (UnsupportedModel, one sentence): another model_type or class (a ViTModel has no classification
head), an activation other than exact GELU, heads that don't split D evenly, a preprocessing the explorer does not
reproduce exactly. qkv_bias=False becomes a zero bias, the same computation.
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


def _hf_key_table(depth: int) -> KeyTable:
    """Our parameter name -> its ViTForImageClassification sources: first as saved (on the Hub, and as
    save_pretrained writes them), then as transformers >= 5 names them in memory. Our qkv is [query; key; value]
    concatenated along the rows; each keeps heads at rows h*d .. (h+1)*d, as ours."""
    table: KeyTable = {
        "class_token": ("vit.embeddings.cls_token",),
        "position_embedding": ("vit.embeddings.position_embeddings",),
        "patch_embedding.projection.weight": ("vit.embeddings.patch_embeddings.projection.weight",),
        "patch_embedding.projection.bias": ("vit.embeddings.patch_embeddings.projection.bias",),
        "norm.weight": ("vit.layernorm.weight",),
        "norm.bias": ("vit.layernorm.bias",),
        "head.weight": ("classifier.weight",),
        "head.bias": ("classifier.bias",),
    }
    for i in range(depth):
        ours, saved, live = f"blocks.{i}.", f"vit.encoder.layer.{i}.", f"vit.layers.{i}."
        for p in ("weight", "bias"):
            table[ours + f"norm_1.{p}"] = (saved + f"layernorm_before.{p}", live + f"layernorm_before.{p}")
            table[ours + f"msa.qkv.{p}"] = (
                tuple(saved + f"attention.attention.{n}.{p}" for n in ("query", "key", "value")),
                tuple(live + f"attention.{n}_proj.{p}" for n in ("q", "k", "v")),
            )
            table[ours + f"msa.projection.{p}"] = (saved + f"attention.output.dense.{p}",
                                                   live + f"attention.o_proj.{p}")
            table[ours + f"norm_2.{p}"] = (saved + f"layernorm_after.{p}", live + f"layernorm_after.{p}")
            table[ours + f"mlp.fc1.{p}"] = (saved + f"intermediate.dense.{p}", live + f"mlp.fc1.{p}")
            table[ours + f"mlp.fc2.{p}"] = (saved + f"output.dense.{p}", live + f"mlp.fc2.{p}")
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
    P = square(c["patch_size"], "patch size")
    depth = int(c["num_hidden_layers"])
    return named(ViTConfig(
        image_size=image_size(c["image_size"]), patch_size=P, channels=int(c["num_channels"]), hidden_dim=D,
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
        hf_config = read_json(folder / "config.json")
        return _from_hf_dict(hf_config, read_weights(folder), copy=False)
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
    return convert(state_dict, _hf_key_table(config.depth), config, "transformers", zero=zero, ignore=_HF_IGNORED,
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
        source=f"transformers ViTForImageClassification from {where}",
        meta={"family": "transformers", "hub_id": hub_id, "folder": str(folder), "notes": notes,
              "paper": paper_entry(hub_id)},
    )
