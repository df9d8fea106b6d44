"""Every model the app offers, loaded lazily and kept a few at a time.

- `ModelSpec`: one entry of the menu (its label is also the model name of the /predict API).
- `ModelRegistry`: the menu (torchvision's pretrained ViTs and their weight variants, the project's checkpoints in a
  folder, untrained Table 1 models), `resolve(name)` (labels and short names), and `get(label)`: each model is loaded
  by one thread while the others wait, and a small LRU keeps the last few.

Nothing here imports Gradio: progress is reported through a plain callable `progress(fraction, desc=...)`.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..config import CONFIGS, ViTConfig
from ..model import ViT
from ..weights import (
    PRETRAINED,
    UNTRAINED,
    UNTRAINED_NOTE,
    ModelBundle,
    WeightsUnavailable,
    get_weights,
    is_cached,
    load_checkpoint,
    load_pretrained,
    offline,
    random_bundle,
    read_checkpoint_info,
    weight_variants,
    weights_enum,
)
from .settings import DEFAULT_MAX_MODELS, default_checkpoint_dir, default_device, on_space

Progress = Callable[..., object]

TABLE_1 = ("ViT-B/16", "ViT-B/32", "ViT-L/16", "ViT-L/32", "ViT-H/14")
JFT_NOTE = ("torchvision's weights are its own ImageNet-1k trainings and SWAG weights, "
            "not the paper's JFT-300M / ImageNet-21k checkpoints.")

# Seeded construction (random_bundle, ViT(config) after manual_seed) uses torch's global RNG: one at a time, so that
# "seed 0" gives the same weights whichever other model is being built in another thread.
_SEEDED = threading.Lock()


class UnknownModel(ValueError):
    """A model name that is not in the menu; str(error) is one sentence that lists the choices."""


def no_progress(*args, **kwargs) -> None:
    return None


def untrained_label(preset: str) -> str:
    """The menu label of an untrained Table 1 model."""
    return f"{preset} · {UNTRAINED}"


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model menu. `label` is both the menu value and the model name of the /predict API."""

    label: str  # e.g. "ViT-B/16 · IMAGENET1K_V1"
    kind: str  # "pretrained" | "checkpoint" | "untrained"
    preset: str  # a CONFIGS name (or a checkpoint's config name)
    variant: str = ""  # torchvision weight variant, for kind == "pretrained"
    path: str = ""  # checkpoint stem, for kind == "checkpoint"
    description: str = ""  # shown in the menu next to the label

    @property
    def menu_text(self) -> str:
        return f"{self.label} — {self.description}" if self.description else self.label


def _pretrained_specs() -> list[ModelSpec]:
    specs = []
    for preset in TABLE_1:
        default = weights_enum(preset).DEFAULT.name
        for variant in weight_variants(preset):
            weights = get_weights(preset, variant)
            acc = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
            crop = weights.transforms().crop_size[0]
            what = "SWAG" if "SWAG" in variant else "ImageNet-1k"
            text = f"torchvision, {what}, {crop}px" + (f", acc@1 {acc:.1f}%" if acc is not None else "")
            if variant == default:
                text += ", default"
            specs.append(ModelSpec(f"{preset} · {variant}", "pretrained", preset, variant=variant, description=text))
    return specs


def _checkpoint_specs(folder: Path) -> tuple[list[ModelSpec], list[str]]:
    specs, problems = [], []
    if not folder.is_dir():
        return specs, problems
    for json_path in sorted(folder.glob("*.json")):
        stem = json_path.with_suffix("")
        try:
            info = read_checkpoint_info(stem)
            config = ViTConfig.from_dict(info["config"])
        except (WeightsUnavailable, ValueError, KeyError, TypeError) as error:
            problems.append(f"{json_path.name} was skipped: {error}")
            continue
        if not stem.with_suffix(".safetensors").is_file():
            problems.append(f"{json_path.name} was skipped: {stem.name}.safetensors is missing.")
            continue
        provenance = info.get("provenance", {})
        dataset = provenance.get("dataset", "")
        accuracy = provenance.get("test_accuracy")
        text = "shipped checkpoint" + (f", {dataset.split(' (')[0]}" if dataset else "")
        if accuracy is not None:
            text += f", test accuracy {accuracy:.1%}"
        specs.append(ModelSpec(f"{config.name or stem.name} · {stem.name}", "checkpoint", config.name or stem.name,
                               path=str(stem), description=text))
    return specs, problems


def _random_specs() -> list[ModelSpec]:
    return [ModelSpec(untrained_label(preset), "untrained", preset, description=UNTRAINED_NOTE) for preset in TABLE_1]


