"""explorer.weights end to end without the internet: a pre-seeded torch hub cache, a local HTTP mirror, refusals
(offline, closed port, 404, hostile pickles, wrong files), faults (damaged cached files, downloads cut halfway,
several visitors at once), and the project's own safetensors checkpoints."""
import builtins
import collections
import filecmp
import functools
import hashlib
import io
import json
import os
import pickle
import re
import socket
import struct
import subprocess
import sys
import threading
import types
import urllib.error
import zipfile
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from torchvision.models import ViT_B_16_Weights, ViT_B_32_Weights
from torchvision.models.vision_transformer import VisionTransformer

import explorer.weights
from explorer import CONFIGS, ViT
from explorer.images import Preprocessing
from explorer.weights import (
    PRETRAINED,
    UNTRAINED,
    WeightsUnavailable,
    cache_path,
    checkpoint_paths,
    get_weights,
    is_cached,
    load_checkpoint,
    load_pretrained,
    pretrained_state_dict,
    random_bundle,
    read_checkpoint_info,
    save_checkpoint,
    weight_variants,
)

B32 = ViT_B_32_Weights.IMAGENET1K_V1
B32_FILE = os.path.basename(B32.url)  # vit_b_32-d86f8d99.pth


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith("."), message
    assert not re.search(r"[.!?]\s+[A-Z]", message), f"more than one sentence: {message}"


class Payload:
    """A pickle that runs code when loaded: creates `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def write_payload(path, marker, writer: str) -> None:
    if writer == "torch.save":
        torch.save({"class_token": Payload(marker)}, path)  # the zip format torchvision's files use
    else:
        with open(path, "wb") as file:
            pickle.dump(Payload(marker), file, protocol=2)  # a bare (legacy) pickle


def small_vit_state_dict() -> dict[str, torch.Tensor]:
    """A torchvision VisionTransformer of 32x32 inputs, one layer, D=48 (about 100 kB saved): not ViT-B/32's shapes."""
    torch.manual_seed(0)
    return VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=12, hidden_dim=48,
                             mlp_dim=96).state_dict()


def test_payload_is_live(tmp_path):
    # The hostile files below are refused only if this would have run: prove that it does.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Any connection outside 127.0.0.1 fails the test: nothing here may reach the internet."""
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"a test tried to reach {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub under tmp_path, offline and without a mirror unless a test changes that."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.delenv("EXPLORER_WEIGHTS_MIRROR", raising=False)
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    # torch.hub.get_dir() reads TORCH_HOME at each call (unless torch.hub.set_dir was called).
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub")
    return checkpoints


@pytest.fixture
def download_calls(monkeypatch):
    """Records every explorer.weights.download_file call (torch.hub.download_url_to_file's signature); lets it run."""
    calls = []
    real = explorer.weights.download_file

    def spy(url, dst, hash_prefix=None, progress=True):
        calls.append(dict(url=url, dst=dst, hash_prefix=hash_prefix, progress=progress))
        return real(url, dst, hash_prefix=hash_prefix, progress=progress)

    monkeypatch.setattr(explorer.weights, "download_file", spy)
    return calls


@pytest.fixture(scope="module")
def b32(tmp_path_factory):
    """A random-init torchvision vit_b_32 saved as a torchvision-format file, its input and its logits."""
    torch.manual_seed(0)
    tv = torchvision.models.vit_b_32(weights=None).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial head, LayerNorms and biases (torchvision's init leaves them 0 / 1)
        for name, p in tv.named_parameters():
            if name.startswith("heads."):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
            elif p.dim() <= 1:
                p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    served = tmp_path_factory.mktemp("served")
    path = served / B32_FILE
    torch.save(tv.state_dict(), path)
    x = torch.randn(1, 3, 224, 224, generator=generator)
    with torch.no_grad():
        logits = tv(x)
    assert logits.std() > 0.3
    return path, x, logits


@pytest.fixture
def mirror(b32):
    """An HTTP server on 127.0.0.1 serving the directory that holds the b32 file; yields (base URL, requested paths)."""
    requested = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(b32[0].parent)))
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def assert_same_logits(bundle, b32) -> None:
    _, x, logits = b32
    with torch.no_grad():
        ours = bundle.model(x)
    assert (ours - logits).abs().max().item() < 1e-4


