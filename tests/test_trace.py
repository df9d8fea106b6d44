"""explorer.trace: every documented stage with its documented shape, the paper's identities between stages, and a
trace that is a pure function of (model, image): nothing stored on modules, safe from many threads at once."""
import importlib
import re
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explorer import CONFIGS, ViT, ViTConfig, common
from explorer.trace import trace

# Not `import explorer.trace as ...`: the package rebinds explorer.trace to the function of that name.
trace_module = importlib.import_module("explorer.trace")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def at_once(n: int, work) -> list:
    """work(0) .. work(n - 1), each on a thread of its own, all let go together; their results in order (an error in
    any of them fails the test here, in the test's thread)."""
    barrier = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(i):
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and all(r is not None for r in results), errors
    return results

def documented_stages() -> dict[str, tuple[str, ...]]:
    """Stage name -> shape symbols, read from the trace module's docstring (the documentation is the contract)."""
    stages = {}
    for line in trace_module.__doc__.splitlines():
        match = re.match(r"^\s{4}([a-z_0-9.]+)\s+\(([^)]*)\)", line)
        if match:
            stages[match.group(1)] = tuple(s.strip() for s in match.group(2).split(",") if s.strip())
    return stages


def expected_shapes(config: ViTConfig) -> dict[str, tuple[int, ...]]:
    H, W = config.image_hw
    symbols = dict(C=config.channels, H=H, W=W, P=config.patch_size, N=config.num_patches, T=config.seq_len,
                   D=config.hidden_dim, h=config.heads, d=config.head_dim, K=config.num_classes)
    shapes = {}
    for name, shape in documented_stages().items():
        size = tuple(eval(s.replace("/", "//"), {"__builtins__": {}}, symbols) for s in shape)
        if ".l." in name:
            for layer in range(1, config.depth + 1):
                shapes[name.replace(".l.", f".{layer}.")] = size
        else:
            shapes[name] = size
    return shapes


