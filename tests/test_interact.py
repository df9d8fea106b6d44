"""Changing the model and comparing, in the app (issue 25, items 2 and 3), at the handlers' level: heads switched off
by clicks on the switchboard, the strip, what each head is worth, patching, and a second image or model compared.

Checked against independent references: explorer.interventions' ablate_heads / head_importance / patch_activations
(themselves tested against hand-built models), a model copied by hand with U_msa's columns zeroed, the facts that a
head switched off in layer l leaves the attention of layers 1..l as it was, and that patching every token of z_0
gives the source's own prediction.
"""
from __future__ import annotations

import copy

import gradio as gr
import numpy as np
import pytest
import torch

from app_server import REPO, make_standin_checkpoint
from explorer import analysis
from explorer.app import ablation, interact, ui, views
from explorer.app.server import Server
from explorer.app.views import compare
from explorer.app.views.interventions import IMPORTANCE, SWITCHBOARD, patch_positions, patch_stages, \
    patched_prediction
from explorer.render import interventions as figures

BOOT = str(REPO / "assets" / "fashion_0000_ankle_boot.png")
TROUSER = str(REPO / "assets" / "fashion_0002_trouser.png")
PHOTO = str(REPO / "assets" / "cat_chelsea.jpg")
OTHER = "vit_other_standin"


class Click:
    """gr.SelectData as a click at pixel (x, y) of a picture."""

    def __init__(self, x, y):
        self.index = [x, y]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    stem = make_standin_checkpoint(folder)
    make_standin_checkpoint(folder, seed=1, stem=OTHER)
    server = Server(checkpoint_dir=folder, device="cpu")
    built = ui.build_app(server)
    label = f"ViT-Fashion/4 · {stem.name}"
    drawing = interact.Drawing(ui._render, ui._named_options, ui.reads, ui.HIDDEN, ui.PictureView, ui.ImageUpload)
    return built, interact.Interactions(built.handlers, drawing), label


def option_values(step_names=views.OPTION_NAMES, **changes):
    options = views.Options(**changes)
    return [getattr(options, name) for name in step_names]


def analysed(app, image=BOOT, step=2):
    built, _, label = app
    out = built.handlers.analyse(image, label, step, label, *option_values())
    return out[ui.HEADER_OUTPUTS.index("key")], out[ui.HEADER_OUTPUTS.index("source")]


