"""explorer.app.views and explorer.app.text: the text of each step (with the live sizes of the model), the view
registry, and the views drawn from a cached trace.

Sizes are checked against the paper's numbers; the arrays behind the views against explorer.analysis, the trace and
hand computations; drawing every view of every step must not run the model again; and the registry's declarations
against what the views actually read and what the page wires.
"""
from __future__ import annotations

import json
import re

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from explorer import CONFIGS, Trace, ViT, analysis, render
from explorer.app import text as page_text, views
from explorer.app.registry import ModelSpec, untrained_label
from explorer.app.server import Server
from explorer.app.text import STEPS
from explorer.data import FASHION_MNIST_CLASSES
from explorer.images import Preprocessing
from explorer.weights import UNTRAINED_NOTE, save_checkpoint

TINY = "ViT-Tiny-Test/8 · vit_tiny_test"
FASHION = "ViT-Fashion/4 · vit_fashion_test"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    for preset, stem, names, pre in [
        ("ViT-Tiny-Test/8", "vit_tiny_test", [f"class {i}" for i in range(10)],
         Preprocessing(resize_size=32, crop_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)),
        ("ViT-Fashion/4", "vit_fashion_test", FASHION_MNIST_CLASSES,
         Preprocessing(resize_size=28, crop_size=28, channels=1, mean=(0.286,), std=(0.353,), invert="auto")),
    ]:
        torch.manual_seed(3)
        model = ViT(CONFIGS[preset]).eval()
        with torch.no_grad():
            model.head.weight.normal_(std=0.5)
        save_checkpoint(folder / stem, model, names, pre, {"dataset": "stand-in"})
    return Server(checkpoint_dir=folder, device="cpu")


@pytest.fixture(scope="module")
def entry(session):
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    return session.analyse(picture, TINY)


def draw(entry, name: str, options=views.Options()):
    """One view as the page draws it."""
    return views.render_views(entry, [name], options)[0]


# ---------------------------------------------------------------------------------------------------------------
# Text with live sizes

def test_sizes_of_vit_b16_are_the_papers():
    s = page_text.sizes(CONFIGS["ViT-B/16"])
    assert (s["N"], s["T"], s["D"], s["h"], s["d"], s["L"], s["MLP"], s["patch_dim"]) == (196, 197, 768, 12, 64, 12, 3072, 768)
    h14 = page_text.sizes(CONFIGS["ViT-H/14"])
    assert (h14["N"], h14["T"], h14["D"], h14["h"], h14["d"], h14["L"]) == (256, 257, 1280, 16, 80, 32)


def test_equations_carry_the_live_sizes():
    b16 = CONFIGS["ViT-B/16"]
    eq1 = page_text.equation(1, b16)
    assert "x_p^{196} E" in eq1 and "768 \\times 768" in eq1 and "197 \\times 768" in eq1
    eq2 = page_text.equation(2, b16)
    assert "12 \\times 197 \\times 197" in eq2 and "D_h = D / h = 64" in eq2 and "1 \\dots 12" in eq2
    assert "\\mathbb{R}^{3072}" in page_text.equation(3, b16)
    assert "\\mathbb{R}^{1000}" in page_text.equation(4, b16) and "z_{12}^0" in page_text.equation(4, b16)
    fashion = CONFIGS["ViT-Fashion/4"]
    assert "x_p^{49} E" in page_text.equation(1, fashion) and "16 \\times" in page_text.equation(1, fashion)
    assert "28 \\times 28 \\times 1" in page_text.equation(0, fashion)
    assert "\\ell = 1 \\dots 12" in page_text.equation(5, b16)  # relevance, accumulated over the L layers
    with pytest.raises(ValueError):
        page_text.equation(len(STEPS), b16)


@pytest.mark.parametrize("step", range(len(STEPS)))
def test_explanations_are_an_equation_and_plain_sentences(step):
    text = page_text.explanation(step, CONFIGS["ViT-B/16"], Preprocessing())
    equation, prose = text.split("\n\n", 1)
    assert equation.startswith("$$") and equation.endswith("$$") and equation.count("$$") == 2
    assert "$$" not in prose and "{" not in prose.replace("$z_L^0$", "")
    assert 2 <= len(re.findall(r"[.!?](\s|$)", prose)) <= 4