def image_for(config: ViTConfig, seed: int = 0) -> torch.Tensor:
    H, W = config.image_hw
    return torch.randn(1, config.channels, H, W, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def tiny_trace(tiny_model):
    x = image_for(tiny_model.config)
    return tiny_model, x, trace(tiny_model, x, mean=MEAN, std=STD, class_names=[f"c{i}" for i in range(10)])


def test_docstring_lists_the_stages():
    stages = documented_stages()
    assert len(stages) == 23  # if this fails, the docstring's table no longer parses
    assert stages["blocks.l.attn.weights"] == ("h", "T", "T") and stages["embed.feature_maps"] == ("D", "H/P", "W/P")


def test_traced_logits_equal_plain_forward(tiny_trace):
    model, x, t = tiny_trace
    with torch.no_grad():
        model.fused_attention = True
        fused = model(x)[0]
        model.fused_attention = False
        explicit = model(x)[0]
        model.fused_attention = True
    assert torch.allclose(t.logits, explicit, atol=1e-6)
    assert torch.allclose(t.logits, fused, atol=1e-5)
    assert torch.allclose(t.probabilities, explicit.softmax(-1), atol=1e-6)
    assert abs(t.probabilities.sum().item() - 1) < 1e-5


def test_every_documented_stage_has_its_shape_tiny(tiny_trace):
    model, x, t = tiny_trace
    assert t.shapes() == expected_shapes(model.config)  # exactly the documented stages, none missing or extra


def test_every_documented_stage_has_its_shape_b16():
    torch.manual_seed(0)
    model = ViT(CONFIGS["ViT-B/16"]).eval()
    t = trace(model, image_for(model.config))
    shapes = t.shapes()
    assert shapes == expected_shapes(model.config)
    # Hand-computed for ViT-B/16 at 224: N = 196 patches of 16x16x3, T = 197 tokens, D = 768, h = 12.
    assert shapes["embed.patches"] == (196, 16, 16, 3)
    assert shapes["embed.feature_maps"] == (768, 14, 14)
    assert shapes["embed.z0"] == (197, 768)
    assert shapes["blocks.12.attn.weights"] == (12, 197, 197)
    assert shapes["head.logits"] == (1000,)
    assert t.attentions().shape == (12, 12, 197, 197)
    assert t.residual_stream().shape == (13, 197, 768) and t.residual_mid().shape == (12, 197, 768)


def test_attention_rows_sum_to_one(tiny_trace):
    model, x, t = tiny_trace
    attentions = t.attentions()  # (L, h, T, T)
    assert attentions.shape == (2, 4, 17, 17)
    assert (attentions >= 0).all()
    assert torch.allclose(attentions.sum(-1), torch.ones(2, 4, 17), atol=1e-5)
    assert torch.equal(t.attention(2), t["blocks.2.attn.weights"])


def test_residual_identities_of_equations_1_to_4(tiny_trace):
    model, x, t = tiny_trace
    L = model.config.depth
    # Eq. 1: z0 = [x_class; x_p E] + E_pos
    assert torch.allclose(t["embed.sequence"][0], t["embed.class_token"])
    assert torch.allclose(t["embed.sequence"][1:], t["embed.patch_embeddings"])
    assert torch.allclose(t["embed.z0"], t["embed.sequence"] + t["embed.position_embedding"], atol=1e-6)
    assert torch.equal(t["embed.position_embedding"], model.position_embedding.detach()[0])
    assert torch.equal(t["embed.class_token"], model.class_token.detach()[0, 0])
    previous = t["embed.z0"]
    for l in range(1, L + 1):
        block = model.blocks[l - 1]
        # Eq. 2: z'_l = MSA(LN(z_{l-1})) + z_{l-1}
        assert torch.allclose(t[f"blocks.{l}.ln_1"], F.layer_norm(previous, (32,), block.norm_1.weight,
                                                                  block.norm_1.bias, 1e-6), atol=1e-5)
        assert torch.allclose(t[f"blocks.{l}.z_mid"], previous + t[f"blocks.{l}.attn.output"], atol=1e-6)
        # Eq. 3: z_l = MLP(LN(z'_l)) + z'_l
        assert torch.allclose(t[f"blocks.{l}.ln_2"], F.layer_norm(t[f"blocks.{l}.z_mid"], (32,), block.norm_2.weight,
                                                                  block.norm_2.bias, 1e-6), atol=1e-5)
        assert torch.allclose(t[f"blocks.{l}.z"], t[f"blocks.{l}.z_mid"] + t[f"blocks.{l}.mlp.output"], atol=1e-6)
        previous = t[f"blocks.{l}.z"]
    # Eq. 4: y = LN(z_L^0), then the head
    assert torch.equal(t["head.class_token"], t[f"blocks.{L}.z"][0])
    with torch.no_grad():
        y = F.layer_norm(t["head.class_token"], (32,), model.norm.weight, model.norm.bias, 1e-6)
        assert torch.allclose(t["head.y"], y, atol=1e-5)
        assert torch.allclose(t.logits, model.head(y), atol=1e-5)
    assert torch.equal(t.residual_stream()[0], t["embed.z0"]) and torch.equal(t.residual_stream()[L], t[f"blocks.{L}.z"])
    assert torch.equal(t.residual_mid()[0], t["blocks.1.z_mid"])


def test_patches_are_the_unfolded_input_and_embed_linearly(tiny_trace):
    model, x, t = tiny_trace
    P, C, D = 8, 3, 32
    unfolded = F.unfold(x, kernel_size=P, stride=P)  # (1, C*P*P, N), column i = patch i in row-major order
    manual = unfolded[0].T.reshape(-1, C, P, P).permute(0, 2, 3, 1)  # (N, P, P, C)
    assert torch.equal(t["embed.patches"], manual)
    assert torch.equal(t["input.pixels"], x[0])
    # x_p^i E: the conv is one matrix applied to every flattened patch.
    with torch.no_grad():
        E = model.patch_embedding.projection.weight.reshape(D, -1)  # (D, C*P*P)
        by_matrix = unfolded[0].T @ E.T + model.patch_embedding.projection.bias  # (N, D)
    assert torch.allclose(t["embed.patch_embeddings"], by_matrix, atol=1e-5)


def test_feature_maps_flattened_are_the_patch_embeddings(tiny_trace):
    model, x, t = tiny_trace
    feature_maps = t["embed.feature_maps"]  # (D, H/P, W/P)
    assert torch.equal(feature_maps.flatten(1).T, t["embed.patch_embeddings"])
    # Row-major: patch (r, c) is token 1 + r * cols + c.
    rows, cols = t.grid
    assert torch.equal(feature_maps[:, 1, 2], t["embed.sequence"][1 + 1 * cols + 2])


def test_display_image_and_top_k(tiny_trace):
    model, x, t = tiny_trace
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    assert torch.allclose(t.image, (x[0] * std + mean).clamp(0, 1).permute(1, 2, 0), atol=1e-6)
    top = t.top_k(3)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert top[0][0] == f"c{int(t.logits.argmax())}" and abs(top[0][1] - t.probabilities.max().item()) < 1e-6
    plain = trace(model, x)  # no mean/std: min-max scaled
    assert abs(plain.image.min().item()) < 1e-6 and abs(plain.image.max().item() - 1) < 1e-6


def test_trace_takes_one_image_only(tiny_model):
    with pytest.raises(ValueError, match="batch of one image"):
        trace(tiny_model, torch.zeros(2, 3, 32, 32))
    with pytest.raises(KeyError, match="No stage named"):
        trace(tiny_model, torch.zeros(1, 3, 32, 32))["blocks.9.z"]


def test_trace_accepts_float64_input(tiny_model):
    x = image_for(tiny_model.config)
    assert torch.allclose(trace(tiny_model, x.double()).logits, trace(tiny_model, x).logits, atol=1e-6)


def module_snapshot(model: torch.nn.Module) -> list:
    return [
        (name, sorted(vars(m)), list(m._buffers), list(m._parameters), len(m._forward_hooks),
         len(m._forward_pre_hooks), len(m._backward_hooks), m.training)
        for name, m in model.named_modules()
    ]


def test_tracing_stores_nothing_on_modules(tiny_model):
    before = module_snapshot(tiny_model)
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    parameters = list(tiny_model.parameters())
    global_hooks = (len(torch.nn.modules.module._global_forward_hooks),
                    len(torch.nn.modules.module._global_forward_pre_hooks))
    fused = tiny_model.fused_attention
    trace(tiny_model, image_for(tiny_model.config))
    assert module_snapshot(tiny_model) == before
    after = tiny_model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    assert all(a is b for a, b in zip(tiny_model.parameters(), parameters))
    assert all(p.grad is None for p in tiny_model.parameters())
    assert tiny_model.fused_attention == fused
    assert (len(torch.nn.modules.module._global_forward_hooks),
            len(torch.nn.modules.module._global_forward_pre_hooks)) == global_hooks


def test_stages_are_cpu_detached_and_independent_of_later_changes(tiny_model):
    x = image_for(tiny_model.config)
    assert all(p.requires_grad for p in tiny_model.parameters())
    with torch.enable_grad():
        t = trace(tiny_model, x, mean=MEAN, std=STD)
    for name, tensor in t.stages.items():
        assert tensor.device.type == "cpu" and not tensor.requires_grad and tensor.grad_fn is None, name
    frozen = {name: tensor.clone() for name, tensor in t.stages.items()}
    with torch.no_grad():  # change every weight and the input in place
        for p in tiny_model.parameters():
            p.mul_(2).add_(1)
    x.add_(5)
    for name, tensor in t.stages.items():
        assert torch.equal(tensor, frozen[name]), f"{name} changed with the model or the input"
    assert not torch.equal(trace(tiny_model, x).logits, frozen["head.logits"])


def test_concurrent_traces_equal_sequential_traces():
    # A model large enough for the threads' forwards to overlap; fused attention stays on for plain forwards.
    torch.manual_seed(0)
    model = ViT(ViTConfig(image_size=64, patch_size=8, hidden_dim=64, depth=4, heads=4, mlp_dim=128,
                          num_classes=10)).eval()
    with torch.no_grad():
        model.head.weight.normal_()
    assert model.fused_attention
    images = [image_for(model.config, seed) for seed in range(8)]
    sequential = [trace(model, x) for x in images]
    assert len({round(t.logits[0].item(), 6) for t in sequential}) == 8  # the images really differ

    results = at_once(8, lambda i: [trace(model, images[i]) for _ in range(3)])
    for i, runs in enumerate(results):
        for t in runs:
            assert t.names() == sequential[i].names()
            for name in t.names():
                assert torch.equal(t[name], sequential[i][name]), (i, name)
    assert model.fused_attention  # the switch was never flipped by tracing


# ---------------------------------------------------------------------------------------------------------------
# Attention on demand: the trace keeps q and k, and A_l is computed when asked. Compared with attention="full" (the
# explicit path, every A_l stored): with the fused switch off both forwards are the same explicit path, and A agrees
# bit for bit (torch.equal: one block of queries is the explicit path's own computation; with two blocks, the BLAS
# sums each row in the same order); with the switch on (the default), the on-demand forward takes the fused kernel,
# whose rounding moves q and k of layers 2..L by ~1e-7, so A agrees within 1e-6 (measured: 6e-8).

ON_DEMAND_CONFIGS = {
    "tiny": CONFIGS["ViT-Tiny-Test/8"],  # T = 17: one block of queries
    "fashion": CONFIGS["ViT-Fashion/4"],  # T = 50, grayscale
    "T=145": ViTConfig(image_size=96, patch_size=8, hidden_dim=64, depth=3, heads=4, mlp_dim=128, num_classes=10),
}  # T = 145: A is computed in two blocks of queries (64 and 81)


def traced_pair(config: ViTConfig, fused: bool):
    torch.manual_seed(0)
    model = ViT(config).eval()
    with torch.no_grad():
        model.head.weight.normal_(std=0.5)
    model.fused_attention = fused
    x = image_for(config)
    return model, x, trace(model, x), trace(model, x, attention="full")


@pytest.mark.parametrize("fused", [False, True], ids=["explicit", "fused"])
@pytest.mark.parametrize("name", list(ON_DEMAND_CONFIGS))
def test_on_demand_attention_equals_the_stored_attention(name, fused):
    from explorer import analysis

    config = ON_DEMAND_CONFIGS[name]
    model, x, on_demand, full = traced_pair(config, fused)
    L, T = config.depth, config.seq_len

    def same(a, b):
        return torch.equal(a, b) if not fused else (a - b).abs().max().item() <= 1e-6

    assert not any(n.endswith(".attn.weights") for n in on_demand.stages)  # none stored...
    assert on_demand.names() == full.names() and on_demand.shapes() == full.shapes()  # ...yet all there
    assert all(f"blocks.{l}.attn.weights" in on_demand for l in range(1, L + 1))
    for l in range(1, L + 1):
        assert same(on_demand.attention(l), full.attention(l)), l
        assert same(on_demand[f"blocks.{l}.attn.weights"], full[f"blocks.{l}.attn.weights"]), l
    assert same(on_demand.attentions(), full.attentions())
    # Every stage the two forwards share: equal when both take the explicit path.
    for stage in full.stages:
        if not stage.endswith(".attn.weights"):
            assert same(on_demand[stage], full[stage]) or fused, stage
    # The traced logits are the plain forward's, bit for bit (the same path: fused when switched on).
    with torch.no_grad():
        assert torch.equal(on_demand.logits, model(x)[0])
        model.fused_attention = False
        assert torch.equal(full.logits, model(x)[0])

    # The analyses drawn from A give the same numbers.
    close = np.testing.assert_array_equal if not fused else (
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6))
    for fusion in common.HEAD_FUSIONS:
        close(analysis.fused_attentions(on_demand, fusion).numpy(), analysis.fused_attentions(full, fusion).numpy())
        close(analysis.rollout_map(on_demand, fusion, 0.3), analysis.rollout_map(full, fusion, 0.3))
    for renormalise in (True, False):
        close(analysis.mean_attention_distance(on_demand, renormalise),
              analysis.mean_attention_distance(full, renormalise))
    for query in (0, 5, T - 1):
        close(analysis.query_attention_layers(on_demand, query), analysis.query_attention_layers(full, query))
        for l in range(1, L + 1):
            close(analysis.query_attention(on_demand, l, query), analysis.query_attention(full, l, query))
    close(analysis.attention_matrix(on_demand, L), analysis.attention_matrix(full, L))
    close(analysis.attention_matrix(on_demand, 1, 2), analysis.attention_matrix(full, 1, 2))