def centre_of(head, config):
    """The pixel at the centre of head (l, j)'s cell in the switchboard."""
    pitch = figures.head_grid_cell(config.heads) + figures.GAP
    l, j = head
    return Click(j * pitch + pitch // 2, (l - 1) * pitch + pitch // 2)


def drawn(values, name):
    return values[1 + views.all_views().index(name)]


# ---------------------------------------------------------------------------------------------------------------
# Heads off

def test_a_click_switches_the_head_off_and_the_prediction_is_ablate_heads(app):
    built, handlers, label = app
    server = built.server
    key, source = analysed(app)
    base = server.entry(key)
    config = base.config
    runs = server.stats()["explain_runs"].get(ablation.RUN_KIND, 0)
    values = handlers.heads_clicked(centre_of((3, 2), config), key, source, 2, *option_values())
    new_key = values[0]
    assert ablation.heads_of(new_key) == ((3, 2),)
    assert interact.strip_text(new_key) == ("**Heads off (1):** layer 3 head 3. Every step shows the model with this "
                                            "head off.")
    assert server.stats()["explain_runs"][ablation.RUN_KIND] == runs + 1  # one counted run
    entry = server.entry(new_key)
    model = server.registry.get(label).model
    with torch.no_grad():
        reference = analysis.ablate_heads(model, base.trace["input.pixels"][None], [(3, 2)])[0]  # (K,)
    assert torch.allclose(entry.trace.logits, reference, atol=1e-5)
    assert not torch.allclose(entry.trace.logits, base.trace.logits, atol=1e-4)
    # The views of step 2 are drawn from the run with the head off: the prediction beside the one with all heads on.
    prediction = drawn(values, "eq2.heads_off_prediction")
    bars = {trace.name: np.asarray(trace.x) for trace in prediction.data}
    assert np.isclose(bars["1 head off"].max(), float(reference.softmax(-1).max()), atol=1e-5)
    assert np.isclose(bars["every head on"].max(), float(base.trace.probabilities.max()), atol=1e-6)
    assert drawn(values, SWITCHBOARD)["alt_text"].endswith("switched off: layer 3 head 3.")
    # Views of other steps are left to be drawn when their tab opens, from the new key.
    assert drawn(values, "eq4.top_k") is ui.HIDDEN
    # A second click on the same head switches it on: the image's own entry again, and no new run.
    again = handlers.heads_clicked(centre_of((3, 2), config), new_key, source, 2, *option_values())
    assert tuple(again[0]) == tuple(key) and ablation.heads_of(again[0]) == ()
    assert interact.strip_text(again[0]) == interact.ALL_HEADS_ON
    assert server.stats()["explain_runs"][ablation.RUN_KIND] == runs + 1


def test_heads_accumulate_and_switch_all_on_restores(app):
    built, handlers, _ = app
    key, source = analysed(app)
    config = built.server.entry(key).config
    for head in [(1, 0), (6, 3), (2, 1)]:
        key = handlers.heads_clicked(centre_of(head, config), key, source, 2, *option_values())[0]
    assert ablation.heads_of(key) == ((1, 0), (2, 1), (6, 3))
    assert "layer 1 head 1, layer 2 head 2, layer 6 head 4" in interact.strip_text(key)
    text, button = handlers.strip(key)
    assert button["visible"] is True and text.startswith("**Heads off (3):**")
    restored = handlers.all_heads_on(key, source, 2, *option_values())[0]
    assert ablation.heads_of(restored) == () and handlers.strip(restored)[1]["visible"] is False


def test_a_head_off_in_layer_l_changes_only_the_layers_after_it(app):
    built, _, _ = app
    server = built.server
    key, source = analysed(app)
    base = server.entry(key)
    base.require(views.all_stages())  # the image's own trace holds what the upload's step read: every stage now
    entry = ablation.ablated_entry(server, base, [(3, 1)])
    for layer in range(1, base.config.depth + 1):
        same = torch.allclose(entry.trace.attention(layer), base.trace.attention(layer), atol=1e-6)
        assert same == (layer <= 3), layer  # A_l reads z_{l-1}: heads of layer 3 first change z_3
    assert torch.equal(entry.trace["embed.z0"], base.trace["embed.z0"])


def test_the_model_with_heads_off_is_a_copy_with_those_columns_zero(app):
    built, _, label = app
    model = built.server.registry.get(label).model
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    twin = ablation.ablated_model(model, [(2, 0), (2, 3), (5, 1)])
    reference = copy.deepcopy(model)
    d = model.config.head_dim
    with torch.no_grad():
        for l, j in [(2, 0), (2, 3), (5, 1)]:
            reference.blocks[l - 1].msa.projection.weight[:, j * d:(j + 1) * d] = 0
        x = torch.randn(2, 1, 28, 28)
        assert torch.allclose(twin(x), reference(x), atol=1e-6)
    for name, parameter in model.named_parameters():  # the menu's model is untouched
        assert torch.equal(parameter, before[name]), name
    assert twin.blocks[0] is model.blocks[0] and twin.blocks[1] is not model.blocks[1]


def test_an_entry_with_heads_off_is_traced_again_when_the_cache_dropped_it(app):
    built, handlers, _ = app
    server = built.server
    key, source = analysed(app)
    entry = ablation.ablated_entry(server, server.entry(key), [(4, 2)])
    logits = entry.trace.logits.clone()
    server.cache.clear()
    again = server.entry(entry.key, source)
    assert again is not entry and ablation.heads_of(again.key) == ((4, 2),)
    assert torch.allclose(again.trace.logits, logits, atol=1e-6)


def test_the_switchboard_maps_pixels_to_heads_and_marks_the_heads_off():
    maps = np.random.default_rng(0).random((12, 12, 14, 14))
    off = [(1, 0), (12, 11), (5, 6)]
    picture = figures.head_switchboard(maps, off)
    pitch = figures.head_grid_cell(12) + figures.GAP
    assert picture.shape == (12 * pitch, 12 * pitch, 3)
    for l in range(1, 13):
        for j in range(12):
            click = centre_of((l, j), type("C", (), {"heads": 12})())
            assert figures.head_at(*click.index, 12, 12) == (l, j)
            cell = picture[(l - 1) * pitch:(l - 1) * pitch + pitch - figures.GAP, j * pitch:j * pitch + pitch - figures.GAP]
            crossed = np.all(cell == figures.MARK, axis=-1).sum()
            assert (crossed > pitch) == ((l, j) in off), (l, j)


# ---------------------------------------------------------------------------------------------------------------
# What each head is worth; patching

def test_head_importance_view_is_the_apis_map_for_the_chosen_class(app):
    built, handlers, label = app
    key, source = analysed(app)
    entry = built.server.entry(key)
    placeholder = views.render_views(entry, [IMPORTANCE], views.Options(target="3"))[0]
    assert "Compute" in placeholder.data[0].text[0]
    figure = handlers.importance(key, source, "3")
    model = built.server.registry.get(label).model
    reference = analysis.head_importance(model, entry.trace["input.pixels"][None], 3)
    heatmaps = [trace for trace in figure.data if trace.type == "heatmap"]
    np.testing.assert_allclose(np.asarray(heatmaps[0].z), reference.exact, atol=1e-6)
    np.testing.assert_allclose(np.asarray(heatmaps[1].z), reference.estimate, atol=1e-6)
    assert f"Pearson r = {float(reference.pearson):.2f}" in figure.layout.title.text.replace("<br>", " ")


def test_patching_everything_at_z0_gives_the_sources_prediction(app):
    built, handlers, _ = app
    server = built.server
    key, source = analysed(app)
    a = server.entry(key)
    b = server.analyse(TROUSER, a.spec.label)
    layout = a.config.layout
    everything = patched_prediction(a, b, "embed.z0", patch_positions("all tokens", None, layout))
    bars = {trace.name: np.asarray(trace.x) for trace in everything.data}
    after = bars[[name for name in bars if name.startswith("A with")][0]]
    assert np.isclose(after.max(), float(b.trace.probabilities.max()), atol=1e-5)
    nothing = handlers.patch(key, source, (TROUSER, ""), 4, "blocks.2.z", "the selected patch")
    positions = patch_positions("the selected patch", 4, layout)
    assert positions == [5]  # patch 4 is token 5: the class token first
    model = server.registry.get(a.spec.label).model
    with torch.no_grad():
        reference = analysis.patch_activations(model, a.trace["input.pixels"][None], b.trace["input.pixels"][None],
                                               "blocks.2.z", positions).softmax(-1)[0].numpy()
    bars = {trace.name: np.asarray(trace.x) for trace in nothing.data}
    after = bars[[name for name in bars if name.startswith("A with")][0]]
    assert np.isclose(np.sort(after)[-1], np.sort(reference)[-1], atol=1e-6)
    assert patch_stages(a.config)[:3] == ["embed.z0", "blocks.1.ln_1", "blocks.1.attn.output"]
    assert len(patch_stages(a.config)) == 1 + 6 * a.config.depth


def test_patching_the_patches_listed_copies_those_tokens_in_the_models_layout(app):
    """A typed list of patches ('0-3, 10') copies those patch tokens (each patch i is token i + prefix of the model's
    layout: 1 for the paper's class token, 1 + 4 with four registers); a wrong list is one sentence, not a run."""
    built, handlers, _ = app
    server = built.server
    key, source = analysed(app)
    a = server.entry(key)
    b = server.analyse(TROUSER, a.spec.label)
    assert patch_positions("the patches listed", None, a.config.layout, "0-2, 10") == [1, 2, 3, 11]
    registers = a.config.replace(register_tokens=4, position_covers="class_and_patches").layout
    assert patch_positions("the patches listed", 7, registers, "0, 3") == [5, 8]
    assert patch_positions("the selected patch", 0, registers) == [5]
    assert patch_positions("the class token", None, registers) == [0]
    listed = handlers.patch(key, source, (TROUSER, ""), None, "blocks.1.z", "the patches listed", "0-2, 10")
    model = server.registry.get(a.spec.label).model
    with torch.no_grad():
        reference = analysis.patch_activations(model, a.trace["input.pixels"][None], b.trace["input.pixels"][None],
                                               "blocks.1.z", [1, 2, 3, 11]).softmax(-1)[0].numpy()
    bars = {trace.name: np.asarray(trace.x) for trace in listed.data}
    after = bars[[name for name in bars if name.startswith("A with")][0]]
    assert np.isclose(np.sort(after)[-1], np.sort(reference)[-1], atol=1e-6)
    N = a.config.num_patches
    with pytest.raises(ValueError, match=f"Patch {N} does not exist; this model has N = {N} patches, numbered 0 to {N - 1}"):
        patch_positions("the patches listed", None, a.config.layout, f"1, {N}")
    with pytest.raises(ValueError, match="'x' is not a patch index"):
        patch_positions("the patches listed", None, a.config.layout, "x")


# ---------------------------------------------------------------------------------------------------------------
# Compare

def test_compare_shows_both_in_every_step_and_runs_no_model_once_both_are_cached(app):
    built, handlers, _ = app
    server = built.server
    key, source = analysed(app)
    spec = handlers.set_compare(TROUSER, "", source)[0]
    assert spec == (TROUSER, "")
    reads = option_values(compare.READS)
    handlers.compare_panel(key, source, spec, 5, *reads)  # B traced, step 5's gradients run once for B
    runs = (server.stats()["model_runs"], dict(server.stats()["explain_runs"]))
    for step in range(6):
        values = dict(zip([n for s in range(6) for n in interact.compare_outputs(s)],
                          handlers.compare_panel(key, source, spec, step, *reads)))
        assert values[f"compare_{step}"]["visible"] is True and "two images under the same model" in values[f"compare_{step}_text"]
        assert all(values[f"compare_{other}"]["visible"] is False for other in range(6) if other != step)
        slots = [values[f"compare_{step}_{slot}"] for slot in compare.SLOTS[step]]
        assert slots and all(slot is not None for slot in slots), step
        assert len(slots) == len(compare.TWINS[step]) + (step in (0, 2, 4))
    assert (server.stats()["model_runs"], dict(server.stats()["explain_runs"])) == runs
    a, b = server.entry(key), server.analyse(TROUSER, server.entry(key).spec.label)
    def panel(step):
        values = handlers.compare_panel(key, source, spec, step, *reads)
        return dict(zip([n for s in range(6) for n in interact.compare_outputs(s)], values))
    two = panel(2)["compare_2_figure"]
    markers = [trace for trace in two.data if trace.mode == "markers"]
    from explorer.app.views.eq2 import _fused_and_distance
    for trace, entry in zip(markers, (a, b)):
        np.testing.assert_allclose(np.asarray(trace.y), _fused_and_distance(entry)[1].ravel(), atol=1e-5)
    four = panel(4)["compare_4_figure"]
    for trace, entry in zip(four.data, (a, b)):
        assert np.isclose(max(trace.x), float(entry.trace.probabilities.max()), atol=1e-6)


def test_a_second_model_on_the_same_image(app):
    built, handlers, _ = app
    key, source = analysed(app)
    other = f"ViT-Fashion/4 · {OTHER}"
    spec = handlers.set_compare(None, other, source)[0]
    names = [n for s in range(6) for n in interact.compare_outputs(s)]
    values = dict(zip(names, handlers.compare_panel(key, source, spec, 4, *option_values(compare.READS))))
    assert "the same image under two models" in values["compare_4_text"] and other in values["compare_4_text"]
    titles = [annotation.text for annotation in values["compare_4_figure"].layout.annotations]
    assert titles == [f"A: {built.server.entry(key).spec.label}", f"B: {other}"]
    let_go = handlers.set_compare(None, "", source)
    assert let_go[0] is None and all(update["visible"] is False for update in let_go[1:])  # every panel hidden
    assert all(update["visible"] is False for update in handlers.stop_compare()[3:])
    unchanged = handlers.compare_panel(key, source, None, 4, *option_values(compare.READS))
    assert all(value == gr.skip() for value in unchanged)  # without B, another event leaves the page as it is


def test_compare_keeps_a_step_within_the_byte_budget_on_vit_b16(app):
    """Step 2 of ViT-B/16 (untrained), its views and the compare panel of a second image, as JSON: <= 1 MB."""
    import json

    from explorer.app.transport import MAX_STEP_BYTES

    built, handlers, _ = app
    server = built.server
    label = "ViT-B/16 · random init"
    out = built.handlers.analyse(PHOTO, label, 2, label, *option_values())
    key, source = out[ui.HEADER_OUTPUTS.index("key")], out[ui.HEADER_OUTPUTS.index("source")]
    entry = server.entry(key, source)
    step = views.render_views(entry, views.step_views(2), views.Options())
    panel = handlers.compare_panel(key, source, (str(REPO / "assets" / "coffee.jpg"), ""), 2,
                                   *option_values(compare.READS))
    figures_sent = [v for v in step + list(panel) if hasattr(v, "to_json")]
    assert len(figures_sent) == sum(views.VIEWS[n].kind == "plot" for n in views.step_views(2)) + 3  # A's, both, B's
    size = sum(len(f.to_json()) for f in figures_sent)
    assert size <= MAX_STEP_BYTES, size
