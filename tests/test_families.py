"""timm and Hugging Face transformers checkpoints (explorer.families), checked against those libraries themselves.

Every model here has random weights (tiny configs, built in milliseconds); nothing reaches the Hugging Face Hub:
HF_HUB_OFFLINE=1 by default, HF_HOME is a temporary folder, and the one test that downloads does it from a
server on 127.0.0.1 that serves files in the Hub's layout.
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
from safetensors.torch import save_file  # noqa: E402

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

from timm.models.vision_transformer import ResPostBlock, VisionTransformer  # noqa: E402
from transformers import ViTConfig as HFViTConfig  # noqa: E402
from transformers import ViTForImageClassification, ViTForMaskedImageModeling, ViTModel  # noqa: E402

from explorer import CONFIGS, ViTConfig  # noqa: E402
from explorer.families import (  # noqa: E402
    HF_VIT_DEFAULTS,
    PAPER_CHECKPOINTS,
    UnsupportedModel,
    from_timm,
    from_transformers,
    load,
    preprocessing_from_timm,
    preprocessing_from_transformers,
)
from explorer.images import Preprocessing  # noqa: E402
from explorer.weights import WeightsUnavailable, load_checkpoint, save_checkpoint  # noqa: E402
from explorer.families.catalogue import WITHOUT_SAFETENSORS, paper_checkpoint  # noqa: E402
from hub_models import COMMIT, FakeHub, fake_hub, folder_files, hf_model, randomise, save_timm  # noqa: E402,F401

ASSETS = Path(__file__).resolve().parent.parent / "assets"
TOLERANCE = 1e-4  # max |Δlogits| allowed against the source library's own forward


@pytest.fixture(autouse=True)
def no_hub(monkeypatch, tmp_path):
    """Offline, an empty Hugging Face cache in tmp_path, and an endpoint that is nobody, for every test here."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: never the real Hub


def one_sentence(message: str) -> bool:
    """One plain sentence: a single line ending in a full stop, no full stop followed by a new sentence inside."""
    return "\n" not in message and message.endswith(".") and not re.search(r"[a-z]\. [A-Z]", message)


def max_logit_gap(ours, reference_logits: torch.Tensor, x: torch.Tensor) -> float:
    """max |Δlogits| of our model against the reference, on the fused path and on the explicit (traced) path."""
    with torch.no_grad():
        fused = (ours(x) - reference_logits).abs().max().item()
        explicit = (ours(x, record={}) - reference_logits).abs().max().item()
    return max(fused, explicit)


def pil_image_processor():
    """transformers' ViTImageProcessor on PIL: ViTImageProcessorPil in transformers >= 5, ViTImageProcessor before."""
    try:
        from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil
    except ImportError:
        return transformers.ViTImageProcessor
    return ViTImageProcessorPil


def photos() -> dict[str, Image.Image]:
    """Real photos: two landscape (448x298, 448x299), one square, and a portrait (the cat turned by 90 degrees)."""
    names = ("cat_chelsea.jpg", "rocket.jpg", "astronaut.jpg")
    images = {name: Image.open(ASSETS / name).convert("RGB") for name in names}
    images["cat_portrait"] = images["cat_chelsea.jpg"].transpose(Image.Transpose.ROTATE_90)
    return images


# ---------------------------------------------------------------------------------------------------------------
# timm: exact against timm's forward

TIMM_CONFIGS = {
    "32px P8 D32 L2 h4": dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=10),
    "48px P12 L3 h3 no qkv bias": dict(img_size=48, patch_size=12, embed_dim=48, depth=3, num_heads=3, mlp_ratio=2.0,
                                       qkv_bias=False, num_classes=7),
    "32x48px P16 h8 no proj bias": dict(img_size=(32, 48), patch_size=16, embed_dim=64, depth=1, num_heads=8,
                                        proj_bias=False, num_classes=5),
    "28px gray P7 dynamic size": dict(img_size=28, patch_size=7, in_chans=1, embed_dim=24, depth=2, num_heads=2,
                                      dynamic_img_size=True, num_classes=10),
}


