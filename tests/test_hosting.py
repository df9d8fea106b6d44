"""Hosting on Hugging Face Spaces: the front matter and requirements a Space reads, ZeroGPU's decorator and its
durations, the memory guard of a CPU Space, and a rehearsal of a Space's start (docs/hosting.md).

The rehearsal starts `python app.py` as a Space does: SPACE_ID set, a fresh home whose Hugging Face cache holds what
`preload_from_hub` in README's front matter names (downloaded from a Hub on 127.0.0.1 at the catalogue's revision, as
the Space's builder would), the Hub offline; once as a CPU Space with the `spaces` package installed, once in ZeroGPU
mode (SPACES_ZERO_GPU=true) with ZeroGPU's device API stood in for on 127.0.0.1, which answers every request for a GPU
with "quota exceeded" (there is no GPU to lend here) and records the seconds asked.
"""
from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from explorer import CONFIGS
from explorer.app.settings import CPU_SPACE_MB, Settings
from explorer.app.zerogpu import MAX_SECONDS, MIN_SECONDS, duration_seconds, on_gpu

REPO = Path(__file__).resolve().parent.parent
ZEROGPU_PYTHONS = ("3.10.13", "3.12.12")  # spaces-zerogpu.md
ZEROGPU_TORCH = {"2.8.0": "0.23.0", "2.9.1": "0.24.1", "2.10.0": "0.25.0", "2.11.0": "0.26.0"}  # with its torchvision


def front_matter() -> dict:
    """README's YAML front matter, read line by line (keys, and the items of a list under a key)."""
    text = (REPO / "README.md").read_text().split("---\n")[1]
    fields: dict = {}
    key = None
    for line in text.splitlines():
        if line.startswith("  - ") and key is not None:
            fields.setdefault(key, []).append(line[4:].strip())
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip()
            if value.strip():
                fields[key] = value.strip()
    return fields


def requirements_for(python: str) -> dict[str, Requirement]:
    """requirements.txt as pip reads it on `python` (a full version): name -> requirement, markers evaluated."""
    environment = {"python_full_version": python, "python_version": ".".join(python.split(".")[:2])}
    found = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            assert requirement.name not in found, f"{requirement.name} twice for Python {python}"
            found[requirement.name] = requirement
    return found


# ---------------------------------------------------------------------------------------------------------------
# What a Space reads

def test_requirements_give_zerogpu_a_torch_it_supports_and_this_machine_torch_2_14_1():
    for python in ZEROGPU_PYTHONS:
        wanted = requirements_for(python)
        torch_versions = [v for v in ZEROGPU_TORCH if wanted["torch"].specifier.contains(v)]
        assert torch_versions, f"no torch ZeroGPU supports for Python {python}: {wanted['torch']}"
        assert all(wanted["torchvision"].specifier.contains(ZEROGPU_TORCH[v]) for v in torch_versions)
        assert not wanted["torch"].specifier.contains("2.14.1")
        assert "spaces" not in wanted  # a Space provides it, unpinned
    here = requirements_for(f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}")
    if f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}" not in ZEROGPU_PYTHONS:
        assert here["torch"].specifier.contains("2.14.1") and here["torchvision"].specifier.contains("0.29.1")


def test_front_matter_sets_a_zerogpu_python_and_preloads_the_default_checkpoint_at_its_revision():
    from explorer.app.registry import PAPER_B16
    from explorer.families.catalogue import paper_checkpoint

    fields = front_matter()
    assert fields["python_version"] in ZEROGPU_PYTHONS and fields["sdk"] == "gradio"
    (item,) = fields["preload_from_hub"]
    repo_id, files, *revision = item.split()
    assert repo_id == PAPER_B16
    assert set(files.split(",")) == {"config.json", "model.safetensors", "preprocessor_config.json"}
    assert (revision or ["main"]) == [paper_checkpoint(PAPER_B16).revision]


# ---------------------------------------------------------------------------------------------------------------
# ZeroGPU's decorator and the seconds asked

def test_without_zerogpu_the_decorator_returns_the_function_itself(monkeypatch):
    """With `spaces` installed but SPACES_ZERO_GPU unset (this process), and without the package at all."""
    def handler(image, model):
        return model

    pytest.importorskip("spaces")
    assert on_gpu(handler, lambda *args: 10) is handler
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    assert on_gpu(handler, lambda *args: 10) is handler


