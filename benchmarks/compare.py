"""Compare and heads off in the app, timed in-process (issue 25): each step drawn for image A, for image B, and for A
with the compare panel of B, both already traced (the trace cache serves both); and a click that switches a head off
(its traced run, then step 2 drawn from it), in forwards of the model.

    python -m benchmarks.compare --model "ViT-B/16 · random init" --threads 2

Target (issue 25): a compare view no slower than the two images alone, step by step (A + panel <= A + B).
Times are one process's on this machine (its load is printed); weights do not change them, so the default model is
torchvision's ViT-B/16 at random init (no download).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESOLUTION = 0.002  # seconds: what is drawn from memos alone (steps 0 and 4) takes microseconds, below the clock's noise


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B/16 · random init", help="a model name of the app's menu")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the issue's figures: 2 cores)")
    parser.add_argument("--repeats", type=int, default=5, help="times each row is drawn (the median is reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    os.environ.setdefault("EXPLORER_OFFLINE", "1")

    import torch

    torch.set_num_threads(args.threads)
    from explorer.app import ablation, views
    from explorer.app.server import Server
    from explorer.app.views import compare

    from .report import load_average

    print(f"model {args.model}, {args.threads} torch threads, load average {load_average()}")
    server = Server(device="cpu")
    label = server.registry.resolve(args.model).label
    a = server.analyse(str(REPO / "assets" / "cat_chelsea.jpg"), label)
    b = server.analyse(str(REPO / "assets" / "coffee.jpg"), label)
    options = views.Options()
    rows, statuses = {}, []
    for step in range(6):
        names = views.step_views(step)
        for entry in (a, b):  # the first drawing of each fills its memo: timed below as a visitor's second look
            views.render_views(entry, names, options)
        compare.compare_step(step, a, b, options, views.render_views)
        alone_a = _median_seconds(lambda: views.render_views(a, names, options), args.repeats)
        alone_b = _median_seconds(lambda: views.render_views(b, names, options), args.repeats)
        both = _median_seconds(lambda: (views.render_views(a, names, options),
                                        compare.compare_step(step, a, b, options, views.render_views)), args.repeats)
        status = "PASS" if both <= alone_a + alone_b + RESOLUTION else "MISS"
        statuses.append(status)
        rows[f"compare.step{step}"] = {"a_s": round(alone_a, 4), "b_s": round(alone_b, 4), "a_with_panel_s": round(both, 4),
                                       "status": status}
        print(f"step {step}: A {alone_a * 1e3:8.2f} ms, B {alone_b * 1e3:8.2f} ms, A with B's panel "
              f"{both * 1e3:8.2f} ms  {status}")
    model = server.registry.get(label).model
    x = a.trace["input.pixels"].unsqueeze(0)  # (1, C, H, W)
    with torch.no_grad():
        model(x)
        forward = _median_seconds(lambda: model(x), args.repeats)
    heads = [(a.config.depth // 2, 0)]
    start = time.perf_counter()
    off = ablation.ablated_entry(server, a, heads)
    traced = time.perf_counter() - start
    start = time.perf_counter()
    views.render_views(off, views.step_views(2), options)
    drawn = time.perf_counter() - start
    rows["heads_off.click"] = {"forward_s": round(forward, 4), "traced_s": round(traced, 4), "step2_s": round(drawn, 4)}
    print(f"a head switched off: its traced run {traced * 1e3:.0f} ms = {traced / forward:.2f} forwards "
          f"({forward * 1e3:.0f} ms each), step 2 drawn from it {drawn * 1e3:.0f} ms")
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "threads": args.threads, "rows": rows}, indent=1))
    print(f"{statuses.count('PASS')} of {len(statuses)} steps no slower with the compare panel")
    return rows


if __name__ == "__main__":
    main()
