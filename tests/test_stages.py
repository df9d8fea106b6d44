"""A trace records what is asked (explorer.trace's names filter), the per-layer reductions shared by trace and survey
(explorer.analysis.LayerReductions), and the app's views drawn from a trace of the stages they declare.

Filtered traces are checked against the full trace of the same image; the reductions against the functions they
replace and hand-computed values; the app's views against the same views drawn from a full trace.
"""
from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from explorer import CONFIGS, ViT, analysis
from explorer.app import views
from explorer.app.server import Server
from explorer.images import Preprocessing
from explorer.survey import SurveyRecord
from explorer.trace import trace
from explorer.weights import save_checkpoint

trace_module = importlib.import_module("explorer.trace")


def model_and_image(preset: str = "ViT-Tiny-Test/8", seed: int = 0):
    torch.manual_seed(seed)
    model = ViT(CONFIGS[preset]).eval()
    with torch.no_grad():
        model.head.weight.normal_(std=0.5)
    config = model.config
    x = torch.randn(1, config.channels, *config.image_hw, generator=torch.Generator().manual_seed(seed))
    return model, x


# ---------------------------------------------------------------------------------------------------------------
# The names filter

FILTERS = {
    "names": ["embed.z0", "blocks.2.z", "head.logits"],
    "patterns": ["blocks.*.z", "head.*", "input.image"],
    "predicate": lambda name: name.endswith(".q") or name == "embed.patches",
    "one pattern": "blocks.1.*",
    "attention on demand": ["blocks.*.attn.weights", "input.pixels"],
    "attention and its q": ["blocks.2.attn.weights", "blocks.2.attn.q"],
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_a_filtered_trace_holds_exactly_the_asked_stages_equal_to_the_full_trace(name):
    model, x = model_and_image()
    full = trace(model, x)
    asked = trace_module.stage_filter(FILTERS[name])
    filtered = trace(model, x, names_filter=FILTERS[name])
    expected = [stage for stage in full.names() if asked(stage)]
    assert expected, "the filter asks for nothing: the comparison below would be empty"
    assert filtered.names() == expected
    assert list(filtered.shapes()) == expected and all(stage in filtered for stage in expected)
    for stage in expected:
        assert torch.equal(filtered[stage], full[stage]), stage
    for stage in set(full.names()) - set(expected):
        assert stage not in filtered
        with pytest.raises(KeyError):
            filtered[stage]
    assert filtered.nbytes() < full.nbytes()


def test_attention_on_demand_keeps_q_and_k_out_of_sight_and_rows_equal_the_full_trace():
    model, x = model_and_image()
    full = trace(model, x)
    filtered = trace(model, x, names_filter="blocks.*.attn.weights")
    L, h, T = model.config.depth, model.config.heads, model.config.seq_len
    assert filtered.names() == [f"blocks.{l}.attn.weights" for l in range(1, L + 1)]
    assert "blocks.1.attn.q" not in filtered and not filtered.stages
    q_and_k = 2 * L * h * T * model.config.head_dim * 4  # float32: what is kept to compute A
    assert filtered.nbytes() == q_and_k
    assert torch.equal(filtered.attention_rows(3), full.attention_rows(3))
    assert torch.equal(filtered.attentions(), full.attentions())


def test_the_model_gives_a_record_with_a_filter_only_what_it_wants():
    model, x = model_and_image()
    wanted = {"embed.z0", "blocks.1.attn.weights", "blocks.2.ln_2", "head.y"}

    class Record(dict):
        def wants(self, name):
            return name in wanted

    record = Record()
    with torch.no_grad():
        logits = model(x, record)
    assert set(record) == wanted
    with torch.no_grad():  # layer 1 explicit (its A asked for), the others fused: equal up to rounding
        torch.testing.assert_close(logits, model(x), rtol=0, atol=1e-5)
    record = {}  # a plain dict, as before: every stage, A included
    with torch.no_grad():
        model(x, record)
    assert {"embed.patches", "blocks.1.attn.weights", "head.probabilities"} <= set(record)


def test_a_trace_whose_filter_leaves_out_A_takes_the_fused_kernel(monkeypatch):
    model, x = model_and_image()
    L = model.config.depth
    calls = []
    fused_kernel = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused_kernel(*a, **k))
    full = trace(model, x, attention="full")
    assert not calls  # every A asked for: the explicit path in every layer
    without_a = trace(model, x, attention="full", names_filter=["blocks.*.z", "head.*"])
    assert len(calls) == L  # no A asked for: the fused kernel in every layer, as the plain forward
    one = trace(model, x, attention="full", names_filter=["blocks.2.attn.weights"])
    assert len(calls) == 2 * L - 1  # A of layer 2 only: the explicit path there alone
    assert one.names() == ["blocks.2.attn.weights"]
    # Layer 1 fused here: layer 2's input differs from the full trace's by float rounding.
    torch.testing.assert_close(one["blocks.2.attn.weights"], full["blocks.2.attn.weights"], rtol=0, atol=1e-6)
    torch.testing.assert_close(without_a["head.logits"], full["head.logits"], rtol=0, atol=1e-5)