class ModelRegistry:
    """The model menu, and the loaded models (a small LRU; each model is loaded by one thread, others wait)."""

    def __init__(self, checkpoint_dir: str | os.PathLike | None = None, device: str | None = None,
                 max_models: int | None = None):
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir()
        self.device = device or default_device()
        self.max_models = max_models or int(os.environ.get("EXPLORER_MAX_MODELS", "") or DEFAULT_MAX_MODELS)
        checkpoints, self.problems = _checkpoint_specs(self.checkpoint_dir)
        self.specs: dict[str, ModelSpec] = {s.label: s for s in checkpoints + _pretrained_specs() + _random_specs()}
        self._loaded: OrderedDict[str, ModelBundle] = OrderedDict()
        self._untrained: OrderedDict[tuple, torch.nn.Module] = OrderedDict()  # patch embeddings of untrained twins
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._model_memos: OrderedDict[str, dict] = OrderedDict()  # label -> views of its weights (small)
        self.loads = 0

    # -- the menu ---------------------------------------------------------------------------------------------
    def labels(self) -> list[str]:
        return list(self.specs)

    def choices(self) -> list[tuple[str, str]]:
        """(menu text, value) pairs for a dropdown."""
        return [(s.menu_text, s.label) for s in self.specs.values()]

    def checkpoints(self) -> list[ModelSpec]:
        return [s for s in self.specs.values() if s.kind == "checkpoint"]

    def resolve(self, name: str) -> ModelSpec:
        """A menu label, or a short name: a preset ("ViT-B/16" -> its default weights), a checkpoint's stem, any case."""
        if name in self.specs:
            return self.specs[name]
        wanted = " ".join(str(name or "").split()).lower()
        for spec in self.specs.values():
            if wanted == spec.label.lower():
                return spec
        for spec in self.specs.values():
            if spec.kind == "checkpoint" and wanted in (Path(spec.path).name.lower(), spec.preset.lower()):
                return spec
        if wanted in (p.lower() for p in PRETRAINED):
            preset = next(p for p in PRETRAINED if p.lower() == wanted)
            return self.specs[f"{preset} · {weights_enum(preset).DEFAULT.name}"]
        raise UnknownModel(f"There is no model called {name!r}; choose one of: {', '.join(self.specs)}.")

    def default_label(self) -> str:
        """ViT-B/16 IMAGENET1K_V1 when its file is cached or this is a Space; else the shipped checkpoint."""
        b16 = self.specs["ViT-B/16 · IMAGENET1K_V1"]
        if is_cached(b16.preset, b16.variant) or on_space():
            return b16.label
        return self.fallback_label()

    def fallback_label(self) -> str:
        """A model that needs no download: the shipped checkpoint (a Fashion-MNIST one first), else untrained B/16."""
        checkpoints = self.checkpoints()
        if checkpoints:
            fashion = [s for s in checkpoints if "fashion" in s.label.lower()]
            return (fashion or checkpoints)[0].label
        return self.specs[untrained_label("ViT-B/16")].label

    def availability_note(self) -> str:
        """One sentence on whether torchvision's pretrained weights can be had here ("" when they can)."""
        b16 = self.specs["ViT-B/16 · IMAGENET1K_V1"]
        if is_cached(b16.preset, b16.variant) or on_space():
            return ""
        works = ("the shipped checkpoint and the untrained Table 1 models work without them" if self.checkpoints()
                 else "the untrained Table 1 models work without them")
        if offline():
            return (f"torchvision's pretrained weights can't be had here (EXPLORER_OFFLINE is set and none is "
                    f"cached): {works}.")
        return (f"torchvision's pretrained weights are not cached yet: choosing one downloads its file once "
                f"(ViT-B/16: 330 MB), and {works}.")

    # -- loading -----------------------------------------------------------------------------------------------
    def loaded(self, label: str) -> bool:
        with self._lock:
            return label in self._loaded

    def get(self, label: str, progress: Progress = no_progress) -> ModelBundle:
        """The loaded bundle for `label` (loading it on first use). Raises WeightsUnavailable with one sentence."""
        spec = self.resolve(label)
        with self._lock:
            if spec.label in self._loaded:
                self._loaded.move_to_end(spec.label)
                return self._loaded[spec.label]
            load_lock = self._loading.setdefault(spec.label, threading.Lock())
        with load_lock:  # one thread loads; the others wait here and then find it loaded
            with self._lock:
                if spec.label in self._loaded:
                    self._loaded.move_to_end(spec.label)
                    return self._loaded[spec.label]
            progress(0.05, desc=f"Loading {spec.label}…")
            bundle = self._load(spec)
            bundle.model.to(self.device).eval()
            with self._lock:
                self._loaded[spec.label] = bundle
                self.loads += 1
                while len(self._loaded) > self.max_models:
                    self._loaded.popitem(last=False)
                self._loading.pop(spec.label, None)
            progress(1.0, desc=f"{spec.label} loaded")
            return bundle

    def _load(self, spec: ModelSpec) -> ModelBundle:
        if spec.kind == "pretrained":
            return load_pretrained(spec.preset, spec.variant, progress=True)
        if spec.kind == "checkpoint":
            return load_checkpoint(spec.path)
        with _SEEDED:
            return random_bundle(spec.preset)

    def model_memo(self, label: str) -> dict:
        """A small dict shared by all entries of one model, for views that depend on its weights only."""
        with self._lock:
            memo = self._model_memos.setdefault(label, {})
            self._model_memos.move_to_end(label)
            while len(self._model_memos) > 8:
                self._model_memos.popitem(last=False)
            return memo

    def untrained_patch_embedding(self, label: str, config: ViTConfig) -> torch.nn.Module:
        """The patch embedding E of an untrained model with the same config: the "random init" entry of the menu
        for a Table 1 preset (seed 0, so it matches that entry exactly), else ViT(config) from seed 0."""
        key = (label, config)
        with self._lock:
            if key in self._untrained:
                return self._untrained[key]
            build_lock = self._loading.setdefault(f"untrained:{label}", threading.Lock())
        with build_lock:  # built by one thread
            return self._build_untrained(key, config)

    def _build_untrained(self, key, config: ViTConfig) -> torch.nn.Module:
        with self._lock:
            if key in self._untrained:
                return self._untrained[key]
            twin = self._loaded.get(untrained_label(config.name))
        if twin is not None and twin.model.config == config:
            embedding = twin.model.patch_embedding
        elif config.name in CONFIGS and CONFIGS[config.name] == config:
            with _SEEDED:
                embedding = random_bundle(config.name).model.patch_embedding
        else:
            with _SEEDED:
                torch.manual_seed(0)
                embedding = ViT(config).patch_embedding
        embedding = embedding.to(self.device).eval()
        with self._lock:
            self._untrained[key] = embedding
            while len(self._untrained) > 4:
                self._untrained.popitem(last=False)
        return embedding