@pytest.mark.parametrize("label", TIMM_CONFIGS)
def test_from_timm_matches_timms_forward(label):
    kwargs = TIMM_CONFIGS[label]
    torch.manual_seed(0)
    reference = randomise(VisionTransformer(**kwargs))
    ours = from_timm(reference)
    config = ours.config
    assert (config.depth, config.heads, config.hidden_dim) == (kwargs["depth"], kwargs["num_heads"],
                                                                kwargs["embed_dim"])
    assert config.layer_norm_eps == 1e-6 and config.num_classes == kwargs["num_classes"]
    x = torch.randn(2, config.channels, *config.image_hw)
    with torch.no_grad():
        logits = reference(x)
    assert logits.abs().max() > 0.1  # logits of a real size, so the tolerance below means something
    assert max_logit_gap(ours, logits, x) <= TOLERANCE
    if not kwargs.get("qkv_bias", True):
        assert torch.equal(ours.blocks[0].msa.qkv.bias, torch.zeros(3 * config.hidden_dim))
    # The same from a bare state dict: the shapes give all but the heads (square images only: N does not say H vs W).
    if isinstance(kwargs["img_size"], int):
        from_dict = from_timm(reference.state_dict(), heads=kwargs["num_heads"])
        assert max_logit_gap(from_dict, logits, x) <= TOLERANCE
    else:
        from_dict = from_timm(reference.state_dict(), config=config)
        assert max_logit_gap(from_dict, logits, x) <= TOLERANCE


def test_from_timm_copies_and_checks_the_state_dict():
    reference = randomise(VisionTransformer(**TIMM_CONFIGS["32px P8 D32 L2 h4"]))
    ours = from_timm(reference)
    assert ours.class_token.data_ptr() != reference.cls_token.data_ptr()  # copied: training one leaves the other
    state_dict = reference.state_dict()
    with pytest.raises(ValueError, match="heads"):
        from_timm(state_dict)
    with pytest.raises(ValueError, match="would not use"):
        from_timm({**state_dict, "extra.weight": torch.zeros(1)}, heads=4)
    with pytest.raises(ValueError, match="lack blocks.1.attn.proj.weight"):
        from_timm({k: v for k, v in state_dict.items() if k != "blocks.1.attn.proj.weight"}, heads=4)
    with pytest.raises(ValueError, match="shape"):
        from_timm(state_dict, config=ours.config.replace(mlp_dim=64))


# ---------------------------------------------------------------------------------------------------------------
# timm: what is refused, with the reason

TIMM_REFUSALS = [  # (VisionTransformer arguments, a word of the reason for the model, for its state dict or None)
    (dict(qk_norm=True), "qk_norm", "qk_norm"),
    (dict(global_pool="avg", pool_include_prefix=True), "pool_include_prefix", None),
    (dict(global_pool="max"), "global_pool='max'", None),
    (dict(final_norm=False), "final LayerNorm", "final LayerNorm"),
    (dict(global_pool="map"), "global_pool='map'", "global_pool='map'"),
    (dict(pos_embed="none"), "position embedding", "position embedding"),
    (dict(act_layer="gelu_tanh"), "GELUTanh", None),  # a bare state dict can't say its activation
    (dict(block_fn=ResPostBlock), "pre-norm", None),  # nor where its norms sit
    (dict(norm_layer="rmsnorm"), "RmsNorm", None),
]


@pytest.mark.parametrize("kwargs,word,word_for_state_dict", TIMM_REFUSALS,
                         ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_timm_models_the_explorer_cannot_represent_are_refused(kwargs, word, word_for_state_dict):
    model = VisionTransformer(**{**dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=4, num_classes=3),
                                 **kwargs})
    with pytest.raises(UnsupportedModel) as refused:
        from_timm(model)
    assert isinstance(refused.value, ValueError) and isinstance(refused.value, WeightsUnavailable)
    assert word in str(refused.value) and one_sentence(str(refused.value)), str(refused.value)
    if word_for_state_dict is not None:
        with pytest.raises(UnsupportedModel, match=re.escape(word_for_state_dict)) as refused:
            from_timm(model.state_dict(), heads=4)
        assert one_sentence(str(refused.value))


@pytest.mark.parametrize("architecture,word", [
    ("vit_relpos_base_patch16_224", "relative position bias"),
    ("beit_base_patch16_224", "relative position bias"),
    ("eva02_tiny_patch14_224", "rotary embeddings"),
    ("vit_base_patch16_siglip_224", "global_pool='map'"),
    ("vit_small_patch16_18x2_224", "side by side"),
    ("vit_base_r50_s16_224", "convolutional stem"),
])
def test_other_timm_vit_classes_are_refused(architecture, word):
    model = timm.create_model(architecture, pretrained=False, device="meta")  # no memory, no weights: shapes only
    with pytest.raises(UnsupportedModel, match=word) as refused:
        from_timm(model)
    assert one_sentence(str(refused.value))


