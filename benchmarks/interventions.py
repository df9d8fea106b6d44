"""What the interventions of explorer.interventions cost, in plain forwards of the same model (issue 25): one head
switched off, every head's importance, one stage patched from another image.

    python -m benchmarks.interventions --threads 2                     # ViT-B/16 at random init, one image
    python -m benchmarks.interventions --quick                         # the tiny preset: a smoke test

Targets (issue 25, ViT-B/16): one ablation <= 1.1 forwards; head_importance for all 144 heads <= 80 forwards' worth.
Each call takes turns with the plain forward (timing.measure_interleaved), so that other work on the machine slows
both alike; a row's ratio is its median over the forward's median. Weights do not change the times, so the model is
built at random init (no download).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from .report import format_markdown, format_table, load_average, machine_info, machine_line, number
from .timing import measure_interleaved

TARGETS = {"ablate_heads.zero": 1.1, "head_importance": 80.0}  # in forwards of the same model


def bench(model_name: str = "ViT-B/16", repeats: int = 5, slow_repeats: int = 3, warmup: int = 1,
          cpu_time: bool = False) -> list[dict]:
    """The rows: each call's median seconds (wall, or this process's CPU seconds) and its ratio to a plain forward of
    one image."""
    import torch

    from explorer.analysis import ablate_heads, head_importance, patch_activations
    from explorer.config import CONFIGS
    from explorer.model import ViT

    torch.manual_seed(0)
    model = ViT(CONFIGS[model_name]).eval()
    config = model.config
    L, h = config.depth, config.heads
    x, source = torch.randn(2, config.channels, *config.image_hw).chunk(2)  # (1, C, H, W) each

    def forward():
        with torch.no_grad():
            return model(x)

    fast = {
        "forward": forward,
        "ablate_heads.zero": lambda: ablate_heads(model, x, [(1, 0)]),
        "ablate_heads.mean": lambda: ablate_heads(model, x, [(1, 0)], how="mean"),
        "patch_activations": lambda: patch_activations(model, x, source, f"blocks.{L}.attn.output", [0]),
    }
    clock = time.process_time if cpu_time else time.perf_counter
    times = measure_interleaved(fast, repeats, warmup, clock=clock)
    slow = measure_interleaved({"forward": forward, "head_importance": lambda: head_importance(model, x)},
                               slow_repeats, min(warmup, 1), clock=clock)
    labels = {
        "forward": "plain forward, one image (the scale)",
        "ablate_heads.zero": "ablate_heads: head 0 of layer 1 off (zero), every layer after it re-run",
        "ablate_heads.mean": "ablate_heads: the same head replaced by its mean over the tokens",
        "patch_activations": f"patch_activations: blocks.{L}.attn.output's class token from another image (the "
                             f"source's run up to layer {L}, then x's)",
        "head_importance": f"head_importance: all {L * h} heads (clean forward + backward, then {h} ablations a "
                           f"layer in one batch from layer l on)",
    }
    rows = []
    for name, samples, reference in [*((n, s, times["forward"]) for n, s in times.items()),
                                     ("head_importance", slow["head_importance"], slow["forward"])]:
        seconds = statistics.median(samples)
        ratio = seconds / statistics.median(reference)
        target = TARGETS.get(name)
        rows.append({"id": name, "label": labels[name], "model": model_name, "seconds": round(seconds, 4),
                     "forwards": round(ratio, 2), "target_forwards": target,
                     "status": "" if target is None else ("PASS" if ratio <= target else "MISS"),
                     "samples_s": [round(t, 4) for t in samples],
                     "forward_samples_s": [round(t, 4) for t in reference]})
    return rows


def table(rows: list[dict], markdown: bool = False, machine: dict | None = None) -> str:
    columns = ("measurement", "ms", "forwards", "target", "status")
    body = [[r["label"], number(r["seconds"] * 1000), f"{r['forwards']:.2f}",
             "" if r["target_forwards"] is None else f"<= {r['target_forwards']:g}", r["status"]] for r in rows]
    return format_markdown(columns, body, {1, 2}, machine) if markdown else format_table(columns, body, {1, 2})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B/16", help="a preset of explorer.config.CONFIGS")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of the fast rows (3 at most of the slow)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time this process's CPU seconds, not wall time: with --threads 1, the cost of the work "
                             "itself on a machine that other jobs load")
    parser.add_argument("--quick", action="store_true", help="the tiny preset, 2 repeats: a smoke test")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model = "ViT-Tiny-Test/8" if args.quick else args.model
    repeats = 2 if args.quick else args.repeats
    machine = machine_info()
    clock = "CPU seconds of this process" if args.cpu_time else "wall time"
    print(f"{model}, {torch.get_num_threads()} torch threads, {clock}, load average {load_average()}", flush=True)
    started = time.perf_counter()
    rows = bench(model, repeats, min(3, repeats), cpu_time=args.cpu_time)
    print(table(rows))
    print(f"\n{table(rows, markdown=True, machine=machine)}")
    if args.json is not None:
        args.json.write_text(json.dumps({"model": model, "clock": clock, "machine": machine, "rows": rows,
                                         "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
    print(f"\n{machine_line(machine)}")
    return 1 if any(r["status"] == "MISS" for r in rows) and not args.quick else 0


if __name__ == "__main__":
    from .report import console

    console(main)
