"""The menu and the survey know the family (issue 23, item 6): every family's folder in EXPLORER_MODELS listed with its
family in words (from config.json alone) and loaded through the registry to the source's forward; the descendants'
Hub checkpoints (FAMILY_CHECKPOINTS) checked against timm's own data, listed as "not the paper's", loaded from a Hub on
127.0.0.1 at their revision, a changed file refused; the survey on a backbone and on a DeiT-distilled folder.

Random weights, tiny sizes; the references are tests/test_family_conversions.py's (each family as its library builds
it) and the source library's own forward."""
from __future__ import annotations

import dataclasses
import html
import json
import os
import re

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from hub_models import FakeHub, fake_hub, folder_files, randomise, save_timm, timm  # noqa: E402,F401
from test_survey import run_main  # noqa: E402
from test_family_conversions import (HF_FAMILY, TIMM_FAMILY, TOLERANCE, gap, hf_output, hf_reference,  # noqa: E402
                                     timm_reference)

from explorer import analysis, load  # noqa: E402
from explorer import survey as sv  # noqa: E402
from explorer.app import text  # noqa: E402
from explorer.app.registry import ModelRegistry, hub_label  # noqa: E402
from explorer.families import FAMILY_CHECKPOINTS, PAPER_CHECKPOINTS, from_timm  # noqa: E402
from explorer.families.catalogue import BACKBONE_OUTPUT, NOT_THE_PAPERS, catalogue_entry  # noqa: E402
from explorer.families.names import family_name, timm_family_name  # noqa: E402
from explorer.render import survey as survey_figures  # noqa: E402
from explorer.trace import trace  # noqa: E402
from explorer.weights import WeightsUnavailable  # noqa: E402

# What each family's menu entry must say, in words (the folder's family by its library's name; its tokens by config).
TIMM_WORDS = {
    "DeiT distilled": "timm DeiT distilled ViT-32d/8, 32px, 5 classes",
    "DeiT III (layer scale, E_pos on the patches)": "timm DeiT III ViT-32d/8, 32px, 5 classes",
    "DINOv2 backbone": "timm DINOv2 ViT-32d/8, 32px, a backbone: features, no classes",
    "DINOv2 with 4 registers": "timm DINOv2 ViT-32d/8 with 4 registers, 32px, a backbone: features, no classes",
    "CLIP image tower (norm_pre)": "timm CLIP image tower ViT-32d/8, 32px, 6 classes",
    "CLIP QuickGELU": "timm CLIP image tower ViT-32d/8, 32px, 6 classes",
    "mean + fc_norm (MAE fine-tune)": "timm ViT-32d/8, mean-pooled, 32px, 4 classes",
    "mean, no class token": "timm ViT-32d/8, mean-pooled, 32px, 4 classes",
    "mean without fc_norm": "timm ViT-32d/8, mean-pooled, 32px, 4 classes",
    "mean backbone, registers, no class token": "timm ViT-32d/8 with 4 registers, mean-pooled, 32px, a backbone",
}
HF_WORDS = {
    "DeiT with teacher": "transformers DeiT distilled ViT-32d/8, 32px, 3 classes",
    "DINOv2": "transformers DINOv2 ViT-32d/8, 32px, a backbone: features, no classes",
    "DINOv2 with registers": "transformers DINOv2 ViT-32d/8 with 3 registers, 32px, a backbone: features, no classes",
    "CLIP vision (QuickGELU)": "transformers CLIP image tower ViT-32d/8, 32px, a backbone: features, no classes",
    "CLIP vision (GELU)": "transformers CLIP image tower ViT-32d/8, 32px, a backbone: features, no classes",
}


def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


@pytest.fixture(autouse=True)
def offline(nothing_cached):
    """Every test here runs offline with nothing cached (conftest.nothing_cached); fake_hub goes online on 127.0.0.1."""


@pytest.fixture(scope="module")
def family_folders(tmp_path_factory):
    """$EXPLORER_MODELS with one folder per family, saved as timm and transformers save them; folder -> (label,
    reference's forward)."""
    root = tmp_path_factory.mktemp("families")
    references = {}
    for label in TIMM_FAMILY:
        reference = timm_reference(label)
        save_timm(reference, root / f"timm_{slug(label)}")
        references[f"timm_{slug(label)}"] = (label, reference)
    for label in HF_FAMILY:
        reference = hf_reference(label)
        reference.save_pretrained(root / f"hf_{slug(label)}")
        references[f"hf_{slug(label)}"] = (label, reference)
    return root, references


