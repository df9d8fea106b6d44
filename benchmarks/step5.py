"""Step 5's slow work, timed as a visitor and a notebook meet it (issue 26): how long after a click the relevance and
Grad-CAM maps are on their way (the views of step 5 drawn, the faithfulness curves shown as pending), how long the
curves then take (the event that follows, with its progress bar), how soon a newer request stops them, and
`explorer.explain.faithfulness(model, x)` with its defaults in a notebook.

    python -m benchmarks.step5 --model "ViT-B/16 · random init" --threads 2

Targets (issue 26): the maps within 3 s of the click; the notebook's defaults within 60 s. Times are those of one
process on this machine (its load is printed: the cores may be shared); weights do not change them, so the default
model is torchvision's ViT-B/16 at random init (no download).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

TARGETS = {"step5.maps": 3.0, "notebook.faithfulness": 60.0}  # seconds


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ViT-B/16 · random init", help="a model name explorer.load accepts")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the issue's figures: 2 cores)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    os.environ.setdefault("EXPLORER_OFFLINE", "1")

    import numpy as np
    import torch
    from PIL import Image

    torch.set_num_threads(args.threads)
    from explorer import explain
    from explorer.app import views
    from explorer.app.server import Server

    from .report import load_average

    rows = {}

    def row(name: str, seconds: float, note: str = "") -> None:
        target = TARGETS.get(name)
        verdict = "" if target is None else (" (target <= %g s: %s)" % (target, "met" if seconds <= target else "MISSED"))
        rows[name] = {"seconds": round(seconds, 3), "target_s": target, "note": note}
        print(f"{name:28s} {seconds:8.2f} s{verdict}  {note}")

    print(f"model {args.model}, {args.threads} torch threads, load average {load_average()}")
    server = Server(device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo.png"
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), "RGB").save(path)
        entry = server.analyse(str(path), server.registry.resolve(args.model).label)
    names = views.step_views(5)

    def class_change(target: int) -> tuple[float, float, float]:
        """(maps drawn, curves drawn after them, curves stopped by a newer request) in seconds, for a new class."""
        options = views.Options(target=str(target))
        start = time.perf_counter()
        views.render_views(entry, names, options)  # what the click's event sends: maps, the curves pending
        maps = time.perf_counter() - start
        start = time.perf_counter()
        views.draw_slow(entry, "why.faithfulness", options, lambda done, total: None)  # the event that follows
        curves = time.perf_counter() - start

        class Newer(Exception):
            pass

        def superseded(done, total):
            raise Newer
        other = views.Options(target=str(target + 1))
        views.render_views(entry, names, other)
        start = time.perf_counter()
        try:
            views.draw_slow(entry, "why.faithfulness", other, superseded)
        except Newer:
            pass
        return maps, curves, time.perf_counter() - start

    model = server.registry.get(entry.spec.label).model
    x = entry.trace["input.pixels"].unsqueeze(0)  # (1, C, H, W)
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        model(x)
    forward = time.perf_counter() - start
    row("model.forward", forward, "one plain forward, for scale: the times below are also given in forwards")

    def in_forwards(seconds: float) -> str:
        return f"= {seconds / forward:.1f} forwards; "

    order = np.argsort(-entry.trace.probabilities.numpy(), kind="stable")
    maps, curves, stopped = class_change(int(order[0]))
    row("step5.maps", maps, in_forwards(maps) + "relevance + Grad-CAM (one forward + backward), step 5 drawn, "
        "curves pending")
    row("step5.faithfulness", curves, in_forwards(curves) + "the curves' event after the maps, progress per forward")
    row("step5.stopped", stopped, in_forwards(stopped) + "a newer class: the curves stop after their first forward")
    maps, _, _ = class_change(int(order[2]))
    row("step5.maps.another_class", maps, in_forwards(maps) + "the class picker: a new class's maps")

    start = time.perf_counter()
    result = explain.faithfulness(model, x)  # a notebook's call: defaults, tqdm bar
    seconds = time.perf_counter() - start
    row("notebook.faithfulness", seconds, in_forwards(seconds) + f"explain.faithfulness(model, x): "
        f"{len(result.deletion['random'].counts)} points a curve, maps included")
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "threads": args.threads, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
