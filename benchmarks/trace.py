"""python -m benchmarks.trace: what a trace costs beside the plain forward of the same model, at the app's thread count.

The question (issue 23, item 3): with the names filter the app traces for its default step (explorer.app.views: what
step 0 reads, and what an entry itself reads), is a traced forward within 1.15x of the plain one, for every Table 1
model at its native size (the largest input torchvision's weights take: ViT-B/16 at 384, ViT-L/16 at 512, ViT-H/14 at
518, the /32 models at 224)? Random weights: timing does not depend on them. Three forwards take turns in each round
(benchmarks.timing.measure_interleaved), so the load of a shared machine hits them alike:

    plain        model(x) under no_grad: the reference
    app filter   explorer.trace(model, x, names_filter=<the app's filter for step 0>)
    every stage  explorer.trace(model, x): what every trace cost before the filter (with --every-stage, the default)

Each row gives, in wall-clock time, the median over --repeats rounds, its ratio to the plain forward's median and the
median of the rounds' own ratios (each traced forward over the plain forward of its round: less moved by drift in the
machine's speed); and the same ratio in CPU time (this process's, all threads), which other jobs on a shared machine
hardly move. The app filter's row is judged PASS/MISS against <= 1.15x in CPU time (the work a trace adds), its
wall-clock ratios beside it.

    python -m benchmarks.trace                        # every Table 1 model at its native size, the app's threads
    python -m benchmarks.trace --model ViT-H/14 --threads 2 --repeats 5
    python -m benchmarks.trace --quick                # seconds: ViT-Tiny-Test/8 (the smoke test's settings)

This is a measurement, not a test: it exits 0 whether the target is met or missed.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import time
from pathlib import Path

from .models import ROOT
from .report import (console, error_text, finish_report, format_markdown, format_table, machine_line, number,
                     start_report, write_json)
from .timing import measure_interleaved

TABLE_1 = ("ViT-B/16", "ViT-B/32", "ViT-L/16", "ViT-L/32", "ViT-H/14")
TARGET = 1.15  # traced with the app's filter / plain


def native_size(preset: str) -> int:
    """The largest input torchvision's weights of a Table 1 model take (its own size for other presets)."""
    from explorer.config import CONFIGS
    from explorer.weights import TORCHVISION_WEIGHTS

    crops = [weights.crop for weights in TORCHVISION_WEIGHTS.get(preset, ())]
    return max(crops) if crops else CONFIGS[preset].image_hw[0]


def app_filter() -> list[str]:
    """The names filter the app traces an upload with when step 0 is shown (explorer.app.ui's analyse)."""
    from explorer.app import views
    from explorer.app.cache import ENTRY_STAGES

    return sorted(views.stages_of(views.step_views(0)) | ENTRY_STAGES)


def measure_model(preset: str, size: int, args) -> dict:
    """Plain, app-filtered and full traces of one randomly initialised model at `size`, taking turns."""
    import torch

    from explorer import CONFIGS, ViT
    from explorer.trace import trace

    config = CONFIGS[preset].replace(image_size=size)
    torch.manual_seed(0)
    model = ViT(config).eval()
    x = torch.randn(1, config.channels, *config.image_hw, generator=torch.Generator().manual_seed(0))
    names = app_filter()

    def plain():
        with torch.no_grad():
            return model(x)

    forwards = {"plain": plain, "app filter": lambda: trace(model, x, names_filter=names)}
    if args.every_stage:
        forwards["every stage"] = lambda: trace(model, x)
    cpu: dict[str, list[float]] = {}
    times = measure_interleaved(forwards, args.repeats, args.warmup, cpu=cpu)
    reference, cpu_reference = statistics.median(times["plain"]), statistics.median(cpu["plain"])
    result = {"model": preset, "size": size, "tokens": config.seq_len, "filter": names, "seconds": times,
              "cpu_seconds": cpu, "rows": []}
    for name, samples in times.items():
        paired = [s / p for s, p in zip(samples, times["plain"])]
        cpu_ratio = statistics.median(cpu[name]) / cpu_reference
        result["rows"].append({"forward": name, "median_ms": 1000 * statistics.median(samples),
                               "ratio": statistics.median(samples) / reference, "paired_ratio": statistics.median(paired),
                               "cpu_median_ms": 1000 * statistics.median(cpu[name]), "cpu_ratio": cpu_ratio,
                               "status": ("PASS" if cpu_ratio <= TARGET else "MISS") if name == "app filter" else ""})
    del model
    gc.collect()
    return result