def test_the_sentences_use_the_numbers_of_the_model():
    text = page_text.explanation(1, CONFIGS["ViT-B/16"])
    assert "= 196 patches" in text and "16×16×3 = 768 values" in text and "T = N + 1 = 197" in text
    assert "h = 12 heads" in page_text.explanation(2, CONFIGS["ViT-B/16"])
    assert "768 → 3072 → 768" in page_text.explanation(3, CONFIGS["ViT-B/16"])
    assert "resized to 256 pixels and the central 224 × 224" in page_text.explanation(0, CONFIGS["ViT-B/16"], Preprocessing())


def test_model_card_says_which_model_and_warns(session, entry):
    card = page_text.model_card(entry)
    assert TINY in card and entry.source in card and "L = 2, D = 32, h = 4, P = 8" in card
    random_spec = ModelSpec(untrained_label("ViT-B/16"), "untrained", "ViT-B/16", description=UNTRAINED_NOTE)
    assert "predictions are meaningless; shapes are real" in page_text.model_card(spec=random_spec)
    pretrained = session.registry.resolve("ViT-B/16")
    assert "not the paper's JFT-300M" in page_text.model_card(spec=pretrained)
    fashion = session.analyse(Image.new("RGB", (30, 30), "white"), FASHION)
    assert "photos are mapped to what it expects" in page_text.model_card(fashion)
    assert fashion.preprocessing.describe() in page_text.model_card(fashion)


# ---------------------------------------------------------------------------------------------------------------
# Controls

def test_parse_indices():
    assert views.parse_indices("0, 5, 10-12", 32) == [0, 5, 10, 11, 12]
    assert views.parse_indices(" 3 3;1 ", 32) == [3, 1]
    assert len(views.parse_indices("0-100", 768)) == views.MAX_FEATURE_MAPS
    for bad, match in [("", "No feature-map index"), ("a, b", "not a feature-map index"), ("40", "D = 32")]:
        with pytest.raises(ValueError, match=match):
            views.parse_indices(bad, 32)


def test_random_indices_are_distinct_and_in_range():
    chosen = views.parse_indices(views.random_indices(768, 8, seed=1), 768)
    assert len(chosen) == 8 == len(set(chosen)) and all(0 <= i < 768 for i in chosen)
    assert len(views.parse_indices(views.random_indices(5, 8), 5)) == 5


def test_every_view_reads_real_options_and_sits_on_a_real_step():
    assert set(views.OPTION_NAMES) == set(views.Options.__dataclass_fields__)
    for name, spec in views.VIEWS.items():
        assert set(spec.reads) <= set(views.OPTION_NAMES) and 0 <= spec.step < len(STEPS), name
        assert spec.kind in ("markdown", "plot", "image"), name
    assert views.affected(2, "layer") == ["eq2.text", "eq2.heads", "eq2.matrix"]
    assert views.affected(2, "head") == ["eq2.matrix"]
    assert views.affected(1, "layer") == []
    # Every option has a control, except those that clicks on images set: the picker (selected) and a clickable view.
    assert set(views.CONTROLS) == set(views.OPTION_NAMES) - set(views.CLICKED)
    assert {spec.click for spec in views.VIEWS.values() if spec.click} == set(views.CLICKED) - {"selected"}


def test_a_view_cannot_read_an_option_it_did_not_declare():
    declared = views.Options(layer=3, selected=2).only(("selected", "query_label"))
    assert declared.selected == 2 and declared.query == 3
    with pytest.raises(AttributeError, match="without declaring it"):
        declared.layer
    with pytest.raises(AttributeError, match="without declaring it"):  # the query is the patch and the token radio
        views.Options(selected=2).only(("selected",)).query_token
    with pytest.raises(ValueError, match="unknown options"):
        views.view("test.bad", 2, "plot", reads=("colour",))


# One value per option other than its default, to change it by.
CHANGED = dict(selected=5, query_label="REG2", indices="3, 9", layer=2, head="3", fusion="max", discard=0.5, ln_layer=2,
               ln_which=views.LN_CHOICES[1], target="second", dropped=(2, 5), scale=2.0)


