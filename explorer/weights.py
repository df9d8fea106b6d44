"""Weights in and out: torchvision's pretrained ViTs (converted key by key) and the project's own checkpoints.

- `from_torchvision(model_or_state_dict)`: an explorer.ViT with exactly those weights, config inferred.
- `load_pretrained("ViT-B/16", "IMAGENET1K_V1")`: through torchvision's weights API (URL, preprocessing, class
  names from its meta); the file is downloaded with progress and cached under $TORCH_HOME/hub/checkpoints.
  EXPLORER_OFFLINE=1 forbids any network access; EXPLORER_WEIGHTS_MIRROR=<base URL> fetches the same file name
  from another server (a local mirror, or a test server on 127.0.0.1).
- `save_checkpoint` / `load_checkpoint`: `.safetensors` plus a JSON side file. Nothing is ever unpickled, except
  torchvision's own weight files, which are read with torch.load(weights_only=True).
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import CONFIGS, ViTConfig
from .images import Preprocessing
from .model import ViT

CHECKPOINT_FORMAT = "vit-explorer/1"


class WeightsUnavailable(RuntimeError):
    """Weights that can't be had (offline, missing, refused); str(error) is one sentence that says what to do."""


@dataclass
class ModelBundle:
    """A model with everything needed to use it: preprocessing, class names, and where its weights came from."""

    model: ViT
    preprocessing: Preprocessing
    class_names: list[str]
    name: str  # e.g. "ViT-B/16"
    weights: str  # e.g. "IMAGENET1K_V1", "random init", or a checkpoint's name
    source: str  # where the weights came from, in words
    meta: dict = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.weights != "random init"


# ---------------------------------------------------------------------------------------------------------------
# torchvision -> explorer, an explicit key table

