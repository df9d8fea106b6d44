"""A damaged file in the Hugging Face cache (the Hub side of explorer.weights' fault tests in tests/test_weights.py):
a cached model.safetensors cut short or with a changed byte is downloaded again from a Hub on 127.0.0.1, and offline
it is one sentence that names it."""
import re

import pytest
import torch

from hub_models import COMMIT, FakeHub, fake_hub, folder_files, hf_model  # noqa: F401 (fake_hub is a fixture)
from explorer.families import load
from explorer.weights import WeightsUnavailable

REPO = "someone/vit-tiny"


def weights_gets() -> int:
    return sum(1 for method, path in FakeHub.requests if method == "GET" and path.endswith("/model.safetensors"))


def damage(path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        del data[len(data) // 2:]
    else:
        data[-10] ^= 0xFF  # a byte of the last tensor: the header and the size still agree
    path.write_bytes(bytes(data))


def test_damaged_hub_cache_is_downloaded_afresh_and_offline_is_one_sentence(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    hf_model(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, num_labels=5).save_pretrained(tmp_path / "hf")
    FakeHub.repos = {REPO: folder_files(tmp_path / "hf")}
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = load(REPO).model(x)
    assert weights_gets() == 1
    cached = tmp_path / "hf_home" / "hub" / "models--someone--vit-tiny" / "snapshots" / COMMIT / "model.safetensors"
    blob = cached.resolve()
    assert re.fullmatch(r"[0-9a-f]{64}", blob.name)  # the Hub names a weights blob by its SHA-256
    intact = blob.read_bytes()

    for count, how in enumerate(["truncated", "flipped"], start=2):
        damage(blob, how)
        with torch.no_grad():
            assert torch.equal(load(REPO).model(x), expected)
        assert weights_gets() == count and blob.read_bytes() == intact

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for how in ["truncated", "flipped"]:
        damage(blob, how)
        with pytest.raises(WeightsUnavailable) as info:
            load(REPO)
        message = str(info.value)
        assert "\n" not in message and message.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", message), message
        assert message.startswith(f"The cached file {cached} of {REPO} is damaged (") and "HF_HUB_OFFLINE" in message
        assert ("SHA-256" in message) == (how == "flipped")
        blob.write_bytes(intact)
    assert weights_gets() == 3
