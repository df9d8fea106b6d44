"""Safe files: weights are only ever read as .safetensors (or torchvision's own files through
torch.load(weights_only=True)), and the app's file routes serve nothing but its assets and temporary uploads.

A hostile pickle (it creates a marker file when unpickled; test_payload_is_live proves it) is put where the app
would read weights: a project checkpoint path ending in .pth, a "checkpoint" whose .safetensors is a pickle, and
torchvision's cache file for ViT-B/32. Each is refused with one sentence and the marker never appears: through
explorer.weights, through explorer.app.server (the app's model loading path), and through the running app (/predict).
Then the file routes of Gradio 6 (file=, file/, static/, assets/, svelte/, proxy=) are probed with app.py, the
checkpoint, the cached weights, /etc/passwd, ../ paths (raw, %-encoded, double-encoded) and loopback URLs: all refused
(403/404/400), while an asset and one's own upload are served, the upload of an SVG or HTML only as an attachment.
"""
from __future__ import annotations

import http.client
import pickle
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import torch

from app_server import REPO, STANDIN_LABEL, STANDIN_STEM, AppServer, is_one_sentence, make_standin_checkpoint
from explorer.weights import WeightsUnavailable, cache_path, get_weights, load_checkpoint

B32_LABEL = "ViT-B/32 · IMAGENET1K_V1"
EVIL_STEM = "zz_evil"  # sorts after the stand-in, so the stand-in stays the app's default model
EVIL_LABEL = f"ViT-Fashion/4 · {EVIL_STEM}"


class Payload:
    """Unpickling this runs code: it creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def write_torch_payload(path: Path, marker: Path) -> Path:
    """torch.save's zip format (as torchvision's .pth files), a state dict whose one value is the payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"class_token": Payload(marker)}, path)
    return path


def write_hostile_checkpoint(folder: Path, marker: Path) -> Path:
    """<folder>/zz_evil.json (a valid side file, copied from the stand-in) + zz_evil.safetensors that is a pickle."""
    folder.mkdir(parents=True, exist_ok=True)
    reference = make_standin_checkpoint(folder / "reference")
    shutil.copy(reference.with_name(reference.name + ".json"), folder / f"{EVIL_STEM}.json")
    with open(folder / f"{EVIL_STEM}.safetensors", "wb") as file:
        pickle.dump(Payload(marker), file, protocol=2)
    shutil.rmtree(folder / "reference")
    return folder / EVIL_STEM


@pytest.fixture
def torch_load_spy(monkeypatch):
    """Every torch.load call, with its keyword arguments; pickle.load(s) fail the test outright."""
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle.load(s) was called")

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    return calls


def test_payload_is_live(tmp_path):
    # The refusals below only mean something if loading the file the ordinary way would run the code.
    marker = tmp_path / "ran"
    path = write_torch_payload(tmp_path / "evil.pth", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with open(write_hostile_checkpoint(tmp_path / "ckpt", marker).with_suffix(".safetensors"), "rb") as file:
        pickle.load(file)
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".pkl", ".ckpt", ".bin"])
def test_load_checkpoint_refuses_a_pickle(tmp_path, suffix, torch_load_spy):
    marker = tmp_path / "ran"
    path = write_torch_payload(tmp_path / f"model{suffix}", marker)
    with pytest.raises(WeightsUnavailable) as refused:
        load_checkpoint(path)
    assert is_one_sentence(str(refused.value)) and "safetensors" in str(refused.value)
    assert not marker.exists() and not torch_load_spy


def test_session_refuses_a_pickle_disguised_as_safetensors(tmp_path, torch_load_spy):
    from explorer.app.server import Server

    marker = tmp_path / "ran"
    write_hostile_checkpoint(tmp_path / "ckpt", marker)
    session = Server(checkpoint_dir=tmp_path / "ckpt", device="cpu")
    assert EVIL_LABEL in session.registry.labels()  # it is offered, as any checkpoint in the folder would be
    with pytest.raises(WeightsUnavailable) as refused:
        session.predict(np.zeros((28, 28), np.uint8), EVIL_LABEL)
    assert is_one_sentence(str(refused.value)), str(refused.value)
    assert not marker.exists() and not torch_load_spy
    assert session.stats()["model_runs"] == 0


