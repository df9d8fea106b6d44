"""High-norm tokens (explorer.highnorm, Darcet et al. 2023) against computations made here by hand: a tiny model whose
weights are edited so that one chosen patch's token takes a huge norm from a chosen layer on must have exactly that
patch marked from exactly that layer; the norms are torch.linalg.vector_norm of the trace's stages; the attention
masses are sums over softmax(q k^T / sqrt(d)) computed here from the trace's q and k, token indices written out."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer import CONFIGS, ViT
from explorer.highnorm import high_norm_tokens, outlier_cutoff
from explorer.trace import trace

TINY = CONFIGS["ViT-Tiny-Test/8"].replace(depth=4)  # 32 x 32 input, 4 x 4 = 16 patches, D = 32, 4 heads
CHOSEN = 6  # the patch made an outlier
REGISTERS = TINY.replace(register_tokens=4)  # tokens: CLS 0, REG1..REG4 1..4, patch i at 5 + i


def _model(config, seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    model = ViT(config).eval()
    with torch.no_grad():
        for parameter in (model.class_token, model.register_tokens):
            if parameter is not None:
                parameter.normal_(std=0.5)
    return model


def _image(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def outlier_from_layer_2(config, patch_token: int) -> ViT:
    """A model in which the token at `patch_token` takes a huge norm in block 2's MLP, and no token before.

    Dimensions 0 and 1 of the stream are 0 for every token but that one, which carries (c, -c) from its E_pos row:
    nothing writes to them (the patch projection, the prefix tokens, block 1's and block 2's attention output and
    block 1's MLP output zero there). LN_2 of block 2 (gamma 1, beta 0 there) keeps LN_0 - LN_1 = 0 for every other
    token and 2c / sigma > 0 for this one (sigma ~ 1.2, the token's sd over D); one hidden unit of block 2's MLP reads
    20 (LN_0 - LN_1) - 10, so it is GELU(-10) ~ 1e-22 everywhere but there, where it writes ~20 times a vector of norm
    50 through fc2."""
    model = _model(config)
    dims = [0, 1]
    with torch.no_grad():
        model.patch_embedding.projection.weight[dims] = 0
        model.patch_embedding.projection.bias[dims] = 0
        for parameter in (model.class_token, model.register_tokens, model.distillation_token):
            if parameter is not None:
                parameter[..., dims] = 0
        E = model.position_embedding  # (1, T, D): covers every token ("all")
        E[..., dims] = 0
        E[0, patch_token, 0], E[0, patch_token, 1] = 1.0, -1.0  # c = 1, about one entry's size: the norm hardly moves
        first, second = model.blocks[0], model.blocks[1]
        for linear in (first.msa.projection, first.mlp.fc2, second.msa.projection):
            linear.weight[dims] = 0
            linear.bias[dims] = 0
        second.norm_2.weight[dims] = 1
        second.norm_2.bias[dims] = 0
        fc1, fc2 = second.mlp.fc1, second.mlp.fc2
        fc1.weight[0] = 0
        fc1.weight[0, 0], fc1.weight[0, 1], fc1.bias[0] = 20.0, -20.0, -10.0
        fc2.weight[:, 0] = torch.randn(config.hidden_dim, generator=torch.Generator().manual_seed(5))
        fc2.weight[dims, 0] = 0
        fc2.weight[:, 0] *= 50 / fc2.weight[:, 0].norm()  # GELU(40 / sigma - 10) times a vector of norm 50
    return model


def hand_rows(t, layer: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) of layer l from the trace's q and k, in float64, every query: (h, T, T)."""
    q, k = t[f"blocks.{layer}.attn.q"].double(), t[f"blocks.{layer}.attn.k"].double()  # (h, T, d)
    return torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)


def test_the_patch_made_huge_in_block_2_is_the_one_outlier_from_z_2_on():
    t = trace(outlier_from_layer_2(REGISTERS, 5 + CHOSEN), _image())
    found = high_norm_tokens(t)
    expected = np.zeros((5, 16), dtype=bool)
    expected[2:, CHOSEN] = True
    assert np.array_equal(found.outliers, expected), [found.outlier_patches(l) for l in range(5)]
    assert found.first_layer() == 2 and found.outlier_patches(4) == [CHOSEN]
    assert found.norms[2, 5 + CHOSEN] > 100 * np.median(found.norms[2, 5:])  # a real outlier, not a marginal one
    # An absolute threshold, as Darcet et al. use (150 for DINOv2 ViT-g): above every norm, nothing; below, all.
    assert not high_norm_tokens(t, threshold=float(found.norms.max()) + 1).outliers.any()
    assert high_norm_tokens(t, threshold=1e-6).outliers.all()
    with pytest.raises(ValueError, match="positive"):
        high_norm_tokens(t, threshold=-1)


def test_a_huge_position_embedding_row_is_an_outlier_from_z_0_on():
    model = _model(REGISTERS)
    with torch.no_grad():
        model.position_embedding[0, 5 + 11] += 50.0
    found = high_norm_tokens(trace(model, _image(2)))
    assert [found.outlier_patches(l) for l in range(5)] == [[11]] * 5
    unedited = high_norm_tokens(trace(_model(REGISTERS), _image(2)))
    assert not unedited.outliers.any() and unedited.first_layer() is None


def test_norms_are_the_vector_norms_of_the_residual_stream():
    t = trace(outlier_from_layer_2(REGISTERS, 5 + CHOSEN), _image())
    found = high_norm_tokens(t)
    stream = [t["embed.z0"]] + [t[f"blocks.{l}.z"] for l in range(1, 5)]
    expected = torch.stack([torch.linalg.vector_norm(z.double(), dim=-1) for z in stream]).numpy()
    np.testing.assert_allclose(found.norms, expected, rtol=1e-12)
    assert found.norms.shape == (5, 21)


def test_the_cutoff_is_the_documented_rule():
    norms = np.array([[1.0, 1.1, 0.9, 1.0, 1.2, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.9]])
    # row 0: median 1.05, MAD 0.1 -> 1.05 + 4 * 1.4826 * 0.1 = 1.643 (above 2.1? no: 2 * median wins)
    # row 1: median 1.0, MAD 0 -> max(1.0, 2.0) = 2.0: 1.9 is not an outlier of a tight layer
    np.testing.assert_allclose(outlier_cutoff(norms), [2.1, 2.0])
    wide = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 30.0])  # median 3.5, MAD 1.5 -> 3.5 + 8.8956 = 12.3956 > 7
    np.testing.assert_allclose(outlier_cutoff(wide), 3.5 + 4 * 1.4826 * 1.5)