def test_seconds_asked_grow_with_the_model_and_when_it_must_be_loaded():
    """Hand-computed from the parameter counts (B/16 86.6M, H/14 632M, float32): 10 s + 2 s per GB on the GPU
    (+ 20 s per GB when not loaded)."""
    b16, h14 = CONFIGS["ViT-B/16"], CONFIGS["ViT-H/14"]
    assert duration_seconds(b16, True, "trace") == 11  # 10 + 0.35 GB x 2
    assert duration_seconds(b16, False, "trace") == 18  # 10 + 0.35 GB x 22
    assert duration_seconds(h14, True, "trace") == 16  # 10 + 2.5 GB x 2
    assert duration_seconds(h14, False, "trace") == 66  # 10 + 2.5 GB x 22
    assert duration_seconds(b16, True, "predict") == 6
    assert MIN_SECONDS <= duration_seconds(CONFIGS["ViT-Fashion/4"], True, "predict") <= MAX_SECONDS


def test_the_memory_guard_of_a_cpu_space_knows_its_16_gb():
    assert CPU_SPACE_MB == 16 * 1024
    assert Settings.from_env({"SPACE_ID": "someone/vit-explorer"}).memory_mb == CPU_SPACE_MB
    assert Settings.from_env({"SPACE_ID": "someone/vit-explorer", "SPACES_ZERO_GPU": "true"}).memory_mb is None
    assert Settings.from_env({"SPACE_ID": "someone/vit-explorer", "EXPLORER_MEMORY_MB": "4096"}).memory_mb == 4096
    assert Settings.from_env({}).memory_mb is None


# ---------------------------------------------------------------------------------------------------------------
# The rehearsal

spaces = pytest.importorskip("spaces")
from app_server import AppServer  # noqa: E402
from hub_models import FakeHub, fake_hub, folder_files, hf_model  # noqa: E402,F401

# Run at the start of the app's interpreter (a sitecustomize.py on PYTHONPATH): which of spaces, torch and gradio is
# imported first, written down at each first import.
IMPORT_RECORDER = '''
import importlib.abc, json, os, sys
_order = []
class _Recorder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in ("spaces", "torch", "gradio") and top not in _order:
            _order.append(top)
            with open(os.environ["IMPORT_ORDER_FILE"], "w") as file:
                json.dump(_order, file)
        return None
sys.meta_path.insert(0, _Recorder())
'''


class DeviceAPI(http.server.BaseHTTPRequestHandler):
    """ZeroGPU's device API on 127.0.0.1: startup reports accepted; every /schedule answered 429 with no quota left
    (as the API answers a visitor who has spent the day's quota), its query recorded."""

    scheduled: list[dict] = []

    def do_POST(self):  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/schedule":
            self.scheduled.append(dict(urllib.parse.parse_qsl(url.query)))
            body = json.dumps({"left": 0, "wait": 3600}).encode()
            self.send_response(429)
        else:
            body = b"{}"
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class SpaceServer(AppServer):
    """`python app.py` started as a Space starts it: SPACE_ID, HOME (its ~/.cache/huggingface/hub is the cache
    preload_from_hub fills), no HF_HOME or EXPLORER_OFFLINE, the Hub offline."""

    def __init__(self, root: Path, home: Path, extra_env: dict):
        super().__init__(root, extra_env={"SPACE_ID": "someone/vit-explorer", "HOME": str(home), **extra_env})

    def env(self) -> dict:
        env = super().env()
        for name in ("EXPLORER_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT", "SPACES_ZERO_GPU",
                     "SPACES_ZERO_DEVICE_API_URL"):
            env.pop(name, None)
        env.update(self.extra_env)
        return env


@pytest.fixture
def preloaded_home(fake_hub, tmp_path):
    """A fresh home whose Hugging Face cache holds the files README's preload_from_hub names, downloaded from the Hub
    on 127.0.0.1 at the revision named there (main where none is), as a Space's build does; and the reference model."""
    import huggingface_hub

    endpoint = fake_hub[1]
    reference = hf_model(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64, num_labels=5, id2label={i: f"class {i}" for i in range(5)},
                         label2id={f"class {i}": i for i in range(5)})
    reference.save_pretrained(tmp_path / "b16")
    (tmp_path / "b16" / "preprocessor_config.json").write_text(json.dumps(
        {"do_normalize": True, "do_resize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": 32}))
    (item,) = front_matter()["preload_from_hub"]
    repo_id, files, *revision = item.split()
    FakeHub.revisions = {repo_id: {"main": ("d" * 40, folder_files(tmp_path / "b16"))}}
    home = tmp_path / "home"
    for name in files.split(","):
        huggingface_hub.hf_hub_download(repo_id, name, revision=(revision or [None])[0],
                                        cache_dir=str(home / ".cache" / "huggingface" / "hub"), endpoint=endpoint)
    return home, repo_id, reference


