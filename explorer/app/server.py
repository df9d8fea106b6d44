"""The app's server state, shared by every visitor: the models (registry.py), the traces (cache.py), the counters.

`Server.analyse(image, model, stages=...)` opens the image, runs the model once per (image, model, device) and returns
the `Entry` it computed or found, its trace holding the stages asked for (every stage by default; the page asks for
what the step shown reads, and an entry traces again, once, when a later step reads more: cache.Entry.require); `Server.entry(key, source)` finds an entry again for a later event and, when the cache
has dropped it, traces the upload again (that counts as a model run); `Server.predict` is the /predict API.
What a user can cause is raised as one of `USER_ERRORS`, each with a one-sentence message.

Nothing here imports Gradio: progress is reported through a plain callable `progress(fraction, desc=...)`.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import CONFIGS, ViTConfig
from ..deferred import deferred
from ..images import ImageError, open_image
from ..weights import WeightsUnavailable, torchvision_weights
from . import ablation, memory
from .cache import ENTRY_STAGES, LENS_STAGES, Entry, TraceCache, has_logit_lens
from .registry import TABLE_1, ModelRegistry, ModelSpec, Progress, UnknownModel, no_progress
from .settings import Settings

# Imported when first used (explorer/deferred.py): the page is up before torch is loaded.
torch = deferred("torch")
analysis = deferred("explorer.analysis")
tracing = deferred("explorer.trace")


class TraceExpired(LookupError):
    """An analysis the cache has dropped and that cannot be made again (no upload to trace); one sentence."""


class NotEnoughMemory(MemoryError):
    """An analysis this machine cannot hold (the memory guard); one sentence that names a model that fits."""


# Everything a visitor can cause, each with a one-sentence message: the UI shows it and carries on.
USER_ERRORS = (ImageError, WeightsUnavailable, UnknownModel, TraceExpired, NotEnoughMemory)


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


class Server:
    """All server-side state of the app, shared by every visitor: models, traces, counters."""

    def __init__(self, settings: Settings | None = None, *, checkpoint_dir: str | os.PathLike | None = None,
                 device: str | None = None, max_entries: int | None = None, max_bytes: int | None = None,
                 max_models: int | None = None):
        settings = settings or Settings.from_env()
        self.settings = settings
        self.registry = ModelRegistry(checkpoint_dir or settings.checkpoint_dir, device or settings.device,
                                      max_models or settings.max_models, models_dir=settings.models_dir)
        # An evicted entry is freed at once (cache.py); what the C allocator keeps of it goes back to the system.
        self.cache = TraceCache(max_entries or settings.trace_entries, max_bytes or settings.trace_bytes,
                                on_evict=memory.give_back)
        self._lock = threading.Lock()
        self.runs = 0  # forward passes of a model in the menu (one per traced (image, model, device))
        self.untrained_runs = 0  # patch embeddings of untrained twins (Eq. 1's comparison), counted apart
        self.explain_runs: Counter[str] = Counter()  # model runs beyond the trace, by kind (relevance, dropped, ...)
        self.last_forward_s = 0.0
        # Analyses estimated above settings.heavy_mb run one at a time, so that several visitors asking for a big
        # model queue here instead of multiplying its memory.
        self._heavy = threading.Lock()
        self.refusals = 0

    @property
    def device(self) -> str:
        """Where the models run (the registry's; decided when first asked, which imports torch)."""
        return self.registry.device

    # -- the one place a model runs ---------------------------------------------------------------------------
    def analyse(self, image, model: str, progress: Progress = no_progress, stages=None) -> Entry:
        """Open `image` (path, bytes, PIL, array) and trace it with `model` unless cached: the entry computed or found.
        `stages`: the stage names and patterns its views read (with ENTRY_STAGES, what the entry itself reads); None,
        every stage. A cached entry is returned as it is (Entry.require adds stages when a view needs them).

        Raises one of USER_ERRORS (one sentence each) for what a user can cause.
        """
        opened = open_image(image)
        spec = self.registry.resolve(model)
        key = (image_sha256(opened.image), spec.label, self.device)
        stages = None if stages is None else frozenset(stages) | ENTRY_STAGES
        return self.cache.get_or_compute(key, lambda: self._trace(key, spec, opened, progress, stages))

    def entry(self, key, source: tuple[str, str] | None = None, progress: Progress = no_progress,
              stages=None) -> Entry:
        """The entry of an earlier `analyse` (key = entry.key). When the cache has dropped it, the upload in `source`
        ((file path, model label)) is traced again for `stages` (as `analyse`), which counts as a model run; without
        one, TraceExpired."""
        entry = self.cache.get(tuple(key)) if key else None
        if entry is not None:
            return entry
        if source and source[0] and Path(source[0]).is_file():
            entry = self.analyse(source[0], source[1], progress, stages)
            heads = ablation.heads_of(key)  # an entry with heads switched off: traced again with them off
            return ablation.ablated_entry(self, entry, heads) if heads else entry
        raise TraceExpired("This image's analysis is no longer cached; upload it again.")

    # -- the memory guard -----------------------------------------------------------------------------------
    def config_of(self, spec: ModelSpec) -> ViTConfig | None:
        """A model's config before it is loaded, where the menu knows it (torchvision's and the untrained Table 1
        models); else None (the guard then checks after loading, before tracing)."""
        if self.registry.loaded(spec.label):
            return self.registry.get(spec.label).model.config
        if spec.kind in ("pretrained", "untrained") and spec.preset in CONFIGS:
            config = CONFIGS[spec.preset]
            if spec.kind == "pretrained":
                config = config.replace(image_size=torchvision_weights(spec.preset, spec.variant).crop)
            return config
        return None

    def check_memory(self, spec: ModelSpec, config: ViTConfig) -> int:
        """Bytes one analysis with `spec` needs; NotEnoughMemory (one sentence naming a model that fits) when this
        process can't add them."""
        need = memory.needed(config, loaded=self.registry.loaded(spec.label))
        free = memory.available(self.settings.memory_mb)
        if free is not None and need > free and memory.give_back():  # what the allocator kept is not held
            free = memory.available(self.settings.memory_mb)
        if free is not None and need > free:
            with self._lock:
                self.refusals += 1
            height, width = config.image_hw
            raise NotEnoughMemory(
                f"{spec.label} at {height}×{width} needs about {memory.in_words(need)} to analyse an image and this "
                f"server has {memory.in_words(max(free, 0))} free; {self._smaller_model(spec, free)}")
        return need

    def _smaller_model(self, spec: ModelSpec, free: int) -> str:
        """The advice of the refusal: the biggest of the menu's untrained-free models that fits, by estimate."""
        candidates = []
        for other in self.registry.specs.values():
            config = self.config_of(other) if other.kind in ("pretrained", "checkpoint") else None
            if other.kind == "checkpoint" and config is None and self.registry.loaded(other.label):
                config = self.registry.get(other.label).model.config
            if config is None or other.label == spec.label:
                continue
            need = memory.needed(config, loaded=self.registry.loaded(other.label))
            if need <= free:
                candidates.append((need, other.label))
        if not candidates:
            fallback = self.registry.fallback_label()
            return f"choose a smaller model such as {fallback}, or run the app where more memory is free."
        return f"choose a smaller model such as {max(candidates)[1]}."

    def _trace(self, key, spec: ModelSpec, opened, progress: Progress, stages: frozenset | None) -> Entry:
        config = self.config_of(spec)
        if config is not None:  # before loading: a model too big for the machine is never loaded
            self.check_memory(spec, config)
        bundle = self.registry.get(spec.label, progress)
        need = self.check_memory(spec, bundle.model.config)  # after loading, with the weights in memory
        progress(0.9, desc="Running the model once…")
        seen, crop_notes = bundle.preprocessing.crop(opened.image)
        x = bundle.preprocessing.normalise(seen)  # (1, C, H, W)
        heavy = need > self.settings.heavy_mb * 2**20
        with self._heavy if heavy else contextlib.nullcontext():  # big analyses one at a time
            if heavy:  # again, now that those before it hold their traces: what the process really holds counts
                self.check_memory(spec, bundle.model.config)
            start = time.perf_counter()
            result, lens = self._run_trace(bundle, spec.label, x, stages)
            seconds = time.perf_counter() - start
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
        # What the entry's callables need, given to them: a closure over the entry would be a reference cycle.
        pixels = result["input.pixels"]  # (C, H, W)
        if spec.kind != "untrained":  # an untrained model's twin would be itself
            entry.untrained = functools.partial(self.untrained_feature_maps, spec.label, result.config, pixels,
                                                entry.memo)
        entry.run_model = functools.partial(self.run_model, spec.label, pixels)
        entry.survey = functools.partial(self.survey_of, spec.label)
        entry.stages = stages
        entry.retrace = functools.partial(self.retrace, spec.label, pixels)
        return entry

    @staticmethod
    def _run_trace(bundle, label: str, x, stages: frozenset | None) -> tuple:
        """explorer.trace of x (1, C, H, W) asking for `stages` (None: every stage), and the logit lens when the trace
        holds what it reads."""
        result = tracing.trace(bundle.model, x, mean=bundle.preprocessing.mean, std=bundle.preprocessing.std,
                               class_names=bundle.class_names, meta={"model": label},
                               names_filter=None if stages is None else sorted(stages))
        covered = stages is None or LENS_STAGES <= stages
        readable = covered and has_logit_lens(bundle.model.config)
        return result, analysis.logit_lens(result, bundle.model, k=5) if readable else None

    def retrace(self, label: str, pixels, stages: frozenset) -> tuple:
        """An entry's input pixels (C, H, W) traced again with model `label`, asking for `stages`: (trace, logit lens
        or None). Counted under "stages" in stats()["explain_runs"]: the upload's one model run (`runs`) made a trace
        of what the step shown read, and a later step read more (Entry.require)."""
        bundle = self.registry.get(label)
        x = pixels.unsqueeze(0).to(self.device)  # (1, C, H, W)
        with self._heavy if memory.needed(bundle.model.config, loaded=True) > self.settings.heavy_mb * 2**20 \
                else contextlib.nullcontext():
            result = self._run_trace(bundle, label, x, stages)
        with self._lock:
            self.explain_runs["stages"] += 1
        return result

    # -- surveys ------------------------------------------------------------------------------------------------
    def survey_paths(self) -> list[Path]:
        """The survey.json files on disk: each checkpoint's <stem>_survey folder, and $EXPLORER_SURVEYS's subfolders."""
        folders = [self.registry.checkpoint_dir] if self.registry.checkpoint_dir.is_dir() else []
        paths = [p for folder in folders for p in sorted(folder.glob("*_survey/survey.json"))]
        surveys = self.settings.surveys_dir
        if surveys is not None and surveys.is_dir():
            paths += sorted(surveys.glob("survey.json")) + sorted(surveys.glob("*/survey.json"))
        return paths

    def survey_of(self, label: str) -> dict | None:
        """The survey of this model's exact weights (matched by explorer.survey.weights_digest), read once per model;
        None where there is none. A survey of other weights (a retrained checkpoint) is never shown for this one."""
        return self.registry.model_memo(label).get_or_compute("survey", lambda: self._find_survey(label))

    def _find_survey(self, label: str) -> dict | None:
        from ..survey import weights_digest  # only when a survey view is drawn

        digest = weights_digest(self.registry.get(label).model)
        for path in self.survey_paths():
            try:
                survey = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # not a readable survey: ignored, as a folder of something else would be
            if isinstance(survey, dict) and survey.get("model", {}).get("digest") == digest:
                return dict(survey, path=str(path))
        return None

    def run_model(self, label: str, pixels, kind: str, fn):
        """fn(model, x): the model `label` on an entry's input pixels (C, H, W) as x (1, C, H, W), for what the trace
        alone cannot give (relevance and Grad-CAM need a backward pass; dropped patches and other sizes, new
        sequences). Counted under `kind` in stats()["explain_runs"]; the model is loaded again if it was dropped
        meanwhile. (Entry.run_model(kind, fn) is this with the entry's label and pixels.)"""
        bundle = self.registry.get(label)
        x = pixels.unsqueeze(0).to(self.device)  # (1, C, H, W)
        result = fn(bundle.model, x)
        with self._lock:
            self.explain_runs[kind] += 1
        return result

    def untrained_feature_maps(self, label: str, config: ViTConfig, pixels, memo) -> np.ndarray:
        """Eq. 1's conv feature maps of an entry's input pixels (C, H, W) under an untrained model of the same config:
        (D, rows, cols), computed once into the entry's memo. (Entry.untrained() is this with the entry's own.)"""
        def compute():
            embedding = self.registry.untrained_patch_embedding(label, config)
            with torch.no_grad():
                maps = embedding.projection(pixels.unsqueeze(0).to(self.device))[0]  # (1, C, H, W) -> (D, rows, cols)
            with self._lock:
                self.untrained_runs += 1
            return maps.float().cpu().numpy()
        return memo.get_or_compute("untrained.feature_maps", compute)

    def prefetch_untrained(self, entry: Entry) -> threading.Thread | None:
        """Make Eq. 1's untrained comparison in the background (building an untrained twin of ViT-B/16 takes seconds)."""
        if entry.untrained is None or "untrained.feature_maps" in entry.memo:
            return None
        thread = threading.Thread(target=entry.untrained, name="explorer-untrained", daemon=True)
        thread.start()
        return thread

    # -- the API ----------------------------------------------------------------------------------------------
    def predict(self, image, model: str, k: int = 5, progress: Progress = no_progress) -> dict:
        """Top-k labels with probabilities as a JSON-able dict (the /predict endpoint), ranked by analysis.ranking."""
        entry = self.analyse(image, model, progress)
        answer = {
            "model": entry.spec.label,
            "weights": entry.weights,
            "source": entry.source,
            "trained": entry.trained,
            "top_k": [],
            "notes": entry.notes,
        }
        if not entry.config.has_classifier:  # a backbone: no classes to rank, and it says so
            return {**answer, "features": entry.config.hidden_dim,
                    "note": f"{entry.spec.label} is a backbone without a classifier: its output is "
                            f"{entry.config.hidden_dim} features, not classes, so there is no top-k."}
        answer["top_k"] = [{"label": name, "probability": round(p, 6)} for name, p in entry.trace.top_k(max(1, int(k)))]
        return answer

    def stats(self) -> dict:
        with self._lock:
            runs, untrained, last = self.runs, self.untrained_runs, self.last_forward_s
            explain = dict(self.explain_runs)
        return {
            "model_runs": runs,
            "untrained_runs": untrained,
            "explain_runs": explain,
            "last_forward_s": round(last, 4),
            "cache_entries": len(self.cache),
            "cache_bytes": self.cache.nbytes(),
            "rss_bytes": memory.resident_bytes(),  # what the process holds: the cache, the models, Python, Gradio
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
            "cache_evictions": self.cache.evictions,
            "memory_refusals": self.refusals,
            "models_loaded": self.registry.loads,
            "device": self.device,
        }

    def warm_up(self, label: str | None = None) -> threading.Thread:
        """Load the default model in a background thread (so the page is up at once)."""
        def load():
            try:
                self.registry.get(label or self.registry.default_label())
            except USER_ERRORS:
                pass  # the first request reports it in one sentence
        thread = threading.Thread(target=load, name="explorer-warm-up", daemon=True)
        thread.start()
        return thread
