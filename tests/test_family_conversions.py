"""The paper's descendants (DeiT, DeiT III, DINOv2 with and without registers, CLIP image towers, average-pooled
models) converted from timm and transformers, each checked against the source library's own forward: the logits of a
classifier, the pooled features of a backbone (what the source's forward returns). Random weights, tiny sizes; the
Hub is the stand-in on 127.0.0.1 of tests/hub_models.py."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import pytest  # noqa: E402
import torch  # noqa: E402

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")

from explorer.families import from_timm, from_transformers, load  # noqa: E402
from hub_models import FakeHub, fake_hub, folder_files, randomise, save_timm  # noqa: E402,F401

TOLERANCE = 1e-4  # max |Δ| allowed against the source library's own forward
SMALL = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4)


@pytest.fixture(autouse=True)
def no_hub(monkeypatch, tmp_path):
    """Offline, an empty Hugging Face cache in tmp_path, and an endpoint that is nobody, for every test here."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


def gap(ours, expected: torch.Tensor, x: torch.Tensor) -> float:
    """max |Δ| of our forward against the source's, on the fused path and on the explicit (traced) path."""
    with torch.no_grad():
        return max((ours(x) - expected).abs().max().item(), (ours(x, record={}) - expected).abs().max().item())


# ---------------------------------------------------------------------------------------------------------------
# timm

TIMM_FAMILY = {  # label -> (architecture, arguments, what the config must say)
    "DeiT distilled": ("deit_tiny_distilled_patch16_224", dict(num_classes=5),
                       dict(distillation_token=True, pooling="class_and_distillation")),
    "DeiT III (layer scale, E_pos on the patches)": ("deit3_small_patch16_224", dict(num_classes=5),
                                                     dict(layer_scale=True, position_covers="patches")),
    "DINOv2 backbone": ("vit_small_patch14_dinov2", dict(num_classes=0), dict(layer_scale=True, num_classes=0)),
    "DINOv2 with 4 registers": ("vit_small_patch14_reg4_dinov2", dict(num_classes=0),
                                dict(register_tokens=4, position_covers="patches", num_classes=0)),
    "CLIP image tower (norm_pre)": ("vit_base_patch16_clip_224", dict(num_classes=6),
                                    dict(pre_norm=True, layer_norm_eps=1e-5)),
    "CLIP QuickGELU": ("vit_base_patch16_clip_quickgelu_224", dict(num_classes=6),
                       dict(pre_norm=True, activation="quick_gelu")),
    "mean + fc_norm (MAE fine-tune)": ("vit_base_patch16_224", dict(num_classes=4, global_pool="avg"),
                                       dict(pooling="mean", fc_norm=True)),
    "mean, no class token": ("vit_base_patch16_224", dict(num_classes=4, global_pool="avg", class_token=False),
                             dict(pooling="mean", class_token=False, fc_norm=True)),
    "mean without fc_norm": ("vit_base_patch16_224", dict(num_classes=4, global_pool="avg", fc_norm=False),
                             dict(pooling="mean", fc_norm=False)),
    "mean backbone, registers, no class token": (
        "vit_base_patch16_reg4_gap_256", dict(num_classes=0, img_size=32),
        dict(pooling="mean", class_token=False, register_tokens=4, num_classes=0)),
}


def timm_reference(label: str):
    architecture, arguments, _ = TIMM_FAMILY[label]
    torch.manual_seed(0)
    return randomise(timm.create_model(architecture, pretrained=False, **{**SMALL, **arguments}))


@pytest.mark.parametrize("label", TIMM_FAMILY)
def test_timm_family_converts_exactly(label, tmp_path):
    reference = timm_reference(label)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)  # logits, or a backbone's pooled features (num_classes=0)
    assert expected.abs().max() > 0.1
    ours = from_timm(reference)
    config = ours.config
    for field, value in TIMM_FAMILY[label][2].items():
        assert getattr(config, field) == value, field
    assert config.seq_len == reference.num_prefix_tokens + config.num_patches  # the tokens timm counts
    assert gap(ours, expected, x) <= TOLERANCE
    # timm's save_pretrained folder, read with timm's own config (pooling, activation and eps come from it)
    bundle = load(save_timm(reference, tmp_path / "saved"))
    assert bundle.model.config.replace(name="") == config.replace(name="")
    assert gap(bundle.model, expected, x) <= TOLERANCE


