"""The app's server side: which models there are, loading them once, and tracing each image once.

- `ModelRegistry`: every model the app offers (torchvision's pretrained ViTs and their weight variants, the project's
  checkpoints in a folder, untrained Table 1 models), loaded lazily, a few kept in memory, each loaded by one thread.
- `TraceCache`: a bounded (entries and bytes), thread-safe LRU of `Entry`s keyed by (image sha256, model label, device);
  two requests for the same key wait for one forward pass.
- `Session`: ties both together. `analyse(image, model)` -> key (runs the model only on a cache miss and counts it),
  `entry(key)` -> the cached Entry from which every view is drawn, `predict(image, model, k)` -> JSON-able top-k.

Nothing here imports Gradio: progress is reported through a plain callable `progress(fraction, desc=...)`.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from . import analysis
from .config import CONFIGS, ViTConfig
from .images import ImageError, open_image
from .model import ViT
from .trace import Trace, trace
from .weights import (
    PRETRAINED,
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

Progress = Callable[..., object]

TABLE_1 = ("ViT-B/16", "ViT-B/32", "ViT-L/16", "ViT-L/32", "ViT-H/14")
RANDOM_INIT = "random init"
RANDOM_WARNING = "random init — predictions are meaningless; shapes are real"
JFT_NOTE = ("torchvision's weights are its own ImageNet-1k trainings and SWAG weights, "
            "not the paper's JFT-300M / ImageNet-21k checkpoints.")


# Trace-cache size: at least the app's queue (max_size 32) plus the requests running (2), so that every waiting user's
# trace survives until their next control change; the byte bound (512 MiB) is what limits big models (a ViT-B/16
# trace is ~100 MB, so about five of them), and an evicted trace is traced again from the upload.
DEFAULT_TRACE_ENTRIES = 40
DEFAULT_TRACE_MB = 512

# Seeded construction (random_bundle, ViT(config) after manual_seed) uses torch's global RNG: one at a time, so that
# "seed 0" gives the same weights whichever other model is being built in another thread.
_SEEDED = threading.Lock()


def _no_progress(*args, **kwargs) -> None:
    return None


def configure_threads(threads: int | None = None) -> int:
    """Torch's CPU threads: $EXPLORER_THREADS, else half the usable cores (at least 1). Two busy threads on two cores
    that are shared with other work (or with a second request) make a forward several times slower, not faster."""
    if threads is None:
        configured = os.environ.get("EXPLORER_THREADS", "").strip()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = int(configured) if configured else max(1, cores // 2)
    torch.set_num_threads(max(1, int(threads)))
    return torch.get_num_threads()


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_checkpoint_dir() -> Path:
    """$EXPLORER_CHECKPOINTS, else checkpoints/ at the repository root (next to app.py)."""
    configured = os.environ.get("EXPLORER_CHECKPOINTS", "").strip()
    return Path(configured) if configured else Path(__file__).resolve().parent.parent / "checkpoints"


def on_space() -> bool:
    """Running on a Hugging Face Space that may download (SPACE_ID set, EXPLORER_OFFLINE not set)."""
    return bool(os.environ.get("SPACE_ID")) and not offline()


# ---------------------------------------------------------------------------------------------------------------
# Models

@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model menu. `label` is both the menu value and the model name of the /predict API."""

    label: str  # e.g. "ViT-B/16 · IMAGENET1K_V1"
    kind: str  # "pretrained" | "checkpoint" | "random"
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
    return [ModelSpec(f"{preset} · {RANDOM_INIT}", "random", preset, description=RANDOM_WARNING) for preset in TABLE_1]


class ModelRegistry:
    """The model menu, and the loaded models (a small LRU; each model is loaded by one thread, others wait)."""

    def __init__(self, checkpoint_dir: str | os.PathLike | None = None, device: str | None = None,
                 max_models: int | None = None):
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir()
        self.device = device or default_device()
        self.max_models = max_models or int(os.environ.get("EXPLORER_MAX_MODELS", "2"))
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
        raise ValueError(f"There is no model called {name!r}; choose one of: {', '.join(self.specs)}.")

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
        return self.specs[f"ViT-B/16 · {RANDOM_INIT}"].label

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

    def get(self, label: str, progress: Progress = _no_progress) -> ModelBundle:
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
            twin = self._loaded.get(f"{config.name} · {RANDOM_INIT}")
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


# ---------------------------------------------------------------------------------------------------------------
# Traces