def forward(reference, x: torch.Tensor) -> torch.Tensor:
    """The source library's own forward: logits, or a backbone's pooled features."""
    if hasattr(reference, "pretrained_cfg"):  # timm
        with torch.no_grad():
            return reference(x)
    return hf_output(reference, x)


# ---------------------------------------------------------------------------------------------------------------
# 1. EXPLORER_MODELS folders of every family

def test_every_familys_folder_is_listed_with_its_family_and_loads_to_the_sources_forward(family_folders,
                                                                                      monkeypatch):
    root, references = family_folders
    monkeypatch.setenv("EXPLORER_MODELS", str(root))
    registry = ModelRegistry(device="cpu")
    folders = {s.label: s for s in registry.specs.values() if s.kind == "folder"}
    assert set(folders) == set(references), registry.problems
    x = torch.randn(2, 3, 32, 32)
    for name, (label, reference) in references.items():
        spec = folders[name]
        words = (TIMM_WORDS if name.startswith("timm_") else HF_WORDS)[label]
        assert spec.description.startswith(f"your {words}"), (label, spec.description)
        bundle = registry._load(spec)  # the registry's one path to a folder (explorer.load with its models_dir)
        assert gap(bundle.model, forward(reference, x), x) <= TOLERANCE, label
        # The menu's words, from config.json alone, are the loaded model's own (its real config, the library's name).
        hint = bundle.meta.get("architecture") or json.loads((root / name / "config.json").read_text())["model_type"]
        assert words.split(" ", 1)[1].startswith(family_name(bundle.model.config, hint)), (label, hint)


def test_timm_family_name_reads_hub_configs_as_timm_builds_them():
    """config.json as the Hub holds it (no model_args: the architecture's own sizes) against the config of the model
    timm builds from that name."""
    for name, registers in (("vit_small_patch14_reg4_dinov2", 4), ("deit_base_distilled_patch16_224", 0),
                            ("vit_base_patch16_clip_224", 0), ("deit3_small_patch16_224", 0)):
        skeleton = timm.create_model(name, pretrained=False, device="meta")
        config = from_timm(skeleton).config
        hub_config = {"architecture": name, "num_classes": skeleton.num_classes, "num_features": skeleton.num_features,
                      "global_pool": skeleton.global_pool}
        assert timm_family_name(hub_config) == family_name(config, name), name
        assert config.register_tokens == registers
    assert family_name(from_timm(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False,
                                                   device="meta")).config, "") == "layer-scaled ViT-S/14 with 4 registers"


def test_the_card_names_the_family_and_its_tokens(family_folders, monkeypatch):
    from explorer.app.server import Server

    root, references = family_folders
    monkeypatch.setenv("EXPLORER_MODELS", str(root))
    server = Server(device="cpu")
    entry = server.analyse(Image.new("RGB", (40, 40), (120, 30, 200)), "timm_deit_distilled")
    card = text.model_card(entry)
    assert "**Family:** DeiT distilled ViT-32d/8; tokens CLS + DIST + 16 patches, 5 classes." in card, card
    assert "your own model — timm DeiT distilled ViT-32d/8" in card


@pytest.mark.parametrize("folder", ["timm_deit_distilled", "hf_deit_with_teacher",
                                    "timm_deit_iii_layer_scale_e_pos_on_the_patches", "timm_clip_quickgelu",
                                    "timm_mean_fc_norm_mae_fine_tune", "timm_mean_without_fc_norm"])
