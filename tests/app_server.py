"""Start the app (`python app.py`) as a subprocess on 127.0.0.1 and a free port, isolated in a tmp folder.

Used by the browser, hostile-input, load and safety tests. Everything the app could write or read from the outside
is redirected into `root`: TORCH_HOME (so no torchvision weights are cached), GRADIO_TEMP_DIR (uploads), the
checkpoint folder (a stand-in Fashion-MNIST checkpoint written by `make_standin_checkpoint`), and the network is off
(EXPLORER_OFFLINE=1, no analytics, no telemetry).

    server = AppServer(tmp_path).start()   # waits until the page answers 200
    server.url, server.pid, server.rss_kb(), server.temp_files()
    server.stop()

    with open_browser(server.url) as session:   # headless Debian Chromium through Playwright, loopback only
        session.page ...; session.assert_clean()
"""
from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from explorer.app.memory import process_memory
from explorer.app.settings import free_port  # noqa: F401 (the tests' one free-port helper, re-exported)

REPO = Path(__file__).resolve().parent.parent
STANDIN_STEM = "vit_fashion_standin"  # "fashion" in the name: the app picks it as its default model
STANDIN_LABEL = f"ViT-Fashion/4 · {STANDIN_STEM}"
FASHION_PREPROCESSING = dict(resize_size=28, crop_size=28, channels=1, mean=(0.286,), std=(0.353,), invert="auto")


@functools.lru_cache(maxsize=2)
def standin_model(seed: int = 0):
    """A randomly initialised ViT-Fashion/4 with a random (not zero) head, so that predictions differ per image."""
    import torch

    from explorer import CONFIGS, ViT

    torch.manual_seed(seed)
    model = ViT(CONFIGS["ViT-Fashion/4"]).eval()
    with torch.no_grad():
        model.head.weight.normal_(std=0.5)
        model.head.bias.normal_(std=0.5)
    return model


def standin_preprocessing():
    from explorer.images import Preprocessing

    return Preprocessing(**FASHION_PREPROCESSING)


def make_standin_checkpoint(folder: Path, seed: int = 0, stem: str = STANDIN_STEM) -> Path:
    """Write <folder>/<stem>.{safetensors,json} (vit_fashion_standin unless told); return the stem."""
    from explorer.data import FASHION_MNIST_CLASSES
    from explorer.weights import save_checkpoint

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / stem
    save_checkpoint(stem, standin_model(seed), list(FASHION_MNIST_CLASSES), standin_preprocessing(),
                    provenance={"dataset": "none (random stand-in for tests)"})
    return stem


def reference_probabilities(image_path, seed: int = 0):
    """What the app must answer for this image: open, crop, normalise and forward with the stand-in model, directly."""
    import torch

    from explorer.images import open_image

    opened = open_image(image_path)
    pre = standin_preprocessing()
    x = pre.normalise(pre.crop(opened.image)[0])  # (1, 1, 28, 28)
    with torch.no_grad():
        logits = standin_model(seed)(x)
    return torch.softmax(logits, dim=-1)[0].double().numpy()  # (K,)


# ---------------------------------------------------------------------------------------------------------------
# Checks shared by the tests

def is_one_sentence(message) -> bool:
    """One plain sentence: a non-empty single line that starts with a capital (or a quoted name or a path), ends
    with . ! or ? and has no full stop followed by a new capitalised sentence inside ("bomb.png" and
    "(a decompression bomb?);" are fine, "Failed. Try again." is not)."""
    if not isinstance(message, str):
        return False
    text = message.strip().removeprefix("⚠️").strip()
    if not text:
        return False
    first = text.split()[0]
    starts = text[0].isupper() or text[0] in "'\"" or "/" in first or "." in first  # a capital, or a file's name
    return (starts and "\n" not in text and text[-1] in ".!?"
            and not re.search(r"[.!?]\s+[A-Z]", text[:-1]))


