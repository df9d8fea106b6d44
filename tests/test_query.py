"""Any prefix token as the attention query, and rollout and relevance from the token the model pools.

Checked against computations written out here in numpy (float64) from the trace's q and k and the model's attention
weights and their gradients: the query radio's REG2 (DIST, the mean of the patches) is that row of A = softmax(q kᵀ /
√d); a mean-pooled model's rollout and relevance are the mean of the patch rows of R, not the class token's row; a
model without a class token draws steps 2, 3 and 5.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image

from explorer import CONFIGS, ViT, analysis, explain
from explorer.app import views
from explorer.app.server import Server
from explorer.app.views.eq2 import query_maps
from explorer.images import Preprocessing
from explorer.tokens import MEAN_OF_PATCHES
from explorer.trace import trace
from explorer.weights import save_checkpoint

TINY = CONFIGS["ViT-Tiny-Test/8"]  # 32 x 32 input, 8-pixel patches: a 4 x 4 grid
FAMILY = {
    "registers": TINY.replace(register_tokens=3, position_covers="class_and_patches"),
    "deit": TINY.replace(distillation_token=True, pooling="class_and_distillation"),
    "meanpool": TINY.replace(class_token=False, pooling="mean", fc_norm=True),
    "meanpool_cls": TINY.replace(pooling="mean", fc_norm=True),
}


def model_of(config, seed: int = 0) -> ViT:
    """A ViT whose every parameter is perturbed, so that attention is far from uniform and tokens differ."""
    torch.manual_seed(seed)
    model = ViT(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    return model


def picture(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def attention_by_hand(t, layer: int) -> np.ndarray:
    """A_l = softmax(q kᵀ / √d) per head from the trace's q and k, in float64: (h, T, T)."""
    q = t[f"blocks.{layer}.attn.q"].double().numpy()  # (h, T, d)
    k = t[f"blocks.{layer}.attn.k"].double().numpy()  # (h, T, d)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])  # (h, T, T)
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    return scores / scores.sum(-1, keepdims=True)


def rollout_by_hand(t) -> np.ndarray:
    """R = Â_L ··· Â_1, Â_l = rownorm(mean_h A_l + I), in float64 from q and k: (T, T)."""
    T = t.layout.T
    R = np.eye(T)
    for layer in range(1, t.depth + 1):
        augmented = attention_by_hand(t, layer).mean(0) + np.eye(T)
        R = (augmented / augmented.sum(-1, keepdims=True)) @ R
    return R


def over_patches(row: np.ndarray, layout, scaled: bool = True) -> np.ndarray:
    patches = row[layout.num_prefix:]
    return (patches / patches.max() if scaled else patches).reshape(4, 4)


# ---------------------------------------------------------------------------------------------------------------
# The query in the token layout

def test_each_query_is_its_row_or_the_mean_of_the_patch_rows():
    z = np.arange(2 * 20 * 3, dtype=np.float64).reshape(2, 20, 3) ** 1.5  # (B, T, D): CLS, REG1..REG3, 16 patches
    registers = FAMILY["registers"].layout
    assert registers.query_labels() == ("CLS", "REG1", "REG2", "REG3") and registers.query("REG2") == 2
    np.testing.assert_array_equal(registers.query_row(z, registers.query("REG2")), z[:, 2])
    assert registers.query("DIST") == registers.query() == 0  # a token it lacks, or none: the class token
    meanpool = FAMILY["meanpool_cls"].layout
    assert meanpool.query_labels() == ("CLS", MEAN_OF_PATCHES) and meanpool.pooled_query == range(1, 17)
    np.testing.assert_allclose(meanpool.query_row(z[:, :17], meanpool.query(MEAN_OF_PATCHES)), z[:, 1:17].mean(1))
    np.testing.assert_allclose(meanpool.query_row(torch.from_numpy(z[:, :17]), meanpool.pooled_query).numpy(),
                               z[:, 1:17].mean(1))
    bare = FAMILY["meanpool"].layout
    assert bare.query_labels() == (MEAN_OF_PATCHES,) and bare.default_query_label == MEAN_OF_PATCHES
    assert bare.query_name(bare.query("CLS")) == MEAN_OF_PATCHES and registers.query_name(5) == "patch 1"


# ---------------------------------------------------------------------------------------------------------------
# Rollout and relevance from the pooled token