# ---------------------------------------------------------------------------------------------------------------
# transformers: exact against transformers' forward

HF_CONFIGS = {
    "32px P8 D32 L2 h4": dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, num_labels=5),
    "48px gray P12 h6 no qkv bias eps 1e-5": dict(image_size=48, patch_size=12, hidden_size=48, num_hidden_layers=3,
                                                  num_attention_heads=6, intermediate_size=96, qkv_bias=False,
                                                  num_channels=1, layer_norm_eps=1e-5, num_labels=3),
    "32x48px P16 h8": dict(image_size=[32, 48], patch_size=16, hidden_size=64, num_hidden_layers=1,
                           num_attention_heads=8, intermediate_size=128, num_labels=4),
}


@pytest.mark.parametrize("label", HF_CONFIGS)
def test_from_transformers_matches_transformers_forward(label, tmp_path):
    kwargs = HF_CONFIGS[label]
    reference = hf_model(**kwargs)
    ours = from_transformers(reference)
    config = ours.config
    assert config.layer_norm_eps == kwargs.get("layer_norm_eps", 1e-12)  # transformers' own, not timm's 1e-6
    x = torch.randn(2, config.channels, *config.image_hw)
    with torch.no_grad():
        logits = reference(pixel_values=x).logits
    assert logits.abs().max() > 0.1
    assert max_logit_gap(ours, logits, x) <= TOLERANCE
    # The folder save_pretrained writes (the names on the Hub, not those in memory), read without transformers.
    reference.save_pretrained(tmp_path / "saved")
    assert max_logit_gap(from_transformers(tmp_path / "saved"), logits, x) <= TOLERANCE


def test_transformers_defaults_table_is_transformers_own():
    defaults = HFViTConfig()
    for key, value in HF_VIT_DEFAULTS.items():
        assert getattr(defaults, key) == value, key


def test_transformers_models_the_explorer_cannot_represent_are_refused(tmp_path):
    small = HF_CONFIGS["32px P8 D32 L2 h4"]
    cases = [
        (lambda: from_transformers(ViTModel(HFViTConfig(**small))), "classification head"),
        (lambda: from_transformers(ViTForMaskedImageModeling(HFViTConfig(**small))), "not a ViTForImageClassification"),
        (lambda: from_transformers(ViTForImageClassification(HFViTConfig(**{**small, "num_labels": 0}))), "no labels"),
        (lambda: from_transformers(ViTForImageClassification(HFViTConfig(**{**small, "hidden_act": "gelu_new"}))),
         "'gelu_new'"),
    ]
    ViTModel(HFViTConfig(**small)).save_pretrained(tmp_path / "vit_model")
    cases.append((lambda: from_transformers(tmp_path / "vit_model"), "classification head"))
    cases.append((lambda: load(tmp_path / "vit_model"), "classification head"))
    hf_model(**small).save_pretrained(tmp_path / "deit")
    config = json.loads((tmp_path / "deit" / "config.json").read_text())
    (tmp_path / "deit" / "config.json").write_text(json.dumps({**config, "model_type": "deit"}))
    cases.append((lambda: load(tmp_path / "deit"), "not a DeiTForImageClassificationWithTeacher"))
    from transformers import Dinov2Config, Dinov2ForImageClassification

    dinov2 = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    cases.append((lambda: from_transformers(Dinov2ForImageClassification(Dinov2Config(**dinov2))), "not a Dinov2Model"))
    cases.append((lambda: from_transformers(transformers.Dinov2Model(Dinov2Config(**dinov2, use_swiglu_ffn=True))),
                  "SwiGLU"))
    for call, word in cases:
        with pytest.raises(UnsupportedModel) as refused:
            call()
        assert word in str(refused.value) and one_sentence(str(refused.value)), str(refused.value)


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing: the same tensors as the libraries' own pipelines, on real photos

GOOGLE_PROCESSOR = {  # as google/vit-base-patch16-224's preprocessor_config.json
    "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224,
}
BICUBIC_384_PROCESSOR = {
    "image_processor_type": "ViTImageProcessor", "size": {"height": 384, "width": 384}, "resample": 3,
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
}