def test_the_class_token_s_attention_masses_are_sums_of_its_rows_computed_by_hand():
    t = trace(outlier_from_layer_2(REGISTERS, 5 + CHOSEN), _image())
    found = high_norm_tokens(t)
    assert found.query == "the class token"
    for layer in range(1, 5):
        row = hand_rows(t, layer)[:, 0].mean(dim=0).numpy()  # the class token's row, mean over heads: (T,)
        outlier = [5 + CHOSEN] if layer - 1 >= 2 else []  # the outliers of z_{l-1}, which layer l reads
        patches = [token for token in range(5, 21) if token not in outlier]
        expected = dict(registers=row[1:5].sum(), outliers=row[outlier].sum(), patches=row[patches].sum(),
                        prefix=row[0])
        got = {name: found.attention[name][layer - 1] for name in expected}
        np.testing.assert_allclose(list(got.values()), list(expected.values()), atol=1e-6, err_msg=str(layer))
    total = sum(found.attention.values())
    np.testing.assert_allclose(total, np.ones(4), atol=1e-6)
    assert found.attention["outliers"][2:].min() > 0 and found.attention["outliers"][:2].max() == 0


@pytest.mark.parametrize("changes, prefix", [
    (dict(), [0]),  # the paper's ViT: no registers
    (dict(distillation_token=True, pooling="class_and_distillation", register_tokens=2), [0, 1]),  # DeiT + registers
])
def test_prefix_mass_is_the_class_token_itself_and_the_other_non_register_tokens(changes, prefix):
    config = TINY.replace(**changes)
    t = trace(_model(config), _image(3))
    found = high_norm_tokens(t)
    registers = list(range(len(prefix), config.layout.num_prefix))
    for layer in range(1, 5):
        row = hand_rows(t, layer)[:, 0].mean(dim=0).numpy()  # (T,)
        np.testing.assert_allclose(found.attention["prefix"][layer - 1], row[prefix].sum(), atol=1e-6)
        np.testing.assert_allclose(found.attention["registers"][layer - 1], row[registers].sum(), atol=1e-6)
    np.testing.assert_allclose(sum(found.attention.values()), np.ones(4), atol=1e-6)
    if not registers:
        assert not found.attention["registers"].any()