@dataclass
class Entry:
    """One traced image for one model: everything the views are drawn from. Never holds the model itself."""

    key: tuple[str, str, str]  # (image sha256, model label, device)
    trace: Trace
    spec: ModelSpec
    model_name: str  # e.g. "ViT-B/16"
    weights: str  # e.g. "IMAGENET1K_V1", "random init", a checkpoint's name
    source: str  # where the weights came from, in words
    preprocessing: object  # explorer.images.Preprocessing
    original: Image.Image  # the upload, upright RGB, shrunk for display
    original_size: tuple[int, int]  # (width, height) as uploaded
    seen: Image.Image  # what the model sees: the resized, centre-cropped input before normalisation
    notes: list[str]  # plain sentences: what open_image and the crop did
    projection_weight: torch.Tensor  # E as the conv weight (D, C, P, P), for Fig. 7 left
    logit_lens: analysis.LogitLens
    seconds: float = 0.0  # time of the forward pass that made this trace
    untrained: Callable[[], np.ndarray] | None = None  # Eq. 1's feature maps under an untrained twin, on demand
    memo: dict = field(default_factory=dict)  # derived views, computed once (see Entry.cached)
    model_memo: dict = field(default_factory=dict)  # views of the weights alone, shared by the model's entries
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # guards memo
    compute_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)  # views may nest

    @property
    def config(self) -> ViTConfig:
        return self.trace.config

    @property
    def trained(self) -> bool:
        return self.weights != RANDOM_INIT

    @property
    def class_names(self) -> list[str]:
        return list(self.trace.class_names or [])

    def nbytes(self) -> int:
        """The trace, E, the display images and the arrays among the derived views (figures are not counted)."""
        with self.lock:
            extra = sum(_array_bytes(v) for v in self.memo.values())
        pictures = sum(p.width * p.height * len(p.getbands()) for p in (self.original, self.seen))
        return self.trace.nbytes() + self.projection_weight.numel() * 4 + pictures + extra

    def cached(self, name, compute: Callable[[], object], per_model: bool = False):
        """memo[name], computing it once (derived views such as the rollout for given options). With `per_model`,
        the value depends on the weights only (Fig. 7 left and centre) and is shared by every image of this model."""
        if per_model:
            with self.lock:
                if name not in self.model_memo:
                    self.model_memo[name] = compute()
                return self.model_memo[name]
        with self.lock:
            if name in self.memo:
                return self.memo[name]
        with self.compute_lock:  # one computation per entry at a time: a second asker waits, then finds it
            with self.lock:
                if name in self.memo:
                    return self.memo[name]
            value = compute()
        with self.lock:
            self.memo.setdefault(name, value)
            if len(self.memo) > 64:  # options come from sliders: keep the memo small
                self.memo.pop(next(iter(self.memo)))
            return self.memo[name]


def _array_bytes(value) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_array_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_array_bytes(v) for v in value.values())
    return 0