@pytest.mark.slow
def test_rehearsal_a_cpu_space_with_spaces_installed_serves_the_preloaded_checkpoint(preloaded_home, tmp_path):
    import torch
    from gradio_client import Client, handle_file
    from PIL import Image

    home, repo_id, reference = preloaded_home
    image = tmp_path / "photo.png"
    Image.fromarray((torch.rand(40, 48, 3) * 255).byte().numpy()).save(image)
    server = SpaceServer(tmp_path / "cpu", home, {}).start(timeout=180)
    try:
        with urllib.request.urlopen(server.url, timeout=30) as response:
            assert response.status == 200 and b"ViT Explorer" in response.read()
        result = Client(server.url, verbose=False).predict(handle_file(str(image)), repo_id, 5, api_name="/predict")
    finally:
        server.stop()
    assert result["model"].endswith(repo_id), result
    # The same image through transformers' own model and preprocessing (bilinear resize to 32, mean = std = 0.5).
    from explorer.images import open_image

    pixels = open_image(str(image)).image.convert("RGB").resize((32, 32), Image.BILINEAR)
    x = (torch.tensor(list(pixels.getdata()), dtype=torch.float32).view(32, 32, 3).permute(2, 0, 1) / 255 - 0.5) / 0.5
    with torch.no_grad():
        probabilities = torch.softmax(reference(pixel_values=x[None]).logits, dim=-1)[0]
    top = probabilities.topk(5)
    assert [row["label"] for row in result["top_k"]] == [f"class {i}" for i in top.indices.tolist()]
    assert max(abs(row["probability"] - p) for row, p in zip(result["top_k"], top.values.tolist())) < 1e-3
    assert not any("WeightsUnavailable" in line for line in server.log().splitlines())


@pytest.mark.slow
def test_rehearsal_a_zerogpu_space_imports_spaces_first_and_asks_a_gpu_for_every_model_run(preloaded_home, tmp_path):
    home, repo_id, _ = preloaded_home
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(IMPORT_RECORDER)
    order_file = tmp_path / "import_order.json"
    DeviceAPI.scheduled = []
    device_api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DeviceAPI)
    threading.Thread(target=device_api.serve_forever, daemon=True).start()
    zero_env = {"SPACES_ZERO_GPU": "true",
                "SPACES_ZERO_DEVICE_API_URL": f"http://127.0.0.1:{device_api.server_address[1]}"}
    env = {**zero_env, "IMPORT_ORDER_FILE": str(order_file), "PYTHONPATH": f"{hooks}{os.pathsep}{REPO}"}

    # Every function Gradio calls is spaces.GPU-decorated but those that run no model: the counters (/stats), the
    # example loader Gradio adds (one per gr.Examples), the "model runs" text it refreshes on each page load, the stop
    # of a visitor's step-5 curves (it only replaces a token), and compare's and heads-off's bookkeeping (B chosen or
    # let go, the strip that says which heads are off).
    listing = ("import json; from explorer.app.server import Server; from explorer.app.ui import build_app; "
               "app = build_app(Server()); print(json.dumps([[getattr(f.fn, '__name__', ''), f.api_name, "
               "hasattr(f.fn, 'zerogpu')] for f in app.demo.fns.values()]))")
    listed = subprocess.run([sys.executable, "-c", listing], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**SpaceServer(tmp_path / "list", home, env).env()})
    assert listed.returncode == 0, listed.stderr[-3000:]
    functions = json.loads(listed.stdout.strip().splitlines()[-1])
    undecorated = sorted({name for name, api_name, decorated in functions if not decorated})
    assert undecorated == ["cancel_slow", "load_example", "runs_text", "set_compare", "stats", "stop_compare",
                           "strip"], functions
    decorated_api = {api_name for name, api_name, decorated in functions if decorated}
    assert {"analyse", "predict", "step_0", "class_token", "random_indices"} <= decorated_api

    server = SpaceServer(tmp_path / "zero", home, env).start(timeout=180)
    try:
        with urllib.request.urlopen(server.url, timeout=30) as response:
            assert response.status == 200
        order = json.loads(order_file.read_text())
        assert order.index("spaces") < order.index("torch"), order
        from gradio_client import Client, handle_file

        client = Client(server.url, verbose=False)
        with pytest.raises(Exception, match="GPU limit|quota"):
            client.predict(handle_file(str(REPO / "assets" / "cat_chelsea.jpg")), repo_id, 5, api_name="/predict")
    finally:
        server.stop()
        device_api.shutdown()
        device_api.server_close()
    assert "No @spaces.GPU function detected" not in server.log() and "Traceback" not in server.log(), server.log()
    # /predict asked for what its estimate says for this (tiny) model: 5 s + its weights, rounded up (loaded or not
    # makes no whole second's difference at this size), scaled by ZeroGPU's factor for its default GPU size.
    (asked,) = DeviceAPI.scheduled
    factor = json.loads((Path(spaces.__file__).parent / "zero" / "configs.json").read_text())[0]["duration_factor"]
    assert int(asked["durationSeconds"]) == round(6 * factor), asked