def test_without_a_class_token_the_mean_of_the_patch_rows_is_read():
    config = TINY.replace(class_token=False, pooling="mean", fc_norm=True, register_tokens=2)  # REG1 0, REG2 1
    t = trace(_model(config), _image(4))
    found = high_norm_tokens(t)
    assert found.query == "the mean of the patch tokens' rows" and found.norms.shape == (5, 18)
    for layer in range(1, 5):
        mean_row = hand_rows(t, layer)[:, 2:].mean(dim=(0, 1)).numpy()  # the 16 patch rows, every head: (T,)
        np.testing.assert_allclose(found.attention["registers"][layer - 1], mean_row[:2].sum(), atol=1e-6)
        np.testing.assert_allclose(found.attention["patches"][layer - 1] + found.attention["outliers"][layer - 1],
                                   mean_row[2:].sum(), atol=1e-6)
    assert not found.attention["prefix"].any()
    np.testing.assert_allclose(sum(found.attention.values()), np.ones(4), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# The view (step 3), on the paper's ViT, a model with registers and a model without a class token

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from explorer.app.server import Server
    from explorer.images import Preprocessing
    from explorer.weights import save_checkpoint

    folder = tmp_path_factory.mktemp("checkpoints")
    pre = Preprocessing(resize_size=32, crop_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    models = {"paper": _model(TINY), "registers": outlier_from_layer_2(REGISTERS, 5 + CHOSEN),
              "mean": _model(TINY.replace(class_token=False, pooling="mean", fc_norm=True))}
    for stem, model in models.items():
        save_checkpoint(folder / stem, model, [f"class {i}" for i in range(10)], pre, {"dataset": "stand-in"})
    return Server(checkpoint_dir=folder, device="cpu")


def _entry(server, stem: str):
    from PIL import Image

    label = server.registry.resolve(stem).label  # a checkpoint by its stem
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    return server.analyse(picture, label)


def _drawn(entry) -> dict:
    from explorer.app import views

    names = [name for name in views.step_views(3) if name.startswith("highnorm.")]
    return dict(zip(names, views.render_views(entry, names, views.Options())))


def test_the_view_on_a_register_model_marks_the_outlier_and_draws_each_share(server):
    entry = _entry(server, "registers")
    drawn = _drawn(entry)
    assert set(drawn) == {"highnorm.text", "highnorm.layers", "highnorm.image", "highnorm.attention"}
    text = drawn["highnorm.text"]
    assert "Darcet et al. 2023" in text and "4 register tokens (REG1..REG4)" in text
    assert f"from z<sub>2</sub> on" in text and f"1 of 16: patch {CHOSEN}." in text
    found = high_norm_tokens(entry.trace)
    layers = drawn["highnorm.layers"]
    heat, marks = layers.data[0], layers.data[1]
    assert list(heat.x[:6]) == ["CLS", "REG1", "REG2", "REG3", "REG4", "patch 0"]
    assert [(x, int(y)) for x, y in zip(marks.x, marks.y)] == [(f"patch {CHOSEN}", l) for l in (2, 3, 4)]
    np.testing.assert_allclose(np.asarray(heat.customdata, dtype=np.float64), found.norms, rtol=1e-6)
    image = drawn["highnorm.image"]
    assert image.layout.meta["outliers"] == [CHOSEN]
    lines = {trace.name: np.asarray(trace.y, dtype=np.float64) for trace in drawn["highnorm.attention"].data}
    assert set(lines) == {"to the registers", "to the outlier patches", "to the other patches",
                          "to itself and the other prefix tokens"}
    np.testing.assert_allclose(lines["to the registers"], found.attention["registers"])
    np.testing.assert_allclose(sum(lines.values()), np.ones(4), atol=1e-6)


def test_the_view_on_the_papers_vit_says_it_has_no_registers(server):
    drawn = _drawn(_entry(server, "paper"))
    assert "no register tokens" in drawn["highnorm.text"] and "no patch token is an outlier" in drawn["highnorm.text"]
    names = [trace.name for trace in drawn["highnorm.attention"].data]
    assert "to the registers" not in names and len(names) == 3
    assert "no outlier patch" in drawn["highnorm.image"].layout.title.text


def test_the_view_on_a_model_without_a_class_token_reads_the_mean_of_the_patch_rows(server, monkeypatch):
    from explorer import analysis

    # The app's logit lens (step 4, traced with step 3's stages) refuses a model without a class token until the app
    # takes backbones (issue 23, item 4, another branch): not what is tested here.
    monkeypatch.setattr(analysis, "logit_lens", lambda *args, **kwargs: None)
    drawn = _drawn(_entry(server, "mean"))
    assert "no class token" in drawn["highnorm.text"] and "mean of the patch tokens' rows" in drawn["highnorm.text"]
    assert "the mean of the patch tokens' rows" in drawn["highnorm.attention"].layout.title.text
    assert list(drawn["highnorm.layers"].data[0].x[:2]) == ["patch 0", "patch 1"]


# ---------------------------------------------------------------------------------------------------------------
# The figures (explorer.render.highnorm), from arrays made here

def test_the_heat_map_is_each_norm_over_its_layer_s_median_patch_with_the_outliers_circled():
    from explorer import render
    from explorer.tokens import TokenLayout

    layout = TokenLayout(("CLS", "REG1", "REG2"), 6)
    norms = np.random.default_rng(0).uniform(1, 2, (4, 9))  # (L + 1, T)
    norms[3, 3 + 4] = 50.0
    outliers = np.zeros((4, 6), dtype=bool)
    outliers[3, 4] = outliers[2, 0] = True
    fig = render.token_norm_layers(norms, outliers, layout, "norm above 40")
    heat, marks = fig.data
    expected = norms / np.median(norms[:, 3:], axis=1, keepdims=True)  # patches are tokens 3..8
    np.testing.assert_allclose(np.asarray(heat.z, dtype=np.float64), expected, rtol=1e-6)
    assert list(heat.x) == ["CLS", "REG1", "REG2"] + [f"patch {i}" for i in range(6)]
    assert sorted(zip(marks.y.tolist(), marks.x)) == [(2, "patch 0"), (3, "patch 4")]
    assert "norm above 40" in marks.name and "1 in the last layer" in fig.layout.title.text.replace("<br>", " ")
    # ViT-H/14 at 518 (T = 1 + 1369, 33 layers): a picture of the colours, the marks on token indices
    big = TokenLayout(num_patches=1369)
    fig = render.token_norm_layers(np.ones((33, 1370)), np.eye(33, 1369, dtype=bool), big, "rule")
    assert fig.data[0].meta == {"picture": "heat map"} and list(fig.data[1].x[:2]) == [1, 2]


def test_the_image_outlines_the_outliers_and_the_lines_are_the_shares():
    from explorer import render

    norms = np.ones((3, 4))
    norms[1, 2] = 9.0
    fig = render.outliers_on_image(np.zeros((24, 32, 3)), norms, norms > 2, "z_4")
    assert fig.layout.meta["outliers"] == [6] and fig.layout.shapes[0].path == "M1.5,0.5H2.5V1.5H1.5Z"
    np.testing.assert_allclose(np.asarray(fig.data[1].z), norms)  # the median is 1
    masses = dict(registers=np.array([0.5, 0.1]), outliers=np.array([0.1, 0.6]), patches=np.array([0.3, 0.2]),
                  prefix=np.array([0.1, 0.1]))
    with_registers = render.attention_masses(masses, "the class token", 4)
    assert [(t.name, list(t.y)) for t in with_registers.data][:2] == [("to the registers", [0.5, 0.1]),
                                                                      ("to the outlier patches", [0.1, 0.6])]
    assert "to the registers" not in [t.name for t in render.attention_masses(masses, "the class token", 0).data]


# ---------------------------------------------------------------------------------------------------------------
# The survey (explorer.survey): a batch's high-norm numbers are each image's, as high_norm_tokens gives them

def test_a_survey_batch_gives_each_image_s_outliers_and_attention_shares():
    from explorer.survey import records, summary

    model = outlier_from_layer_2(REGISTERS, 5 + CHOSEN)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    batch = records.survey_batch(model, x).high_norm
    for i in range(4):
        alone = high_norm_tokens(trace(model, x[i:i + 1]))
        np.testing.assert_array_equal(batch["outlier_count"][i], alone.outliers.sum(axis=1))  # (L + 1,)
        for name, share in alone.attention.items():
            np.testing.assert_allclose(batch[name][i], share, atol=1e-5)  # explicit vs fused attention: rounding
    assert batch["outlier_count"][:, 2:].min() == 1 and batch["outlier_count"][:, :2].max() == 0
    good = [{"high_norm": {name: values[i].tolist() for name, values in batch.items()}} for i in range(4)]
    found = summary._high_norm(good, REGISTERS)
    np.testing.assert_allclose(found["outlier_count_mean"], batch["outlier_count"].mean(axis=0))
    np.testing.assert_allclose(found["attention"]["registers"], batch["registers"].mean(axis=0), atol=1e-9)
    assert found["images_with_outliers"] == [0, 0, 1, 1, 1] and found["registers"] == 4