# ---------------------------------------------------------------------------------------------------------------
# (a) a pre-seeded cache, offline

def test_preseeded_cache_loads_offline(hub, b32, download_calls):
    assert cache_path(B32) == hub / B32_FILE
    assert not is_cached("ViT-B/32", "IMAGENET1K_V1")
    hub.mkdir(parents=True)
    os.link(b32[0], hub / B32_FILE)  # the same bytes torch.save wrote, without copying 350 MB
    assert is_cached("ViT-B/32", "IMAGENET1K_V1") and is_cached("ViT-B/32")  # DEFAULT is IMAGENET1K_V1

    bundle = load_pretrained("ViT-B/32", "IMAGENET1K_V1")
    assert download_calls == []
    assert_same_logits(bundle, b32)
    assert bundle.class_names == list(B32.meta["categories"]) and len(bundle.class_names) == 1000
    transforms = B32.transforms()
    assert bundle.preprocessing == Preprocessing(
        resize_size=transforms.resize_size[0], crop_size=transforms.crop_size[0],
        interpolation=transforms.interpolation.value, mean=tuple(transforms.mean), std=tuple(transforms.std))
    assert (bundle.preprocessing.resize_size, bundle.preprocessing.crop_size) == (256, 224)
    assert bundle.name == "ViT-B/32" and bundle.weights == "IMAGENET1K_V1" and bundle.trained
    assert B32_FILE in bundle.source and bundle.meta["imagenet_acc1"] == pytest.approx(75.912)
    assert not any(p.is_meta for p in bundle.model.parameters()) and not bundle.model.training


# ---------------------------------------------------------------------------------------------------------------
# (b) offline and not cached

def test_offline_and_not_cached_names_the_path(hub, mirror, download_calls, monkeypatch):
    url, requested = mirror
    monkeypatch.setenv("EXPLORER_WEIGHTS_MIRROR", url)  # offline wins over a mirror
    with pytest.raises(WeightsUnavailable) as info:
        load_pretrained("ViT-B/32", "IMAGENET1K_V1")
    message = str(info.value)
    assert str(hub / B32_FILE) in message and "EXPLORER_OFFLINE" in message and B32.url in message
    assert_one_sentence(message)
    assert download_calls == [] and requested == []


# ---------------------------------------------------------------------------------------------------------------
# (c) a local mirror, online

def test_mirror_download_lands_in_the_cache_and_loads_exactly(hub, b32, mirror, download_calls, monkeypatch):
    url, requested = mirror
    monkeypatch.delenv("EXPLORER_OFFLINE")
    monkeypatch.setenv("EXPLORER_WEIGHTS_MIRROR", url)
    bundle = load_pretrained("ViT-B/32", "IMAGENET1K_V1")
    assert requested == [f"/{B32_FILE}"]
    assert len(download_calls) == 1
    assert download_calls[0]["url"] == url + B32_FILE and download_calls[0]["progress"] is True  # a progress bar
    assert download_calls[0]["hash_prefix"] is None  # a mirror's file may be re-exported: its hash isn't checked
    assert filecmp.cmp(hub / B32_FILE, b32[0], shallow=False)
    assert [p.name for p in hub.iterdir()] == [B32_FILE]  # no temporary file left behind
    assert_same_logits(bundle, b32)
    pretrained_state_dict(B32)  # now cached: no second request
    assert requested == [f"/{B32_FILE}"] and len(download_calls) == 1


