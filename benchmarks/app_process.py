"""The app as its visitors meet it: `python app.py` started in a process of its own on a free port of 127.0.0.1,
offline, with the benchmark's checkpoint folder, waited for until it answers, stopped whatever happens.

The server benchmark times this cold start beside a bare Gradio app (BARE_GRADIO); the browser benchmark opens the
page it serves.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from explorer.app.settings import free_port

from .models import ROOT

# The yardstick of the cold start (issue 15): a bare Gradio Blocks app, launched as the app is (queue, no SSR), on the
# same machine, in the same environment, started alternately with it.
BARE_GRADIO = """
import sys
import gradio as gr
with gr.Blocks(title="bare") as demo:
    gr.Markdown("# A bare Gradio Blocks app")
demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), ssr_mode=False)
"""


def app_env(checkpoint_dir: Path | None, temp: Path) -> dict:
    """The environment of a process the benchmarks start: offline, no telemetry, Gradio's files under `temp`."""
    env = dict(os.environ, EXPLORER_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_TEMP_DIR=str(temp / "gradio"), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if checkpoint_dir is not None:
        env["EXPLORER_CHECKPOINTS"] = str(checkpoint_dir)
    return env


def app_command(port: int) -> list[str]:
    """`python app.py` on 127.0.0.1:port, in the checkout the benchmarks run from."""
    return [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def call_api(base: str, api_name: str, timeout: float = 10.0):
    """Gradio's two-request HTTP API: POST /gradio_api/call/<name>, then read the event stream's data."""
    request = urllib.request.Request(f"{base}/gradio_api/call/{api_name}", data=b'{"data": []}',
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{base}/gradio_api/call/{api_name}/{event_id}", timeout=timeout) as response:
        text = response.read().decode()
    data = [line[len("data:"):].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1]) if data else None


class AppProcess:
    """`python app.py --host 127.0.0.1 --port <free>` (or BARE_GRADIO with bare=True) in the benchmarks' environment;
    entered once it answers HTTP 200 on "/" (started_s: how long that took), stopped on exit."""

    def __init__(self, checkpoint_dir: Path | None, temp: Path, timeout: float = 240.0, bare: bool = False,
                 **env: str):
        self.checkpoint_dir, self.temp, self.timeout, self.bare, self.env = checkpoint_dir, temp, timeout, bare, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = temp / f"app-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.started_s: float | None = None
        self._log = None

    def __enter__(self) -> "AppProcess":
        command = [sys.executable, "-c", BARE_GRADIO, str(self.port)] if self.bare else app_command(self.port)
        self._log = self.log_path.open("wb")
        self.began = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT, env=dict(app_env(self.checkpoint_dir, self.temp), **self.env),
                                        stdout=self._log, stderr=subprocess.STDOUT)
        try:
            while not http_ok(self.url):
                if self.process.poll() is not None:
                    raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.log()}")
                if time.perf_counter() - self.began > self.timeout:
                    raise RuntimeError(f"app.py did not answer on {self.url} within {self.timeout:.0f} s:\n{self.log()}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.perf_counter() - self.began
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def config(self) -> dict:
        """The page's /config: its components and their events."""
        with urllib.request.urlopen(self.url + "config", timeout=30) as response:
            return json.loads(response.read())

    def seconds_to_model_loaded(self) -> float | None:
        """Seconds from the start to the default model being loaded (the /stats API), polled; None at the timeout."""
        while time.perf_counter() - self.began < self.timeout:
            with contextlib.suppress(urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
                stats = call_api(self.url.rstrip("/"), "stats")
                if stats and stats[0].get("models_loaded", 0) >= 1:
                    return time.perf_counter() - self.began
            time.sleep(0.1)
        return None