@pytest.mark.parametrize("name", ["meanpool", "meanpool_cls"])
def test_a_mean_pooled_rollout_is_the_mean_of_the_patch_rows_of_the_rollout_by_hand(name):
    model = model_of(FAMILY[name])
    t = trace(model, picture())
    layout = t.layout
    R = rollout_by_hand(t)  # (T, T)
    expected = over_patches(R[layout.num_prefix:].mean(0), layout)  # (1/N) Σ_i R[i, patches]
    np.testing.assert_allclose(analysis.rollout_map(t), expected, atol=1e-5)
    reduced = analysis.layer_reductions(t, ("mean",)).rollout("mean").numpy()  # the survey's path
    np.testing.assert_allclose(reduced, expected, atol=1e-5)
    if layout.index("CLS") is not None:  # the class token's row is another map: where it starts matters
        assert not np.allclose(over_patches(R[0], layout), expected, atol=1e-3)
    else:
        with pytest.raises(ValueError, match="no class token"):
            layout.require_query_token()


@pytest.mark.parametrize("name", ["registers", "deit"])
def test_a_class_pooled_rollout_starts_from_the_class_token(name):
    t = trace(model_of(FAMILY[name]), picture(1))
    R = rollout_by_hand(t)
    np.testing.assert_allclose(analysis.rollout_map(t), over_patches(R[0], t.layout), atol=1e-5)


def relevance_by_hand(model: ViT, x: torch.Tensor) -> np.ndarray:
    """Chefer et al.'s R = I; R = R + E_h[(∇A_l ⊙ A_l)^+] R in float64, from the attention weights of a forward and
    the gradients of the top logit: (T, T)."""
    record = explain.GraphRecord()
    logits = model(x, record)  # (1, K)
    names = [f"blocks.{l}.attn.weights" for l in range(1, model.config.depth + 1)]
    gradients = torch.autograd.grad(logits[0, int(logits.argmax())], [record[n] for n in names])
    T = model.layout.T
    R = np.eye(T)
    for name, gradient in zip(names, gradients):
        A, dA = record[name][0].detach().double().numpy(), gradient[0].double().numpy()  # (h, T, T)
        R = R + np.clip(dA * A, 0, None).mean(0) @ R
    return R


