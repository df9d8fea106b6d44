"""explorer.features (a backbone's patch features: their principal components, a patch's similarity to every patch, how
far the output moved), its figures (explorer.render.features) and Eq. 4's words for each family (explorer.app.text).

The features are checked against timm's own DINOv2 forward (forward_features: x_norm, its prefix tokens cut by timm's
num_prefix_tokens), the principal components against an eigendecomposition of the covariance in numpy, and the
similarity and the output change against values worked by hand on a 2 x 2 grid.
"""
from __future__ import annotations

import math
import re

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from explorer import CONFIGS, ViT, features
from explorer.app import text as page_text
from explorer.config import ViTConfig
from explorer.render import features as figures
from explorer.trace import Trace, trace

TWO_BY_TWO = ViTConfig(image_size=28, patch_size=14, hidden_dim=2, depth=1, heads=1, mlp_dim=4, num_classes=0)


def hand_trace(patches) -> Trace:
    """A trace of the 2 x 2 grid whose head.tokens are a class token (ones) and these four patch features (2,)."""
    tokens = torch.tensor([[1.0, 1.0]] + [list(map(float, p)) for p in patches])  # (T, D) = (5, 2)
    return Trace(TWO_BY_TWO, {"head.tokens": tokens})


def test_similarity_on_a_two_by_two_grid_by_hand():
    t = hand_trace([(1, 0), (0, 2), (3, 3), (-1, 0)])
    np.testing.assert_allclose(features.patch_similarity(t, 0), [[1, 0], [1 / math.sqrt(2), -1]], atol=1e-12)
    np.testing.assert_allclose(features.patch_similarity(t, 2), [[1 / math.sqrt(2), 1 / math.sqrt(2)],
                                                                 [1, -1 / math.sqrt(2)]], atol=1e-12)
    with pytest.raises(ValueError, match="outside 0..3"):
        features.patch_similarity(t, 4)


def test_principal_components_on_a_two_by_two_grid_by_hand():
    # Centred already; covariance diag(8, 2) / 4: the first component is the x axis, the second the y axis.
    pca = features.patch_feature_pca(hand_trace([(2, 0), (-2, 0), (0, 1), (0, -1)]), k=3)
    assert pca.components.shape == (2, 2, 3)
    np.testing.assert_allclose(pca.components[..., 0], [[1, 0], [0.5, 0.5]], atol=1e-12)  # x: 2, -2, 0, 0
    np.testing.assert_allclose(pca.components[..., 1], [[0.5, 0.5], [1, 0]], atol=1e-12)  # y: 0, 0, 1, -1
    np.testing.assert_allclose(pca.components[..., 2], 0, atol=1e-12)  # D = 2: no third component
    np.testing.assert_allclose(pca.explained, [0.8, 0.2, 0.0], atol=1e-12)


def test_patches_that_are_all_alike_have_no_components():
    pca = features.patch_feature_pca(hand_trace([(1, 2)] * 4), k=3)
    assert np.array_equal(pca.components, np.zeros((2, 2, 3))) and np.array_equal(pca.explained, np.zeros(3))


def test_output_change_by_hand():
    cosine, relative = features.output_change([1.0, 0.0], [1.0, 1.0])
    assert cosine == pytest.approx(1 / math.sqrt(2)) and relative == pytest.approx(1.0)
    assert features.output_change([3.0, 4.0], [3.0, 4.0]) == (pytest.approx(1.0), 0.0)


@pytest.fixture(scope="module")
def dinov2():
    """timm's DINOv2 with 4 registers, tiny and random, without a classifier; ours converted from it; an input."""
    timm = pytest.importorskip("timm")
    from explorer.families import from_timm

    torch.manual_seed(0)
    reference = timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, num_classes=0, img_size=56,
                                  patch_size=14, embed_dim=32, depth=2, num_heads=4).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(torch.randn(parameter.shape) * 0.1)
    return reference, from_timm(reference).eval(), torch.randn(1, 3, 56, 56)


def test_the_features_are_timms_normed_patch_tokens(dinov2):
    reference, ours, x = dinov2
    with torch.no_grad():
        expected = reference.forward_features(x)[0, reference.num_prefix_tokens:]  # x_norm_patchtokens: (N, D)
    t = trace(ours, x)
    assert t.layout.num_prefix == 5 and expected.shape == (16, 32)
    assert (features.features(t) - expected.double()).abs().max() <= 1e-4


def test_principal_components_match_an_eigendecomposition_in_numpy(dinov2):
    reference, ours, x = dinov2
    with torch.no_grad():
        f = reference.forward_features(x)[0, reference.num_prefix_tokens:].double().numpy()  # (N, D)
    centred = f - f.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)  # ascending
    order = np.argsort(values)[::-1][:3]
    projections = centred @ vectors[:, order]  # (N, 3)
    scaled = (projections - projections.min(0)) / (projections.max(0) - projections.min(0))  # (N, 3)
    pca = features.patch_feature_pca(trace(ours, x), k=3)
    got = pca.components.reshape(16, 3)
    for c in range(3):  # an eigenvector's sign is arbitrary: scaled, a flipped component is 1 - itself
        gap = min(np.abs(got[:, c] - scaled[:, c]).max(), np.abs(got[:, c] - (1 - scaled[:, c])).max())
        assert gap <= 1e-4, c
    np.testing.assert_allclose(pca.explained, values[order] / values.sum(), atol=1e-6)
    assert got.min() == 0 and got.max() == 1