def test_session_refuses_a_hostile_torchvision_cache_file(tmp_path, monkeypatch, torch_load_spy):
    """A pickle at torchvision's cache path for ViT-B/32 (as if the download had been tampered with): the app reads
    it with torch.load(weights_only=True), which refuses it without running it."""
    from explorer.app.server import Server

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    marker = tmp_path / "ran"
    target = cache_path(get_weights("ViT-B/32", "IMAGENET1K_V1"))
    assert str(target).startswith(str(tmp_path))
    write_torch_payload(target, marker)
    session = Server(checkpoint_dir=tmp_path / "no_checkpoints", device="cpu")
    with pytest.raises(WeightsUnavailable) as refused:
        session.predict(np.zeros((32, 32, 3), np.uint8), B32_LABEL)
    assert is_one_sentence(str(refused.value)) and target.name in str(refused.value), str(refused.value)
    assert not marker.exists()
    assert torch_load_spy and all(call.get("weights_only") is True for call in torch_load_spy), torch_load_spy


# ---------------------------------------------------------------------------------------------------------------
# The running app

@pytest.fixture(scope="module")
def marker(tmp_path_factory):
    return tmp_path_factory.mktemp("markers") / "payload_ran"


@pytest.fixture(scope="module")
def server(tmp_path_factory, marker):
    root = tmp_path_factory.mktemp("safety")
    app = AppServer(root)
    make_standin_checkpoint(app.checkpoint_dir)
    write_hostile_checkpoint(app.checkpoint_dir, marker)
    with pytest.MonkeyPatch.context() as patch:  # where the server will look for torchvision's files
        patch.setenv("TORCH_HOME", str(app.torch_home))
        write_torch_payload(cache_path(get_weights("ViT-B/32", "IMAGENET1K_V1")), marker)
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    from gradio_client import Client

    c = Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    yield c
    c.close()


@pytest.mark.parametrize("model", [B32_LABEL, EVIL_LABEL])
def test_app_refuses_hostile_weights_without_running_them(model, server, client, marker):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    image = REPO / "assets" / "fashion_0000_ankle_boot.png"
    with pytest.raises(AppError) as refused:
        client.predict(handle_file(str(image)), model, api_name="/predict")
    assert is_one_sentence(str(refused.value)), str(refused.value)
    assert not marker.exists(), "the pickle's code ran inside the server"
    assert server.alive()
    result = client.predict(handle_file(str(image)), STANDIN_LABEL, api_name="/predict")  # the app goes on
    assert result["model"] == STANDIN_LABEL and len(result["top_k"]) == 5


def get(server: AppServer, raw_path: str) -> tuple[int, bytes, dict]:
    """GET a raw request target (sent as is: no client-side normalisation of ../ or %-escapes)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.putrequest("GET", raw_path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def secrets(server: AppServer) -> dict[str, bytes]:
    """Files the routes must never serve, and a piece of each one's content to look for in a response."""
    weights = next((server.torch_home / "hub" / "checkpoints").glob("*.pth"))
    return {
        "app.py": (REPO / "app.py", b"from explorer.app import main"),
        "passwd": (Path("/etc/passwd"), b"root:"),
        "checkpoint": (server.checkpoint_dir / f"{STANDIN_STEM}.safetensors", None),
        "checkpoint_json": (server.checkpoint_dir / f"{STANDIN_STEM}.json", b"vit-explorer"),
        "cached_weights": (weights, None),
        "server_log": (server.log_path, None),  # next to the upload folder, not in it
        "git_config": (REPO / ".git" / "config", b"[core]"),
    }


