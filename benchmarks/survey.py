"""Survey benchmarks, run from a checkout: `python -m benchmarks.survey` prints the figures.

- throughput: survey images per second on a random-weight Table 1 preset (ViT-B/16 by default) against torchvision's
  model of the same preset and its plain forward, at the same batch, in one process and in several sharing the cores;
- memory: the process's resident memory (VmRSS) during a survey of 10,000 images (Fashion-MNIST's test set) on the
  shipped model, after the first few batches and at the end: a survey's memory must not grow with its images.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from explorer.config import CONFIGS
from explorer.model import ViT
from explorer.survey import parse_args, run_survey, survey_batch
from explorer.weights import PRETRAINED

from .report import memory_status

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "vit_fashion_mnist"


# ---------------------------------------------------------------------------------------------------------------
# Throughput: survey images per second against torchvision's plain forward

def _interleaved_seconds(functions: dict, repeats: int, barrier=None) -> dict[str, list[float]]:
    """Seconds of each call, the functions taking turns (one warm-up each first), so that a change in the machine's
    load during the measurement affects all of them alike. With a barrier, every process starts each call together."""
    times = {name: [] for name in functions}
    for repeat in range(repeats + 1):
        for name, function in functions.items():
            if barrier is not None:
                barrier.wait()
            start = time.perf_counter()
            with torch.inference_mode():
                function()
            if repeat:  # the first round warms up
                times[name].append(time.perf_counter() - start)
            if barrier is not None:
                barrier.wait()
    return times


def _bench_models(name: str, seed: int = 0):
    """A random-weight explorer.ViT of a Table 1 preset and torchvision's model of the same preset."""
    import torchvision

    if name not in PRETRAINED:
        raise ValueError(f"The benchmark compares with torchvision: choose one of {', '.join(PRETRAINED)}.")
    torch.manual_seed(seed)
    ours = ViT(CONFIGS[name]).eval()
    reference = getattr(torchvision.models, PRETRAINED[name][0])().eval()
    return ours, reference


def _bench_functions(name: str, batch_size: int, seed: int) -> dict:
    """torchvision's plain forward and the survey's batch, on the same random input."""
    ours, reference = _bench_models(name)
    height, width = CONFIGS[name].image_hw
    x = torch.randn(batch_size, 3, height, width, generator=torch.Generator().manual_seed(seed))
    return {"torchvision": lambda: reference(x), "survey": lambda: survey_batch(ours, x)}


def _bench_worker(rank: int, name: str, batch_size: int, repeats: int, threads: int, barrier, queue) -> None:
    torch.set_num_threads(threads)
    queue.put((rank, _interleaved_seconds(_bench_functions(name, batch_size, 1 + rank), repeats, barrier)))


