"""A bounded least-recently-used memo whose `get_or_compute(key, compute)` computes a missing value once while other
askers of that key wait, and that lets go of every value it evicts.

    memo = Memo(max_entries=8, max_bytes=512 * 2**20, size=lambda entry: entry.nbytes())
    entry = memo.get_or_compute(key, lambda: expensive(key))

One caller computes a missing key (outside the memo's lock, so other keys are served meanwhile); the others wait for
its value, or its error. The value computed is the one returned, even if it is evicted at once. The newest value is
always kept, whatever its size. An evicted value is referenced by nothing here afterwards (the memo keeps no history
and no pending work past its end), so it is freed as soon as its last user lets go, without the cyclic garbage
collector; `on_evict` is then called, outside the lock (the app hands the freed memory back to the system there).
The standard library and nothing else: the app's page and the survey use it without importing torch.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable


class _Pending:
    """A value being computed by `owner`; its askers wait on `done`."""

    def __init__(self):
        self.owner = threading.get_ident()
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class Memo:
    """A thread-safe LRU bounded by a count and, with `size`, by bytes; values computed once per key."""

    def __init__(self, max_entries: int, max_bytes: int | None = None, size: Callable[[object], int] | None = None,
                 on_evict: Callable[[], object] | None = None):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = size
        self.on_evict = on_evict
        self.lock = threading.RLock()  # re-entrant: a caller may hold it around clear() and update()
        self._values: OrderedDict[Hashable, object] = OrderedDict()
        self._pending: dict[Hashable, _Pending] = {}
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        with self.lock:
            return len(self._values)

    def __contains__(self, key) -> bool:
        with self.lock:
            return key in self._values

    def __getitem__(self, key):
        with self.lock:
            return self._values[key]

    def keys(self) -> list:
        """Oldest first."""
        with self.lock:
            return list(self._values)

    def values(self) -> list:
        with self.lock:
            return list(self._values.values())

    def nbytes(self) -> int:
        """The sum of `size` over the values (0 without a size function)."""
        with self.lock:
            return self._total()

    def get(self, key, default=None):
        """The value of `key` (now the most recently used), else `default`; never computes."""
        with self.lock:
            if key not in self._values:
                return default
            self._values.move_to_end(key)
            return self._values[key]

    def get_or_compute(self, key, compute: Callable[[], object]):
        """The value of `key`; on a miss one caller runs `compute` and the others wait for its value (or error).
        A thread asking again for a key it is computing itself (a recursion) gets compute() uncached."""
        with self.lock:
            if key in self._values:
                self._values.move_to_end(key)
                self.hits += 1
                return self._values[key]
            pending = self._pending.get(key)
            owner = pending is None
            if owner:
                pending = self._pending[key] = _Pending()
                self.misses += 1
            elif pending.owner == threading.get_ident():
                return compute()
            else:
                self.hits += 1
        if not owner:
            pending.done.wait()
            error, value, pending = pending.error, pending.value, None
            if error is None:
                return value
            try:
                raise error
            finally:
                error = None  # this frame is in the error's traceback: no reference back to the error
        try:
            value = compute()
        except BaseException as error:
            pending.error = error
            with self.lock:
                del self._pending[key]
            pending.done.set()
            pending = None  # this frame is in the error's traceback: no reference back to the error
            raise
        pending.value = value
        with self.lock:
            self._values[key] = value
            self._values.move_to_end(key)
            del self._pending[key]
            evicted = self._evict()
        pending.done.set()
        if evicted and self.on_evict is not None:
            self.on_evict()
        return value

    def update(self, values) -> None:
        """Put these (key, value) pairs in as the most recent, then evict down to the bounds."""
        with self.lock:
            for key, value in dict(values).items():
                self._values[key] = value
                self._values.move_to_end(key)
            evicted = self._evict()
        if evicted and self.on_evict is not None:
            self.on_evict()

    def _evict(self) -> int:
        """Drop the least recently used values until within the bounds (keeping the newest); how many went."""
        dropped = 0
        total = self._total() if self.max_bytes is not None else 0
        while len(self._values) > 1 and (len(self._values) > self.max_entries
                                         or (self.max_bytes is not None and total > self.max_bytes)):
            _, value = self._values.popitem(last=False)
            if self.max_bytes is not None and self.size:
                total -= self.size(value)
            del value  # the memo's last reference: freed here unless a caller still holds it
            dropped += 1
        self.evictions += dropped
        return dropped

    def _total(self) -> int:
        return sum(self.size(v) for v in self._values.values()) if self.size else 0

    def clear(self) -> None:
        with self.lock:
            self._values.clear()