def test_mirror_without_the_file_is_one_sentence(hub, mirror, monkeypatch):
    url, requested = mirror
    monkeypatch.delenv("EXPLORER_OFFLINE")
    monkeypatch.setenv("EXPLORER_WEIGHTS_MIRROR", url)
    with pytest.raises(WeightsUnavailable) as info:
        load_pretrained("ViT-B/16", "IMAGENET1K_V1")  # the server has only the B/32 file
    name = os.path.basename(ViT_B_16_Weights.IMAGENET1K_V1.url)
    message = str(info.value)
    assert requested == [f"/{name}"] and url + name in message and "HTTP 404" in message
    assert_one_sentence(message)
    assert not hub.exists() or list(hub.iterdir()) == []


def test_official_url_is_downloaded_with_its_hash_checked(hub, monkeypatch):
    monkeypatch.delenv("EXPLORER_OFFLINE")
    calls = []

    def no_network(url, dst, hash_prefix=None, progress=True):
        calls.append(dict(url=url, hash_prefix=hash_prefix, progress=progress))
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(explorer.weights, "download_file", no_network)
    with pytest.raises(WeightsUnavailable) as info:
        load_pretrained("ViT-B/32", "IMAGENET1K_V1")
    assert calls == [dict(url=B32.url, hash_prefix="d86f8d99", progress=True)]  # as torchvision's check_hash=True
    assert_one_sentence(str(info.value))
    assert "no network in this test" in str(info.value) and str(hub / B32_FILE) in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# (d) a mirror on a closed port

