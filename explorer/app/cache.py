"""The trace cache: each (image, model, device) traced once, every view drawn from that one trace.

- `Entry`: one traced image for one model, with a memo of the views derived from it.
- `TraceCache`: the entries, an explorer.memo.Memo bounded by count and by bytes (Entry.nbytes); two requests for the
  same key wait for one forward pass, and the entry computed is the one returned.

An entry refers to nothing that refers back to it (its callables are given what they need, not the entry), so an
evicted entry, its trace and its memo are freed as soon as the last request using it is done.
Nothing here imports Gradio.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from ..config import ViTConfig
from ..deferred import deferred
from ..memo import Memo
from ..weights import UNTRAINED
from .registry import ModelSpec

if TYPE_CHECKING:
    from .. import analysis
    from ..trace import Trace

# Imported when first used (explorer/deferred.py): the page is up before torch is loaded.
torch = deferred("torch")


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
    # The callables below are given what they need (the model's label, the input, this entry's memo), never the
    # entry itself: a closure over the entry would be a reference cycle, kept alive until a full garbage collection.
    untrained: Callable[[], np.ndarray] | None = None  # Eq. 1's feature maps under an untrained twin, on demand
    # run_model(kind, fn): fn(model, x) with this entry's model and input (1, C, H, W), counted by the server under
    # `kind`: the explanations and the shortened or resized sequences that the trace alone cannot give.
    run_model: Callable[[str, Callable], object] | None = None
    # survey(): the survey of this model's weights on disk (explorer.survey's survey.json, as a dict), or None
    survey: Callable[[], dict | None] | None = None
    memo: Memo = field(default_factory=lambda: Memo(MEMO_ENTRIES, size=_array_bytes))  # derived views (Entry.cached)
    model_memo: Memo = field(default_factory=lambda: Memo(MEMO_ENTRIES))  # views of the weights alone, per model

    @property
    def config(self) -> ViTConfig:
        return self.trace.config

    @property
    def trained(self) -> bool:
        return self.weights != UNTRAINED

    @property
    def class_names(self) -> list[str]:
        return list(self.trace.class_names or [])

    @property
    def lock(self):
        """The memo's (re-entrant) lock: hold it to replace the memo's contents at once."""
        return self.memo.lock

    def nbytes(self) -> int:
        """The trace, E, the display images and the arrays among the derived views (figures are not counted)."""
        pictures = sum(p.width * p.height * len(p.getbands()) for p in (self.original, self.seen))
        return self.trace.nbytes() + self.projection_weight.numel() * 4 + pictures + self.memo.nbytes()

    def cached(self, name, compute: Callable[[], object], per_model: bool = False):
        """memo[name], computed once (derived views such as the rollout for given options; a second asker waits for
        the first). With `per_model`, the value depends on the weights only (Fig. 7 left and centre) and is shared by
        every image of this model."""
        return (self.model_memo if per_model else self.memo).get_or_compute(name, compute)


MEMO_ENTRIES = 64  # derived views per entry: options come from sliders, so keep the memo small


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


class TraceCache(Memo):
    """The entries: an LRU bounded by count and by bytes (Entry.nbytes); the newest entry is kept whatever its size.
    `on_evict` runs after an eviction (the server hands the freed memory back to the system there)."""

    def __init__(self, max_entries: int = 6, max_bytes: int = 512 * 2**20, on_evict: Callable[[], object] | None = None):
        super().__init__(max_entries, max_bytes, size=operator.methodcaller("nbytes"), on_evict=on_evict)