def _as_comparable(value):
    if isinstance(value, go.Figure):
        return value.to_json()
    if isinstance(value, Image.Image):
        return np.asarray(value).tobytes()
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return value


@pytest.fixture(scope="module")
def registers_entry(tmp_path_factory):
    """A tiny model with two registers (CLS, REG1, REG2, then the patches), for the query radio."""
    folder = tmp_path_factory.mktemp("registers")
    torch.manual_seed(3)
    model = ViT(CONFIGS["ViT-Tiny-Test/8"].replace(register_tokens=2, position_covers="class_and_patches")).eval()
    save_checkpoint(folder / "vit_registers", model, [f"class {i}" for i in range(10)],
                    Preprocessing(resize_size=32, crop_size=32, mean=(0.5,) * 3, std=(0.25,) * 3), {"dataset": "none"})
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    return Server(checkpoint_dir=folder, device="cpu").analyse(picture, "ViT-Tiny-Test/8 · vit_registers")


@pytest.mark.parametrize("option", list(CHANGED))
def test_changing_an_option_changes_exactly_the_views_that_read_it(request, option):
    """Derived from the registry: for every step, the views that read `option` (what its control redraws) are the
    ones whose drawing changes when it changes; every other view draws the same, so skipping it loses nothing. (The
    token query on a model with registers, with no patch picked: a picked patch overrides it.)"""
    assert set(CHANGED) == set(views.OPTION_NAMES)
    entry = request.getfixturevalue("registers_entry" if option == "query_label" else "entry")
    base = views.Options(selected=None if option == "query_label" else 1)
    value = CHANGED[option]
    if option == "target":  # from the top class (the default) to the second
        value = str(analysis.ranking(entry.trace.probabilities.numpy(), 2)[1])
    changed = base.replace(**{option: value})
    for step in range(len(STEPS)):
        names = views.step_views(step)
        before = dict(zip(names, map(_as_comparable, views.render_views(entry, names, base))))
        after = dict(zip(names, map(_as_comparable, views.render_views(entry, names, changed))))
        differ = [name for name in names if before[name] != after[name]]
        assert differ == views.affected(step, option), (step, option)


def test_query_token_of_a_patch_is_its_index_plus_one():
    assert views.Options().query == 0
    assert views.Options(selected=5).query == 6


# ---------------------------------------------------------------------------------------------------------------
# The patch picker

