"""The trace cache: each (image, model, device) traced once, every view drawn from that one trace.

- `Entry`: one traced image for one model, with a memo of the views derived from it.
- `TraceCache`: a bounded (entries and bytes), thread-safe LRU of entries; two requests for the same key wait for
  one forward pass (`get_or_compute`), and the entry computed is the one returned.

Nothing here imports Gradio.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..config import ViTConfig
from ..deferred import deferred
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
    untrained: Callable[[], np.ndarray] | None = None  # Eq. 1's feature maps under an untrained twin, on demand
    # run_model(kind, fn): fn(model, x) with this entry's model and input (1, C, H, W), counted by the server under
    # `kind`: the explanations and the shortened or resized sequences that the trace alone cannot give.
    run_model: Callable[[str, Callable], object] | None = None
    # survey(): the survey of this model's weights on disk (explorer.survey's survey.json, as a dict), or None
    survey: Callable[[], dict | None] | None = None
    memo: dict = field(default_factory=dict)  # derived views, computed once (see Entry.cached)
    model_memo: dict = field(default_factory=dict)  # views of the weights alone, shared by the model's entries
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # guards memo
    compute_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)  # views may nest

    @property
    def config(self) -> ViTConfig:
        return self.trace.config

    @property
    def trained(self) -> bool:
        return self.weights != UNTRAINED

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
