"""The app's model menu beyond torchvision: the paper's checkpoints by Hub id and the user's own model folders.

Models are tiny and random: a transformers ViTForImageClassification saved by save_pretrained and a timm ViT saved by
timm's save_for_hf, in a tmp folder that EXPLORER_MODELS names. Nothing reaches the Hugging Face Hub: offline by
default with an empty cache in tmp_path, and the one test that downloads does it from a server on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from hub_models import (  # noqa: E402,F401
    FakeHub, fake_hub, folder_files, hf_model, huggingface_hub, randomise, save_timm, timm)

from explorer import ViT  # noqa: E402
from explorer.app import text, views  # noqa: E402
from explorer.app.registry import ModelRegistry, hub_label  # noqa: E402
from explorer.app.server import Server  # noqa: E402
from explorer.families import PAPER_CHECKPOINTS  # noqa: E402
from explorer.weights import WeightsUnavailable  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PAPER_B16 = "ViT-B/16 · google/vit-base-patch16-224"
HF_LABELS = {0: "tench", 1: "goldfish", 2: "great white shark", 3: "tiger shark", 4: "hammerhead"}
HF_KWARGS = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=64, id2label=HF_LABELS, label2id={v: k for k, v in HF_LABELS.items()})
PROCESSOR = {"image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32},
             "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
             "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # as ViTImageProcessor.save_pretrained


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and not re.search(r"[a-z]\. [A-Z]", message)


def photo(seed: int = 0, size=(60, 40)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def save_hf(folder: Path):
    """A random transformers ViT saved with save_pretrained, with its image processor's config."""
    reference = hf_model(**HF_KWARGS)
    reference.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    return reference


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """$EXPLORER_MODELS: two readable folders (transformers, timm), three that are not, a hidden one; the references."""
    root = tmp_path_factory.mktemp("models")
    hf_reference = save_hf(root / "hf_vit")
    timm_reference = randomise(timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8,
                                                 embed_dim=32, depth=2, num_heads=4, num_classes=3))
    save_timm(timm_reference, root / "timm_vit", label_names=["cat", "rocket", "astronaut"])
    (root / "only_pickle").mkdir()
    (root / "only_pickle" / "config.json").write_bytes((root / "hf_vit" / "config.json").read_bytes())
    (root / "only_pickle" / "pytorch_model.bin").write_bytes(b"never unpickled")
    for name, model_type in (("beit", "beit"), ("dinov2", "dinov2")):  # a model type not read; a backbone (listed)
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps({"model_type": model_type}))
        (root / name / "model.safetensors").write_bytes(b"")
    (root / "no_config").mkdir()
    (root / ".cache").mkdir()
    return root, {"hf_vit": hf_reference, "timm_vit": timm_reference}


@pytest.fixture(autouse=True)
def offline(nothing_cached):
    """Every test here runs offline with nothing cached (conftest.nothing_cached)."""


@pytest.fixture
def server(models, monkeypatch):
    monkeypatch.setenv("EXPLORER_MODELS", str(models[0]))
    return Server(device="cpu", max_models=4)


def logits_of(reference, pixels: torch.Tensor) -> torch.Tensor:
    """The source library's own forward on the pixels our trace read: (K,)."""
    with torch.no_grad():
        out = reference(pixel_values=pixels[None]) if hasattr(reference, "config") else reference(pixels[None])
    return getattr(out, "logits", out)[0]


# ---------------------------------------------------------------------------------------------------------------
# The menu

def test_the_menu_offers_the_papers_checkpoints_by_hub_id_and_the_users_folders(server):
    registry = server.registry
    labels = registry.labels()
    for hub_id in ("google/vit-base-patch16-224", "google/vit-base-patch32-384", "google/vit-large-patch16-224"):
        spec = registry.resolve(hub_id)  # a Hub id alone
        assert spec.kind == "hub" and spec.path == hub_id and spec.label in labels
        assert registry.resolve(f"hf-hub:{hub_id.upper()}") is spec
    hub = [s.label for s in registry.specs.values() if s.kind == "hub"]
    assert [hub_label(c) for c in PAPER_CHECKPOINTS] == hub[:len(PAPER_CHECKPOINTS)]  # then FAMILY_CHECKPOINTS
    b16 = registry.resolve("google/vit-base-patch16-224")
    assert b16.label == PAPER_B16 and b16.paper.model == "ViT-B/16"
    assert all(w in b16.description for w in ("the paper's", "ImageNet-21k", "ImageNet-1k", "224px"))
    augreg = registry.resolve("timm/vit_large_patch16_224.augreg_in21k_ft_in1k")
    assert "not the paper's own" in augreg.description
    # torchvision's, the checkpoints and the untrained models stay as they were; a preset is still torchvision's.
    assert registry.resolve("ViT-B/16").label == "ViT-B/16 · IMAGENET1K_V1"
    kinds = [s.kind for s in registry.specs.values()]
    assert kinds == sorted(kinds, key=["checkpoint", "folder", "hub", "pretrained", "untrained"].index)
    assert kinds.count("checkpoint") >= 1 and "ViT-B/16 · random init" in labels
    # The folders: one entry each that can be read, one problem sentence each that can't; hidden ones ignored.
    folders = {s.label: s for s in registry.specs.values() if s.kind == "folder"}
    assert set(folders) == {"hf_vit", "timm_vit", "dinov2"}
    assert "transformers ViT-32d/8, 32px, 5 classes" in folders["hf_vit"].description
    assert "timm ViT-32d/8, 32px, 3 classes (vit_base_patch16_224)" in folders["timm_vit"].description
    assert "transformers DINOv2 ViT-B/14, 224px, a backbone" in folders["dinov2"].description  # from config.json
    assert registry.resolve("hf_vit") is folders["hf_vit"]
    problems = {p.split(" ", 1)[0]: p for p in registry.problems}
    assert set(problems) >= {"only_pickle", "beit", "no_config"} and ".cache" not in problems
    assert "pickle" in problems["only_pickle"] and "'beit'" in problems["beit"]
    assert "config.json" in problems["no_config"]
    assert all(one_sentence(p) for p in registry.problems), registry.problems