def test_stage_filter_matches_names_and_patterns_whole():
    asked = trace_module.stage_filter(["head.logits", "blocks.*.z"])
    assert asked("head.logits") and asked("blocks.12.z") and not asked("head.logits_x")
    assert not asked("blocks.1.z_mid") and not asked("embed.z0")
    assert trace_module.stage_filter(None)("anything")
    assert trace_module.stage_filter(str.isupper)("ABC")
    with pytest.raises(TypeError, match="names_filter takes"):
        trace_module.stage_filter([3])


# ---------------------------------------------------------------------------------------------------------------
# Per-layer reductions, one pass, shared by trace and survey

def test_layer_reductions_equal_the_functions_over_all_layers():
    model, x = model_and_image("ViT-Fashion/4", seed=1)
    t = trace(model, x)
    reduced = analysis.layer_reductions(t, ("mean", "max"), renormalise=True)
    for fusion in ("mean", "max"):
        assert torch.equal(reduced.fused_stack(fusion), analysis.fused_attentions(t, fusion))  # (L, T, T)
    np.testing.assert_array_equal(reduced.distance_stack().float().numpy(), analysis.mean_attention_distance(t))
    np.testing.assert_allclose(reduced.norms_stack().numpy(), t.residual_stream().norm(dim=-1).numpy(), rtol=1e-6)
    np.testing.assert_array_equal(analysis.token_norms(t)["z"], reduced.norms_stack().numpy())  # the app's, the same
    np.testing.assert_array_equal(reduced.rollout("mean").numpy(), analysis.rollout_map(t))
    # The entropy, formula by formula in float64 from the stacked matrices.
    A = t.attentions().double()  # (L, h, T, T)
    expected = -(A * torch.where(A > 0, A.log(), torch.zeros_like(A))).sum(-1).mean(-1)  # (L, h)
    torch.testing.assert_close(reduced.entropy_stack(), expected, rtol=1e-12, atol=1e-12)


def test_attention_entropy_by_hand():
    T = 5
    uniform = torch.full((1, 2, T, T), 1 / T, dtype=torch.float64)  # every query spreads evenly: log T
    one_hot = torch.eye(T, dtype=torch.float64).expand(1, 2, T, T)  # each query on one token: 0
    assert torch.allclose(analysis.attention_entropy(uniform), torch.full((1, 2), math.log(T), dtype=torch.float64))
    assert torch.equal(analysis.attention_entropy(one_hot), torch.zeros(1, 2, dtype=torch.float64))
    half = torch.tensor([[[[0.5, 0.5], [1.0, 0.0]]]], dtype=torch.float64)  # queries: log 2 and 0, mean log 2 / 2
    assert analysis.attention_entropy(half).item() == pytest.approx(math.log(2) / 2)