@pytest.mark.parametrize("name", ["meanpool", "meanpool_cls", "deit"])
def test_relevance_is_the_pooled_querys_row_of_r_by_hand(name):
    model, x = model_of(FAMILY[name]), picture(2)
    layout = model.layout
    R = relevance_by_hand(model, x)
    row = R[layout.num_prefix:].mean(0) if layout.pooling == "mean" else R[0]
    np.testing.assert_allclose(explain.relevance(model, x), over_patches(row, layout, scaled=False), rtol=1e-4,
                               atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# The query in the app

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("family")
    pre = Preprocessing(resize_size=32, crop_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    for stem, config in FAMILY.items():
        save_checkpoint(folder / stem, model_of(config), [f"class {i}" for i in range(config.num_classes)], pre,
                        {"dataset": "none (random, for tests)"})
    return Server(checkpoint_dir=folder, device="cpu")


@pytest.fixture(scope="module")
def entries(server):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    labels = {label.split(" · ")[-1]: label for label in server.registry.labels()}
    return {stem: server.analyse(image, labels[stem]) for stem in FAMILY}


def draw(entry, name: str, options: views.Options):
    return views.render_views(entry, [name], options)[0]


def full_trace(server, entry):
    """The entry's input traced again with every stage (q and k included), by the same model."""
    return trace(server.registry.get(entry.spec.label).model, entry.trace["input.pixels"][None])


def first_tile(figure: go.Figure, grid=(4, 4)) -> np.ndarray:
    """Head 1's map: the top-left tile of the heads mosaic (the first heatmap)."""
    z = np.asarray([t for t in figure.data if t.type == "heatmap"][0].z, dtype=np.float64)
    return z[: grid[0], : grid[1]]


def test_the_query_radio_offers_the_models_tokens(entries):
    adapt = views.CONTROLS["query_label"].adapt
    assert adapt(entries["registers"], "REG2") == ({"choices": ["CLS", "REG1", "REG2", "REG3"]}, "REG2")
    assert adapt(entries["deit"], "REG2") == ({"choices": ["CLS", "DIST"]}, "CLS")  # one it lacks: the default
    assert adapt(entries["meanpool"], "CLS") == ({"choices": [MEAN_OF_PATCHES]}, MEAN_OF_PATCHES)
    assert adapt(entries["meanpool_cls"], "CLS") == ({"choices": ["CLS", MEAN_OF_PATCHES]}, "CLS")


def test_reg2_as_the_query_shows_a_s_reg2_row(server, entries):
    entry = entries["registers"]
    t = full_trace(server, entry)
    options = views.Options(query_label="REG2", layer=2)
    reg2 = entry.config.layout.index("REG2")
    assert reg2 == 2  # CLS, REG1, REG2, then the patches
    expected = attention_by_hand(t, 2)[:, reg2, entry.config.layout.num_prefix:].reshape(-1, 4, 4)  # (h, 4, 4)
    heads = draw(entry, "eq2.heads", options)
    assert "query: REG2" in heads.layout.title.text
    np.testing.assert_allclose(first_tile(heads), expected[0], atol=1e-5)
    np.testing.assert_allclose(analysis.query_attention(entry.trace, 2, options.query_token(entry.config.layout)),
                               expected, atol=1e-5)
    overview = query_maps(entry, options.only(views.VIEWS["eq2.overview"].reads))  # (L, h, 4, 4)
    np.testing.assert_allclose(overview[1], expected, atol=1e-5)
    assert "query: REG2" in draw(entry, "eq2.overview", options).layout.title.text
    assert "query: REG2" in draw(entry, "eq2.text", options)
    # CLS's row is another map, and a picked patch still overrides the radio
    assert not np.allclose(first_tile(draw(entry, "eq2.heads", options.replace(query_label="CLS"))), expected[0],
                           atol=1e-3)
    picked = draw(entry, "eq2.heads", options.replace(selected=5))
    assert "query: patch 5" in picked.layout.title.text
    prefix = entry.config.layout.num_prefix  # 1 + 3 registers: patch 5 is token 9
    np.testing.assert_allclose(first_tile(picked), attention_by_hand(t, 2)[0, prefix + 5, prefix:].reshape(4, 4),
                               atol=1e-5)


def test_the_layernorm_view_reads_the_chosen_token(server, entries):
    entry = entries["deit"]
    figure = draw(entry, "eq3.layernorm", views.Options(query_label="DIST"))
    assert "LayerNorm on DIST (token 1)" in figure.layout.title.text
    before = entry.trace["embed.z0"][1].numpy()  # z_0 of DIST, what layer 1's first LayerNorm reads
    np.testing.assert_allclose(np.asarray(figure.data[0].x), before, atol=1e-6)


def test_a_model_without_a_class_token_draws_steps_2_3_and_5(server, entries):
    entry = entries["meanpool"]
    t = full_trace(server, entry)
    options = views.Options(query_label="CLS")  # a token it lacks: its default, the mean of the patches
    for step in (2, 3, 5):
        for name, value in zip(views.step_views(step), views.render_views(entry, views.step_views(step), options)):
            assert value is not None, name
    heads = draw(entry, "eq2.heads", options)
    assert "query: mean of the patches" in heads.layout.title.text
    A = attention_by_hand(t, 1)  # (h, T, T), T = N: no prefix
    np.testing.assert_allclose(first_tile(heads), A[0].mean(0).reshape(4, 4), atol=1e-5)
    rollout = draw(entry, "eq2.rollout", options)
    assert "from the mean of the patch rows" in rollout.layout.title.text
    layernorm = draw(entry, "eq3.layernorm", options)
    assert "mean of the patches" in layernorm.layout.title.text
    np.testing.assert_allclose(np.asarray(layernorm.data[0].x), t["embed.z0"].numpy().mean(0), atol=1e-5)
    curves = views.draw_slow(entry, "why.faithfulness", options.only(views.VIEWS["why.faithfulness"].reads),
                             lambda done, total: None)
    assert len(curves.data) > 0
    assert "mean of the patch rows" in draw(entry, "why.relevance", options).layout.title.text


def test_deit_says_which_token_each_head_reads(entries):
    title = draw(entries["deit"], "eq2.rollout", views.Options()).layout.title.text.replace("<br>", " ")
    assert "from CLS, which DeiT's first head reads" in title and "second head reads DIST" in title