def test_default_is_the_papers_b16_on_a_space_and_the_shipped_model_offline(monkeypatch):
    registry = ModelRegistry(device="cpu")  # the shipped checkpoints
    shipped = registry.fallback_label()
    assert "fashion" in shipped.lower()
    assert registry.default_label() == shipped  # offline, nothing cached
    note = registry.availability_note()
    assert one_sentence(note) and "torchvision" in note and "Hugging Face" in note and "EXPLORER_OFFLINE" in note
    monkeypatch.setenv("SPACE_ID", "someone/vit-explorer")
    assert registry.default_label() == shipped  # a Space that is offline can't download either
    monkeypatch.delenv("EXPLORER_OFFLINE")
    assert registry.default_label() == PAPER_B16 and registry.availability_note() == ""
    monkeypatch.delenv("SPACE_ID")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # read when it was imported
    assert registry.default_label() == shipped  # off a Space nothing is downloaded unasked
    assert "download from the Hugging Face Hub on first use" in registry.availability_note()


# ---------------------------------------------------------------------------------------------------------------
# Every step and analysis on the user's models

@pytest.mark.parametrize("label", ["hf_vit", "timm_vit"])
def test_a_folder_model_traces_exactly_and_every_view_renders(server, models, label):
    entry = server.analyse(photo(1), label)
    reference = models[1][label]
    assert entry.spec.kind == "folder" and entry.weights == label and server.runs == 1
    pixels = entry.trace["input.pixels"]  # (C, H, W), read by the checkpoint's own preprocessing
    assert (entry.trace.logits - logits_of(reference, pixels)).abs().max() <= 1e-4
    assert entry.class_names[:3] == (["tench", "goldfish", "great white shark"] if label == "hf_vit"
                                     else ["cat", "rocket", "astronaut"])
    config = entry.config
    for options in (views.Options(), views.Options(selected=3, layer=config.depth, head="2", ln_layer=config.depth)):
        for step in range(len(views.STEPS)):
            names = views.step_views(step)
            values = views.render_views(entry, names, options)
            assert len(values) == len(names) and all(v is not None for v in values), (step, names)
    # Eq. 1's untrained twin: ViT(config) from seed 0, as for any config that is not a Table 1 preset.
    torch.manual_seed(0)
    twin = ViT(config).eval()
    with torch.no_grad():
        expected = twin.patch_embedding.projection(pixels[None])[0].numpy()  # (D, rows, cols)
    np.testing.assert_allclose(entry.untrained(), expected, atol=1e-6)
    assert server.runs == 1  # every view came from the one trace


def test_the_card_and_step_0_say_what_the_model_is(server, models):
    hf_entry, timm_entry = server.analyse(photo(2), "hf_vit"), server.analyse(photo(2), "timm_vit")
    card = text.model_card(hf_entry)
    assert "your own model" in card and str(models[0] / "hf_vit") in card and "does not record" in card
    assert hf_entry.preprocessing.describe() in card and "aspect ratio not kept" in card
    # Step 0 describes the recipe in use: Hugging Face resizes the whole image, timm resizes the shorter side and crops.
    step_0 = views.render_views(hf_entry, ["input.text"], views.Options())[0]
    assert "whole image is resized to 32 × 32 pixels" in step_0
    assert "shorter side" not in text.explanation(0, hf_entry.config, hf_entry.preprocessing)
    assert "shorter side is resized to 35 pixels and the central 32 × 32" in text.explanation(
        0, timm_entry.config, timm_entry.preprocessing)
    # A paper checkpoint, before it is loaded: data sets, resolution, Table 1 row, where the weights come from.
    card = text.model_card(spec=server.registry.resolve("google/vit-base-patch16-224"))
    for words in ("ImageNet-21k (14M images", "fine-tuned on ImageNet-1k", "224×224", "Google's original",
                  "ViT-Base: 12 layers, hidden size D = 768, MLP size 3072, 12 heads, 86M parameters",
                  "https://huggingface.co/google/vit-base-patch16-224", "google--vit-base-patch16-224"):
        assert words in card, words
    assert "ViT-Large: 24 layers" in text.model_card(spec=server.registry.resolve("google/vit-large-patch16-224"))
    torchvision = server.registry.resolve("ViT-B/16 · IMAGENET1K_V1")
    assert "JFT" in text.model_card(spec=torchvision)  # torchvision's note stays