def test_mirror_on_a_closed_port_is_one_sentence(hub, monkeypatch):
    with socket.socket() as probe:  # a port that was free a moment ago, with nothing listening now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("EXPLORER_OFFLINE")
    monkeypatch.setenv("EXPLORER_WEIGHTS_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(WeightsUnavailable) as info:
        load_pretrained("ViT-B/32", "IMAGENET1K_V1")
    message = str(info.value)
    assert_one_sentence(message)
    assert message.startswith("Could not download") and f"127.0.0.1:{port}/{B32_FILE}" in message
    assert "refused" in message.lower() and str(hub / B32_FILE) in message
    assert not (hub / B32_FILE).exists()


# ---------------------------------------------------------------------------------------------------------------
# (e) hostile or wrong files in the cache

@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_in_the_cache_is_refused_and_not_run(hub, tmp_path, writer):
    marker = tmp_path / "pwned"
    hub.mkdir(parents=True)
    write_payload(hub / B32_FILE, marker, writer)
    with pytest.raises(WeightsUnavailable) as info:
        load_pretrained("ViT-B/32", "IMAGENET1K_V1")
    assert not marker.exists()
    assert_one_sentence(str(info.value))
    assert str(hub / B32_FILE) in str(info.value) and "delete it" in str(info.value)


def test_weights_of_another_model_in_the_cache_are_refused(hub):
    hub.mkdir(parents=True)
    torch.save(small_vit_state_dict(), hub / B32_FILE)
    with pytest.raises(WeightsUnavailable, match="another model") as info:
        load_pretrained("ViT-B/32", "IMAGENET1K_V1")
    assert_one_sentence(str(info.value))
    torch.save([1, 2, 3], hub / B32_FILE)
    with pytest.raises(WeightsUnavailable, match="does not hold a state dict"):
        load_pretrained("ViT-B/32", "IMAGENET1K_V1")


ALL_WEIGHTS = [(name, variant) for name in PRETRAINED for variant in weight_variants(name)]


@pytest.mark.parametrize("name, variant", ALL_WEIGHTS, ids=[f"{n}:{v}" for n, v in ALL_WEIGHTS])
def test_every_torchvision_weight_fits_its_preset_and_preprocessing(name, variant, monkeypatch):
    """For every weights enum (SWAG ones at 384 / 512 / 518 included), a state dict of the shape torchvision's own
    builder makes for it converts, and the model's input size is the preprocessing's crop. Meta device: no memory."""
    weights = get_weights(name, variant)
    builder = getattr(torchvision.models, PRETRAINED[name][0])
    with torch.device("meta"):  # as torchvision's builder does for these weights
        tv = builder(weights=None, image_size=weights.meta["min_size"][0], num_classes=len(weights.meta["categories"]))
    monkeypatch.setattr("explorer.weights.pretrained_state_dict", lambda w, progress=True: tv.state_dict())
    bundle = load_pretrained(name, variant)
    config = bundle.model.config
    assert config.image_hw == (bundle.preprocessing.crop_size,) * 2 == tuple(weights.meta["min_size"])
    assert config.replace(image_size=224, name="") == CONFIGS[name].replace(name="")
    assert bundle.preprocessing.interpolation == weights.transforms().interpolation.value
    assert len(bundle.class_names) == config.num_classes == 1000


def test_weight_variants_and_errors():
    assert {"IMAGENET1K_V1", "IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_LINEAR_V1"} <= set(weight_variants("ViT-B/16"))
    assert get_weights("ViT-H/14").name == "IMAGENET1K_SWAG_E2E_V1"  # torchvision's DEFAULT for H/14
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        get_weights("ViT-B/16", "IMAGENET22K")
    with pytest.raises(ValueError, match="ViT-B/16"):
        get_weights("ViT-Tiny-Test/8")


def test_the_menus_table_of_torchvision_weights_is_torchvisions():
    """weights.TORCHVISION_WEIGHTS (what the menu shows without importing torchvision) against torchvision's enums:
    the same variants in the same order, file names, crop sizes, accuracies and defaults."""
    from explorer.weights import TORCHVISION_WEIGHTS, torchvision_weights

    assert set(TORCHVISION_WEIGHTS) == set(PRETRAINED)
    for name in PRETRAINED:
        enum = getattr(torchvision.models, PRETRAINED[name][1])
        assert [w.variant for w in TORCHVISION_WEIGHTS[name]] == [w.name for w in enum]
        for entry, weights in zip(TORCHVISION_WEIGHTS[name], enum):
            assert entry.file == os.path.basename(weights.url)
            assert entry.crop == weights.transforms().crop_size[0]
            assert entry.acc1 == weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]
            assert entry.default == (weights == enum.DEFAULT)
            assert cache_path(entry) == cache_path(weights)
        assert torchvision_weights(name, "DEFAULT").variant == enum.DEFAULT.name


@pytest.mark.parametrize("env", [{}, {"TORCH_HOME": "/tmp/th"}, {"XDG_CACHE_HOME": "/tmp/xdg"},
                                 {"TORCH_HOME": "~/th", "XDG_CACHE_HOME": "/tmp/xdg"}], ids=str)
def test_torch_hub_dir_without_torch_is_torch_hub_get_dir(env):
    """Where is_cached looks before torch is imported is where torch.hub (and so torchvision) caches the file."""
    code = ("import sys; from explorer.weights import torch_hub_dir; before = torch_hub_dir(); "
            "assert 'torch' not in sys.modules; import torch; "
            "print(before == __import__('pathlib').Path(torch.hub.get_dir()))")
    clean = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**clean, **env}, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


# ---------------------------------------------------------------------------------------------------------------
# (f) the project's checkpoints: safetensors only

@pytest.fixture
def no_unpickling(monkeypatch):
    """Fails on any torch.load / pickle.load(s); records every path opened through open()."""
    opened = []
    real_open = io.open

    def spy_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    return opened


