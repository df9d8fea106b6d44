"""A long run's memory stays bounded: a few hundred distinct images through the running app on 127.0.0.1, and its
resident memory at the end within what it held when its trace cache was first full plus a stated margin.

The app is `python app.py` in a subprocess (tests/app_server.py) with the shipped model (checkpoints/vit_fashion_mnist,
copied into the test's folder) and the default cache bounds. 250 images go through /predict, 20 more through /analyse
with every step's handler after it (step 5 runs the model forward and backward again). Before evicted traces were
freed at once (issue 27), this app grew by ~0.9 MB per image here; the margin allows a tenth of that.
The driver and the measure are benchmarks/soak.py's, which runs the longer rows (python -m benchmarks.soak).
"""
from __future__ import annotations

import shutil

import pytest

from app_server import REPO, AppServer
from benchmarks.soak import SHIPPED, soak, write_images

pytestmark = pytest.mark.slow

PREDICTED = 250
WITH_STEPS = 20
MARGIN = 40 * 2**20  # bytes RSS may grow past its value once the cache is full: 0.16 MB per image sent
STEP_MARGIN = 4 * 2**20  # more per image whose every step is drawn (see below)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("soak")
    checkpoints = root / "checkpoints"
    checkpoints.mkdir()
    for suffix in (".json", ".safetensors"):
        shutil.copy(REPO / "checkpoints" / f"vit_fashion_mnist{suffix}", checkpoints)
    server = AppServer(root, checkpoint_dir=checkpoints).start()
    yield server
    server.stop()


def test_memory_stays_within_the_cache_bound_over_hundreds_of_images(app, tmp_path):
    images = write_images(tmp_path / "images", PREDICTED + WITH_STEPS, size=(48, 48))
    predicted = soak(app.url, SHIPPED, images[:PREDICTED], every=25)
    assert predicted.evictions >= PREDICTED - 40  # the cache was full (40 entries by default) and kept evicting
    stepped = soak(app.url, SHIPPED, images[PREDICTED:], steps=range(6), every=5)
    assert stepped.evictions >= predicted.evictions + WITH_STEPS  # each of these images was traced anew
    # The trace cache holds its bound, and through /predict the process holds what it held with the cache full, plus
    # the margin.
    assert stepped.cache_bytes <= 512 * 2**20
    growth = predicted.rss_end - predicted.rss_full
    assert growth <= MARGIN, (f"RSS grew by {growth / 2**20:.0f} MB from a full cache ({predicted.rss_full / 2**20:.0f}"
                              f" MB) over {PREDICTED} images; the margin is {MARGIN / 2**20:.0f} MB")
    # The step handlers: each visitor's session keeps its page's last figures in Gradio (not the trace cache), so
    # these images are allowed more (STEP_MARGIN each), still far below what a trace kept per image would add.
    growth = stepped.rss_end - predicted.rss_end
    assert growth <= MARGIN + WITH_STEPS * STEP_MARGIN, [(n, r // 2**20) for n, r in stepped.readings]
    assert abs(app.rss_kb() * 1024 - stepped.rss_end) <= MARGIN  # /stats reports the app process's own RSS
