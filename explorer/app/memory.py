"""What an analysis will take, and what this process may still take: the server's memory guard.

`needed(config, loaded)` estimates, from the shapes alone, the bytes one analysis adds: the weights (unless the model
is loaded already), the trace it keeps (explorer.trace's stages) and what the forward holds at its peak. `available()`
is $EXPLORER_MEMORY_MB minus what this process really holds (its resident memory, `resident_bytes()`) when that limit
is set, else the smaller of the machine's MemAvailable and the cgroup's remaining limit. The server refuses an analysis
whose estimate does not fit, in one sentence naming a model that does, instead of swapping or being killed; heavy
analyses run one at a time, each checked again when its turn comes. `give_back()` returns to the system what the C
allocator kept of the memory freed (glibc's malloc_trim): called after the trace cache or the registry evicts, and
before the guard refuses.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from pathlib import Path

from ..config import ViTConfig
from ..deferred import deferred

# Imported when first used (explorer/deferred.py): the page is up before torch is loaded.
torch = deferred("torch")

FLOAT_BYTES = 4  # float32 weights and stages
SAFETY = 1.25  # allocator slack and the views' own arrays on top of the estimate


def parameters(config: ViTConfig) -> int:
    """The number of parameters of ViT(config), counted on the meta device (nothing allocated)."""
    from ..model import ViT

    with torch.device("meta"):
        return ViT(config).num_parameters()


def trace_bytes(config: ViTConfig) -> int:
    """What explorer.trace keeps for one image: the stream stages (T x D each: ln_1, attn.output, z_mid, ln_2,
    mlp.output, z per layer, and the embedding's), each layer's q and k (h x T x d each), the two layers' attention
    (h x T x T) it keeps after computing them on demand, the input and its patches."""
    T, D, L, h = config.seq_len, config.hidden_dim, config.depth, config.heads
    H, W = config.image_hw
    stream = (6 * L + 4) * T * D
    queries_keys = 2 * L * T * D
    attention = 2 * h * T * T
    pixels = 3 * config.channels * H * W + config.hidden_dim * config.num_patches
    return FLOAT_BYTES * (stream + queries_keys + attention + pixels)


def forward_peak_bytes(config: ViTConfig) -> int:
    """What one forward holds on top at its peak: a layer's scores and softmax (2 x h x T x T) and its MLP (T x MLP)."""
    T = config.seq_len
    return FLOAT_BYTES * (2 * config.heads * T * T + T * config.mlp_dim + 4 * T * config.hidden_dim)


def needed(config: ViTConfig, loaded: bool) -> int:
    """Bytes one analysis of an image adds to this process: the weights if not loaded yet, the trace, the forward."""
    weights = 0 if loaded else FLOAT_BYTES * parameters(config)
    return int(SAFETY * (weights + trace_bytes(config) + forward_peak_bytes(config)))


def process_memory(pid: int | str = "self") -> dict[str, int]:
    """A process's resident memory now (VmRSS) and at its peak (VmHWM), in bytes, from /proc/<pid>/status (Linux);
    {} where it can't be read."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    fields = (line.partition(":") for line in text.splitlines())
    return {key: int(value.split()[0]) * 1024 for key, _, value in fields if key in ("VmRSS", "VmHWM")}  # kB -> B


def resident_bytes() -> int:
    """What this process holds in memory now (VmRSS, Linux); 0 where it can't be read."""
    return process_memory().get("VmRSS", 0)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_remaining() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def available(limit_mb: int | None = None) -> int | None:
    """Bytes this process may still add: limit_mb (the app's setting) minus what it holds now, else what the machine
    (and its cgroup) has available; None where nothing can be read (then nothing is refused)."""
    if limit_mb:
        return limit_mb * 2**20 - resident_bytes()
    readings = [r for r in (_meminfo_available(), _cgroup_remaining()) if r is not None]
    return min(readings) if readings else None


def _malloc_trim():
    """glibc's malloc_trim, or None (another C library, another system)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None  # musl and others: no malloc_trim
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def give_back() -> bool:
    """Return the free pages the C allocator keeps (in every arena) to the system: malloc_trim(0). Freed traces are
    tensors of a few MB, which glibc carves from its heaps rather than maps once it has seen a few freed, and keeps
    after they are freed. False where there is no malloc_trim."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def in_words(size: int) -> str:
    return f"{size / 2**30:.1f} GB" if size >= 2**30 else f"{max(1, round(size / 2**20))} MB"