COLUMNS = ("model", "input", "T", "forward", "wall ms", "/ plain", "rounds' ratios", "CPU ms", "CPU / plain",
           "target", "result")
RIGHT = {2, 4, 5, 6, 7, 8}


def table_rows(results: list[dict]) -> list[list[str]]:
    body = []
    for result in results:
        if "error" in result:
            body.append([result["model"], str(result["size"]), "", "ERROR", "", "", "", "", "", "", result["error"]])
            continue
        for row in result["rows"]:
            judged = row["forward"] == "app filter"
            body.append([result["model"], f"{result['size']}²", str(result["tokens"]), row["forward"],
                         number(row["median_ms"]), f"{row['ratio']:.3f}", f"{row['paired_ratio']:.3f}",
                         number(row["cpu_median_ms"]), f"{row['cpu_ratio']:.3f}",
                         f"CPU <= {TARGET}" if judged else "", row["status"]])
    return body


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.trace", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=None, metavar="PRESET",
                   help=f"a preset (random weights), repeatable; default: {', '.join(TABLE_1)}")
    p.add_argument("--size", type=int, default=None, help="input side for every model (default: each one's native)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the app's, explorer.app.settings.configure_threads)")
    p.add_argument("--repeats", type=int, default=None, help="rounds of the three forwards (default 7; --quick: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--no-every-stage", dest="every_stage", action="store_false",
                   help="leave out the trace of every stage (a third fewer forwards)")
    p.add_argument("--quick", action="store_true", help="ViT-Tiny-Test/8 only, 3 rounds (the smoke test)")
    p.add_argument("--json", type=Path, default=ROOT / "bench-results" / "trace.json", help="(default: %(default)s)")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown, for docs/")
    args = p.parse_args(argv)
    args.models = args.model or (["ViT-Tiny-Test/8"] if args.quick else list(TABLE_1))
    args.repeats = args.repeats or (3 if args.quick else 7)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from explorer.app.settings import configure_threads

    args.threads = configure_threads(args.threads)  # the app's own choice unless told
    started = time.perf_counter()
    report = start_report("benchmarks.trace", args, {"app filter / plain": f"<= {TARGET}"},
                          busy_seconds=0.5 if args.quick else 2.0)
    results = []
    for preset in args.models:
        size = args.size or native_size(preset)
        print(f"- {preset} at {size}x{size}, {args.threads} thread(s) ...", flush=True)
        try:
            results.append(measure_model(preset, size, args))
        except Exception as error:  # a measurement, not a test: say so in the table and go on
            results.append({"model": preset, "size": size, "error": error_text(error)})
    report["results"] = results
    statuses = [row["status"] for r in results for row in r.get("rows", []) if row["status"]]
    statuses += ["ERROR" for r in results if "error" in r]
    finish_report(report, statuses, started)
    print()
    print(format_table(COLUMNS, table_rows(results), RIGHT))
    machine = report["machine"]
    print(f"\n{statuses.count('PASS')} PASS, {statuses.count('MISS')} MISS, {statuses.count('ERROR')} ERROR. "
          f"Medians of {args.repeats} rounds, {args.threads} torch thread(s).")
    print(f"Machine: {machine_line(machine)}; load average {machine['load_average']} at start, "
          f"{machine['load_average_end']} at the end.")
    for line in report["notes"]:
        print(line)
    if args.markdown:
        print()
        print(format_markdown(COLUMNS, table_rows(results), RIGHT, machine))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    console(main)