@pytest.mark.parametrize("suffix", [".pth", ".pt"])
def test_load_checkpoint_refuses_pickle_paths_without_opening_them(tmp_path, suffix, no_unpickling):
    marker = tmp_path / "pwned"
    path = tmp_path / f"model{suffix}"
    write_payload(path, marker, "pickle.dump")
    no_unpickling.clear()
    for load in (load_checkpoint, read_checkpoint_info):
        with pytest.raises(WeightsUnavailable) as info:
            load(path)
        assert_one_sentence(str(info.value))
        assert "pickle" in str(info.value) and ".safetensors" in str(info.value)
    assert not any(path.name in name for name in no_unpickling)
    assert not marker.exists()


def test_checkpoint_roundtrip(tmp_path, tiny_model, no_unpickling):
    class_names = [f"class {i}" for i in range(10)]
    preprocessing = Preprocessing(resize_size=32, crop_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    provenance = {"dataset": "generated", "test_accuracy": 0.5, "epochs": 1}
    stem = tmp_path / "runs" / "tiny.v2"  # a dot in the name must survive: tiny.v2.safetensors, tiny.v2.json
    weights_path, json_path = save_checkpoint(stem, tiny_model, class_names, preprocessing, provenance)
    assert (weights_path.name, json_path.name) == ("tiny.v2.safetensors", "tiny.v2.json")
    for given in (stem, weights_path, json_path):
        assert checkpoint_paths(given) == (weights_path, json_path)
    assert sorted(p.name for p in stem.parent.iterdir()) == ["tiny.v2.json", "tiny.v2.safetensors"]

    info = json.loads(json_path.read_text())
    assert info["config"] == tiny_model.config.to_dict() and info["class_names"] == class_names
    assert info["preprocessing"] == preprocessing.to_dict() and info["provenance"] == provenance
    assert info["num_parameters"] == tiny_model.num_parameters()

    # The weights file is safetensors: an 8-byte little-endian header length, then a JSON header naming every tensor.
    raw = weights_path.read_bytes()
    assert raw[:2] != b"PK" and raw[:1] != b"\x80"  # neither torch's zip nor a pickle
    (header_length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_length])
    assert set(header) - {"__metadata__"} == set(tiny_model.state_dict())
    assert header["__metadata__"]["format"] == "vit-explorer/1"

    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = tiny_model(x)
    for given in (stem, weights_path, json_path, str(weights_path)):
        bundle = load_checkpoint(given)
        with torch.no_grad():
            assert torch.equal(bundle.model(x), expected)
        assert bundle.class_names == class_names and bundle.preprocessing == preprocessing
        assert bundle.model.config == tiny_model.config and not bundle.model.training
        assert bundle.weights == "tiny.v2" and "generated" in bundle.source and "0.5000" in bundle.source
        assert not any(p.is_meta for p in bundle.model.parameters())


def test_damaged_checkpoints_are_one_sentence(tmp_path, tiny_model, no_unpickling):
    preprocessing = Preprocessing(resize_size=32, crop_size=32)
    weights_path, json_path = save_checkpoint(tmp_path / "run", tiny_model, ["a"] * 10, preprocessing)
    good_json, good_weights = json_path.read_text(), weights_path.read_bytes()

    def refused(match: str) -> None:
        with pytest.raises(WeightsUnavailable, match=match) as info:
            load_checkpoint(tmp_path / "run")
        assert_one_sentence(str(info.value))

    json_path.write_text("{not json")
    refused("not valid JSON")
    json_path.write_text(json.dumps({"format": "something else"}))
    refused("not a ViT Explorer checkpoint")
    info = json.loads(good_json)
    del info["preprocessing"]
    json_path.write_text(json.dumps(info))
    refused("incomplete")
    info = json.loads(good_json)
    info["config"]["depth"] = 3
    json_path.write_text(json.dumps(info))
    refused(r"first mismatch: blocks\.2\.")
    json_path.write_text(good_json)
    marker = tmp_path / "pwned"
    write_payload(weights_path, marker, "pickle.dump")  # a pickle disguised as .safetensors
    refused("not a readable safetensors file")
    assert not marker.exists()
    weights_path.unlink()
    refused("missing")
    json_path.unlink()
    weights_path.write_bytes(good_weights)
    refused("No checkpoint description")