def test_a_classifier_of_each_family_picked_in_the_menu_draws_every_step(family_folders, monkeypatch, folder):
    """Picked in the menu, its image traced once, every view of every step drawn, its logits the source's."""
    from explorer.app import views
    from explorer.app.server import Server

    root, references = family_folders
    monkeypatch.setenv("EXPLORER_MODELS", str(root))
    server = Server(device="cpu")
    entry = server.analyse(Image.new("RGB", (40, 40), (120, 30, 200)), folder)
    pixels = entry.trace["input.pixels"][None]  # (1, C, H, W), read by the folder's own preprocessing
    assert (entry.trace.logits - forward(references[folder][1], pixels)[0]).abs().max() <= TOLERANCE
    depth = entry.config.depth
    every = [name for step in range(len(views.STEPS)) for name in views.step_views(step)]
    for options in (views.Options(), views.Options(selected=3, layer=depth, head="2", ln_layer=depth)):
        drawn = views.render_views(entry, every, options)
        assert [name for name, value in zip(every, drawn) if value is None] == [] and len(drawn) == len(every)


def test_the_logit_lens_of_a_model_without_a_class_token_pools_each_layer_as_eq_4(family_folders):
    """Mean pooling, no class token (timm global_pool='avg', class_token=False, fc_norm): row l is timm's own fc_norm
    and head on the mean of z_l's tokens, all of them patches; the last row is the model's output."""
    root, references = family_folders
    label, reference = references["timm_mean_no_class_token"]
    bundle = load(root / "timm_mean_no_class_token")
    x = torch.randn(1, 3, 32, 32)
    t = trace(bundle.model, x)
    lens = analysis.logit_lens(t, bundle.model, k=3)
    with torch.no_grad():
        stream = torch.stack([t["embed.z0"]] + [t[f"blocks.{l}.z"] for l in range(1, bundle.model.config.depth + 1)])
        expected = reference.head(reference.fc_norm(stream.mean(dim=1))).softmax(-1).numpy()  # (L + 1, K)
        np.testing.assert_allclose(lens.probabilities[-1], reference(x).softmax(-1)[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(lens.probabilities, expected, atol=1e-5)
    assert np.ptp(expected[0] - expected[-1]) > 1e-3  # the layers differ: the rows compared are not all alike


# ---------------------------------------------------------------------------------------------------------------
# 2. The descendants' checkpoints by Hub id

def test_family_checkpoints_agree_with_timms_own_data_and_architecture():
    """Each row against timm's pretrained_cfg (shipped inside timm) and the model timm builds for it (meta device)."""
    from timm.models import get_pretrained_cfg

    assert len({c.hub_id for c in FAMILY_CHECKPOINTS}) == len(FAMILY_CHECKPOINTS) >= 4
    assert not {c.hub_id for c in FAMILY_CHECKPOINTS} & {c.hub_id for c in PAPER_CHECKPOINTS}
    for c in FAMILY_CHECKPOINTS:
        assert c.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", c.revision), c
        assert c.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", c.sha256), c
        name = c.hub_id.removeprefix("timm/")
        cfg = get_pretrained_cfg(name).to_dict()
        assert cfg["hf_hub_id"] == c.hub_id and tuple(cfg["input_size"]) == (3, c.resolution, c.resolution)
        assert (cfg["crop_pct"], cfg["interpolation"]) == (c.crop_pct, c.interpolation), c
        assert (tuple(cfg["mean"]), tuple(cfg["std"])) == (c.mean, c.std), c
        assert (cfg["num_classes"] == 0) == (c.output == BACKBONE_OUTPUT), c
        config = from_timm(timm.create_model(name, pretrained=False, device="meta")).config
        assert config.has_classifier == (c.output != BACKBONE_OUTPUT) and config.image_hw == (c.resolution,) * 2
        assert family_name(config, name).startswith(f"{c.family.split(' with ')[0]} {c.model}"), (c, config)
        assert config.register_tokens == (4 if "4 registers" in c.family else 0)
    distilled = catalogue_entry("timm/deit_base_distilled_patch16_224.fb_in1k")
    assert distilled.revision == "main" and distilled.sha256 is None  # its commit is not known: recorded at first use


def test_family_checkpoints_are_in_the_menu_and_on_the_card_as_not_the_papers():
    registry = ModelRegistry(device="cpu")
    hub = [s for s in registry.specs.values() if s.kind == "hub"]
    assert [s.label for s in hub] == [hub_label(c) for c in PAPER_CHECKPOINTS + FAMILY_CHECKPOINTS]
    for c in FAMILY_CHECKPOINTS:
        spec = registry.resolve(c.hub_id)
        assert spec.paper is c and NOT_THE_PAPERS in spec.menu_text and f"{c.resolution}px" in spec.description
        assert ("a backbone" in spec.description) == (c.output == BACKBONE_OUTPUT)
        card = text.model_card(spec=spec)
        for words in (NOT_THE_PAPERS, c.family, f"https://huggingface.co/{c.hub_id}", c.revision,
                      c.hub_id.replace("/", "--")):
            assert words in card, (words, card)
    assert all(f"{NOT_THE_PAPERS}:" not in s.description for s in hub if s.paper in PAPER_CHECKPOINTS)
    assert "paper's checkpoints" in registry.availability_note()  # the note still speaks of the paper's alone


def tiny_stand_in(c, seed: int = 0):
    """A random timm model of the entry's architecture at a tiny size: what the fake Hub serves under its id."""
    name = c.hub_id.removeprefix("timm/").split(".")[0]
    torch.manual_seed(seed)
    classes = 0 if c.output == BACKBONE_OUTPUT else 7
    model = timm.create_model(name, pretrained=False, img_size=28, patch_size=14, embed_dim=32, depth=2, num_heads=4,
                              num_classes=classes)
    return randomise(model, seed + 1)


def test_each_family_checkpoint_loads_from_the_hub_at_its_revision_and_a_changed_file_is_refused(fake_hub, tmp_path):
    x = torch.randn(1, 3, 28, 28)
    pickles_only = {"config.json": b"{}", "pytorch_model.bin": b"not unpickled"}
    cache = tmp_path / "hf_home" / "hub"
    for i, c in enumerate(FAMILY_CHECKPOINTS):
        reference = tiny_stand_in(c, i)
        files = folder_files(save_timm(reference, tmp_path / f"{i}"))
        pinned = c.revision != "main"
        commit = c.revision if pinned else f"{i}" * 40
        FakeHub.revisions[c.hub_id] = ({"main": ("f" * 40, pickles_only), "refs/pr/9": (commit, files)} if pinned
                                       else {"main": (commit, files)})
        bundle = load(c.hub_id)
        assert gap(bundle.model, forward(reference, x), x) <= TOLERANCE, c
        assert bundle.meta["family_checkpoint"]["family"] == c.family and bundle.meta["paper"] is None
        json.dumps(bundle.meta)  # meta stays JSON-ready
        asked = [path for method, path in FakeHub.requests if f"/{c.hub_id}/" in path]
        assert asked and all(f"/resolve/{c.revision}/" in path for path in asked), asked
        pins = json.loads((cache / "explorer-pins.json").read_text())
        assert pins[c.hub_id]["commit"] == commit and pins[c.hub_id]["revision"] == c.revision

        # The Hub (or a mirror) serves other weights under the same revision: the download is refused.
        changed = folder_files(save_timm(tiny_stand_in(c, i + 10), tmp_path / f"{i}_changed"))
        FakeHub.revisions[c.hub_id] = {("refs/pr/9" if pinned else "main"): (commit, changed)}
        (cache / f"models--{c.hub_id.replace('/', '--')}").rename(tmp_path / f"{i}_old_cache")
        with pytest.raises(WeightsUnavailable, match="SHA-256") as refused:
            load(c.hub_id)
        message = str(refused.value)
        assert "\n" not in message and message.endswith(".") and c.hub_id in message, message


def test_a_sha256_in_the_catalogue_is_checked(fake_hub, tmp_path, monkeypatch):
    c = FAMILY_CHECKPOINTS[1]
    files = folder_files(save_timm(tiny_stand_in(c), tmp_path / "stand_in"))
    FakeHub.revisions[c.hub_id] = {"main": (c.revision, files)}
    rows = tuple(dataclasses.replace(r, sha256="0" * 64) if r is c else r for r in FAMILY_CHECKPOINTS)
    monkeypatch.setattr("explorer.families.catalogue.FAMILY_CHECKPOINTS", rows)
    with pytest.raises(WeightsUnavailable, match="the catalogue pins"):
        load(c.hub_id)


# ---------------------------------------------------------------------------------------------------------------
# 3. The survey on a backbone and on a DeiT-distilled folder

@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two class folders of three random photos each."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("cat", "rocket"):
        (root / name).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("folder", ["timm_dinov2_with_4_registers", "hf_dinov2_with_registers",
                                    "timm_deit_distilled"])
def test_the_survey_runs_on_a_backbone_and_on_deit_distilled(family_folders, photos, tmp_path, folder):
    root, references = family_folders
    code, stdout, stderr = run_main(["--model", str(root / folder), "--data", str(photos), "-n", "4",
                                       "--faithfulness", "2", "--out", str(tmp_path / "out")])
    assert code == 0, stderr
    survey = json.loads((tmp_path / "out" / "survey.json").read_text())
    bundle = load(root / folder)
    config = bundle.model.config
    classifier = config.has_classifier
    assert survey["model"]["classifier"] == classifier and classifier == ("deit" in folder)
    words = {"timm_dinov2_with_4_registers": "DINOv2 ViT-32d/8 with 4 registers",
             "hf_dinov2_with_registers": "DINOv2 ViT-32d/8 with 3 registers",
             "timm_deit_distilled": "DeiT distilled ViT-32d/8"}[folder]
    assert survey["model"]["family"] == words  # the menu's words (family_name), in survey.json and its report
    if classifier:
        assert survey["predicted_classes"] and survey["head_importance"]["images"] == 4
        assert survey["faithfulness"]["images"] == 2 and survey["notes"] == []
    else:  # no class: nothing that reads one, and one sentence that says so
        assert survey["accuracy"] is None and survey["predicted_classes"] is None
        assert survey["head_importance"] is None and survey["faithfulness"] is None
        assert survey["settings"]["head_importance"] is False and survey["settings"]["faithfulness_images"] == 0
        assert survey["data"]["notes"] == [] and len(survey["notes"]) == 1 and "backbone" in survey["notes"][0]
        report = (tmp_path / "out" / "report.html").read_text()
        assert survey["notes"][0] in stdout and html.escape(survey["notes"][0]) in report
    # The class-agnostic analyses, against the analysis functions on each image's full trace.
    images = sv.open_images(str(photos), bundle)
    inputs, _, _ = images.load(list(range(4)))
    distance = [analysis.mean_attention_distance(trace(bundle.model, inputs[i][None]), renormalise=True)
                for i in range(4)]  # (L, h) each
    mad = survey["mean_attention_distance"]
    np.testing.assert_allclose(mad["mean"], np.mean(distance, axis=0), atol=1e-5)
    assert np.array(mad["mean"]).shape == (config.depth, config.heads)
    rollout = [analysis.rollout_map(trace(bundle.model, inputs[i][None])) for i in range(4)]
    np.testing.assert_allclose(survey["rollout"]["mean_map"], np.mean(rollout, axis=0), atol=1e-5)
    assert np.array(survey["position_similarity"]["similarity"]).shape == config.grid * 2
    # Token norms ||z_l||, l = 0..L: each prefix token, then the patches' mean and largest, against the traces.
    norms = []
    for i in range(4):
        t = trace(bundle.model, inputs[i][None])
        z = torch.stack([t["embed.z0"]] + [t[f"blocks.{l}.z"] for l in range(1, config.depth + 1)])  # (L + 1, T, D)
        n = torch.linalg.vector_norm(z.double(), dim=-1).numpy()  # (L + 1, T)
        prefix = config.layout.num_prefix
        norms.append(np.concatenate([n[:, :prefix], n[:, prefix:].mean(-1, keepdims=True),
                                     n[:, prefix:].max(-1, keepdims=True)], axis=-1))
    assert survey["token_norms"]["tokens"][:prefix] == list(config.layout.prefix_labels)
    np.testing.assert_allclose(survey["token_norms"]["mean"], np.mean(norms, axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(survey["token_norms"]["largest"], np.max(norms, axis=0), rtol=1e-4, atol=1e-5)
    # The app's two survey views read this survey.json as they read any other.
    t = trace(bundle.model, inputs[0][None])
    survey_figures.attention_distance_survey(distance[0], mad["mean"], mad["std"], mad["images"],
                                             config.patch_size, config.image_hw[0])
    survey_figures.rollout_survey(analysis.rollout_map(t), survey["rollout"]["mean_map"], survey["rollout"]["images"])