@pytest.mark.parametrize("label", [label for label in TIMM_FAMILY if "CLIP" not in label and "without" not in label])
def test_timm_family_state_dicts_read_by_their_keys(label):
    """A bare state dict: tokens, layer scale, norm_pre and fc_norm by key; pooling as timm's default for them."""
    reference = timm_reference(label)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = reference(x)
    assert gap(from_timm(reference.state_dict(), heads=4), expected, x) <= TOLERANCE


# ---------------------------------------------------------------------------------------------------------------
# transformers

BASE = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
HF_FAMILY = {  # label -> (model class, config class, arguments, what the config must say)
    "DeiT with teacher": ("DeiTForImageClassificationWithTeacher", "DeiTConfig", dict(intermediate_size=64, num_labels=3),
                          dict(distillation_token=True, pooling="class_and_distillation", num_classes=3)),
    "DINOv2": ("Dinov2Model", "Dinov2Config", dict(mlp_ratio=2), dict(layer_scale=True, num_classes=0, mlp_dim=64)),
    "DINOv2 with registers": ("Dinov2WithRegistersModel", "Dinov2WithRegistersConfig",
                              dict(mlp_ratio=2, num_register_tokens=3),
                              dict(register_tokens=3, position_covers="class_and_patches", num_classes=0)),
    "CLIP vision (QuickGELU)": ("CLIPVisionModel", "CLIPVisionConfig", dict(intermediate_size=64),
                                dict(pre_norm=True, activation="quick_gelu", num_classes=0, layer_norm_eps=1e-5)),
    "CLIP vision (GELU)": ("CLIPVisionModel", "CLIPVisionConfig", dict(intermediate_size=64, hidden_act="gelu"),
                           dict(pre_norm=True, activation="gelu")),
}


def hf_reference(label: str):
    model_class, config_class, arguments, _ = HF_FAMILY[label]
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**BASE, **arguments)
    return randomise(getattr(transformers, model_class)(config))


def hf_output(reference, x: torch.Tensor) -> torch.Tensor:
    """What the source's forward returns: logits, or a backbone's pooler_output (LN(z_L^0))."""
    with torch.no_grad():
        output = reference(pixel_values=x)
    return output.logits if hasattr(output, "logits") else output.pooler_output


@pytest.mark.parametrize("label", HF_FAMILY)
def test_transformers_family_converts_exactly_from_object_folder_and_load(label, tmp_path):
    reference = hf_reference(label)
    x = torch.randn(2, 3, 32, 32)
    expected = hf_output(reference, x)
    assert expected.abs().max() > 0.1
    ours = from_transformers(reference)
    for field, value in HF_FAMILY[label][3].items():
        assert getattr(ours.config, field) == value, field
    assert gap(ours, expected, x) <= TOLERANCE
    reference.save_pretrained(tmp_path / "saved")  # the names save_pretrained writes, read without transformers
    assert gap(from_transformers(tmp_path / "saved"), expected, x) <= TOLERANCE
    bundle = load(tmp_path / "saved")
    assert bundle.meta["family"] == "transformers" and HF_FAMILY[label][0] in bundle.source
    assert gap(bundle.model, expected, x) <= TOLERANCE


def test_transformers_family_loads_by_hub_id(fake_hub, tmp_path):
    """Each family downloaded from the stand-in Hub by id, then read as its folder."""
    x = torch.randn(1, 3, 32, 32)
    expected = {}
    for i, label in enumerate(HF_FAMILY):
        reference = hf_reference(label)
        reference.save_pretrained(tmp_path / str(i))
        FakeHub.repos[f"someone/family-{i}"] = folder_files(tmp_path / str(i))
        expected[f"someone/family-{i}"] = hf_output(reference, x)
    for hub_id, output in expected.items():
        bundle = load(hub_id)
        assert bundle.meta["hub_id"] == hub_id and gap(bundle.model, output, x) <= TOLERANCE


def test_a_grayscale_vit_without_a_processor_loads_as_from_transformers_reads_it(tmp_path):
    torch.manual_seed(0)
    reference = randomise(transformers.ViTForImageClassification(transformers.ViTConfig(
        **BASE, intermediate_size=64, num_channels=1, num_labels=4)))
    reference.save_pretrained(tmp_path / "gray")
    assert not (tmp_path / "gray" / "preprocessor_config.json").exists()
    bundle = load(tmp_path / "gray")
    x = torch.randn(2, 1, 32, 32)
    expected = hf_output(reference, x)
    assert gap(bundle.model, expected, x) <= TOLERANCE and gap(from_transformers(tmp_path / "gray"), expected, x) <= TOLERANCE
    assert bundle.preprocessing.channels == 1 and bundle.preprocessing.mean == (0.5,)