def test_layer_by_layer_analyses_equal_the_formulas_over_all_layers_at_once():
    """The analyses now take one A_l at a time; the numbers are those of the formulas over the stacked (L, h, T, T)."""
    from explorer import analysis

    model, x, _, full = traced_pair(ON_DEMAND_CONFIGS["T=145"], True)
    A = full.attentions()  # (L, h, T, T)
    for fusion in common.HEAD_FUSIONS:
        assert torch.equal(analysis.fused_attentions(full, fusion), analysis.fuse_heads(A, fusion))
    distances = analysis.patch_distances(full.grid, full.config.patch_size)  # (N, N)
    patches = A[:, :, 1:, 1:].double()
    renormalised = patches / patches.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    for attention, renormalise in ((renormalised, True), (patches, False)):
        expected = (attention * distances).sum(dim=-1).mean(dim=-1).float().numpy()  # (L, h)
        np.testing.assert_array_equal(analysis.mean_attention_distance(full, renormalise), expected)
    # Both from one pass over the layers (each on-demand A_l computed once): the same numbers as the two functions.
    for t in (full, trace(model, x)):
        for fusion, renormalise in (("mean", True), ("max", False)):
            fused, distance = analysis.fused_attentions_and_distance(t, fusion, renormalise)
            assert torch.equal(fused, analysis.fused_attentions(t, fusion))
            np.testing.assert_array_equal(distance, analysis.mean_attention_distance(t, renormalise))