@pytest.mark.parametrize("processor", [GOOGLE_PROCESSOR, BICUBIC_384_PROCESSOR],
                         ids=["google-224-bilinear", "384-bicubic"])
def test_preprocessing_equals_transformers_image_processor(processor):
    size = processor["size"] if isinstance(processor["size"], int) else processor["size"]["height"]
    ours = preprocessing_from_transformers(processor, ViTConfig(image_size=size))
    assert ours.resize_to == (size, size) and ours == Preprocessing.from_dict(json.loads(json.dumps(ours.to_dict())))
    arguments = {k: v for k, v in processor.items() if not k.endswith("_type")}
    pil_backend = pil_image_processor()(**arguments)  # transformers' PIL pipeline, the one v4 used by default
    torchvision_backend = transformers.ViTImageProcessor(**arguments)  # v5's default: torchvision's resize
    one_level = 1 / 255 / min(ours.std)
    for name, image in photos().items():
        x = ours(image)
        expected = torch.from_numpy(np.asarray(pil_backend(image, return_tensors="np")["pixel_values"]))
        assert x.shape == expected.shape == (1, 3, size, size)
        assert (x - expected).abs().max().item() <= 1e-6, name  # measured: 0.0
        # torchvision resizes tensors with its own antialias kernel: within a few levels of 8-bit, not equal.
        approx = torchvision_backend(image, return_tensors="pt")["pixel_values"]
        assert (x - approx).abs().max().item() <= 2.5 * one_level, name


@pytest.mark.parametrize("architecture,crop_mode", [
    ("vit_base_patch16_224.augreg2_in21k_ft_in1k", None),  # bicubic, crop_pct 0.9: resize 248, crop 224
    ("vit_base_patch16_384.orig_in21k_ft_in1k", None),  # crop_pct 1.0: resize 384, crop 384
    ("vit_base_patch16_224.augreg2_in21k_ft_in1k", "squash"),
    ("vit_base_patch32_224.augreg_in21k_ft_in1k", "center"),
])
def test_preprocessing_equals_timm_eval_transform(architecture, crop_mode):
    from timm.data import create_transform, resolve_model_data_config

    model = timm.create_model(architecture, pretrained=False, device="meta")  # its pretrained_cfg, offline data
    data_config = resolve_model_data_config(model)
    if crop_mode:
        data_config["crop_mode"] = crop_mode
    ours = preprocessing_from_timm(data_config)
    reference = create_transform(**data_config, is_training=False)
    for name, image in photos().items():
        expected = reference(image).unsqueeze(0)
        x = ours(image)
        assert x.shape == expected.shape
        assert (x - expected).abs().max().item() <= 1e-6, name  # measured: 0.0


def test_preprocessing_that_cannot_be_reproduced_is_refused():
    with pytest.raises(UnsupportedModel, match="centre crop"):
        preprocessing_from_transformers({**GOOGLE_PROCESSOR, "do_center_crop": True}, ViTConfig())
    with pytest.raises(UnsupportedModel, match="'border'"):
        preprocessing_from_timm({"input_size": (3, 224, 224), "crop_mode": "border", "mean": (0.5,) * 3,
                                 "std": (0.5,) * 3, "crop_pct": 0.9, "interpolation": "bicubic"})


def test_preprocessing_without_resize_to_is_unchanged():
    """Old checkpoints' dicts (no resize_to) load as before, and give the shorter-side recipe."""
    old = {"resize_size": 256, "crop_size": 224, "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
           "std": [0.229, 0.224, 0.225], "channels": 3, "invert": "never"}
    assert Preprocessing.from_dict(old) == Preprocessing()
    assert "shorter side resized to 256" in Preprocessing().describe()
    squash = Preprocessing(resize_size=248, crop_size=224, resize_to=(248, 248))
    assert "aspect ratio not kept" in squash.describe() and "centre crop 224" in squash.describe()


# ---------------------------------------------------------------------------------------------------------------
# load(): folders as the libraries save them, the project's checkpoints

