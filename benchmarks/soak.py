"""Memory over a long run: many distinct images sent to the running app on 127.0.0.1, and its resident memory (from
/stats) once the trace cache is full against at the end; PASS when it grew by at most 5%.

    python -m benchmarks.soak                  # the three rows below, each on a fresh app process
    python -m benchmarks.soak --scale 0.1      # a tenth of each count, for a quick look
    python -m benchmarks.soak --rows b16       # one row

Rows: 1,000 images through /predict on the shipped model; 200 on ViT-B/16 (random init: the shapes, and so the
memory, are a trained B/16's); 50 through /analyse with step 5 opened (its explanations run the model forward and
backward again; with a cache of 10 entries, so that most of them come after it is full). Two visitors at a time, each
with its own images. Otherwise the cache is the app's default (40 entries, 512 MB).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from explorer.app.registry import untrained_label
from explorer.app.settings import free_port

ROOT = Path(__file__).resolve().parent.parent
GROWTH = 0.05  # the most RSS may grow from a full cache to the end
SHIPPED = "ViT-Fashion/4 · vit_fashion_mnist"  # checkpoints/vit_fashion_mnist, as the menu names it


@dataclass(frozen=True)
class Row:
    name: str
    model: str  # a name the /predict API resolves
    images: int
    steps: tuple[int, ...] = ()  # steps opened after /analyse; none: /predict alone
    size: tuple[int, int] = (96, 96)  # (width, height) of the images sent
    env: tuple[tuple[str, str], ...] = ()  # the app's environment beside the defaults
    every: int = 10  # images between two readings of /stats


ROWS = (
    Row("shipped", SHIPPED, 1000),
    Row("b16", untrained_label("ViT-B/16"), 200, size=(320, 240)),
    # 50 images are few beside the default 40 entries: a cache of 10 is full after a fifth of them.
    Row("step5", SHIPPED, 50, steps=(5,), env=(("EXPLORER_TRACE_CACHE_ENTRIES", "10"),), every=5),
)


@dataclass
class Soak:
    """What one run measured: RSS in bytes from /stats after the first eviction ("full") and at the end."""

    images: int
    rss_full: int
    rss_end: int
    rss_peak: int
    cache_bytes: int
    evictions: int
    seconds: float
    readings: list[tuple[int, int]]  # (images sent, RSS) at each reading of /stats

    @property
    def growth(self) -> float:
        return self.rss_end / self.rss_full - 1

    @property
    def passed(self) -> bool:
        return self.growth <= GROWTH


def write_images(folder: Path, count: int, size=(96, 96), seed: int = 0) -> list[Path]:
    """`count` distinct PNGs of random pixels (no two traces share a key)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"image_{seed}_{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def soak(url: str, model: str, images: list[Path], steps=(), visitors: int = 2, every: int = 10) -> Soak:
    """Send each image once (/predict, or /analyse then each of `steps`) from `visitors` gradio_client sessions at a
    time, reading /stats after every `every` images."""
    from gradio_client import Client, handle_file

    from explorer.app import ui, views

    local = threading.local()
    folder = tempfile.TemporaryDirectory(prefix="soak_downloads_")  # what the clients download (nothing, here)
    downloads = folder.name
    defaults = views.Options()
    # A step's event takes the options its views read, the visitor's State excepted (ui.reads, as tests/test_app.py).
    sent = {step: [getattr(defaults, name) for name in ui.reads(views.step_views(step)) if name not in ui.STATES]
            for step in steps}

    def client() -> Client:
        if not hasattr(local, "client"):
            local.client = Client(url, verbose=False, download_files=downloads)
        return local.client

    def send(path: Path) -> None:
        if not steps:
            client().predict(handle_file(str(path)), model, 5, api_name="/predict")
            return
        client().predict(handle_file(str(path)), model, api_name="/analyse")
        for step in steps:
            client().predict(*sent[step], api_name=f"/step_{step}")

    probe = Client(url, verbose=False, download_files=downloads)
    full, readings = None, []
    start = time.perf_counter()
    with ThreadPoolExecutor(visitors) as pool:
        for first in range(0, len(images), every):
            list(pool.map(send, images[first:first + every]))
            stats = probe.predict(api_name="/stats")
            readings.append((first + len(images[first:first + every]), stats["rss_bytes"]))
            if full is None and stats["cache_evictions"] > 0:
                full = stats["rss_bytes"]
    folder.cleanup()
    return Soak(len(images), full or stats["rss_bytes"], stats["rss_bytes"], max(r for _, r in readings),
                stats["cache_bytes"], stats["cache_evictions"], time.perf_counter() - start, readings)


class App:
    """`python app.py` on a free port of 127.0.0.1, offline, Gradio's files in `temp`; stopped on exit."""

    def __init__(self, temp: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env = dict(os.environ, EXPLORER_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                        HF_HUB_DISABLE_TELEMETRY="1", GRADIO_TEMP_DIR=str(temp / "gradio"), PYTHONPATH=str(ROOT),
                        **(env or {}))
        self.log = temp / f"app_{self.port}.log"

    def __enter__(self) -> "App":
        command = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(self.url, timeout=2):
                    return self
            except OSError:
                time.sleep(0.25)
        self.__exit__()
        raise RuntimeError(f"the app did not start; its log: {self.log}")

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply each row's image count (default 1)")
    parser.add_argument("--rows", nargs="*", default=[r.name for r in ROWS], choices=[r.name for r in ROWS])
    parser.add_argument("--readings", action="store_true", help="print RSS at each reading of /stats too")
    args = parser.parse_args(argv)
    print(f"{'row':8} {'model':34} {'images':>6} {'full MB':>8} {'end MB':>8} {'peak MB':>8} {'cache MB':>8} "
          f"{'growth':>7} {'s':>5}")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="soak_") as temp:
        for row in (r for r in ROWS if r.name in args.rows):
            count = max(20, round(row.images * args.scale))
            images = write_images(Path(temp) / row.name, count, row.size)
            with App(Path(temp), dict(row.env)) as app:
                result = soak(app.url, row.model, images, row.steps, every=row.every)
            failed += not result.passed
            print(f"{row.name:8} {row.model:34} {count:6d} {result.rss_full / 2**20:8.0f} {result.rss_end / 2**20:8.0f} "
                  f"{result.rss_peak / 2**20:8.0f} {result.cache_bytes / 2**20:8.1f} {result.growth:+7.1%} "
                  f"{result.seconds:5.0f}  {'PASS' if result.passed else 'FAIL'} (growth <= {GROWTH:.0%})", flush=True)
            if args.readings:
                print("  RSS MB after n images: " + ", ".join(f"{n}: {r / 2**20:.0f}" for n, r in result.readings))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