# ---------------------------------------------------------------------------------------------------------------
# The paper's checkpoints: offline, through a Hub on 127.0.0.1, from a folder put in EXPLORER_MODELS

def test_offline_a_paper_checkpoint_is_one_sentence_naming_what_to_put_where(server, models):
    with pytest.raises(WeightsUnavailable) as refused:
        server.analyse(photo(3), "google/vit-base-patch16-224")
    message = str(refused.value)
    assert one_sentence(message), message
    for words in ("EXPLORER_OFFLINE", "config.json and model.safetensors",
                  "https://huggingface.co/google/vit-base-patch16-224", str(models[0] / "google--vit-base-patch16-224"),
                  os.environ["HF_HOME"]):
        assert words in message, (words, message)
    assert server.runs == 0
    assert server.analyse(photo(3), "hf_vit").trace.probabilities.shape == (5,)  # the server carries on


def test_a_paper_checkpoint_downloads_through_the_hub_then_loads_offline(fake_hub, tmp_path, monkeypatch):
    server_, _ = fake_hub
    reference = save_hf(tmp_path / "stand_in")  # random weights under the paper's id
    FakeHub.repos = {"google/vit-base-patch16-224": folder_files(tmp_path / "stand_in")}
    server = Server(device="cpu")
    assert "Hugging Face" in server.registry.availability_note()  # not cached yet: downloads on first use
    entry = server.analyse(photo(4), "google/vit-base-patch16-224")
    assert entry.spec.label == PAPER_B16 and entry.weights == "google/vit-base-patch16-224"
    assert "Hugging Face Hub google/vit-base-patch16-224" in entry.source
    assert (entry.trace.logits - logits_of(reference, entry.trace["input.pixels"])).abs().max() <= 1e-4
    assert "ImageNet-21k" in text.model_card(entry)
    assert any(method == "GET" and path.endswith("model.safetensors") for method, path in FakeHub.requests)
    # The Hub goes away: what was never downloaded is one sentence saying where its files can go instead.
    server_.shutdown()
    server_.server_close()
    import time

    with monkeypatch.context() as patch, pytest.raises(WeightsUnavailable, match="cannot be reached") as refused:
        patch.setattr(time, "sleep", lambda seconds: None)  # were huggingface_hub asked, its retries would back off
        server.analyse(photo(4), "google/vit-base-patch32-384")
    message = str(refused.value)
    assert one_sentence(message) and "a folder named google--vit-base-patch32-384" in message, message
    assert "<" not in message, message  # the page shows it as Markdown
    # Offline, a new server reads what was downloaded from the Hugging Face cache.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    again = Server(device="cpu").analyse(photo(4), "google/vit-base-patch16-224")
    assert torch.equal(again.trace.logits, entry.trace.logits)


def test_a_paper_checkpoints_files_in_explorer_models_serve_its_entry_offline(models, tmp_path, monkeypatch):
    root = tmp_path / "models"
    reference = save_hf(root / "google--vit-base-patch16-224")
    monkeypatch.setenv("EXPLORER_MODELS", str(root))
    server = Server(device="cpu")
    assert "google--vit-base-patch16-224" not in server.registry.labels()  # the paper's entry, not one of its own
    entry = server.analyse(photo(5), "google/vit-base-patch16-224")
    assert entry.spec.label == PAPER_B16 and entry.weights == "google/vit-base-patch16-224"
    assert str(root / "google--vit-base-patch16-224") in entry.source
    assert (entry.trace.logits - logits_of(reference, entry.trace["input.pixels"])).abs().max() <= 1e-4


# ---------------------------------------------------------------------------------------------------------------
# Cold start

def test_the_menu_costs_no_transformers_import(models):
    code = ("import sys; import explorer.app.server; from explorer.app.registry import ModelRegistry; "
            "r = ModelRegistry(device='cpu'); r.default_label(); r.availability_note(); "
            "assert {'hf_vit', 'timm_vit'} <= set(r.labels()), r.labels(); "
            "heavy = [m for m in ('transformers', 'timm') if m in sys.modules]; assert not heavy, heavy; "
            "r.get('hf_vit'); assert 'transformers' not in sys.modules")
    env = {**os.environ, "EXPLORER_MODELS": str(models[0]), "EXPLORER_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env, timeout=300)