def plot_traces(plot_output) -> tuple[list[dict], dict]:
    """The traces of a gr.Plot output as returned by gradio_client ({"type": "plotly", "plot": json}), with plotly's
    typed arrays ({"dtype", "bdata", "shape"}) decoded to numpy; returns (traces, layout)."""
    import numpy as np

    assert isinstance(plot_output, dict) and plot_output.get("type") == "plotly", f"not a plotly figure: {plot_output!r:.200}"

    def decode(value):
        if isinstance(value, dict) and "bdata" in value and "dtype" in value:
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
            if "shape" in value:
                shape = value["shape"]
                array = array.reshape([int(n) for n in str(shape).split(",")] if isinstance(shape, str) else shape)
            return array
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    figure = json.loads(plot_output["plot"])
    return [decode(trace) for trace in figure["data"]], figure["layout"]


def analyse_outputs() -> list[str]:
    """The names of /analyse's outputs in the order gradio_client returns them: the app's HEADER_OUTPUTS without
    its gr.State components (a client is never sent those), then every view in page order (the view registry)."""
    from explorer.app import ui, views

    return [name for name in ui.HEADER_OUTPUTS if name not in ui.STATES] + views.all_views()


def heads_from_figure(plot_output):
    """Invert render.attention_heads: the (h, rows, cols) attention maps shown, read back through the heatmap's
    customdata [head, patch] (-1 in the gaps between tiles)."""
    import numpy as np

    traces, layout = plot_traces(plot_output)
    heatmap = next(t for t in traces if t.get("type") == "heatmap")
    z = np.asarray(heatmap["z"], dtype=np.float64)
    custom = np.asarray(heatmap["customdata"]).reshape(z.shape + (2,))
    rows, cols = layout["meta"]["tile"]
    h = int(custom[..., 0].max())
    maps = np.full((h, rows, cols), np.nan)
    for (head, patch), value in zip(custom.reshape(-1, 2), z.reshape(-1)):
        if head >= 1:
            maps[head - 1, patch // cols, patch % cols] = value
    return maps


class AppServer:
    """`python app.py` in a subprocess with an isolated environment under `root`."""

    def __init__(self, root: Path, extra_env: dict | None = None, checkpoint_dir: Path | None = None,
                 delete_cache: tuple[int, int] | None = None):
        """delete_cache: replace the page's gr.Blocks(delete_cache=...) (explorer.app.ui.DELETE_CACHE) by
        (frequency_s, age_s) before launch, to see Gradio's clean-up at work within a test."""
        self.root = Path(root)
        self.delete_cache = delete_cache
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.temp_dir = self.root / "gradio_tmp"
        self.torch_home = self.root / "torch_home"
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else self.root / "checkpoints"
        self.log_path = self.root / "server.log"
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen | None = None

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "EXPLORER_"))}
        env.update({
            "EXPLORER_OFFLINE": "1",
            "EXPLORER_CHECKPOINTS": str(self.checkpoint_dir),
            "EXPLORER_HOST": "127.0.0.1",
            "EXPLORER_PORT": str(self.port),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "1",
            "TORCH_HOME": str(self.torch_home),
            "GRADIO_TEMP_DIR": str(self.temp_dir),
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",  # a 2-core machine shared with a training run
            "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 90.0) -> "AppServer":
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self.torch_home.mkdir(parents=True, exist_ok=True)
        if not (self.checkpoint_dir / f"{STANDIN_STEM}.safetensors").is_file():
            make_standin_checkpoint(self.checkpoint_dir)
        self._log = self.log_path.open("wb")
        arguments = ["--host", "127.0.0.1", "--port", str(self.port)]
        if self.delete_cache is None:
            command = [sys.executable, str(REPO / "app.py")] + arguments
        else:
            command = [sys.executable, "-c", "import explorer.app, explorer.app.ui as ui; "
                       f"ui.DELETE_CACHE = {tuple(self.delete_cache)!r}; explorer.app.main({arguments!r})"]
        self.process = subprocess.Popen(
            command,
            cwd=str(REPO), env=self.env(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"app.py did not answer on {self.url} within {timeout:.0f} s:\n{self.log()}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def rss_kb(self) -> int:
        """Resident memory of the server process (VmRSS, explorer.app.memory.process_memory), in KiB."""
        rss = process_memory(self.pid).get("VmRSS")
        if rss is None:
            raise RuntimeError(f"no VmRSS for pid {self.pid}")
        return rss // 1024

    def temp_files(self) -> list[Path]:
        return [p for p in self.temp_dir.rglob("*") if p.is_file()]

    def stop(self) -> int | None:
        """Ctrl-C (SIGINT: Gradio shuts down cleanly and deletes its temporary files), then SIGTERM, then SIGKILL.
        Returns the exit code."""
        if self.process is not None and self.process.poll() is None:
            for send, wait in ((lambda: self.process.send_signal(signal.SIGINT), 20),
                               (self.process.terminate, 10), (self.process.kill, 10)):
                send()
                try:
                    self.process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        return None if self.process is None else self.process.returncode

    def __enter__(self) -> "AppServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------------------------
# A real browser

CHROMIUM = "/usr/bin/chromium"  # Debian's package; never `playwright install` (it downloads a browser)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class BrowserSession:
    """One page plus everything it did that a test should fail on: console errors, uncaught exceptions, dialogs
    (an SVG's alert()), and any request that tried to leave 127.0.0.1 (those are aborted, so nothing leaks)."""

    def __init__(self, page):
        self.page = page
        self.console_errors: list[str] = []
        self.allowed_errors: list[str] = []  # errors a test announced in `expected_errors` before causing them
        self.page_errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.expected_errors: tuple[str, ...] = ()

    def on_console(self, message) -> None:
        if message.type != "error":
            return
        where = (message.location or {}).get("url", "")
        text = f"{message.text} @ {where}" if where else message.text
        if any(expected in text for expected in self.expected_errors):
            self.allowed_errors.append(text)
        else:
            self.console_errors.append(text)

    def on_route(self, route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def upload(self, path) -> None:
        """Upload the image at `path` and wait until the picture with the patch grid is shown (the image analysed)."""
        self.page.set_input_files("#upload input[type=file]", str(path))
        self.page.wait_for_function("() => { const i = document.querySelector('#picker img'); return i && i.complete"
                                    " && i.naturalWidth > 0; }")

    def assert_clean(self) -> None:
        assert not self.page_errors, f"uncaught exceptions in the page: {self.page_errors}"
        assert not self.console_errors, f"console errors: {self.console_errors}"
        assert not self.dialogs, f"dialogs opened: {self.dialogs}"
        outside = [u for u in self.requests if not u.startswith(("data:", "blob:")) and urlsplit(u).hostname != "127.0.0.1"]
        assert not outside and not self.blocked, f"requests off 127.0.0.1: {sorted(set(outside + self.blocked))}"


@contextlib.contextmanager
def open_browser(url: str, width: int = 1400, height: int = 1000):
    """Open `url` in headless Chromium and wait for the upload box; yields a BrowserSession. Skips the test when
    Playwright or Debian's chromium is not installed (apt-get install chromium; pip install playwright)."""
    import pytest

    pytest.importorskip("playwright.sync_api", reason="pip install playwright (never `playwright install`)")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield new_session(browser, url, width, height)
        finally:
            browser.close()


def new_session(browser, url: str, width: int = 1400, height: int = 1000) -> BrowserSession:
    """A new page of `url` in its own context of `browser` (a Playwright Browser), at this window size, watched as
    BrowserSession says; returns once the upload box is there. (A second size within one test: open_browser's
    session.page.context.browser.)"""
    context = browser.new_context(viewport={"width": width, "height": height}, service_workers="block")
    page = context.new_page()
    session = BrowserSession(page)
    context.route("**/*", session.on_route)
    page.on("console", session.on_console)
    page.on("pageerror", lambda error: session.page_errors.append(str(error)))
    page.on("request", lambda request: session.requests.append(request.url))
    page.on("dialog", lambda dialog: (session.dialogs.append(dialog.message), dialog.dismiss()))
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="load")
    page.wait_for_selector("#upload")
    return session