def test_random_bundle_is_marked_untrained():
    bundle = random_bundle("ViT-Tiny-Test/8", seed=1)
    assert not bundle.trained and bundle.weights == UNTRAINED and "seed 1" in bundle.source
    assert bundle.class_names == [f"class {i}" for i in range(10)]
    assert bundle.preprocessing.crop_size == 32
    x = bundle.preprocessing(Image.new("RGB", (40, 50)))
    assert bundle.model(x).shape == (1, 10)
    assert isinstance(bundle.model, ViT)


# ---------------------------------------------------------------------------------------------------------------
# (g) faults: damaged cached files, downloads cut halfway, several visitors at once. A small torchvision ViT file
# stands in for the weights (pretrained_state_dict checks files, not which model they hold; load_pretrained does).

@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """(bytes of a torchvision-format weights file, its state dict)."""
    state_dict = small_vit_state_dict()
    path = tmp_path_factory.mktemp("small") / "small.pth"
    torch.save(state_dict, path)
    return path.read_bytes(), state_dict


@pytest.fixture
def weights_server():
    """Files on 127.0.0.1 with faults on demand. `files`: name -> bytes; `cut`: announce the whole Content-Length but
    close the connection halfway through the body; `gate` (a threading.Event), when set here, holds every GET until
    it is set; `gets`: GET requests by path."""
    state = types.SimpleNamespace(files={}, cut=False, gate=None, gets=collections.Counter(), url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            state.gets[self.path] += 1
            if state.gate is not None:
                assert state.gate.wait(timeout=30)
            data = state.files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2] if state.cut else data)  # HTTP/1.0: the connection closes next

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield state
    finally:
        if state.gate is not None:
            state.gate.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def damaged(data: bytes, damage: str) -> bytes:
    """`data` (a torch.save zip) cut in half, or with one byte of its largest tensor flipped (same size)."""
    if damage == "truncated":
        return data[:len(data) // 2]
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        record = max(archive.infolist(), key=lambda r: r.file_size)
    name_length, extra_length = struct.unpack("<HH", data[record.header_offset + 26:record.header_offset + 30])
    start = record.header_offset + 30 + name_length + extra_length  # the record's bytes follow its local header
    flipped = bytearray(data)
    flipped[start + record.file_size // 2] ^= 0xFF
    return bytes(flipped)


def assert_same_state_dict(ours, expected) -> None:
    assert set(ours) == set(expected) and all(torch.equal(ours[k], expected[k]) for k in expected)


def test_a_flipped_byte_passes_torch_load_unnoticed(tmp_path, small_file):
    # Why files are checked before torch.load: it reads a zip's records without checking their CRC-32s.
    path = tmp_path / "flipped.pth"
    path.write_bytes(damaged(small_file[0], "flipped"))
    assert len(path.read_bytes()) == len(small_file[0])
    loaded = torch.load(path, weights_only=True)
    assert set(loaded) == set(small_file[1])
    assert any(not torch.equal(loaded[k], small_file[1][k]) for k in loaded)


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_damaged_cached_file_offline_is_one_sentence(hub, small_file, damage, download_calls):
    hub.mkdir(parents=True)
    (hub / B32_FILE).write_bytes(damaged(small_file[0], damage))
    with pytest.raises(WeightsUnavailable) as info:
        load_pretrained("ViT-B/32", "IMAGENET1K_V1")  # no model comes back, half-loaded or whole
    message = str(info.value)
    assert_one_sentence(message)
    error = info.value  # nothing chained that would print a second traceback
    assert "Traceback" not in message and error.__cause__ is None and (error.__context__ is None or
                                                                       error.__suppress_context__)
    assert f"The cached file {hub / B32_FILE} is damaged (" in message and "EXPLORER_OFFLINE" in message
    assert ("cut short" if damage == "truncated" else "its bytes have changed: Bad CRC-32") in message
    assert download_calls == []
    assert (hub / B32_FILE).read_bytes() == damaged(small_file[0], damage)  # offline, the user's file is left alone


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_damaged_cached_file_is_downloaded_afresh(hub, small_file, damage, weights_server, monkeypatch):
    weights_server.files[B32_FILE] = small_file[0]
    monkeypatch.delenv("EXPLORER_OFFLINE")
    monkeypatch.setenv("EXPLORER_WEIGHTS_MIRROR", weights_server.url)
    hub.mkdir(parents=True)
    (hub / B32_FILE).write_bytes(damaged(small_file[0], damage))
    assert_same_state_dict(pretrained_state_dict(B32, progress=False), small_file[1])
    assert weights_server.gets == {f"/{B32_FILE}": 1}
    assert [p.name for p in hub.iterdir()] == [B32_FILE]  # no lock file or .partial left behind
    assert (hub / B32_FILE).read_bytes() == small_file[0]
    pretrained_state_dict(B32, progress=False)  # intact now: read from the cache
    assert weights_server.gets == {f"/{B32_FILE}": 1}


def test_damaged_cached_file_and_a_damaged_download_is_one_sentence(hub, small_file, weights_server, monkeypatch):
    weights_server.files[B32_FILE] = damaged(small_file[0], "flipped")  # the mirror's copy is damaged too
    monkeypatch.delenv("EXPLORER_OFFLINE")
    monkeypatch.setenv("EXPLORER_WEIGHTS_MIRROR", weights_server.url)
    hub.mkdir(parents=True)
    (hub / B32_FILE).write_bytes(damaged(small_file[0], "truncated"))
    with pytest.raises(WeightsUnavailable) as info:
        pretrained_state_dict(B32, progress=False)
    message = str(info.value)
    assert_one_sentence(message)
    assert message.startswith(f"The cached file {hub / B32_FILE} was damaged") and "CRC-32" in message
    assert weights_server.url + B32_FILE in message and B32.url in message
    assert list(hub.iterdir()) == []  # neither the damaged file nor the damaged download


def test_a_download_cut_halfway_leaves_no_file_and_the_next_call_downloads(hub, small_file, weights_server,
                                                                           monkeypatch):
    weights_server.files[B32_FILE] = small_file[0]
    monkeypatch.setenv("EXPLORER_WEIGHTS_MIRROR", weights_server.url)
    hub.mkdir(parents=True)
    (hub / f"{B32_FILE}.0123abcd.explorer.partial").write_bytes(small_file[0])  # a killed run's: never the file
    assert not is_cached("ViT-B/32", "IMAGENET1K_V1")
    with pytest.raises(WeightsUnavailable, match="is not cached"):
        pretrained_state_dict(B32, progress=False)

    monkeypatch.delenv("EXPLORER_OFFLINE")
    weights_server.cut = True
    with pytest.raises(WeightsUnavailable) as info:
        pretrained_state_dict(B32, progress=False)
    message = str(info.value)
    assert_one_sentence(message)
    assert message.startswith(f"Could not download {weights_server.url}{B32_FILE} (the connection closed after ")
    assert f"{len(small_file[0]) // 2} of {len(small_file[0])} bytes" in message and str(hub / B32_FILE) in message
    assert list(hub.iterdir()) == []  # no file at the final path, no .partial, no lock file

    weights_server.cut = False
    assert_same_state_dict(pretrained_state_dict(B32, progress=False), small_file[1])
    assert weights_server.gets == {f"/{B32_FILE}": 2}
    assert [p.name for p in hub.iterdir()] == [B32_FILE]


def test_official_url_hash_is_checked_before_the_file_takes_its_name(hub, small_file, weights_server, monkeypatch,
                                                                      download_calls):
    # A server on 127.0.0.1 plays download.pytorch.org: no mirror, so the file name's hash prefix is checked.
    prefix = hashlib.sha256(small_file[0]).hexdigest()[:8]
    name = f"vit_small-{prefix}.pth"
    weights = types.SimpleNamespace(url=weights_server.url + name, name="SMALL")
    monkeypatch.delenv("EXPLORER_OFFLINE")
    weights_server.files[name] = damaged(small_file[0], "flipped")
    with pytest.raises(WeightsUnavailable) as info:
        pretrained_state_dict(weights, progress=False)
    assert_one_sentence(str(info.value))
    assert f"not {prefix} as its name says" in str(info.value)
    assert list(hub.iterdir()) == []
    weights_server.files[name] = small_file[0]
    assert_same_state_dict(pretrained_state_dict(weights, progress=False), small_file[1])
    assert [call["hash_prefix"] for call in download_calls] == [prefix, prefix]
    assert [p.name for p in hub.iterdir()] == [name]


def test_two_visitors_at_once_cause_one_download(hub, small_file, weights_server, monkeypatch):
    weights_server.files[B32_FILE] = small_file[0]
    weights_server.gate = threading.Event()
    monkeypatch.delenv("EXPLORER_OFFLINE")
    monkeypatch.setenv("EXPLORER_WEIGHTS_MIRROR", weights_server.url)
    results, errors = [None, None], []

    def visitor(i):
        try:
            results[i] = pretrained_state_dict(B32, progress=False)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    deadline = threading.Event()
    while sum(weights_server.gets.values()) == 0:  # one visitor's request is held by the server
        deadline.wait(0.01)
    deadline.wait(0.3)  # time for the other visitor to send a second request, if it were going to
    weights_server.gate.set()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and weights_server.gets == {f"/{B32_FILE}": 1}
    assert_same_state_dict(results[0], small_file[1])
    assert_same_state_dict(results[1], small_file[1])
    assert [p.name for p in hub.iterdir()] == [B32_FILE]


def test_two_processes_at_once_cause_one_download(hub, tmp_path, small_file, weights_server, monkeypatch):
    """The lock is a file lock too: a second process waits for the first one's download, then reads its file."""
    weights_server.files[B32_FILE] = small_file[0]
    weights_server.gate = threading.Event()
    monkeypatch.delenv("EXPLORER_OFFLINE")
    monkeypatch.setenv("EXPLORER_WEIGHTS_MIRROR", weights_server.url)
    results = []
    here = threading.Thread(target=lambda: results.append(pretrained_state_dict(B32, progress=False)))
    here.start()
    while sum(weights_server.gets.values()) == 0:  # this process's request is held by the server
        threading.Event().wait(0.01)
    (tmp_path / "expected.pth").write_bytes(small_file[0])
    script = ("import sys, types, torch\n"
              "from explorer.weights import pretrained_state_dict\n"
              "expected = torch.load(sys.argv[1], weights_only=True)\n"
              "print('ready', flush=True)\n"
              "ours = pretrained_state_dict(types.SimpleNamespace(url=sys.argv[2]), progress=False)\n"
              "print(set(ours) == set(expected) and all(torch.equal(ours[k], expected[k]) for k in expected))\n")
    other = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "expected.pth"), B32.url], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        assert other.stdout.readline().strip() == "ready", other.stderr.read()
        threading.Event().wait(0.5)  # time for it to reach the lock (or, were there none, the server)
        assert weights_server.gets == {f"/{B32_FILE}": 1}
        weights_server.gate.set()
        out, err = other.communicate(timeout=60)
    finally:
        weights_server.gate.set()
        other.kill()
        here.join(timeout=30)
    assert other.returncode == 0 and out.strip() == "True", err
    assert weights_server.gets == {f"/{B32_FILE}": 1}
    assert len(results) == 1 and [p.name for p in hub.iterdir()] == [B32_FILE]
