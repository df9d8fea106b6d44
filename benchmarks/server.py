"""python -m benchmarks.server: what seeing every stage costs on the server, measured against torchvision's plain forward.

The question (issue 6): the first view should appear about as fast as torchvision alone classifies the image, and
every control change should feel instant. So, in one run on one machine, for ViT-B/16 (random weights: timing does
not depend on them) and for the shipped model (checkpoints/vit_fashion_mnist):

    forward      torchvision's VisionTransformer (eval, no_grad, batch 1) — the reference every ratio divides by;
                 our plain forward (the same weights, via from_torchvision); our traced forward (explorer.trace);
                 torchvision "classify an image file" (open + its own preprocessing + forward), for context
    analysis     every function of explorer.analysis, on the cached trace
    upload       image file -> first step on screen: the app's own `analyse` event handler (open, preprocess, trace,
                 draw step 0 and the patch picker) plus Gradio's own postprocessing of its outputs (figures to JSON,
                 images to files), as the server does before it answers
    step         clicking a step's tab the first time after an upload (the app's `step_n` handlers)
    figure       each view of each step on its own (views.render_views + Gradio postprocessing), to see what a
                 step's time is made of
    control      a control change (layer, head, clicked patch, class token, feature-map indices, rollout options,
                 LayerNorm layer): the app's handler for it, redrawn from the cached trace, with a value not seen
                 before (derived views memoised for other values are kept, as in a real session). Views of the
                 weights alone (Fig. 7 left and centre) are memoised once per model, so they are measured warm here;
                 their cold cost is in the analysis rows
    startup      `python app.py` (EXPLORER_OFFLINE=1, a free port on 127.0.0.1) -> first HTTP 200 on "/", beside a
                 bare Gradio Blocks app started the same way (alternately; target: <= 1.5x its time);
                 -> the default model loaded (the /stats API); the app process's peak RSS by then
    memory       peak RSS of a fresh process that imports the app, loads the model and caches one trace (ViT-B/16:
                 target <= 1.5 GB)

Each row gives the median and 90th percentile over --repeats runs after warm-up runs, the ratio of the median to
torchvision's forward of the same model on the same device, and PASS/MISS against the targets (benchmarks/timing.py).
Absolute times depend on the machine; the ratios are what to compare. torch's default thread count is used, and
reported.

    python -m benchmarks.server                          # ViT-B/16 and the shipped model, CPU (and CUDA if present)
    python -m benchmarks.server --markdown               # also a Markdown table for docs/
    python -m benchmarks.server --from-json bench-results/bench.json --markdown   # print a past run's tables again
    python -m benchmarks.server --checkpoint /tmp/x/vit_fashion_mnist --repeats 30 --json bench-results/run.json
    python -m benchmarks.server --model ViT-Tiny-Test/8 --quick   # seconds: the smoke test's settings

This is a measurement, not a test: it exits 0 whether targets are met or missed (tests/test_bench.py only checks
that it runs and reports every row).
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .app_driver import AppDriver, default_state
from .app_process import AppProcess, app_env
from .computation import analysis_not_measured, bench_analysis, bench_forward
from .handlers import bench_steps, bench_upload
from .models import (ROOT, SHIPPED, command_line, build_subject, prepare_checkpoints, prepare_photo,
                     session_model)
from .report import (console, error_text, finish_report, format_markdown, format_table, machine_line, memory_status,
                     number, peak_rss_mb, start_report, write_json)
from .timing import TARGETS, Recorder, Row, judge

DEFAULT_MODELS = ("ViT-B/16", SHIPPED)


# ---------------------------------------------------------------------------------------------------------------
# One model on one device, in this process

def measure_model(subject, device: str, args, checkpoint_dir: Path, photo: Path | None) -> list[Row]:
    """Forward, upload, steps, controls, figures and analysis of `subject` on `device`, in a fresh app session;
    ratios to torchvision's forward of the same model and device."""
    import torch

    from explorer.images import open_image

    x = subject.preprocessing(open_image(args.image).image)  # (1, C, H, W)
    record = Recorder(subject.name, device, args.repeats, args.warmup)
    record.rows += bench_forward(subject, x, device, args.repeats, args.warmup, args.image)
    driver = AppDriver.start(checkpoint_dir, device)
    session = driver.session
    load_start = time.perf_counter()
    session.registry.get(subject.session_model)
    record.rows.append(Row("load.model", "model loaded by the session (once per process)", subject.name,
                           device, "ms", [1000 * (time.perf_counter() - load_start)]))
    print("  upload, steps, controls, figures, analysis ...", flush=True)
    bench_upload(record, driver, subject, args.image, "upload.first_step",
                 f"upload -> step 0 on screen ({args.image.name})", breakdown=True)
    if photo is not None:
        bench_upload(record, driver, subject, photo, "upload.first_step_12mp",
                     "upload -> step 0 on screen (12-megapixel JPEG)")
    try:
        entry = bench_steps(record, driver, subject, args.image)
    except Exception as error:  # the app changed under the benchmark: say so in the table, go on
        record.rows.append(Row("steps", "steps and controls (stopped early)", subject.name, device, "ms",
                               error=error_text(error)))
        entry = session.entry(session.cache.keys()[-1]) if len(session.cache) else None
    if entry is not None:
        bench_analysis(record, subject, entry)
    reference = next(r.median for r in record.rows if r.id == "forward.torchvision")
    for row in record.rows:
        if row.unit == "ms" and row.samples and row.id != "load.model":
            row.ratio = row.median / reference
    driver.close()
    del session, driver, entry
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return record.rows


