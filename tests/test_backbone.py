"""A backbone without a classifier in the app: DINOv2 (with registers) folders in the menu, every view of every step drawn
from its trace, step 4's features, step 5's one sentence, the heads-off and dropped-patch views as how far the output
moved, /predict without a top-k, the compare panel.

Models are tiny and random: timm's vit_small_patch14_reg4_dinov2 and transformers' Dinov2WithRegistersModel, each
saved as its library saves it in a tmp folder that EXPLORER_MODELS names. Offline; nothing reaches the Hub.
"""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from hub_models import randomise, save_timm, timm, transformers  # noqa: E402

from explorer import features  # noqa: E402
from explorer.app import ablation, text, views  # noqa: E402
from explorer.app.server import Server  # noqa: E402
from explorer.app.views import compare  # noqa: E402

TIMM_DINO, HF_DINO = "dinov2_reg4_timm", "dinov2_registers_hf"
DINO_KWARGS = dict(num_classes=0, img_size=56, patch_size=14, embed_dim=32, depth=2, num_heads=4)


def photo(seed: int = 0, size=(70, 50)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def save_dinov2(root):
    """The two DINOv2-with-registers folders; their source models."""
    torch.manual_seed(0)
    timm_model = randomise(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, **DINO_KWARGS))
    save_timm(timm_model, root / TIMM_DINO)
    torch.manual_seed(1)
    hf_config = transformers.Dinov2WithRegistersConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                       image_size=56, patch_size=14, mlp_ratio=2, num_register_tokens=4)
    hf_model = randomise(transformers.Dinov2WithRegistersModel(hf_config))
    hf_model.save_pretrained(root / HF_DINO)
    return {TIMM_DINO: timm_model, HF_DINO: hf_model}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return root, save_dinov2(root)