def test_the_survey_reduces_a_batch_with_the_same_class_as_a_trace():
    model, _ = model_and_image("ViT-Fashion/4", seed=2)
    x = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    record = SurveyRecord(model.config.grid, model.config.patch_size, "cpu")
    assert isinstance(record, analysis.LayerReductions)
    batch = analysis.LayerReductions(model.config.grid, model.config.patch_size, fusions=("mean",))
    with torch.no_grad():
        model(x, record)
        model(x, batch)  # as the blocks run: A and the stream, nothing stored
    assert len(record) == 0 and len(batch) == 0
    assert record.entropy is None and record.norms is not None  # what its statistics read (norms: high-norm tokens)
    for i in range(len(x)):
        single = analysis.layer_reductions(trace(model, x[i:i + 1]))
        torch.testing.assert_close(record.distance_stack()[i], single.distance_stack(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(batch.entropy_stack()[i].double(), single.entropy_stack(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batch.norms_stack()[i], single.norms_stack(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(record.norms_stack()[i], single.norms_stack(), rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(record.rollout_maps(model.config.grid)[i], single.rollout(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# The app: each step drawn from a trace of what its views declare, exactly as from a full trace

TINY = "ViT-Tiny-Test/8 · vit_tiny_test"


def same(a, b) -> bool:
    if hasattr(a, "to_json"):
        return a.to_json() == b.to_json()
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    model, _ = model_and_image()
    save_checkpoint(folder / "vit_tiny_test", model, [f"class {i}" for i in range(10)],
                    Preprocessing(resize_size=32, crop_size=32, mean=(0.5,) * 3, std=(0.25,) * 3), {"dataset": "none"})
    return Server(checkpoint_dir=folder, device="cpu")


def picture(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8))


OPTIONS = (views.Options(), views.Options(selected=5, layer=2, head="3", fusion="max", discard=0.5, ln_layer=2,
                                          ln_which=views.LN_CHOICES[1], indices="1, 3"))


@pytest.mark.parametrize("step", range(len(views.STEPS)))
def test_every_step_draws_from_a_trace_of_its_declared_stages_as_from_a_full_trace(server, step):
    names = views.step_views(step)
    server.cache.clear()
    full = server.analyse(picture(step), TINY)  # every stage
    expected = [views.render_views(full, names, options) for options in OPTIONS]
    server.cache.clear()
    runs = dict(server.explain_runs)
    filtered = server.analyse(picture(step), TINY, stages=views.stages_of(names))
    filtered.retrace = None  # a stage read but not declared raises KeyError here instead of tracing again
    assert filtered.stages is not None and len(filtered.trace.names()) < len(full.trace.names())
    for options, want in zip(OPTIONS, expected):
        got = views.render_views(filtered, names, options)
        for name, a, b in zip(names, got, want):
            assert same(a, b), (name, options)
    assert dict(server.explain_runs).get("stages", 0) == runs.get("stages", 0)


def test_a_later_step_that_reads_more_traces_the_image_again_once_with_every_stage(server):
    server.cache.clear()
    entry = server.analyse(picture(10), TINY, stages=views.stages_of(views.step_views(0)))
    runs, stages = server.runs, server.explain_runs.get("stages", 0)
    assert entry.logit_lens is None and "embed.z0" not in entry.trace
    views.render_views(entry, views.step_views(0), views.Options())
    assert server.explain_runs.get("stages", 0) == stages  # step 0 reads what was traced
    first = entry.trace
    views.render_views(entry, views.step_views(2), views.Options())
    assert server.explain_runs["stages"] == stages + 1 and entry.trace is not first
    assert entry.stages >= views.all_stages()
    for step in range(len(views.STEPS)):  # every other step from that second trace
        views.render_views(entry, views.step_views(step), views.Options())
    assert server.explain_runs["stages"] == stages + 1 and server.runs == runs
    for name in first.names():  # the same forward: the stages of the first trace, bit for bit
        assert torch.equal(first[name], entry.trace[name]), name
    full = trace(server.registry.get(TINY).model, entry.trace["input.pixels"][None])
    assert entry.logit_lens is not None
    for name in entry.trace.names():
        assert torch.equal(entry.trace[name], full[name]) or name == "input.image", name
