"""What every benchmark reports the same way: the machine it ran on, how busy it was, process memory, percentiles,
the tables (plain text and Markdown), the JSON file and the exit.

A benchmark keeps its own rows and targets; it hands this module the cells of its table and the report it built.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

from explorer.app.memory import process_memory
from explorer.common import reason


# ---------------------------------------------------------------------------------------------------------------
# The machine

def machine_info() -> dict:
    """The processor, the CPUs this process may use, torch's threads and the versions that set the times."""
    import torch
    import torchvision

    info = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": load_average(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
                       if k in os.environ},
    }
    for package in ("gradio", "plotly", "numpy", "PIL"):
        with contextlib.suppress(Exception):
            info[package] = importlib.import_module(package).__version__
    return info


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_line(machine: dict) -> str:
    """The machine of a report in one line, for the tables' footnote."""
    return (f"{machine['processor']}, {machine['cpus_usable']} of {machine['cpu_count']} CPUs usable, "
            f"torch {machine['torch']} with {machine['torch_threads']} threads "
            f"({machine['torch_interop_threads']} inter-op), torchvision {machine['torchvision']}, "
            f"Python {machine['python']}, {machine['platform']}"
            + (f", CUDA {machine['cuda']}" if machine.get("cuda") else ", no CUDA"))


def cpu_busy(seconds: float = 2.0) -> float | None:
    """The fraction of all CPUs busy over `seconds` (from /proc/stat; None elsewhere): is the machine quiet?"""
    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total_0, idle_0 = sample()
        time.sleep(seconds)
        total_1, idle_1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle_1 - idle_0) / max(1, total_1 - total_0)


def memory_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process in MB (explorer.app.memory.process_memory); {} elsewhere."""
    return {key: value / 1e6 for key, value in process_memory(pid).items()}


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: VmHWM, else getrusage (kB on Linux, bytes on macOS)."""
    status = memory_status()
    if "VmHWM" in status:
        return status["VmHWM"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


# ---------------------------------------------------------------------------------------------------------------
# The report

def start_report(title: str, args, targets: dict, busy_seconds: float) -> dict:
    """A new report: the machine, the targets, the settings; says (and notes) whether other processes kept the CPUs
    busy just before the start."""
    machine = machine_info()
    report: dict = {"machine": machine, "targets": targets, "notes": [], "skipped": [], "models": {},
                    "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                                 if k not in ("memory_child", "model")}}
    print(f"{title} on {machine_line(machine)}")
    print(f"load average at start {machine['load_average']}; {args.repeats} repeats"
          + (f" after {args.warmup} warm-up runs" if hasattr(args, "warmup") else ""), flush=True)
    busy = cpu_busy(busy_seconds)
    machine["cpu_busy_before_start"] = busy
    if busy is not None and busy > 0.15:
        note = (f"Other processes kept {busy:.0%} of the CPUs busy just before the start: times are slower and "
                f"noisier than on a quiet machine.")
        report["notes"].append(note)
        print(note, flush=True)
    return report


def finish_report(report: dict, statuses: list[str], started: float, **more) -> dict:
    """The summary: PASS, MISS and ERROR counts, what else the benchmark lists, the seconds the run took."""
    report["machine"]["load_average_end"] = load_average()
    report["summary"] = {"pass": statuses.count("PASS"), "miss": statuses.count("MISS"),
                         "error": statuses.count("ERROR"), **more, "seconds": round(time.perf_counter() - started, 1)}
    return report


def error_text(error: BaseException, limit: int = 200) -> str:
    """A measurement whose code raised, in one line for its row (a measurement, not a test: the run goes on)."""
    return f"{type(error).__name__}: {reason(error)[:limit]}"


def median(values: list[float]) -> float | None:
    """The median, or None for no values (a measurement that raised)."""
    return statistics.median(values) if values else None


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, linearly interpolated between the closest ranks (numpy's default)."""
    if q <= 0 or len(values) == 1:
        return min(values) if q <= 0 else values[0]
    if q >= 100:
        return max(values)
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"\nWrote {path} ({report['summary']['seconds']} s).")


def number(value: float | None, digits: int | None = None) -> str:
    """A table cell: "—" for nothing; `digits` after the point, else as many as three significant figures need."""
    if value is None:
        return "—"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def format_table(columns: tuple[str, ...], body: list[list[str]], right: set[int]) -> str:
    """A plain-text table, the columns in `right` aligned right."""
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(b) for b in body])


def format_markdown(columns: tuple[str, ...], body: list[list[str]], right: set[int], machine: dict | None = None) -> str:
    """A Markdown table (for docs/), then the machine in one line."""
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(c.strip().replace("|", "\\|") for c in b) + " |" for b in body]
    if machine:
        lines += ["", f"Measured on {machine_line(machine)}."]
    return "\n".join(lines)


def console(main: Callable[[], int]) -> None:
    """Run a benchmark's main() as `python -m benchmarks.<name>` and exit with its status."""
    code = main()
    # Everything is written; skip the interpreter's teardown, where a native library thread left by torch / Gradio
    # sometimes aborts the process ("terminate called without an active exception") and turns a finished run into
    # exit status -6.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
