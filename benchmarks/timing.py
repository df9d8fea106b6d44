"""Timing in one process: a row of samples judged against the server benchmark's targets (issue 6), the loops that
time a function fairly, and the recorder that turns a measurement which raises into an ERROR row.
"""
from __future__ import annotations

import dataclasses
import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

from .report import error_text, percentile

# Targets of issue 6: (kind, limit, text). Ratios divide by torchvision's forward of the same model and device.
TARGETS: dict[str, tuple[str, float, str]] = {
    "forward.plain": ("ratio", 1.05, "<= 1.05x tv"),
    "forward.traced": ("ratio", 1.15, "<= 1.15x tv"),
    "upload": ("ratio", 1.5, "<= 1.5x tv"),
    "control": ("median", 100.0, "<= 100 ms"),
    "startup.http_200": ("ratio", 1.5, "<= 1.5x bare Gradio"),  # its ratio is to startup.bare_gradio
    "memory.peak_rss": ("median", 1500.0, "<= 1.5 GB"),
    # Explanations (issue 13): relevance is one forward and one backward; a deletion curve's shortened sequences
    # are batched. A curve from all N patches to none in 20 steps is held to 20 forwards; one point per patch is
    # reported without a target: its sequences hold (N + 2) / 2 forwards' worth of tokens, whatever the batching.
    "explain.relevance": ("ratio", 3.0, "<= 3x tv"),
    "explain.deletion": ("ratio", 20.0, "<= 20x tv"),
    # Controls that run the model by design (step 5): the class picker (relevance, Grad-CAM, faithfulness curves)
    # and the input size (a forward at 1.5x or 2x the side): measured, with no instant-redraw target.
    "control.set_target": ("none", 0.0, ""),
    "control.set_scale": ("none", 0.0, ""),
}
MEMORY_TARGET_MODEL = "ViT-B/16"  # the RSS target is stated for ViT-B/16


@dataclass
class Row:
    """One measurement: times in ms (startup in s), memory in MB (10^6 bytes)."""

    id: str  # stable, e.g. "forward.traced", "control.set_layer", "figure.eq2.heads"
    label: str  # what was measured, in words
    model: str
    device: str
    unit: str  # "ms" | "s" | "MB"
    samples: list[float] = field(default_factory=list)
    ratio: float | None = None  # median / torchvision forward's median (time rows in ms only)
    target: str = ""
    status: str = ""  # "PASS" | "MISS" | "ERROR" | "" (no target)
    note: str = ""
    error: str = ""  # what went wrong when the measured code raised (then there are no samples)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def p90(self) -> float | None:
        return percentile(self.samples, 90) if self.samples else None

    def to_dict(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "samples"}
        out.update(median=self.median, p90=self.p90, n=len(self.samples), samples=list(self.samples))
        return out


def judge(row: Row) -> Row:
    """Fill row.target and row.status from TARGETS (the longest id prefix that matches)."""
    if row.error:
        row.status = "ERROR"
        return row
    matches = [k for k in TARGETS if row.id == k or row.id.startswith(k + ".")]
    if not matches or (row.id == "memory.peak_rss" and row.model != MEMORY_TARGET_MODEL):
        return row
    kind, limit, text = TARGETS[max(matches, key=len)]
    if kind == "none":
        return row
    value = row.ratio if kind == "ratio" else row.median
    if value is None:
        return row
    row.target, row.status = text, ("PASS" if value <= limit else "MISS")
    return row


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure(fn: Callable[[], object], repeats: int, warmup: int, device: str = "cpu",
            before: Callable[[], object] | None = None) -> list[float]:
    """Seconds per call of fn() over `repeats` timed calls after `warmup` untimed ones; before() runs untimed."""
    for _ in range(warmup):
        if before:
            before()
        fn()
    gc.collect()
    times = []
    for _ in range(repeats):
        if before:
            before()
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def measure_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                        device: str = "cpu", cpu: dict[str, list[float]] | None = None,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Like `measure`, but the functions take turns (in a rotating order), so drift in the machine's speed (other
    processes, clocks, caches) affects them alike: the fairest way to compare two forwards. `clock`: wall time, or
    time.process_time for this process's CPU seconds (what one thread costs, whatever else loads the machine).
    `cpu`, when given, gets each call's CPU seconds of this process too (all its threads), beside the clock's times."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    gc.collect()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            _sync(device)
            start, start_cpu = clock(), time.process_time()
            fns[name]()
            _sync(device)
            times[name].append(clock() - start)
            if cpu is not None:
                cpu.setdefault(name, []).append(time.process_time() - start_cpu)
    return times


def in_ms(seconds: list[float]) -> list[float]:
    return [s * 1000 for s in seconds]


class Recorder:
    """Collects the rows of one model on one device; a measurement whose code raises becomes an ERROR row."""

    def __init__(self, model: str, device: str, repeats: int, warmup: int):
        self.model, self.device, self.repeats, self.warmup = model, device, repeats, warmup
        self.rows: list[Row] = []

    def time(self, row_id: str, label: str, fn: Callable[[], object], before: Callable[[], object] | None = None,
             note: str = "", repeats: int | None = None) -> Row:
        repeats = self.repeats if repeats is None else min(repeats, self.repeats)
        try:
            row = Row(row_id, label, self.model, self.device, "ms",
                      in_ms(measure(fn, repeats, min(self.warmup, repeats), self.device, before)), note=note)
        except Exception as error:  # a measurement, not a test: report it in the table and go on
            row = Row(row_id, label, self.model, self.device, "ms", error=error_text(error, 160))
        self.rows.append(row)
        return row