def test_query_rows_are_rows_of_the_whole_matrices_bit_for_bit():
    config = ON_DEMAND_CONFIGS["T=145"]
    _, _, on_demand, _ = traced_pair(config, True)
    T = config.seq_len
    rows = {query: on_demand.attention_rows(query) for query in (0, 1, 63, 64, 130, 144)}  # both blocks, from q, k
    assert not on_demand._recent
    whole = torch.stack([on_demand.attention(l) for l in range(1, config.depth + 1)])  # (L, h, T, T)
    for query, row in rows.items():
        assert row.shape == (config.depth, config.heads, T)
        assert torch.equal(row, whole[:, :, query]), query
        assert torch.equal(on_demand.attention_rows(query), row)  # now partly from the layers kept
    assert torch.allclose(rows[0].sum(-1), torch.ones(config.depth, config.heads), atol=1e-5)
    with pytest.raises(ValueError, match=f"outside 0..{T - 1}"):
        on_demand.attention_rows(T)
    with pytest.raises(KeyError, match="No stage named 'blocks.4.attn.weights'"):
        on_demand.attention(4)


def test_q_and_k_are_the_qkv_projection_split_into_heads_and_own_their_memory(tiny_trace):
    model, x, t = tiny_trace
    h, d = model.config.heads, model.config.head_dim
    for l in range(1, model.config.depth + 1):
        with torch.no_grad():
            qkv = model.blocks[l - 1].msa.qkv(t[f"blocks.{l}.ln_1"])  # (T, 3D), rows of U_qkv: [W_q; W_k; W_v]
        q, k, _ = qkv.reshape(-1, 3, h, d).permute(1, 2, 0, 3)  # 3 x (h, T, d)
        for name, expected in (("q", q), ("k", k)):
            stage = t[f"blocks.{l}.attn.{name}"]
            assert torch.allclose(stage, expected, atol=1e-6), (l, name)
            # Its own storage: not a view of the qkv output, which would keep v alive too.
            assert stage.is_contiguous() and stage.untyped_storage().nbytes() == stage.numel() * stage.element_size()