def test_load_a_folder_timm_saved(tmp_path):
    reference = randomise(timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8,
                                            embed_dim=32, depth=2, num_heads=4, num_classes=3, qkv_bias=False))
    labels = ["cat", "rocket", "astronaut"]
    bundle = load(save_timm(reference, tmp_path / "timm_vit", label_names=labels))
    assert bundle.class_names == labels and bundle.meta["family"] == "timm"
    # timm's vit_base_patch16_224 pretrained_cfg: bicubic, crop_pct 0.9, mean = std = 0.5 -> resize floor(32/0.9) = 35.
    assert bundle.preprocessing == Preprocessing(resize_size=35, crop_size=32, interpolation="bicubic",
                                                 mean=(0.5,) * 3, std=(0.5,) * 3)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_logit_gap(bundle.model, reference(x), x) <= TOLERANCE


def test_load_a_timm_state_dict_with_a_handwritten_config(tmp_path):
    """save_file(model.state_dict()) plus a config.json in timm's format, as someone might publish by hand."""
    reference = randomise(VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4,
                                            num_classes=1000))
    folder = tmp_path / "by_hand"
    folder.mkdir()
    save_file(reference.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "architecture": "vit_base_patch16_224", "num_classes": 1000,
        "model_args": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 4},
        "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bilinear", "crop_pct": 1.0,
                           "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "num_classes": 1000},
    }))
    bundle = load(folder / "config.json")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_logit_gap(bundle.model, reference(x), x) <= TOLERANCE
    assert bundle.preprocessing.interpolation == "bilinear" and bundle.preprocessing.resize_size == 32
    # 1000 classes and no names in the config: ImageNet's, in the order torchvision (independently) ships them.
    import torchvision

    categories = torchvision.models.ViT_B_16_Weights.DEFAULT.meta["categories"]
    assert len(bundle.class_names) == 1000
    assert all(ours.split(",")[0].lower() == theirs.lower() for ours, theirs in
               zip(bundle.class_names[:5], categories[:5])), bundle.class_names[:5]


def test_load_a_folder_transformers_saved(tmp_path):
    processor_class = pil_image_processor()
    labels = {0: "tench", 1: "goldfish", 2: "great white shark", 3: "tiger shark", 4: "hammerhead"}
    reference = hf_model(**{**HF_CONFIGS["32px P8 D32 L2 h4"], "id2label": labels,
                            "label2id": {v: k for k, v in labels.items()}})
    folder = tmp_path / "hf_vit"
    reference.save_pretrained(folder)
    processor_class(size={"height": 32, "width": 32}, resample=3).save_pretrained(folder)
    bundle = load(folder)
    assert bundle.class_names == list(labels.values()) and bundle.meta["family"] == "transformers"
    assert bundle.preprocessing.resize_to == (32, 32) and bundle.preprocessing.interpolation == "bicubic"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_logit_gap(bundle.model, reference(pixel_values=x).logits, x) <= TOLERANCE
    image = photos()["rocket.jpg"]
    expected = np.asarray(processor_class.from_pretrained(folder)(image, return_tensors="np")["pixel_values"])
    assert np.abs(bundle.preprocessing(image).numpy() - expected).max() <= 1e-6


def test_load_the_projects_own_checkpoint(tmp_path, tiny_model):
    preprocessing = Preprocessing(resize_size=36, crop_size=32)
    weights, _ = save_checkpoint(tmp_path / "run", tiny_model, [f"c{i}" for i in range(10)], preprocessing)
    bundle, expected = load(weights), load_checkpoint(weights)
    assert bundle.class_names == expected.class_names and bundle.preprocessing == preprocessing
    assert all(torch.equal(a, b) for a, b in zip(bundle.model.state_dict().values(),
                                                 expected.model.state_dict().values()))


def test_load_names_what_is_missing(tmp_path):
    for source, words in [
        (tmp_path / "nothing" / "here" / "at" / "all", "No file or folder"),
        (tmp_path, "No config.json"),
    ]:
        with pytest.raises(WeightsUnavailable, match=words) as refused:
            load(source)
        assert one_sentence(str(refused.value))
    hf_model(**HF_CONFIGS["32px P8 D32 L2 h4"]).save_pretrained(tmp_path / "no_weights")
    (tmp_path / "no_weights" / "model.safetensors").unlink()
    with pytest.raises(WeightsUnavailable, match="No model.safetensors"):
        load(tmp_path / "no_weights")


# ---------------------------------------------------------------------------------------------------------------
# No pickle from a user's file is ever unpickled