class _Pending:
    def __init__(self):
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class TraceCache:
    """A thread-safe LRU bounded by count and by bytes. The newest entry is always kept, whatever its size."""

    def __init__(self, max_entries: int = 6, max_bytes: int = 512 * 2**20):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, Entry] = OrderedDict()
        self._pending: dict[tuple, _Pending] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._entries

    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes() for e in self._entries.values())

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._entries)

    def get(self, key) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def get_or_compute(self, key, compute: Callable[[], Entry]) -> Entry:
        """The entry for `key`; on a miss one caller runs `compute` and the others wait for its result."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
                self.misses += 1
            else:
                self.hits += 1
        if not owner:
            pending.done.wait()
            if pending.error is not None:
                raise pending.error
            return pending.value
        try:
            entry = compute()
        except BaseException as error:
            pending.error = error
            with self._lock:
                self._pending.pop(key, None)
            pending.done.set()
            raise
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            self._evict()
            self._pending.pop(key, None)
        pending.value = entry
        pending.done.set()
        return entry

    def _evict(self) -> None:
        total = sum(e.nbytes() for e in self._entries.values())
        while len(self._entries) > 1 and (len(self._entries) > self.max_entries or total > self.max_bytes):
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.nbytes()
            self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def image_sha256(image: Image.Image) -> str:
    """A hash of the decoded pixels (not the file), so the same picture pasted or uploaded shares one trace."""
    digest = hashlib.sha256()
    digest.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _display_copy(image: Image.Image, longest: int = 768) -> Image.Image:
    if max(image.size) <= longest:
        return image.copy()
    copy = image.copy()
    copy.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    return copy


class Session:
    """All server-side state of the app, shared by every visitor: models, traces, counters."""

    def __init__(self, checkpoint_dir: str | os.PathLike | None = None, device: str | None = None,
                 max_entries: int | None = None, max_bytes: int | None = None, max_models: int | None = None):
        self.registry = ModelRegistry(checkpoint_dir, device, max_models)
        self.device = self.registry.device
        max_entries = max_entries or int(os.environ.get("EXPLORER_TRACE_CACHE_ENTRIES", str(DEFAULT_TRACE_ENTRIES)))
        max_bytes = max_bytes or int(os.environ.get("EXPLORER_TRACE_CACHE_MB", str(DEFAULT_TRACE_MB))) * 2**20
        self.cache = TraceCache(max_entries, max_bytes)
        self._lock = threading.Lock()
        self.runs = 0  # forward passes of a model in the menu (one per traced (image, model, device))
        self.untrained_runs = 0  # patch embeddings of untrained twins (Eq. 1's comparison), counted apart
        self.last_forward_s = 0.0

    # -- the one place a model runs ---------------------------------------------------------------------------
    def analyse(self, image, model: str, progress: Progress = _no_progress) -> tuple[str, str, str]:
        """Open `image` (path, bytes, PIL, array), trace it with `model` unless cached; return the cache key.

        Raises ImageError or WeightsUnavailable (one sentence each) for what a user can cause.
        """
        opened = open_image(image)
        spec = self.registry.resolve(model)
        key = (image_sha256(opened.image), spec.label, self.device)
        self.cache.get_or_compute(key, lambda: self._trace(key, spec, opened, progress))
        return key

    def _trace(self, key, spec: ModelSpec, opened, progress: Progress) -> Entry:
        bundle = self.registry.get(spec.label, progress)
        progress(0.9, desc="Running the model once…")
        seen, crop_notes = bundle.preprocessing.crop(opened.image)
        x = bundle.preprocessing.normalise(seen)  # (1, C, H, W)
        start = time.perf_counter()
        result = trace(bundle.model, x, mean=bundle.preprocessing.mean, std=bundle.preprocessing.std,
                       class_names=bundle.class_names, meta={"model": spec.label})
        seconds = time.perf_counter() - start
        lens = analysis.logit_lens(result, bundle.model, k=5)
        with self._lock:
            self.runs += 1
            self.last_forward_s = seconds
        entry = Entry(
            key=key, trace=result, spec=spec, model_name=bundle.name, weights=bundle.weights, source=bundle.source,
            preprocessing=bundle.preprocessing, original=_display_copy(opened.image),
            original_size=opened.original_size, seen=seen, notes=list(opened.notes) + list(crop_notes),
            projection_weight=bundle.model.patch_embedding.projection.weight.detach().float().cpu().clone(),
            logit_lens=lens, seconds=seconds, model_memo=self.registry.model_memo(spec.label),
        )
        if spec.kind != "random":  # an untrained model's twin would be itself
            entry.untrained = lambda: self.untrained_feature_maps(entry)
        return entry

    def entry(self, key) -> Entry:
        """The cached entry for a key from `analyse`; KeyError when it has been evicted (analyse again)."""
        entry = self.cache.get(tuple(key)) if key else None
        if entry is None:
            raise KeyError("This image's analysis is no longer cached; upload it again.")
        return entry

    def untrained_feature_maps(self, entry: Entry) -> np.ndarray:
        """Eq. 1's conv feature maps of the same input under an untrained model of the same config: (D, rows, cols)."""
        def compute():
            embedding = self.registry.untrained_patch_embedding(entry.spec.label, entry.config)
            pixels = entry.trace["input.pixels"].unsqueeze(0)  # (1, C, H, W)
            with torch.no_grad():
                maps = embedding.projection(pixels.to(self.device))[0].float().cpu().numpy()  # (D, rows, cols)
            with self._lock:
                self.untrained_runs += 1
            return maps
        return entry.cached("untrained.feature_maps", compute)

    def prefetch_untrained(self, entry: Entry) -> threading.Thread | None:
        """Make Eq. 1's untrained comparison in the background (building an untrained twin of ViT-B/16 takes seconds)."""
        if entry.untrained is None or "untrained.feature_maps" in entry.memo:
            return None
        thread = threading.Thread(target=entry.untrained, name="explorer-untrained", daemon=True)
        thread.start()
        return thread

    # -- the API ----------------------------------------------------------------------------------------------
    def predict(self, image, model: str, k: int = 5, progress: Progress = _no_progress) -> dict:
        """Top-k labels with probabilities as a JSON-able dict (the /predict endpoint)."""
        key = self.analyse(image, model, progress)
        entry = self.entry(key)
        k = max(1, min(int(k), len(entry.trace.probabilities)))
        return {
            "model": entry.spec.label,
            "weights": entry.weights,
            "source": entry.source,
            "trained": entry.trained,
            "top_k": [{"label": name, "probability": round(p, 6)} for name, p in entry.trace.top_k(k)],
            "notes": entry.notes,
        }

    def stats(self) -> dict:
        with self._lock:
            runs, untrained, last = self.runs, self.untrained_runs, self.last_forward_s
        return {
            "model_runs": runs,
            "untrained_runs": untrained,
            "last_forward_s": round(last, 4),
            "cache_entries": len(self.cache),
            "cache_bytes": self.cache.nbytes(),
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
            "cache_evictions": self.cache.evictions,
            "models_loaded": self.registry.loads,
            "device": self.device,
        }

    def warm_up(self, label: str | None = None) -> threading.Thread:
        """Load the default model in a background thread (so the page is up at once)."""
        def load():
            try:
                self.registry.get(label or self.registry.default_label())
            except (WeightsUnavailable, ImageError, ValueError):
                pass  # the first request reports it in one sentence
        thread = threading.Thread(target=load, name="explorer-warm-up", daemon=True)
        thread.start()
        return thread