def refused_targets(server: AppServer) -> list[str]:
    temp, assets = str(server.temp_dir), str(REPO / "assets")
    passwd_climb = "../" * 12 + "etc/passwd"
    targets = [
        "/gradio_api/file=app.py",
        f"/gradio_api/file={REPO}/app.py",
        "/gradio_api/file=/etc/passwd",
        f"/gradio_api/file={quote('/etc/passwd', safe='')}",
        f"/gradio_api/file={passwd_climb}",
        f"/gradio_api/file={assets}/../app.py",
        f"/gradio_api/file={assets}/%2e%2e/app.py",
        f"/gradio_api/file={assets}/%252e%252e/app.py",
        f"/gradio_api/file={assets}/..%2fapp.py",
        f"/gradio_api/file={assets}/..\\app.py",
        f"/gradio_api/file={temp}/../server.log",
        f"/gradio_api/file={temp}/%2e%2e/server.log",
        f"/gradio_api/file={server.checkpoint_dir}/{STANDIN_STEM}.safetensors",
        f"/gradio_api/file={server.checkpoint_dir}/{STANDIN_STEM}.json",
        f"/gradio_api/file={secrets(server)['cached_weights'][0]}",
        f"/gradio_api/file={REPO}/.git/config",
        "/gradio_api/file=file:///etc/passwd",
        f"/gradio_api/file=http://127.0.0.1:{server.port}/config",  # SSRF to the server itself
        "/gradio_api/file=http://169.254.169.254/latest/meta-data/",
        f"/gradio_api/proxy=http://127.0.0.1:{server.port}/config",
        "/gradio_api/file/etc/passwd",
        f"/gradio_api/file/{REPO}/app.py",
        f"/gradio_api/file/{passwd_climb}",
        f"/static/{passwd_climb}",
        "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/assets/{passwd_climb}",
        "/assets/..%2f..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        f"/svelte/{passwd_climb}",
        "/favicon.ico/../../app.py",
        f"/gradio_api/file={quote(str(REPO / 'app.py'), safe='')}",
    ]
    return targets


def test_file_routes_refuse_everything_outside_assets_and_uploads(server):
    leaks = []
    for target in refused_targets(server):
        status, body, headers = get(server, target)
        contents = [needle for _, needle in secrets(server).values() if needle and needle in body]
        if status not in (400, 403, 404) or contents:
            leaks.append((target, status, body[:80]))
    assert not leaks, f"served what must not be: {leaks}"


def test_secret_files_exist_so_the_refusals_mean_something(server):
    for name, (path, needle) in secrets(server).items():
        assert path.is_file(), name
        if needle:
            assert needle in path.read_bytes(), name


def test_an_asset_is_served(server):
    asset = REPO / "assets" / "coffee.jpg"
    for target in (f"/gradio_api/file={asset}", f"/gradio_api/file={quote(str(asset))}"):
        status, body, headers = get(server, target)
        assert status == 200 and body == asset.read_bytes(), (target, status)
        assert headers["content-type"] == "image/jpeg"


def test_plotly_js_is_served_and_nothing_beside_it(server):
    """The plot views load plotly.min.js from the plotly package (explorer.app.plot): that one file is served, as
    JavaScript; the package's other files are not."""
    from explorer.app.plot import plotly_js

    script = plotly_js()
    status, body, headers = get(server, f"/gradio_api/file={script}")
    assert status == 200 and body == script.read_bytes() and b"plotly.js" in body[:2000]
    assert "javascript" in headers["content-type"], headers
    for sibling in (script.parent.parent / "__init__.py", script.parent / "widgetbundle.js"):
        assert sibling.is_file(), sibling
        for target in (f"/gradio_api/file={sibling}", f"/gradio_api/file={script}/../{sibling.name}",
                       f"/gradio_api/file={script.parent}/%2e%2e/__init__.py"):
            status, body, _ = get(server, target)
            assert status in (400, 403, 404) and body != sibling.read_bytes(), (target, status)


def test_own_upload_is_served_and_markup_only_as_an_attachment(server, tmp_path):
    import httpx

    png = REPO / "assets" / "fashion_0002_trouser.png"
    svg = tmp_path / "script.svg"
    svg.write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>')
    html = tmp_path / "page.html"
    html.write_bytes(b"<html><script>alert(document.cookie)</script></html>")
    for path in (png, svg, html):
        with open(path, "rb") as file:
            response = httpx.post(server.url + "gradio_api/upload", files={"files": (path.name, file)}, timeout=60)
        assert response.status_code == 200, response.text
        stored = Path(response.json()[0])
        assert stored.is_relative_to(server.temp_dir), stored  # uploads land in GRADIO_TEMP_DIR, nowhere else
        status, body, headers = get(server, f"/gradio_api/file={stored}")
        assert status == 200 and body == path.read_bytes()
        if path.suffix == ".png":
            assert headers["content-type"] == "image/png"
        else:  # markup that could run script in the app's origin is never served inline
            assert headers.get("content-disposition", "").startswith("attachment"), headers
            assert headers["content-type"] == "application/octet-stream", headers