# ---------------------------------------------------------------------------------------------------------------
# Processes: cold start and memory

def cold_start(checkpoint_dir: Path | None, temp: Path, bare: bool = False) -> dict:
    """Start `python app.py` on a free port; seconds to the first HTTP 200 and to the default model being loaded,
    and the process's memory then. bare=True: the same for a bare Gradio app (HTTP 200 only)."""
    with AppProcess(checkpoint_dir, temp, timeout=180.0, bare=bare) as app:
        result = {"port": app.port, "http_200_s": app.started_s}
        loaded = None if bare else app.seconds_to_model_loaded()
        if loaded is not None:
            result["model_loaded_s"] = loaded
        result.update({f"app_{k}_mb": v for k, v in memory_status(app.process.pid).items()})
    return result


def memory_child(model: str, checkpoint: Path, device: str, image: Path) -> dict:
    """In a fresh process: import the app, load `model`, upload one image (trace cached, step 0 drawn): peak RSS."""
    import torch

    import explorer.app.ui  # noqa: F401 (the app imported: the baseline)

    with tempfile.TemporaryDirectory(prefix="explorer-bench-") as folder:
        temp = Path(folder)
        checkpoint_dir = prepare_checkpoints([model], checkpoint, temp / "checkpoints")
        os.environ.setdefault("GRADIO_TEMP_DIR", str(temp / "gradio"))  # where Gradio writes what it serves
        baseline = memory_status().get("VmRSS")
        driver = AppDriver.start(checkpoint_dir, device)
        session = driver.session
        session.registry.get(session_model(model, checkpoint))
        driver.state = default_state(driver, session_model(model, checkpoint), str(image))
        driver.call("analyse")
        out = {"baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(), "rss_mb": memory_status().get("VmRSS"),
               "trace_cache_mb": session.cache.nbytes() / 1e6, "cache_entries": len(session.cache)}
        if device.startswith("cuda"):
            out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 1e6
        driver.close()
        return out


