"""The trace cache: each (image, model, device) traced once, every view drawn from that one trace.

- `Entry`: one traced image for one model, with a memo of the views derived from it. Its trace holds the stages the
  views drawn so far read (explorer.trace's names filter; `Entry.stages`); a view that reads more makes the entry trace
  the image again, once, with every stage any view reads (`Entry.require`, a counted model run).
- `TraceCache`: the entries, an explorer.memo.Memo bounded by count and by bytes (Entry.nbytes); two requests for the
  same key wait for one forward pass, and the entry computed is the one returned.

An entry refers to nothing that refers back to it (its callables are given what they need, not the entry), so an
evicted entry, its trace and its memo are freed as soon as the last request using it is done.
Nothing here imports Gradio.
"""
from __future__ import annotations

import operator
import threading
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

# What an entry reads of its trace whatever the step: the input (the picker, the untrained twin, the explanations' runs)
# and the prediction (the header, the class picker, /predict).
# A backbone has no logits: its output y (head.y) stands in for them.
ENTRY_STAGES = frozenset({"input.pixels", "input.image", "head.y", "head.logits", "head.probabilities"})
LENS_STAGES = frozenset({"embed.z0", "blocks.*.z"})  # the logit lens (Eq. 4): the class token after every layer


def has_logit_lens(config: ViTConfig) -> bool:
    """Whether the logit lens can be read: a classifier, and a class token to put through it after every layer."""
    return config.has_classifier and config.layout.query_token is not None


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
    logit_lens: analysis.LogitLens | None  # None until the trace holds LENS_STAGES
    seconds: float = 0.0  # time of the forward pass that made this trace
    # The callables below are given what they need (the model's label, the input, this entry's memo), never the
    # entry itself: a closure over the entry would be a reference cycle, kept alive until a full garbage collection.
    untrained: Callable[[], np.ndarray] | None = None  # Eq. 1's feature maps under an untrained twin, on demand
    # run_model(kind, fn): fn(model, x) with this entry's model and input (1, C, H, W), counted by the server under
    # `kind`: the explanations and the shortened or resized sequences that the trace alone cannot give.
    run_model: Callable[[str, Callable], object] | None = None
    # survey(): the survey of this model's weights on disk (explorer.survey's survey.json, as a dict), or None
    survey: Callable[[], dict | None] | None = None
    # The names filter the trace was made with (stage names and patterns, as the views declare them); None: every stage.
    stages: frozenset[str] | None = None
    # retrace(stages) -> (trace, logit lens or None): this image traced again with the model, asking for `stages`.
    retrace: Callable[[frozenset], tuple] | None = None
    memo: Memo = field(default_factory=lambda: Memo(MEMO_ENTRIES, size=_array_bytes))  # derived views (Entry.cached)
    model_memo: Memo = field(default_factory=lambda: Memo(MEMO_ENTRIES))  # views of the weights alone, per model
    _retracing: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

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

    def require(self, stages, everything=frozenset()) -> None:
        """Make sure the trace holds `stages` (names or patterns as the views declare them). When it does not, the image
        is traced again (a model run, counted by the server) asking for what it held, `stages` and `everything` (every
        stage the views read): at most once per entry, however many steps a visitor opens. The values are the first
        trace's, bit for bit (the same forward of the same input), so what the memo holds stays true."""
        stages = frozenset(stages)
        if self.stages is None or stages <= self.stages or self.retrace is None:
            return
        with self._retracing:
            if stages <= self.stages:  # another request traced it meanwhile
                return
            wanted = self.stages | stages | frozenset(everything)
            trace, lens = self.retrace(wanted)
            if lens is not None:
                self.logit_lens = lens
            self.trace = trace  # before `stages`: whoever sees the new stages finds the trace that holds them
            self.stages = wanted

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