class _MakeDirectory:
    """Unpickling this creates a directory: the harmless stand-in for code a pickle may run."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def hostile_pickle(path: Path, marker: Path) -> Path:
    torch.save({"vit.embeddings.cls_token": torch.zeros(1, 1, 32), "payload": _MakeDirectory(marker)}, path)
    return path


def test_pickled_weights_are_never_unpickled(tmp_path):
    # The file really is hostile: unpickling a copy of it runs the payload.
    proof = tmp_path / "proof_it_runs"
    torch.load(hostile_pickle(tmp_path / "proof.bin", proof), weights_only=False)
    assert proof.is_dir()
    marker = tmp_path / "payload_ran"
    hf_folder, timm_folder = tmp_path / "hf", tmp_path / "timm"
    hf_model(**HF_CONFIGS["32px P8 D32 L2 h4"]).save_pretrained(hf_folder)
    (hf_folder / "model.safetensors").unlink()
    hostile_pickle(hf_folder / "pytorch_model.bin", marker)
    save_timm(timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8, embed_dim=32,
                                depth=1, num_heads=4, num_classes=3), timm_folder)
    (timm_folder / "model.safetensors").unlink()
    hostile_pickle(timm_folder / "pytorch_model.bin", marker)
    hostile_pickle(tmp_path / "weights.pth", marker)
    for call in (lambda: load(hf_folder), lambda: from_transformers(hf_folder), lambda: load(timm_folder),
                 lambda: load(hf_folder / "pytorch_model.bin"), lambda: load(tmp_path / "weights.pth")):
        with pytest.raises(WeightsUnavailable, match="pickle") as refused:
            call()
        assert one_sentence(str(refused.value))
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# The Hub: a real download through huggingface_hub from 127.0.0.1, then the cache offline

def test_hub_ids_download_through_huggingface_hub_then_load_offline_from_its_cache(fake_hub, tmp_path, monkeypatch):
    server, endpoint = fake_hub
    processor_class = pil_image_processor()
    hf_reference = hf_model(**HF_CONFIGS["32px P8 D32 L2 h4"])
    hf_reference.save_pretrained(tmp_path / "hf")
    processor_class(size={"height": 32, "width": 32}, resample=3).save_pretrained(tmp_path / "hf")
    timm_reference = randomise(timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32, patch_size=8,
                                                 embed_dim=32, depth=2, num_heads=4, num_classes=3))
    save_timm(timm_reference, tmp_path / "timm")
    FakeHub.repos = {"someone/vit-tiny": folder_files(tmp_path / "hf"),
                     "timm/vit_tiny_test.demo": folder_files(tmp_path / "timm"),
                     "someone/only-pickles": {"config.json": (tmp_path / "hf" / "config.json").read_bytes(),
                                              "pytorch_model.bin": b"not unpickled"}}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hf_logits, timm_logits = hf_reference(pixel_values=x).logits, timm_reference(x)

    hf_bundle = load("someone/vit-tiny")
    timm_bundle = load("hf-hub:timm/vit_tiny_test.demo")
    downloaded = {path.rsplit("/", 1)[-1] for method, path in FakeHub.requests if method == "GET"}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= downloaded
    cache = tmp_path / "hf_home" / "hub"
    assert (cache / "models--someone--vit-tiny" / "snapshots" / COMMIT / "model.safetensors").is_file()
    assert max_logit_gap(hf_bundle.model, hf_logits, x) <= TOLERANCE
    assert max_logit_gap(timm_bundle.model, timm_logits, x) <= TOLERANCE
    assert hf_bundle.preprocessing.interpolation == "bicubic" and hf_bundle.meta["hub_id"] == "someone/vit-tiny"

    with pytest.raises(WeightsUnavailable, match="no model.safetensors") as refused:
        load("someone/only-pickles")
    assert one_sentence(str(refused.value))
    with pytest.raises(WeightsUnavailable, match="no repository someone/missing") as refused:
        load("someone/missing")
    assert one_sentence(str(refused.value))

    # The server goes away: online, the download fails and the message says what to do without network.
    server.shutdown()
    server.server_close()
    import time

    with monkeypatch.context() as patch, pytest.raises(WeightsUnavailable, match="cannot be reached .* and config.json "
                                                                                  "of someone/never-seen") as refused:
        patch.setattr(time, "sleep", lambda seconds: None)  # huggingface_hub retries 5 times, 23 s of back-off
        load("someone/never-seen")
    assert one_sentence(str(refused.value)) and str(cache) in str(refused.value)

    # Offline: what was downloaded loads from the cache; what was not is named, with the cache and a folder to use.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = load("someone/vit-tiny")
    assert max_logit_gap(again.model, hf_logits, x) <= TOLERANCE
    with pytest.raises(WeightsUnavailable) as refused:
        load("google/vit-large-patch16-224")
    message = str(refused.value)
    assert one_sentence(message), message
    assert "HF_HUB_OFFLINE" in message and str(cache) in message and "config.json and model.safetensors" in message
    assert "folder" in message


def test_a_pre_seeded_cache_stands_in_for_the_hub(tmp_path):
    """The Hugging Face cache layout written by hand (refs/main -> a snapshot): load() offline reads the paper's
    B/16 id from it, and recognises it as a paper checkpoint."""
    reference = hf_model(**HF_CONFIGS["32px P8 D32 L2 h4"])
    snapshot = tmp_path / "hf_home" / "hub" / "models--google--vit-base-patch16-224" / "snapshots" / COMMIT
    reference.save_pretrained(snapshot)
    (snapshot / "preprocessor_config.json").write_text(json.dumps({**GOOGLE_PROCESSOR, "size": 32}))
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(COMMIT)
    bundle = load("google/vit-base-patch16-224")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert max_logit_gap(bundle.model, reference(pixel_values=x).logits, x) <= TOLERANCE
    assert bundle.meta["paper"]["model"] == "ViT-B/16" and bundle.preprocessing.interpolation == "bilinear"
    json.dumps(bundle.meta)  # meta stays JSON-ready


# ---------------------------------------------------------------------------------------------------------------
# The paper's checkpoints: one revision each, its model.safetensors checked by SHA-256

PR_COMMIT = "8041a8c7b0517e25d4cfa63f2e2e35b50b853386"  # refs/pr/2 of google/vit-large-patch16-224 (catalogue)


def test_a_paper_checkpoint_loads_the_revision_it_names_not_main(fake_hub, tmp_path):
    """As on the Hub: main holds only a pickle, the bot's refs/pr/2 adds model.safetensors. The catalogue names that
    commit; every request asks for it, the cache keeps it under that commit, and its SHA-256 is recorded."""
    import hashlib

    reference = hf_model(**HF_CONFIGS["32px P8 D32 L2 h4"])
    reference.save_pretrained(tmp_path / "pr")
    files = folder_files(tmp_path / "pr")
    pickles = {"config.json": files["config.json"], "pytorch_model.bin": b"not unpickled"}
    FakeHub.revisions = {"google/vit-large-patch16-224": {"main": ("a" * 40, pickles), "refs/pr/2": (PR_COMMIT, files)}}
    assert paper_checkpoint("google/vit-large-patch16-224").revision == PR_COMMIT
    bundle = load("google/vit-large-patch16-224")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert max_logit_gap(bundle.model, reference(pixel_values=x).logits, x) <= TOLERANCE
    asked = [path for method, path in FakeHub.requests]
    assert asked and all(f"/resolve/{PR_COMMIT}/" in path for path in asked), asked
    cache = tmp_path / "hf_home" / "hub"
    assert (cache / "models--google--vit-large-patch16-224" / "snapshots" / PR_COMMIT / "model.safetensors").is_file()
    pins = json.loads((cache / "explorer-pins.json").read_text())
    assert pins["google/vit-large-patch16-224"] == {
        "revision": PR_COMMIT, "commit": PR_COMMIT, "sha256": hashlib.sha256(files["model.safetensors"]).hexdigest()}

    # A revision the Hub no longer has is named in one sentence.
    FakeHub.revisions["google/vit-large-patch16-224"] = {"main": ("a" * 40, pickles)}
    (cache / "models--google--vit-large-patch16-224").rename(tmp_path / "moved")
    with pytest.raises(WeightsUnavailable, match=f"no revision {PR_COMMIT}") as refused:
        load("google/vit-large-patch16-224")
    assert one_sentence(str(refused.value))


def test_weights_that_change_after_their_first_verified_download_are_refused(fake_hub, tmp_path, monkeypatch):
    """main moves to other weights: a fresh download matches the Hub's own SHA-256 but not the one recorded at the
    first download, and is refused; a SHA-256 given in the catalogue is checked the same way."""
    import dataclasses

    first = hf_model(**HF_CONFIGS["32px P8 D32 L2 h4"])
    second = randomise(hf_model(**HF_CONFIGS["32px P8 D32 L2 h4"]), 2)
    first.save_pretrained(tmp_path / "first")
    second.save_pretrained(tmp_path / "second")
    FakeHub.revisions = {"google/vit-base-patch16-224": {"main": ("b" * 40, folder_files(tmp_path / "first"))}}
    load("google/vit-base-patch16-224")
    FakeHub.revisions = {"google/vit-base-patch16-224": {"main": ("c" * 40, folder_files(tmp_path / "second"))}}
    with pytest.raises(WeightsUnavailable, match="SHA-256") as refused:
        load("google/vit-base-patch16-224")
    assert one_sentence(str(refused.value)) and "explorer-pins.json" in str(refused.value)

    (tmp_path / "hf_home" / "hub" / "explorer-pins.json").unlink()  # the record deleted: the new file is accepted
    load("google/vit-base-patch16-224")
    pinned = tuple(dataclasses.replace(c, sha256="0" * 64) if c.hub_id == "google/vit-base-patch16-224" else c
                   for c in PAPER_CHECKPOINTS)
    monkeypatch.setattr("explorer.families.catalogue.PAPER_CHECKPOINTS", pinned)
    with pytest.raises(WeightsUnavailable, match="the catalogue pins") as refused:
        load("google/vit-base-patch16-224")
    assert one_sentence(str(refused.value))


def test_every_checkpoint_in_the_menu_names_a_revision_with_safetensors():
    """A commit (40 hex digits) or main; a SHA-256 is 64 hex digits where given; the checkpoint with safetensors at
    no nameable commit is not offered."""
    for checkpoint in PAPER_CHECKPOINTS:
        assert checkpoint.revision == "main" or re.fullmatch(r"[0-9a-f]{40}", checkpoint.revision), checkpoint
        assert checkpoint.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", checkpoint.sha256), checkpoint
    assert not {c.hub_id for c in PAPER_CHECKPOINTS} & set(WITHOUT_SAFETENSORS)
    assert {c.hub_id: c.revision for c in PAPER_CHECKPOINTS if c.revision != "main"} == {
        "google/vit-large-patch16-224": PR_COMMIT,
        "google/vit-large-patch32-384": "7cb790d8aa73dc7882e7190b95f2dbde837abe21"}


# ---------------------------------------------------------------------------------------------------------------
# The paper's checkpoints, as data

def test_paper_checkpoints_agree_with_timm_and_table_1():
    from timm.models import get_pretrained_cfg

    rows = {checkpoint.model for checkpoint in PAPER_CHECKPOINTS}
    assert {"ViT-B/16", "ViT-B/32", "ViT-L/16"} <= rows <= set(CONFIGS)
    for checkpoint in PAPER_CHECKPOINTS:
        patch, resolution = map(int, re.search(r"patch(\d+)[_-](\d+)", checkpoint.hub_id).groups())
        assert (patch, resolution) == (CONFIGS[checkpoint.model].patch_size, checkpoint.resolution), checkpoint
        if checkpoint.library != "timm":
            continue
        name = checkpoint.hub_id.removeprefix("timm/")
        cfg = get_pretrained_cfg(name).to_dict()  # shipped inside timm: no network
        assert cfg["hf_hub_id"] == checkpoint.hub_id and cfg["num_classes"] == 1000
        assert tuple(cfg["input_size"]) == (3, checkpoint.resolution, checkpoint.resolution)
        assert (cfg["crop_pct"], cfg["interpolation"]) == (checkpoint.crop_pct, checkpoint.interpolation)
        assert (tuple(cfg["mean"]), tuple(cfg["std"])) == (checkpoint.mean, checkpoint.std)
        skeleton = timm.create_model(name, pretrained=False, device="meta")
        assert from_timm(skeleton).config.replace(name="") == CONFIGS[checkpoint.model].replace(
            image_size=checkpoint.resolution, name="")  # timm's architecture is that Table 1 row


# ---------------------------------------------------------------------------------------------------------------
# import explorer stays light

def test_import_explorer_imports_no_heavy_library():
    code = ("import explorer, sys; heavy = [m for m in ('transformers', 'timm', 'huggingface_hub', 'gradio') "
            "if m in sys.modules]; assert not heavy, heavy; assert explorer.load and explorer.from_timm")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent, timeout=120)