def test_clicks_map_to_the_patch_under_them():
    for config in (CONFIGS["ViT-B/16"], CONFIGS["ViT-Fashion/4"], CONFIGS["ViT-Tiny-Test/8"]):
        rows, cols = config.grid
        side = config.patch_size * views.picker_scale(config)
        assert config.image_hw[0] * views.picker_scale(config) >= views.PICKER_SIDE
        for row, col in [(0, 0), (rows - 1, cols - 1), (rows // 2, 1)]:
            x, y = col * side + side / 2, row * side + side / 2
            assert views.patch_at(config, x, y) == row * cols + col
        assert views.patch_at(config, -5, 10**6) == (rows - 1) * cols  # outside: clamped to the grid


def test_picker_outlines_only_the_selected_patch(entry):
    config = entry.config
    scale = views.picker_scale(config)
    plain = views.patch_picker(entry, None)
    assert plain.shape == (32 * scale, 32 * scale, 3) and plain.dtype == np.uint8
    marked = views.patch_picker(entry, 6)  # row 1, column 2 of the 4x4 grid
    changed = np.argwhere((marked != plain).any(axis=-1))
    side = config.patch_size * scale
    assert len(changed) > 0
    assert changed[:, 0].min() >= side and changed[:, 0].max() < 2 * side
    assert changed[:, 1].min() >= 2 * side and changed[:, 1].max() < 3 * side


def test_selection_text(entry, registers_entry):
    assert "class token" in views.selection_text(entry, None)
    assert "the token chosen in step 2 (CLS, REG1, REG2; CLS unless changed)" in views.selection_text(registers_entry,
                                                                                                     None)
    assert "patch 6" in views.selection_text(registers_entry, 6) and "token 9" in views.selection_text(registers_entry, 6)
    assert "patch 6" in views.selection_text(entry, 6) and "row 1, column 2" in views.selection_text(entry, 6)


# ---------------------------------------------------------------------------------------------------------------
# The arrays behind the views

def test_patches_are_the_image_cut_row_major(entry):
    image = views.display_image(entry)
    patches = views.display_patches(entry)
    P = entry.config.patch_size
    assert patches.shape == (16, P, P, 3)
    for i in (0, 5, 15):
        r, c = divmod(i, 4)
        np.testing.assert_array_equal(patches[i], image[r * P:(r + 1) * P, c * P:(c + 1) * P])


def test_grayscale_models_are_shown_in_rgb(session):
    fashion = session.analyse(Image.new("RGB", (28, 28), "gray"), FASHION)
    image = views.display_image(fashion)
    assert image.shape == (28, 28, 3)
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


@pytest.mark.parametrize("fusion", views.HEAD_FUSIONS)
@pytest.mark.parametrize("discard", [0.0, 0.4])
def test_rollout_from_pre_fused_heads_equals_the_rollout_of_every_head(entry, fusion, discard):
    fused = analysis.fused_attentions(entry.trace, fusion)  # what the rollout view keeps per fusion
    rollout = analysis.attention_rollout(entry.trace.attentions(), fusion, discard)  # (T, T), from all h heads
    expected = (rollout[0, 1:] / rollout[0, 1:].max()).reshape(entry.trace.grid).numpy()
    np.testing.assert_allclose(analysis.rollout_map(entry.trace, fusion, discard, fused=fused), expected,
                               rtol=1e-5, atol=1e-6)


def test_overview_stacks_every_layers_query_attention(entry):
    for query in (0, 7):
        overview = analysis.query_attention_layers(entry.trace, query)
        assert overview.shape == (2, 4, 4, 4)
        for layer in (1, 2):
            np.testing.assert_array_equal(overview[layer - 1], entry.trace.attention(layer)[:, query, 1:]
                                          .reshape(4, 4, 4).numpy())


def test_attention_matrix_of_a_head_or_the_mean(entry):
    weights = analysis.attention_matrix(entry.trace, 2)
    np.testing.assert_allclose(weights, entry.trace.attention(2).mean(0).numpy())
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)  # rows of A sum to 1, and so does their mean
    np.testing.assert_array_equal(analysis.attention_matrix(entry.trace, 1, 3), entry.trace.attention(1)[2].numpy())
    with pytest.raises(ValueError, match="outside 1..4"):
        analysis.attention_matrix(entry.trace, 1, 5)
    figure = draw(entry, "eq2.matrix", views.Options(layer=1, head="3"))
    assert "layer 1, head 3" in figure.layout.title.text


@pytest.mark.parametrize("which", views.LN_CHOICES)
@pytest.mark.parametrize("layer", [1, 2])
def test_layernorm_pair_is_the_input_and_output_of_that_layernorm(session, entry, which, layer):
    before, after = views.layernorm_pair(entry, layer, which)
    block = session.registry.get(TINY).model.blocks[layer - 1]
    norm = block.norm_1 if which == views.LN_CHOICES[0] else block.norm_2
    expected = F.layer_norm(torch.from_numpy(before), (before.shape[-1],), norm.weight, norm.bias, norm.eps)
    np.testing.assert_allclose(after, expected.detach().numpy(), atol=1e-5)


def test_selected_values_are_the_rows_of_the_patch_embeddings(entry):
    text = draw(entry, "eq1.values", views.Options(selected=5, indices="1, 30"))
    row = entry.trace["embed.patch_embeddings"][5]
    assert f"{row[1]:+.3f}" in text and f"{row[30]:+.3f}" in text and "x_p^{6} E" in text
    assert "⚠️" in draw(entry, "eq1.values", views.Options(selected=5, indices="99"))


def test_top_table_is_the_traces_top_5(entry):
    table = draw(entry, "eq4.table")
    names = re.findall(r"^\| \d \| (.+?) \|", table, flags=re.M)
    assert names == [name for name, _ in entry.trace.top_k(5)]
    chart = draw(entry, "eq4.top_k")
    assert names == list(chart.layout.yaxis.ticktext) and "equally likely" not in table + chart.layout.title.text


def test_a_head_with_all_classes_equal_lists_the_same_ties_in_chart_and_table():
    """A random-init head can give every class exactly 1/K: the chart and the table must show the same classes in
    the same (class) order, and say that all are equally likely."""
    from types import SimpleNamespace

    names = [f"class {i}" for i in range(10)]
    trace = Trace(CONFIGS["ViT-Tiny-Test/8"], {"head.probabilities": torch.full((10,), 0.1)}, names)
    tied = SimpleNamespace(trace=trace, class_names=names, trained=False)
    table = views.eq4._top_table(tied)
    rows = re.findall(r"^\| \d \| (.+?) \| (.+?) \|", table, flags=re.M)
    chart = render.top_k(tied.trace.probabilities.numpy(), names, k=5)
    assert [name for name, _ in rows] == list(chart.layout.yaxis.ticktext) == names[:5]
    assert all(p == "10.00%" for _, p in rows)
    assert "All 10 classes are equally likely" in table and "equally likely" in chart.layout.title.text
    assert UNTRAINED_NOTE in table
    assert [name for name, _ in trace.top_k(5)] == names[:5]  # /predict's ranking: the same ties, the same order


def test_normalisation_text_gives_the_real_value_range(entry):
    text = draw(entry, "input.normalised")
    pixels = entry.trace["input.pixels"]
    assert f"{pixels[0].min().item():+.2f}" in text and f"{pixels[2].max().item():+.2f}" in text
    assert entry.preprocessing.describe() in text


# ---------------------------------------------------------------------------------------------------------------
# Every view, without running the model

def test_every_output_draws_from_the_cache_without_tracing_again(session, entry):
    """Steps 0-4 draw from the trace alone; step 5's explanations run the model (a backward pass, shortened and
    resized sequences), counted apart from the traces."""
    runs, explain = session.runs, dict(session.explain_runs)
    options = [views.Options(), views.Options(selected=3, indices="0-3", layer=2, head="4", fusion="min", discard=0.5,
                                              ln_layer=2, ln_which=views.LN_CHOICES[1], target="2", dropped=(1, 4),
                                              scale=1.5)]
    for option in options:
        for step in range(len(STEPS)):
            values = views.render_views(entry, views.step_views(step), option)
            for name, value in zip(views.step_views(step), values):
                kind = views.VIEWS[name].kind
                if kind == "markdown":
                    assert isinstance(value, str) and value, name
                elif kind == "image":
                    assert isinstance(value, (Image.Image, np.ndarray)), name
                else:
                    assert isinstance(value, go.Figure) and len(value.data) > 0, name
            if step < 5:
                assert dict(session.explain_runs) == explain, step
    assert session.runs == runs
    assert {"gradients", "dropped", "resolution"} <= set(session.explain_runs)  # faithfulness: views.draw_slow


def test_views_that_read_no_option_are_drawn_once(entry):
    first = views.render_views(entry, ["eq1.embeddings"], views.Options())[0]
    again = views.render_views(entry, ["eq1.embeddings"], views.Options(selected=2, layer=2))[0]
    assert first is again
    a = views.render_views(entry, ["eq2.heads"], views.Options(selected=None))[0]
    b = views.render_views(entry, ["eq2.heads"], views.Options(selected=4))[0]
    assert a is not b


def test_what_the_model_sees_is_the_crop_enlarged_without_the_grid(entry):
    seen = views.seen_image(entry)
    scale = views.picker_scale(entry.config)
    assert seen.shape == views.patch_picker(entry).shape
    # Bilinear enlargement of the 32x32 crop: shrinking it back by the same factor gives the crop again (nearly).
    small = np.asarray(Image.fromarray(seen).resize((32, 32), Image.Resampling.BOX), dtype=np.float32) / 255
    assert np.abs(small - views.display_image(entry)).mean() < 0.02
    assert scale * 32 >= views.PICKER_SIDE
    side = entry.config.patch_size * scale
    picker = views.patch_picker(entry)
    assert (picker[side] == 255).all() and not (seen[side] == 255).all()  # the picker's grid line, not in `seen`


# ---------------------------------------------------------------------------------------------------------------
# This image against the data set (a survey on disk)

def test_the_survey_views_draw_this_image_over_its_models_survey(tmp_path):
    """A survey written by explorer.survey next to a checkpoint (<stem>_survey) is found by the weights' digest and
    drawn under this image's own numbers; a model without one says how to make it; a retrained checkpoint (other
    weights, same name) does not get the old survey."""
    import contextlib
    import io

    from explorer import survey as sv

    folder = tmp_path / "checkpoints"
    torch.manual_seed(3)
    model = ViT(CONFIGS["ViT-Tiny-Test/8"]).eval()
    pre = Preprocessing(resize_size=32, crop_size=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    save_checkpoint(folder / "vit_tiny_test", model, [f"class {i}" for i in range(10)], pre, {"dataset": "stand-in"})
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images / f"{i}.png")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = sv.main(["--model", str(folder / "vit_tiny_test"), "--data", str(images), "--n", "6",
                        "--faithfulness", "0", "--out", str(folder / "vit_tiny_test_survey")])
    assert code == 0
    survey = json.loads((folder / "vit_tiny_test_survey" / "survey.json").read_text())

    server = Server(checkpoint_dir=folder, device="cpu")
    entry = server.analyse(Image.open(images / "0.png"), TINY)
    distance_figure, rollout_figure = views.render_views(entry, ["eq2.survey_distance", "eq2.survey_rollout"],
                                                         views.Options())
    band, mine = distance_figure.data[0], distance_figure.data[1]
    np.testing.assert_allclose(np.asarray(band.y), np.ravel(survey["mean_attention_distance"]["mean"]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(band.error_y.array), np.ravel(survey["mean_attention_distance"]["std"]),
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(mine.y), analysis.mean_attention_distance(entry.trace, True).ravel(),
                               rtol=1e-5)
    z = np.asarray(rollout_figure.data[0].z, dtype=np.float64)
    gw = entry.config.grid[1]
    np.testing.assert_allclose(z[:, :gw], analysis.rollout_map(entry.trace), rtol=1e-5)
    np.testing.assert_allclose(z[:, -gw:], np.asarray(survey["rollout"]["mean_map"]), rtol=1e-5)
    # Image 0 was one of the survey's six: its own values lie within the survey's range over the images.
    assert survey["mean_attention_distance"]["images"] == 6

    # Retrained: same name, other weights -> the old survey is not this model's.
    torch.manual_seed(4)
    save_checkpoint(folder / "vit_tiny_test", ViT(CONFIGS["ViT-Tiny-Test/8"]).eval(), [f"class {i}" for i in range(10)],
                    pre, {"dataset": "stand-in"})
    retrained = Server(checkpoint_dir=folder, device="cpu").analyse(Image.open(images / "0.png"), TINY)
    note = views.render_views(retrained, ["eq2.survey_distance"], views.Options())[0]
    assert "No survey of" in note.data[0].text[0] and "python -m explorer.survey" in note.data[0].text[0]


def test_the_pages_head_fusions_are_the_analysis_functions():
    """views.HEAD_FUSIONS is spelt out (the page is built without importing analysis): the same as analysis'."""
    assert views.HEAD_FUSIONS == analysis.HEAD_FUSIONS
    assert views.CONTROLS["fusion"].props["choices"] == list(analysis.HEAD_FUSIONS)


def test_a_narrow_screen_is_read_from_the_page_s_cookie_and_changes_only_the_layout(entry):
    from explorer.app import screen

    assert screen.width_of({screen.COOKIE: "390"}) == 390
    assert screen.width_of({screen.COOKIE: "wide"}) is screen.width_of({}) is screen.width_of(None) is None
    assert not screen.narrow()  # no width reported (an API client): a wide screen
    wide = draw(entry, "eq1.filters")  # a view that reads no option: drawn once per entry and layout, and kept
    with screen.at_width(390):
        assert screen.narrow()
        phone = draw(entry, "eq1.filters")
    with screen.at_width(screen.NARROW + 1):
        assert not screen.narrow()
    assert not screen.narrow()
    assert phone.layout.meta["per_row"] == min(wide.layout.meta["per_row"], 4) and "fit" in phone.layout.meta
    assert draw(entry, "eq1.filters").layout.to_plotly_json() == wide.layout.to_plotly_json()  # not the phone's
    assert [t.to_plotly_json() for t in phone.data] != [t.to_plotly_json() for t in wide.data]
