"""The one model source resolver, explorer.load (explorer/families/sources.py): every form of name it accepts (what
the survey's --model, the app's menu and explorer.load take), each checked against what that form names, and each
refusal in one sentence. Offline throughout: nothing reaches the network."""
from __future__ import annotations

import re

import pytest
import torch

import explorer
from explorer import CONFIGS
from explorer.families import sources
from explorer.images import Preprocessing
from explorer.weights import UNTRAINED, ModelBundle, WeightsUnavailable, load_checkpoint, random_bundle, save_checkpoint
from hub_models import hf_model  # noqa: E402 (skips this module where transformers or huggingface_hub is missing)

SHIPPED = sources.PACKAGE.parent / "checkpoints" / "vit_fashion_mnist"
TINY_HF = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               intermediate_size=64, num_labels=5)


@pytest.fixture(autouse=True)
def offline(nothing_cached):
    """Every test here runs offline with nothing cached (conftest.nothing_cached)."""


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", message)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    ours, theirs = a.state_dict(), b.state_dict()
    return set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_explorer_load_is_the_resolver():
    assert explorer.load is sources.load


@pytest.mark.parametrize("name, preset, variant", [
    ("ViT-B/16", "ViT-B/16", "DEFAULT"),
    ("ViT-B/16 · IMAGENET1K_SWAG_E2E_V1", "ViT-B/16", "IMAGENET1K_SWAG_E2E_V1"),
    ("  ViT-L/32   ·  IMAGENET1K_V1 ", "ViT-L/32", "IMAGENET1K_V1"),
])
def test_a_torchvision_preset_with_or_without_its_variant(monkeypatch, tiny_model, name, preset, variant):
    asked = []

    def load_pretrained(preset, variant):  # the download and conversion are tests/test_weights.py's
        asked.append((preset, variant))
        return ModelBundle(tiny_model, Preprocessing(32, 32), [f"c{i}" for i in range(10)], preset, variant, "spy")

    monkeypatch.setattr(sources, "load_pretrained", load_pretrained)
    bundle = explorer.load(name)
    assert asked == [(preset, variant)] and bundle.name == preset and not bundle.model.training


def test_a_preset_offline_and_not_cached_or_with_an_unknown_variant_is_one_sentence():
    for name, words in [("ViT-B/16", "Offline (EXPLORER_OFFLINE is set)"),
                        ("ViT-B/16 · NOT_A_VARIANT", "has no weights 'NOT_A_VARIANT'"),
                        ("ViT-Q/9 · random init", "There is no preset 'ViT-Q/9'"),
                        ("ViT-Q/9 · IMAGENET1K_V1", "There is no model called 'ViT-Q/9 · IMAGENET1K_V1'")]:
        with pytest.raises(WeightsUnavailable, match=re.escape(words)) as refused:
            explorer.load(name)
        assert one_sentence(str(refused.value)), str(refused.value)


@pytest.mark.parametrize("preset", ["ViT-Tiny-Test/8", "ViT-Fashion/4"])
def test_an_untrained_preset_is_seed_0(preset):
    bundle = explorer.load(f"{preset} · {UNTRAINED}")
    assert not bundle.trained and bundle.model.config == CONFIGS[preset]
    assert same_weights(bundle.model, random_bundle(preset).model)
    assert same_weights(explorer.load(f"{preset} · Random Init").model, bundle.model)  # any case


def test_the_projects_checkpoints_by_file_stem_and_name(tmp_path, monkeypatch, tiny_model):
    shipped = load_checkpoint(SHIPPED)
    for name in ("vit_fashion_mnist", str(SHIPPED), f"{SHIPPED}.safetensors", f"{SHIPPED}.json"):
        bundle = explorer.load(name)
        assert bundle.name == "ViT-Fashion/4" and bundle.trained and same_weights(bundle.model, shipped.model), name
    save_checkpoint(tmp_path / "mine", tiny_model, [f"c{i}" for i in range(10)], Preprocessing(32, 32))
    monkeypatch.setenv("EXPLORER_CHECKPOINTS", str(tmp_path))
    assert same_weights(explorer.load("mine").model, tiny_model)  # a name in $EXPLORER_CHECKPOINTS
    (tmp_path / "alone").mkdir()
    save_checkpoint(tmp_path / "alone" / "run.v2", tiny_model, [f"c{i}" for i in range(10)], Preprocessing(32, 32))
    assert same_weights(explorer.load(tmp_path / "alone").model, tiny_model)  # a folder holding one checkpoint
    (tmp_path / "alone").rename(tmp_path / "ViT-B · 16")
    assert same_weights(explorer.load(tmp_path / "ViT-B · 16").model, tiny_model)  # a path before a preset's name


def test_a_model_folder_its_files_and_the_device(tmp_path):
    reference = hf_model(**TINY_HF)
    reference.save_pretrained(tmp_path / "hf")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values=x).logits
        for name in (tmp_path / "hf", str(tmp_path / "hf"), tmp_path / "hf" / "config.json",
                     tmp_path / "hf" / "model.safetensors"):
            bundle = explorer.load(name, device="cpu")
            assert bundle.meta["family"] == "transformers" and bundle.weights == "hf"
            assert (bundle.model(x) - expected).abs().max() <= 1e-4, name
            assert all(p.device.type == "cpu" for p in bundle.model.parameters()) and not bundle.model.training


def test_a_hub_id_from_a_models_folder(tmp_path, monkeypatch):
    reference = hf_model(**TINY_HF)
    reference.save_pretrained(tmp_path / "models" / "someone--vit-tiny")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = reference(pixel_values=x).logits
        for name in ("someone/vit-tiny", "hf-hub:someone/vit-tiny"):
            bundle = explorer.load(name, models_dir=tmp_path / "models")
            assert bundle.weights == "someone/vit-tiny" and bundle.meta["hub_id"] == "someone/vit-tiny"
            assert str(tmp_path / "models" / "someone--vit-tiny") in bundle.source
            assert (bundle.model(x) - expected).abs().max() <= 1e-4
        monkeypatch.setenv("EXPLORER_MODELS", str(tmp_path / "models"))  # the default models_dir
        assert (explorer.load("someone/vit-tiny").model(x) - expected).abs().max() <= 1e-4


def test_a_hub_id_offline_and_not_cached_says_where_its_files_can_go(tmp_path):
    for models_dir, where in [(None, "a folder named someone--vit-tiny inside a folder of your choice, and set "
                                     "EXPLORER_MODELS to that folder"),
                              (tmp_path / "models", str(tmp_path / "models" / "someone--vit-tiny"))]:
        with pytest.raises(WeightsUnavailable) as refused:
            explorer.load("someone/vit-tiny", models_dir=models_dir)
        message = str(refused.value)
        assert one_sentence(message), message
        for words in ("Offline (EXPLORER_OFFLINE is set)", "https://huggingface.co/someone/vit-tiny", where,
                      str(tmp_path / "hf_home")):
            assert words in message, (words, message)


def test_anything_else_is_one_sentence(tmp_path):
    for name, words in [("no_such_model", "No file or folder at no_such_model"),
                        (tmp_path / "nothing" / "here", "No file or folder"),
                        ("../escape/x", "is neither a preset"),
                        (tmp_path, "No config.json")]:
        with pytest.raises(WeightsUnavailable, match=re.escape(words)) as refused:
            explorer.load(name)
        assert one_sentence(str(refused.value)), str(refused.value)