def test_similarity_matches_torch_cosine_similarity(dinov2):
    reference, ours, x = dinov2
    with torch.no_grad():
        f = reference.forward_features(x)[0, reference.num_prefix_tokens:].double()  # (N, D)
    expected = torch.nn.functional.cosine_similarity(f, f[5][None], dim=1).reshape(4, 4).numpy()
    np.testing.assert_allclose(features.patch_similarity(trace(ours, x), 5), expected, atol=1e-5)


def test_with_fc_norm_the_features_are_the_last_layers_tokens():
    config = CONFIGS["ViT-Tiny-Test/8"].replace(pooling="mean", fc_norm=True)
    torch.manual_seed(1)
    t = trace(ViT(config).eval(), torch.randn(1, 3, 32, 32))
    assert torch.equal(t["head.tokens"], t[f"blocks.{config.depth}.z"])  # its LN comes after the mean


def test_the_figures_draw_the_arrays():
    rng = np.random.default_rng(0)
    image = rng.random((56, 56, 3))
    components = rng.random((4, 4, 3))
    pca = figures.feature_pca(image, components, [0.5, 0.3, 0.1])
    go.Figure(pca.to_dict())  # valid
    picture = np.asarray(pca.data[0].z)  # the panels as one picture
    h, w = pca.layout.meta["panel"]
    gap = max(4, w // 20)
    colours = picture[:, w + gap: 2 * w + gap]  # the second panel: one colour per patch, enlarged
    np.testing.assert_allclose(colours[::h // 4, ::w // 4] / 255, components, atol=1 / 255 + 1e-6)
    assert "50%, 30%, 10%" in pca.layout.title.text
    similarity = rng.uniform(-1, 1, (4, 4))
    sim = figures.patch_similarity(image, similarity, 6)
    go.Figure(sim.to_dict())
    heat = [trace for trace in sim.data if trace.type == "heatmap"][0]
    np.testing.assert_allclose(heat.z, similarity, atol=1e-6)
    assert (heat.zmin, heat.zmax) == (-1, 1) and "patch 6" in sim.layout.title.text
    moved = figures.output_change([1, 0, 2], [1, 1, 2], ("before", "after"), 0.9, 0.4)
    go.Figure(moved.to_dict())
    assert "cos(y, y′) = 0.900" in moved.layout.title.text


# ---------------------------------------------------------------------------------------------------------------
# Eq. 4's words, one family at a time

B16 = CONFIGS["ViT-B/16"]
FAMILIES = {  # label -> (config, what Eq. 4 must say, what the words must say)
    "the paper's ViT (class token)": (B16, "\\mathrm{LN}(z_{12}^0)", "Only the class token's final state"),
    "DeiT (two heads averaged)": (B16.replace(distillation_token=True, pooling="class_and_distillation"),
                                  "\\tfrac{1}{2}\\big(y\\,W_\\text{head} + b + \\mathrm{LN}(z_L^\\text{dist})",
                                  "two heads' K = 1000 scores are averaged"),
    "mean, fc_norm (LN after the mean)": (B16.replace(pooling="mean", fc_norm=True),
                                          "y = \\mathrm{LN}\\Big(\\frac{1}{N}\\sum", "one LayerNorm after the mean"),
    "mean, no fc_norm (LN before)": (B16.replace(pooling="mean"), "y = \\frac{1}{N}\\sum_{i=1}^{N} \\mathrm{LN}(",
                                     "final LayerNorm is applied to each of the N = 196"),
    "a backbone (DINOv2 with registers)": (B16.replace(num_classes=0, register_tokens=4, position_covers="patches",
                                                       layer_scale=True),
                                           "\\text{no classifier: } y \\text{ is the output}",
                                           "This model is a backbone: it has no classifier"),
    "a mean-pooled backbone without a class token": (
        B16.replace(num_classes=0, pooling="mean", class_token=False, register_tokens=4, fc_norm=True),
        "\\text{no classifier", "one LayerNorm after the mean (fc_norm) gives y. This model is a backbone"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_eq4_says_how_each_family_forms_its_output(family):
    config, formula, words = FAMILIES[family]
    text = page_text.explanation(4, config)
    equation, prose = text.split("\n\n", 1)
    assert equation == page_text.equation(4, config) and formula in equation and words in prose
    assert equation.startswith("$$") and equation.endswith("$$") and equation.count("$$") == 2
    assert 2 <= len(re.findall(r"[.!?](\s|$)", prose)) <= 4 and "{" not in prose
    assert ("logits" in equation) == config.has_classifier
    assert ("logit lens applies" in prose) == config.has_classifier


def test_step_5_on_a_backbone_says_it_needs_a_classifier():
    prose = page_text.explanation(5, FAMILIES["a backbone (DINOv2 with registers)"][0]).split("\n\n", 1)[1]
    assert prose.startswith(page_text.NEEDS_CLASSIFIER) and "Kept here" in prose