def measure_memory(model: str, checkpoint: Path, device: str, image: Path, temp: Path) -> dict:
    """Run memory_child in a fresh interpreter (so nothing this process did counts) and read its JSON line."""
    command = [sys.executable, "-m", "benchmarks.server", "--memory-child", "--model", model, "--checkpoint",
               str(checkpoint), "--device", device, "--image", str(image)]
    done = subprocess.run(command, cwd=ROOT, env=app_env(None, temp), capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the memory subprocess failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


def measure_processes(args, models: list[str], device_list: list[str], checkpoint_dir: Path, temp: Path,
                      report: dict) -> list[Row]:
    """The app's cold start beside a bare Gradio app's, alternately, and each model's peak RSS in a fresh process."""
    import torch

    print(f"- cold start x{args.cold_starts}, each beside a bare Gradio app ...", flush=True)
    bare, starts = [], []
    for _ in range(args.cold_starts):  # alternately, so that both see the same machine
        bare.append(cold_start(None, temp, bare=True))
        starts.append(cold_start(checkpoint_dir, temp))
    report["cold_starts"], report["bare_gradio_starts"] = starts, bare
    app_device = "cuda" if torch.cuda.is_available() else "cpu"  # the app's own choice (session.default_device)
    bare_row = Row("startup.bare_gradio", "cold start: a bare Gradio Blocks app -> HTTP 200", "gradio", "cpu",
                   "s", [s["http_200_s"] for s in bare])
    app_row = Row("startup.http_200", "cold start: python app.py -> HTTP 200", "app", app_device, "s",
                  [s["http_200_s"] for s in starts], note=f"checkpoints: {', '.join(models)}; ratio: to the bare "
                                                         f"Gradio app's median")
    app_row.ratio = app_row.median / bare_row.median
    rows = [bare_row, app_row]
    loaded = [s["model_loaded_s"] for s in starts if "model_loaded_s" in s]
    if loaded:
        rows.append(Row("startup.model_loaded", "cold start -> default model loaded (/stats)", "app", app_device,
                        "s", loaded))
    peaks = [s["app_VmHWM_mb"] for s in starts if "app_VmHWM_mb" in s]
    if peaks:
        rows.append(Row("memory.app_started", "app process peak RSS: default model loaded, no trace", "app",
                        app_device, "MB", peaks))
    for name in models:
        for device in device_list:
            print(f"- memory: {name} on {device} ...", flush=True)
            memory = measure_memory(name, args.checkpoint, device, args.image, temp)
            model_name = next(m for m, info in report["models"].items()
                              if info["session_model"] == session_model(name, args.checkpoint))
            rows.append(Row("memory.peak_rss", "peak RSS: app imported, model loaded, 1 trace cached",
                            model_name, device, "MB", [memory["peak_rss_mb"]],
                            note=f"trace cache {memory['trace_cache_mb']:.0f} MB; RSS after imports "
                                 f"{memory['baseline_rss_mb']:.0f} MB"))
            report.setdefault("memory", {})[f"{model_name} on {device}"] = memory
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Output

COLUMNS = ("model", "device", "measurement", "median", "p90", "unit", "n", "x tv forward", "target", "result")
RIGHT = {3, 4, 6, 7}
SUMMARY_GROUPS = ("forward.", "load.", "upload.", "breakdown.", "step.", "control.", "startup.", "memory.")


def table_rows(rows: list[Row]) -> list[list[str]]:
    return [[r.model, r.device, r.label, number(r.median), number(r.p90), r.unit, str(len(r.samples)),
             "—" if r.ratio is None else f"{r.ratio:.2f}x", r.target or "", r.status or ""] for r in rows]


def text_table(rows: list[Row]) -> str:
    return format_table(COLUMNS, table_rows(rows), RIGHT)


def markdown_table(rows: list[Row], machine: dict | None = None) -> str:
    """For docs/: the rows with targets and what explains them (figure and analysis rows are left to the JSON
    file), then the machine in one line."""
    return format_markdown(COLUMNS, table_rows([r for r in rows if r.id.startswith(SUMMARY_GROUPS)]), RIGHT, machine)


def rows_from_json(report: dict) -> list[Row]:
    """The rows of a report written by --json (to print its tables again without measuring)."""
    fields = {f.name for f in dataclasses.fields(Row)}
    return [Row(**{k: v for k, v in row.items() if k in fields}) for row in report["rows"]]


# ---------------------------------------------------------------------------------------------------------------
# Main

def parse_args(argv=None) -> argparse.Namespace:
    p = command_line("benchmarks.server", __doc__, f"a preset (random weights) or {SHIPPED!r} (the --checkpoint); "
                     f"repeatable; default: {' and '.join(DEFAULT_MODELS)}. ViT-Tiny-Test/8 makes a run take seconds "
                     f"(the smoke test)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 20; --quick: 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before each row (default 2; --quick: 0)")
    p.add_argument("--cold-starts", type=int, default=None, help="app starts to time (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="few repeats, no 12-megapixel upload (for the smoke test)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CPU, and CUDA too when torch.cuda.is_available() (default)")
    p.add_argument("--skip-cold-start", action="store_true", help="skip the app start and the memory subprocess")
    p.add_argument("--json", type=Path, default=ROOT / "bench-results" / "bench.json", help="(default: %(default)s)")
    p.add_argument("--markdown", action="store_true",
                   help="also print the rows with targets (and what explains them) as a Markdown table, for docs/")
    p.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                   help="measure nothing: print the tables of a report written earlier by --json")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.models = args.model or list(DEFAULT_MODELS)
    args.repeats = args.repeats or (3 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 2)
    args.cold_starts = args.cold_starts or (1 if args.quick else 3)
    return args


def devices(choice: str) -> tuple[list[str], list[str]]:
    """(devices to measure, notes on skipped ones)."""
    import torch

    cuda = torch.cuda.is_available()
    if choice == "cpu":
        return ["cpu"], []
    if choice == "cuda":
        return (["cuda"], []) if cuda else ([], ["CUDA is not available here: the CUDA measurements were skipped."])
    return (["cpu", "cuda"], []) if cuda else (["cpu"], ["No CUDA device here: CUDA measurements skipped."])


def run(args: argparse.Namespace) -> tuple[dict, list[Row]]:
    """Every model on every device in this process, then the cold starts and memory in processes of their own."""
    started = time.perf_counter()
    report = start_report("benchmarks.server", args, {k: v[2] for k, v in TARGETS.items()}, busy_seconds=2.0)
    device_list, skipped = devices(args.device)
    report["skipped"] += skipped
    models = list(args.models)
    if SHIPPED in models and not Path(str(args.checkpoint) + ".json").is_file():
        models.remove(SHIPPED)
        report["skipped"].append(f"No checkpoint at {args.checkpoint}(.json/.safetensors): the shipped model was "
                                 f"skipped; pass --checkpoint.")
    if analysis_not_measured():
        report["notes"].append(f"explorer.analysis functions not timed: {', '.join(analysis_not_measured())}.")

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="explorer-bench-") as folder:
        temp = Path(folder)
        checkpoint_dir = prepare_checkpoints(models, args.checkpoint, temp / "checkpoints")
        os.environ.setdefault("GRADIO_TEMP_DIR", str(temp / "gradio"))  # where Gradio writes what it serves
        photo = None if args.quick else prepare_photo(temp)
        for name in models:
            subject = build_subject(name, args.checkpoint, checkpoint_dir)
            report["models"][subject.name] = {"config": subject.ours.config.to_dict(),
                                              "parameters": subject.ours.num_parameters(),
                                              "session_model": subject.session_model}
            for device in device_list:
                phase = time.perf_counter()
                print(f"- {subject.name} on {device}: forward ...", flush=True)
                rows += measure_model(subject, device, args, checkpoint_dir, photo)
                print(f"  done in {time.perf_counter() - phase:.0f} s", flush=True)
            del subject
            gc.collect()
        if args.skip_cold_start:
            report["skipped"].append("Cold start and the memory subprocess were skipped (--skip-cold-start).")
        else:
            rows += measure_processes(args, models, device_list, checkpoint_dir, temp, report)

    for row in rows:
        judge(row)
    report["rows"] = [r.to_dict() for r in rows]
    finish_report(report, [r.status for r in rows], started,
                  misses=[f"{r.model} {r.device} {r.id}" for r in rows if r.status in ("MISS", "ERROR")])
    return report, rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.models[0], args.checkpoint, args.device, args.image)))
        return 0
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        rows = rows_from_json(report)
        print(text_table(rows))
        if args.markdown:
            print()
            print(markdown_table(rows, report["machine"]))
        return 0
    report, rows = run(args)
    print()
    print(text_table(rows))
    summary, machine = report["summary"], report["machine"]
    print(f"\n{summary['pass']} PASS, {summary['miss']} MISS, {summary['error']} ERROR"
          + (f": {'; '.join(summary['misses'])}" if summary["misses"] else "")
          + f". Medians of {args.repeats} runs; ratios to torchvision's forward of the same model and device.")
    print(f"Machine: {machine_line(machine)}; load average {machine['load_average']} at start, "
          f"{machine['load_average_end']} at the end.")
    for row in rows:
        if row.error:
            print(f"ERROR {row.model} {row.device} {row.id}: {row.error}")
    for line in report["skipped"] + report["notes"]:
        print(line)
    if args.markdown:
        print()
        print(markdown_table(rows, machine))
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    console(main)