def bench(batch_size: int = 32, repeats: int = 2, processes: tuple[int, ...] = (1, 2), threads: int | None = None,
          model: str = "ViT-B/16") -> dict:
    """Survey images per second on a random-weight `model` (explorer.ViT; ViT-B/16 by default) at `batch_size`, against
    torchvision's model of the same preset (vit_b_16()) and its plain forward at the same batch, in one process and in
    several sharing the machine's cores (threads / processes torch threads each, every process on its own batch at
    the same time; a batch's time is the slowest process's). The two are timed in turns, medians of `repeats` after a
    warm-up. The survey's batch is the whole per-image work of a default survey (explicit attention, mean attention
    distance, rollout, top class); faithfulness (--faithfulness K, a fixed number of images) is not in it."""
    import torch.multiprocessing as mp

    threads = threads or torch.get_num_threads()
    rows = []
    for count in processes:
        per_process = max(1, threads // count)
        if count == 1:
            torch.set_num_threads(per_process)
            walls = {name: np.array(seconds) for name, seconds in
                     _interleaved_seconds(_bench_functions(model, batch_size, 1), repeats).items()}
        else:
            context = mp.get_context("spawn")
            barrier, queue = context.Barrier(count), context.Queue()
            workers = [context.Process(target=_bench_worker,
                                       args=(r, model, batch_size, repeats, per_process, barrier, queue))
                       for r in range(count)]
            for w in workers:
                w.start()
            results = [queue.get(timeout=3600) for _ in workers]
            for w in workers:
                w.join()
            # a repeat ends when the slowest process does: the wall time of count batches done at once
            walls = {name: np.max([r[name] for _, r in results], axis=0) for name in ("torchvision", "survey")}
        torchvision_s, survey_s = statistics.median(walls["torchvision"]), statistics.median(walls["survey"])
        best = float(walls["torchvision"].min() / walls["survey"].min())
        images = batch_size * count
        rows.append({"processes": count, "threads_per_process": per_process, "batch_size": batch_size,
                     "torchvision_images_per_s": round(images / torchvision_s, 2),
                     "survey_images_per_s": round(images / survey_s, 2),
                     "ratio": round(torchvision_s / survey_s, 3),  # of the medians
                     "ratio_best": round(best, 3),  # of the fastest repeats: least disturbed by other work
                     "torchvision_s_per_batch": round(torchvision_s, 3), "survey_s_per_batch": round(survey_s, 3)})
    height, width = CONFIGS[model].image_hw
    return {"model": f"{model} (random weights, {height}x{width})", "device": "cpu", "repeats": repeats,
            "target": "survey images/s >= 0.9x torchvision's forward at batch 32", "rows": rows,
            "torch": torch.__version__}


# ---------------------------------------------------------------------------------------------------------------
# Memory: resident memory over a long survey

def resident_mb() -> float:
    """This process's resident memory (VmRSS) in MB; NaN where it can't be read."""
    return memory_status().get("VmRSS", float("nan"))


def memory(n: int = 10_000, batch_size: int = 32, early_batches: int = 5, model: str = str(SHIPPED),
           data: str = "fashion-mnist", data_idx: str | None = None, threads: int | None = None) -> dict:
    """VmRSS of this process during a survey of the first `n` images of `data` on `model` (a default survey otherwise:
    faithfulness for the first 16 images): after `early_batches` batches, after the last batch, and once the outputs
    (figures, report) are written. The survey's memory should not grow with its images: the last batch's figure within
    10% of the early one."""
    samples = []  # (images done, VmRSS MB) after every batch

    def after_batch(records: list[dict]) -> None:
        samples.append(((samples[-1][0] if samples else 0) + len(records), resident_mb()))

    with tempfile.TemporaryDirectory() as out:
        argv = ["--model", model, "--data", data, "-n", str(n), "--batch-size", str(batch_size), "--out", out,
                "--device", "cpu"] + (["--data-idx", data_idx] if data_idx else [])
        argv += ["--threads", str(threads)] if threads else []
        start = time.time()
        run_survey(parse_args(argv), argv, after_batch)
        seconds = time.time() - start
        written_mb = resident_mb()
    early_images, early_mb = samples[min(early_batches, len(samples)) - 1]
    images, end_mb = samples[-1]
    growth = end_mb / early_mb - 1
    return {"model": model, "data": data, "images": images, "batch_size": batch_size, "seconds": round(seconds, 1),
            "early": {"images": early_images, "rss_mb": round(early_mb, 1)},
            "end": {"images": images, "rss_mb": round(end_mb, 1)},
            "after_outputs_rss_mb": round(written_mb, 1), "growth": round(growth, 4),
            "within_10_percent": growth <= 0.10,
            "peak_rss_mb": round(max(mb for _, mb in samples), 1)}


# ---------------------------------------------------------------------------------------------------------------
# Command line

def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.survey", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("throughput", "memory"), default=None, help="run one of the two (default both)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2, help="throughput: timed repeats after a warm-up")
    p.add_argument("--model", default="ViT-B/16", choices=sorted(PRETRAINED), help="throughput: the preset measured")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="throughput: process counts")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (throughput: in all)")
    p.add_argument("--images", type=int, default=10_000, help="memory: images surveyed")
    p.add_argument("--data-idx", default=None, help="memory: Fashion-MNIST's IDX files (default: the Debian package's)")
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args(argv)
    result = {}
    if args.only in (None, "throughput"):
        result["throughput"] = bench(args.batch_size, args.repeats, tuple(args.processes), args.threads, args.model)
        for row in result["throughput"]["rows"]:
            print(f"throughput, {row['processes']} process(es) x {row['threads_per_process']} threads, batch "
                  f"{row['batch_size']}: torchvision {row['torchvision_images_per_s']:.2f} img/s, survey "
                  f"{row['survey_images_per_s']:.2f} img/s, ratio {row['ratio']:.3f} (medians; {row['ratio_best']:.3f} "
                  f"of the fastest repeats)", flush=True)
    if args.only in (None, "memory"):
        m = result["memory"] = memory(args.images, args.batch_size, data_idx=args.data_idx, threads=args.threads)
        print(f"memory, survey of {m['images']:,} images ({m['seconds']:.0f} s): VmRSS {m['early']['rss_mb']:.1f} MB "
              f"after {m['early']['images']} images, {m['end']['rss_mb']:.1f} MB after the last batch "
              f"({m['growth']:+.1%}: {'within' if m['within_10_percent'] else 'NOT within'} 10%), peak "
              f"{m['peak_rss_mb']:.1f} MB; {m['after_outputs_rss_mb']:.1f} MB once figures and report were written",
              flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