def _key_table(depth: int, pre_logits: bool) -> dict[str, tuple[str, ...]]:
    """Our parameter name -> the torchvision names it may come from (newest first)."""
    table: dict[str, tuple[str, ...]] = {
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
    T = state_dict["encoder.pos_embedding"].shape[1]
    side = int(round((T - 1) ** 0.5))
    if side * side != T - 1:
        raise ValueError(f"Position embedding of {T} tokens is not a square grid plus a class token.")
    layers = {int(m.group(1)) for k in state_dict if (m := re.match(r"encoder\.layers\.encoder_layer_(\d+)\.", k))}
    depth = len(layers)
    mlp_key = next(k for k in state_dict if re.match(r"encoder\.layers\.encoder_layer_0\.mlp\.(0|linear_1)\.weight", k))
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


def from_torchvision(model_or_state_dict, heads: int | None = None, name: str = "") -> ViT:
    """An explorer.ViT with exactly the weights of a torchvision VisionTransformer (or its state dict)."""
    if isinstance(model_or_state_dict, torch.nn.Module):
        tv = model_or_state_dict
        heads = heads or tv.encoder.layers[0].self_attention.num_heads
        if not isinstance(tv.conv_proj, torch.nn.Conv2d):
            raise ValueError("ViTs with a convolutional stem are not supported; only the plain patch embedding.")
        state_dict = tv.state_dict()
    else:
        state_dict = dict(model_or_state_dict)
    config = config_from_torchvision(state_dict, heads, name)
    model = ViT(config)
    ours = model.state_dict()
    table = _key_table(config.depth, config.representation_size is not None)
    assert set(table) == set(ours), f"key table out of date: {sorted(set(table) ^ set(ours))[:5]}"
    converted, used = {}, set()
    for our_key, candidates in table.items():
        source = next((k for k in candidates if k in state_dict), None)
        if source is None:
            raise ValueError(f"torchvision weights lack {candidates[0]} (needed for {our_key}).")
        tensor = state_dict[source]
        if tensor.shape != ours[our_key].shape:
            raise ValueError(f"{source} has shape {tuple(tensor.shape)}; expected {tuple(ours[our_key].shape)}.")
        converted[our_key] = tensor
        used.add(source)
    unused = set(state_dict) - used
    if unused:
        raise ValueError(f"torchvision weights have keys this model does not use: {sorted(unused)[:5]}.")
    model.load_state_dict(converted, strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# torchvision's pretrained weights

# Our preset name -> (torchvision builder, weights enum name).
PRETRAINED: dict[str, tuple[str, str]] = {
    "ViT-B/16": ("vit_b_16", "ViT_B_16_Weights"),
    "ViT-B/32": ("vit_b_32", "ViT_B_32_Weights"),
    "ViT-L/16": ("vit_l_16", "ViT_L_16_Weights"),
    "ViT-L/32": ("vit_l_32", "ViT_L_32_Weights"),
    "ViT-H/14": ("vit_h_14", "ViT_H_14_Weights"),
}


def offline() -> bool:
    """True when EXPLORER_OFFLINE is set (1/true/yes): nothing may touch the network."""
    return os.environ.get("EXPLORER_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def weights_enum(name: str):
    """torchvision's weights enum class for one of our preset names."""
    import torchvision.models as tvm

    if name not in PRETRAINED:
        raise ValueError(f"No torchvision weights for {name!r}; choose one of {sorted(PRETRAINED)}.")
    return getattr(tvm, PRETRAINED[name][1])


def weight_variants(name: str) -> list[str]:
    """The weight variants torchvision offers for a preset, e.g. ["IMAGENET1K_V1", "IMAGENET1K_SWAG_E2E_V1", ...]."""
    return [w.name for w in weights_enum(name)]


def get_weights(name: str, variant: str = "DEFAULT"):
    enum = weights_enum(name)
    try:
        return enum[variant] if variant != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(f"{name} has no weights {variant!r}; choose one of {weight_variants(name)}.") from None


def cache_path(weights) -> Path:
    """Where torchvision caches this weights file: $TORCH_HOME/hub/checkpoints/<file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def is_cached(name: str, variant: str = "DEFAULT") -> bool:
    return cache_path(get_weights(name, variant)).is_file()


def pretrained_state_dict(weights, progress: bool = True) -> dict[str, torch.Tensor]:
    """torchvision's state dict for `weights`, from the cache or downloaded (with a progress bar) into it."""
    path = cache_path(weights)
    if not path.is_file():
        if offline():
            raise WeightsUnavailable(
                f"Offline (EXPLORER_OFFLINE is set) and {path.name} is not cached: put that file, from "
                f"{weights.url}, at {path}."
            )
        mirror = os.environ.get("EXPLORER_WEIGHTS_MIRROR", "").strip()
        url = mirror.rstrip("/") + "/" + path.name if mirror else weights.url
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(path), progress=progress)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise WeightsUnavailable(
                f"Could not download {path.name} ({str(reason).splitlines()[0]}): with no network, put that file, "
                f"from {weights.url}, at {path}."
            ) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsUnavailable(
            f"The cached file {path} could not be read as torchvision weights ({type(error).__name__}); "
            f"delete it and download it again."
        ) from None


def load_pretrained(name: str = "ViT-B/16", variant: str = "DEFAULT", progress: bool = True) -> ModelBundle:
    """A torchvision-pretrained ViT as an explorer ModelBundle (weights, preprocessing and class names from torchvision)."""
    weights = get_weights(name, variant)
    state_dict = pretrained_state_dict(weights, progress)
    heads = CONFIGS[name].heads
    model = from_torchvision(state_dict, heads=heads, name=name)
    acc = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return ModelBundle(
        model=model,
        preprocessing=Preprocessing.from_torchvision(weights.transforms()),
        class_names=list(weights.meta["categories"]),
        name=name,
        weights=weights.name,
        source=f"torchvision {PRETRAINED[name][1]}.{weights.name} ({cache_path(weights).name})",
        meta={"imagenet_acc1": acc, "url": weights.url},
    )


def random_bundle(name: str, seed: int = 0) -> ModelBundle:
    """An untrained Table 1 model: real shapes, meaningless predictions. ImageNet preprocessing and class names."""
    config = CONFIGS[name]
    torch.manual_seed(seed)
    model = ViT(config).eval()
    if name in PRETRAINED:
        weights = get_weights(name, "DEFAULT")
        preprocessing = Preprocessing.from_torchvision(weights.transforms())
        class_names = list(weights.meta["categories"])
    else:
        size = config.image_hw[0]
        preprocessing = Preprocessing(resize_size=size, crop_size=size, channels=config.channels,
                                      mean=(0.5,) * config.channels, std=(0.5,) * config.channels)
        class_names = [f"class {i}" for i in range(config.num_classes)]
    if config.num_classes != len(class_names):
        class_names = [f"class {i}" for i in range(config.num_classes)]
    return ModelBundle(model, preprocessing, class_names, name, "random init",
                       f"random initialisation (seed {seed}): predictions are meaningless; shapes are real")


# ---------------------------------------------------------------------------------------------------------------
# The project's own checkpoints: .safetensors + .json

def save_checkpoint(path: str | os.PathLike, model: ViT, class_names: list[str], preprocessing: Preprocessing,
                    provenance: dict | None = None) -> tuple[Path, Path]:
    """Write <path>.safetensors and <path>.json. Returns both paths."""
    stem = Path(path).with_suffix("") if Path(path).suffix in (".safetensors", ".json") else Path(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_path, json_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    save_file(tensors, str(weights_path), metadata={"format": CHECKPOINT_FORMAT})
    side = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "class_names": list(class_names),
        "preprocessing": preprocessing.to_dict(),
        "num_parameters": model.num_parameters(),
        "provenance": provenance or {},
    }
    json_path.write_text(json.dumps(side, indent=2) + "\n")
    return weights_path, json_path


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """The JSON side file of a checkpoint (given either file, or the stem)."""
    json_path = _stem(path).with_suffix(".json")
    if not json_path.is_file():
        raise WeightsUnavailable(f"No checkpoint description at {json_path}; a checkpoint is a .safetensors and a .json file.")
    info = json.loads(json_path.read_text())
    if info.get("format") != CHECKPOINT_FORMAT:
        raise WeightsUnavailable(f"{json_path} is not a ViT Explorer checkpoint (format {info.get('format')!r}).")
    return info


def _stem(path) -> Path:
    path = Path(path)
    if path.suffix in (".pt", ".pth", ".pkl", ".ckpt", ".bin"):
        raise WeightsUnavailable(
            f"{path.name} is a pickle file, which can run code when loaded; only .safetensors checkpoints are accepted."
        )
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> ModelBundle:
    """Load one of the project's checkpoints (.safetensors + .json). Never unpickles anything."""
    stem = _stem(path)
    info = read_checkpoint_info(stem)
    weights_path = stem.with_suffix(".safetensors")
    if not weights_path.is_file():
        raise WeightsUnavailable(f"The weights file {weights_path} is missing.")
    config = ViTConfig.from_dict(info["config"])
    model = ViT(config)
    model.load_state_dict(load_file(str(weights_path), device="cpu"), strict=True)
    model = model.to(device).eval()
    provenance = info.get("provenance", {})
    accuracy = provenance.get("test_accuracy")
    source = f"checkpoint {weights_path.name}" + (f", trained on {provenance['dataset']}" if "dataset" in provenance else "")
    if accuracy is not None:
        source += f", test accuracy {accuracy:.4f}"
    return ModelBundle(model, Preprocessing.from_dict(info["preprocessing"]), list(info["class_names"]),
                       config.name or stem.name, stem.name, source, meta=info)