@pytest.fixture
def server(models, monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORER_MODELS", str(models[0]))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    return Server(device="cpu", max_models=4)


def output_of(reference, pixels: torch.Tensor) -> torch.Tensor:
    """What the source library's forward returns for the pixels our trace read: timm's pooled features; transformers'
    pooler_output (LN of the class token)."""
    with torch.no_grad():
        if hasattr(reference, "config"):
            return reference(pixel_values=pixels[None]).pooler_output[0]
        return reference(pixels[None])[0]


@pytest.mark.parametrize("label", [TIMM_DINO, HF_DINO])
def test_a_dinov2_folder_is_in_the_menu_and_loads(server, models, label):
    spec = server.registry.resolve(label)
    assert spec.kind == "folder" and "DINOv2" in spec.description and "56px, a backbone: features, no classes" in spec.description
    assert not any(p.startswith(label) for p in server.registry.problems)
    entry = server.analyse(photo(1), label)
    assert not entry.config.has_classifier and entry.config.register_tokens == 4
    assert "head.logits" not in entry.trace and entry.logit_lens is None
    expected = output_of(models[1][label], entry.trace["input.pixels"])
    assert (entry.trace["head.y"] - expected).abs().max() <= 1e-4  # y is the source's output
    assert "a backbone with no classifier" in text.model_card(entry)


def test_every_view_of_every_step_draws_on_a_backbone(server):
    entry = server.analyse(photo(2), TIMM_DINO, stages=views.stages_of(views.step_views(0)))
    for options in (views.Options(), views.Options(selected=3, layer=2, head="2", ln_layer=2, dropped=(0, 5),
                                                   scale=2.0)):
        for step in range(len(views.STEPS)):
            names = views.step_views(step)
            values = views.render_views(entry, names, options)
            assert len(values) == len(names) and all(v is not None for v in values), (step, names)
    assert server.runs == 1  # one upload; the rest came from its trace and counted runs
    slow = views.draw_slow(entry, "why.faithfulness", views.Options(), progress=lambda done, total: None)
    assert text.NEEDS_CLASSIFIER in json.dumps(slow.to_dict()).replace("<br>", " ")


def _figure_text(value) -> str:
    """A drawn view's words (its title and any text in it), for checking what it says."""
    figure = json.loads(value) if isinstance(value, str) else value
    return json.dumps(figure, ensure_ascii=False).replace("<br>", " ")


def test_step_4_shows_the_features_and_a_picked_patch_changes_the_similarity(server):
    entry = server.analyse(photo(3), TIMM_DINO)
    draw = lambda name, options=views.Options(): views.VIEWS[name].draw(entry, options.only(views.VIEWS[name].reads))
    pca = features.patch_feature_pca(entry.trace)
    figure = draw("eq4.pca")
    assert figure.layout.meta["kind"] == "feature_pca" and pca.components.shape == (4, 4, 3)
    centre = draw("eq4.similarity")  # no patch picked: the grid's centre, patch 2·4 + 2 = 10
    picked = draw("eq4.similarity", views.Options(selected=3))
    heat = lambda f: np.asarray([t for t in f.data if t.type == "heatmap"][0].z)
    np.testing.assert_allclose(heat(centre), features.patch_similarity(entry.trace, 10), atol=1e-6)
    np.testing.assert_allclose(heat(picked), features.patch_similarity(entry.trace, 3), atol=1e-6)
    assert heat(picked)[0, 3] == pytest.approx(1.0) and not np.allclose(heat(centre), heat(picked))
    assert "No classes: this model is a backbone" in _figure_text(draw("eq4.top_k").to_dict())
    assert "No classes" in draw("eq4.table")
    assert "There is no logit lens" in _figure_text(draw("eq4.lens").to_dict())
    assert "y \\text{ is the output}" in draw("eq4.text") and "This model is a backbone" in draw("eq4.text")


def test_step_5_says_in_one_sentence_that_a_class_needs_a_classifier(server):
    entry = server.analyse(photo(4), TIMM_DINO)
    for name in ("why.relevance", "why.grad_cam", "why.faithfulness"):
        spec = views.VIEWS[name]
        said = _figure_text(spec.draw(entry, views.Options().only(spec.reads)).to_dict())
        assert text.NEEDS_CLASSIFIER in said, name
    assert views.VIEWS["why.text"].draw(entry, views.Options().only(("target",))).count(text.NEEDS_CLASSIFIER) == 1
    importance = views.VIEWS["why.head_importance"].draw(entry, views.Options().only(("target",)))
    assert "backbone with no classes" in _figure_text(importance.to_dict())
    assert views.CONTROLS["target"].adapt(entry, "3") == ({"choices": [views.TOP_CLASS]}, "")
    assert not any(kind in server.explain_runs for kind in ("gradients", "faithfulness", "head importance"))


def test_dropped_patches_and_heads_off_show_how_far_y_moved(server):
    entry = server.analyse(photo(5), TIMM_DINO)
    dropped = views.VIEWS["why.dropped"].draw(entry, views.Options(dropped=(1, 2)).only(("dropped",)))
    model = server.registry.get(TIMM_DINO).model
    from explorer import explain

    with torch.no_grad():
        y_without = explain.drop_patches(model, entry.trace["input.pixels"][None], (1, 2))[0].numpy()  # (D,)
    y = entry.trace["head.y"].numpy()
    cosine = float(y @ y_without / np.linalg.norm(y) / np.linalg.norm(y_without))
    assert dropped.layout.meta["cosine"] == pytest.approx(cosine, abs=1e-6)
    assert dropped.layout.title.text.startswith(f"cos(y, y′) = {cosine:.3f}")
    np.testing.assert_allclose(dropped.data[1].y, y_without, atol=1e-6)
    off = ablation.ablated_entry(server, entry, [(1, 0), (2, 3)])
    moved = views.VIEWS["eq2.heads_off_prediction"].draw(off, views.Options().only(()))
    y_off = off.trace["head.y"].numpy()
    cosine = float(y @ y_off / np.linalg.norm(y) / np.linalg.norm(y_off))
    assert cosine < 0.99999 and moved.layout.meta["cosine"] == pytest.approx(cosine, abs=1e-6)
    np.testing.assert_allclose(moved.data[1].x, y, atol=1e-6)


def test_predict_says_there_is_no_top_k(server):
    answer = server.predict(photo(6), TIMM_DINO, k=3)
    assert {"model", "weights", "source", "trained", "top_k", "notes"} <= set(answer)
    assert answer["top_k"] == [] and answer["features"] == 32
    assert answer["note"].endswith("so there is no top-k.") and answer["note"].count(". ") == 0


def test_the_compare_panel_on_two_backbones_and_on_a_backbone_beside_a_classifier(server, models):
    a, b = server.analyse(photo(7), TIMM_DINO), server.analyse(photo(8), TIMM_DINO)
    render = lambda entry, names, options: views.render_views(entry, names, options)
    for step in range(len(compare.SLOTS)):
        values = compare.compare_step(step, a, b, views.Options(), render)
        assert all(values[slot] is not None for slot in compare.SLOTS[step]), step
    figure = compare._outputs_pair(a, b, ("A", "B"))
    cosine, _ = features.output_change(a.trace["head.y"], b.trace["head.y"])
    assert figure.layout.meta["cosine"] == pytest.approx(cosine, abs=1e-6)
    classifier = server.analyse(photo(7), server.registry.fallback_label())
    assert "A is a backbone with no classes" in _figure_text(compare._outputs_pair(a, classifier, ("A", "B")).to_dict())


def test_patching_on_a_backbone_shows_how_far_y_moved(server):
    from explorer import analysis
    from explorer.app.views import interventions

    a, b = server.analyse(photo(9), TIMM_DINO), server.analyse(photo(10), TIMM_DINO)
    positions = interventions.patch_positions(interventions.PATCH_TOKENS[1], 6, a.config.layout)
    figure = interventions.patched_prediction(a, b, "blocks.1.z", positions)
    model = server.registry.get(TIMM_DINO).model
    with torch.no_grad():
        y = analysis.patch_activations(model, a.trace["input.pixels"][None], b.trace["input.pixels"][None],
                                       "blocks.1.z", positions)[0]  # (D,): a backbone's output
    cosine, relative = features.output_change(a.trace["head.y"], y)
    assert figure.layout.meta["cosine"] == pytest.approx(cosine, abs=1e-6) and relative > 0
