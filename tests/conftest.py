"""Shared test setup: no network, no telemetry, one tiny model. Keep this file minimal; other test files share it."""
import os

# Set before anything imports explorer.weights or gradio. Tests that need another value use monkeypatch.
os.environ.setdefault("EXPLORER_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def tiny_model():
    """The ViT-Tiny-Test/8 preset (32x32x3, P=8, D=32, L=2, h=4, 10 classes), seeded, eval mode, with a random
    (not zero) head so that logits and probabilities are non-trivial."""
    from explorer import CONFIGS, ViT

    torch.manual_seed(0)
    model = ViT(CONFIGS["ViT-Tiny-Test/8"]).eval()
    with torch.no_grad():
        model.head.weight.normal_(std=0.5)
        model.head.bias.normal_(std=0.5)
    return model


@pytest.fixture
def nothing_cached(monkeypatch, tmp_path):
    """Offline, nothing cached (empty torchvision and Hugging Face caches in tmp_path), the Hub's address a closed
    local port, not a Space, no checkpoint or model folders from the environment."""
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: never the real Hub
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("SPACE_ID", "EXPLORER_CHECKPOINTS", "EXPLORER_MODELS"):
        monkeypatch.delenv(name, raising=False)