def test_on_demand_trace_holds_less_by_the_attention_matrices():
    config = ON_DEMAND_CONFIGS["T=145"]
    _, _, on_demand, full = traced_pair(config, True)
    one_layer = config.heads * config.seq_len ** 2 * 4  # (h, T, T) float32
    assert full.nbytes() - on_demand.nbytes() == config.depth * one_layer
    assert full.nbytes() == sum(t.numel() * t.element_size() for t in full.stages.values())
    # The layers asked for lately are held, and counted: at most two.
    base = on_demand.nbytes()
    on_demand.attention(1)
    assert on_demand.nbytes() == base + one_layer
    again = on_demand.attention(1)
    assert on_demand.attention(1) is again and on_demand.nbytes() == base + one_layer  # computed once
    on_demand.attention(2), on_demand.attention(3)
    assert on_demand.nbytes() == base + 2 * one_layer and sorted(on_demand._recent) == [2, 3]


def test_the_fused_kernel_runs_unless_attention_weights_are_asked_for(tiny_model, monkeypatch):
    from explorer.explain import GraphRecord

    calls = []
    fused_kernel = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or fused_kernel(*a, **k))
    x = image_for(tiny_model.config)
    L = tiny_model.config.depth
    trace(tiny_model, x)
    assert len(calls) == L  # on demand: the fused kernel, as the plain forward
    trace(tiny_model, x, attention="full")
    tiny_model(x, {})
    record = GraphRecord()
    tiny_model(x, record)
    assert len(calls) == L  # the explicit path for a full trace and for any record that does not opt out
    assert record["blocks.1.attn.weights"].grad_fn is not None  # explain.relevance's A, in the graph
    tiny_model.fused_attention = False
    trace(tiny_model, x)
    assert len(calls) == L  # the switch off: the explicit path, A not stored
    with pytest.raises(ValueError, match="attention must be one of"):
        trace(tiny_model, x, attention="lazy")


def test_concurrent_asks_for_attention_equal_sequential_ones():
    config = ON_DEMAND_CONFIGS["T=145"]
    _, _, on_demand, full = traced_pair(config, False)
    asks = [(l, query) for l in range(1, config.depth + 1) for query in (0, 100)] * 2

    def ask(i):
        return [((l, query), (on_demand.attention(l).clone(), on_demand.attention_rows(query)))
                for l, query in asks[i::8] + asks[:4]]

    results = [pair for pairs in at_once(8, ask) for pair in pairs]
    assert results
    for (l, query), (attention, rows) in results:
        assert torch.equal(attention, full.attention(l)) and torch.equal(rows, full.attentions()[:, :, query])
    assert len(on_demand._recent) <= 2
