"""explorer.interventions against references built by hand: a model whose U_msa columns of a head are zeroed, a head's
mean written out with the model's weights, a hand-built z_0 or attention output, the model's own logits; and, on the
shipped model, that the head attribution patching ranks first matters more than the median head when switched off."""
import copy
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explorer.analysis import ablate_heads, head_importance, patch_activations
from explorer.interventions import PATCHABLE_STAGES

TOL = 1e-5


def _images(model, n=2, seed=1):
    torch.manual_seed(seed)
    return torch.randn(n, model.config.channels, *model.config.image_hw)


def _zeroed(model, heads):
    """A deep copy of the model whose U_msa columns of each head (l, j) are zero: the head's output never reaches z."""
    d = model.config.head_dim
    copied = copy.deepcopy(model)
    with torch.no_grad():
        for layer, j in heads:
            copied.blocks[layer - 1].msa.projection.weight[:, j * d:(j + 1) * d] = 0.0
    return copied


def test_ablate_zero_equals_a_model_whose_projection_columns_are_zeroed(tiny_model):
    x = _images(tiny_model)
    for heads in ([(1, 0)], [(2, 3)], [(1, 1), (1, 2), (2, 0)]):
        with torch.no_grad():
            reference = _zeroed(tiny_model, heads)(x)
        assert torch.allclose(ablate_heads(tiny_model, x, heads), reference, atol=TOL, rtol=0)
        assert not torch.allclose(reference, tiny_model(x), atol=1e-3)  # the change is visible
    with torch.no_grad():
        assert torch.allclose(ablate_heads(tiny_model, x, []), tiny_model(x), atol=TOL, rtol=0)


def test_ablate_mean_equals_a_hand_computation(tiny_model):
    """Layer 1's MSA written out with the model's weights, head 2's output replaced by its mean over the tokens."""
    model, x = tiny_model, _images(tiny_model)
    config = model.config
    h, d, D = config.heads, config.head_dim, config.hidden_dim
    block = model.blocks[0]
    with torch.no_grad():
        z0 = model.embed(x)  # (B, T, D)
        B, T, _ = z0.shape
        normed = F.layer_norm(z0, (D,), block.norm_1.weight, block.norm_1.bias, block.norm_1.eps)
        qkv = normed @ block.msa.qkv.weight.T + block.msa.qkv.bias  # (B, T, 3D)
        q, k, v = (qkv[..., i * D:(i + 1) * D].reshape(B, T, h, d).transpose(1, 2) for i in range(3))  # (B, h, T, d)
        heads = torch.softmax(q @ k.transpose(-2, -1) / d ** 0.5, dim=-1) @ v  # (B, h, T, d)
        heads[:, 2] = heads[:, 2].mean(dim=1, keepdim=True)  # (B, T, d): every token gets the mean
        concatenated = heads.transpose(1, 2).reshape(B, T, D)
        z_mid = concatenated @ block.msa.projection.weight.T + block.msa.projection.bias + z0
        z1 = block.mlp(block.norm_2(z_mid)) + z_mid
        reference = model.classify(model.blocks[1](z1))
    out = ablate_heads(model, x, [(1, 2)], how="mean")
    assert torch.allclose(out, reference, atol=TOL, rtol=0)
    assert not torch.allclose(out, ablate_heads(model, x, [(1, 2)], how="zero"), atol=1e-4)


def test_patching_every_token_gives_the_source_logits_and_none_gives_x_logits(tiny_model):
    x, source = _images(tiny_model, seed=1), _images(tiny_model, seed=2)
    with torch.no_grad():
        own, sources = tiny_model(x), tiny_model(source)
    for stage in ("embed.z0", "blocks.1.z", "blocks.2.z", "blocks.1.z_mid", "blocks.2.z_mid"):
        assert torch.allclose(patch_activations(tiny_model, x, source, stage), sources, atol=TOL, rtol=0), stage
        assert torch.allclose(patch_activations(tiny_model, x, source, stage, positions=[]), own, atol=TOL, rtol=0)
    # attention and MLP inputs and outputs are not the whole residual stream: patched everywhere, x still counts
    for stage in ("blocks.2.ln_1", "blocks.2.attn.output", "blocks.2.ln_2", "blocks.2.mlp.output"):
        assert not torch.allclose(patch_activations(tiny_model, x, source, stage), sources, atol=1e-3), stage


def test_patching_z0_at_some_positions_equals_the_model_on_a_hand_built_z0(tiny_model):
    x, source = _images(tiny_model, seed=1), _images(tiny_model, seed=3)[:1]  # one source image for the whole batch
    positions = [0, 3, 5, 16]  # any tokens of the sequence, the class token included
    with torch.no_grad():
        z0 = tiny_model.embed(x)  # (B, T, D)
        z0[:, positions] = tiny_model.embed(source)[:, positions]
        reference = tiny_model.classify(tiny_model.encode(z0))
    out = patch_activations(tiny_model, x, source, "embed.z0", positions)
    assert torch.allclose(out, reference, atol=TOL, rtol=0)
    assert not torch.allclose(out, tiny_model(x), atol=1e-3)


def test_patching_an_attention_output_equals_a_hand_built_block(tiny_model):
    x, source = _images(tiny_model, seed=1), _images(tiny_model, seed=4)
    positions = [1, 2, 9]
    with torch.no_grad():
        block = tiny_model.blocks[1]
        from_source = block.msa(block.norm_1(tiny_model.blocks[0](tiny_model.embed(source))))  # (B, T, D)
        z1 = tiny_model.blocks[0](tiny_model.embed(x))
        attention_output = block.msa(block.norm_1(z1))
        attention_output[:, positions] = from_source[:, positions]
        z_mid = attention_output + z1
        reference = tiny_model.classify(block.mlp(block.norm_2(z_mid)) + z_mid)
    out = patch_activations(tiny_model, x, source, "blocks.2.attn.output", positions)
    assert torch.allclose(out, reference, atol=TOL, rtol=0)


def test_head_importance_exact_equals_ablating_one_head_at_a_time(tiny_model):
    x = _images(tiny_model, n=3)
    L, h = tiny_model.config.depth, tiny_model.config.heads
    result = head_importance(tiny_model, x, target=[1, 4, 7])
    assert result.exact.shape == result.estimate.shape == (3, L, h)
    p = tiny_model(x).softmax(-1).detach()[range(3), [1, 4, 7]]  # (B,)
    for layer in range(1, L + 1):
        for j in range(h):
            ablated = ablate_heads(tiny_model, x, [(layer, j)]).softmax(-1)[range(3), [1, 4, 7]]
            assert np.allclose(result.exact[:, layer - 1, j], (p - ablated).numpy(), atol=TOL, rtol=0)
    one = head_importance(tiny_model, x[:1])  # one image: (L, h), its own top class
    assert one.exact.shape == (L, h) and one.target == int(tiny_model(x[:1]).argmax())
    assert np.isfinite(one.estimate).all() and -1 <= one.spearman <= 1


def test_head_importance_estimate_is_the_first_order_term(tiny_model):
    """Σ ∇_o p ⊙ o: switching a head off by a small fraction ε of its output changes p by ε·estimate to first order."""
    x = _images(tiny_model, n=1).double()
    model = copy.deepcopy(tiny_model).double()
    result = head_importance(model, x, target=2)
    eps, d = 1e-4, model.config.head_dim
    with torch.no_grad():
        p = model(x).softmax(-1)[0, 2]
        for layer, j in [(1, 0), (2, 3)]:
            scaled = copy.deepcopy(model)
            scaled.blocks[layer - 1].msa.projection.weight[:, j * d:(j + 1) * d] *= 1 - eps
            drop = (p - scaled(x).softmax(-1)[0, 2]) / eps
            assert abs(float(drop) - result.estimate[layer - 1, j]) < 1e-6 * max(1.0, abs(float(drop)))


def test_interventions_share_one_model_across_threads(tiny_model):
    x = _images(tiny_model)
    heads = [[(1, j)] for j in range(4)] + [[(2, j)] for j in range(4)]
    serial = [ablate_heads(tiny_model, x, hs) for hs in heads]
    parameters = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    results = [None] * len(heads)

    def work(i):
        for _ in range(20):
            results[i] = ablate_heads(tiny_model, x, heads[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(heads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, serial):
        assert torch.allclose(got, want, atol=TOL, rtol=0)
    assert all(torch.equal(v, parameters[k]) for k, v in tiny_model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny_model.modules())


def test_a_trace_of_the_intervened_model_equals_the_trace_of_a_hand_zeroed_model(tiny_model):
    """explorer.trace(Intervened(model, heads), x): every stage of the changed run, in the forward's order, as a
    trace of the model whose U_msa columns of those heads are zeroed."""
    from explorer.interventions import Intervened
    from explorer.trace import trace

    x, heads = _images(tiny_model, n=1), [(1, 3), (2, 0)]
    for attention in ("on_demand", "full"):
        changed = trace(Intervened(tiny_model, heads), x, attention=attention)
        reference = trace(_zeroed(tiny_model, heads), x, attention=attention)
        assert changed.names() == reference.names()
        for name in reference.names():
            assert torch.allclose(changed[name], reference[name], atol=TOL, rtol=0), name
    assert torch.allclose(changed["head.logits"], ablate_heads(tiny_model, x, heads)[0], atol=TOL, rtol=0)
    record, sources = {}, {}
    source = _images(tiny_model, n=1, seed=5)
    logits = patch_activations(tiny_model, x, source, "blocks.1.z_mid", [2], record=record)
    assert torch.equal(record["head.logits"], logits)
    assert [n for n in record if "weights" not in n] == [n for n in reference.stages if "input." not in n
                                                         and "weights" not in n]  # every stage, in order
    with torch.no_grad():
        tiny_model(source, sources)
    assert torch.allclose(record["blocks.1.z_mid"][:, 2], sources["blocks.1.z_mid"][:, 2], atol=TOL, rtol=0)
    assert not torch.allclose(record["blocks.1.z_mid"][:, 1], sources["blocks.1.z_mid"][:, 1], atol=1e-3)


@pytest.mark.parametrize("call, message", [
    (lambda m, x: ablate_heads(m, x, [(0, 0)]), "layer in 1..2"),
    (lambda m, x: ablate_heads(m, x, [(1, 4)]), "head in 0..3"),
    (lambda m, x: ablate_heads(m, x, [(1, 0)], how="max"), "how must be one of"),
    (lambda m, x: patch_activations(m, x, x, "blocks.3.z"), "Can't patch"),
    (lambda m, x: patch_activations(m, x, x, "blocks.1.attn.weights"), "Can't patch"),
    (lambda m, x: patch_activations(m, x, x, "embed.z0", [17]), "token indices in 0..16"),
    (lambda m, x: patch_activations(m, x, torch.cat([x, x]), "embed.z0"), "one per image"),
    (lambda m, x: head_importance(m, x, target=10), "class index in 0..9"),
])
def test_bad_arguments_are_told_in_one_sentence(tiny_model, call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model, _images(tiny_model))


def test_every_documented_stage_can_be_patched(tiny_model):
    x = _images(tiny_model)
    for stage in PATCHABLE_STAGES:
        out = patch_activations(tiny_model, x, x.flip(0), stage.replace(".l.", ".2."), positions=[0])
        assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def shipped():
    """The shipped checkpoint and 12 Fashion-MNIST test images (the Debian dataset-fashion-mnist package)."""
    from survey_data import SHIPPED

    from explorer.data import DataError
    from explorer.survey.images import FashionImages
    from explorer.weights import load_checkpoint

    if not SHIPPED.with_suffix(".safetensors").is_file():
        pytest.skip("no shipped checkpoint")
    bundle = load_checkpoint(SHIPPED)
    try:
        images = FashionImages(bundle)
    except DataError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    inputs, labels, _ = images.load(list(range(12)))
    return bundle.model.eval(), torch.stack(list(inputs.values())), [labels[i] for i in range(12)]


def test_on_the_shipped_model_the_head_the_estimate_ranks_first_matters_more_than_the_median_head(shipped):
    """Attribution patching (one forward, one backward) names a head; switching it off for real (ablate_heads) lowers
    the class probability more than switching off the median head does, on every correctly classified image."""
    model, x, labels = shipped
    L, h = model.config.depth, model.config.heads
    result = head_importance(model, x)
    checked = 0
    for i, label in enumerate(labels):
        if result.target[i] != label:
            continue
        p = float(result.probability[i])
        drops = np.array([[p - float(ablate_heads(model, x[i:i + 1], [(layer, j)]).softmax(-1)[0, label])
                           for j in range(h)] for layer in range(1, L + 1)])  # (L, h)
        layer, j = np.unravel_index(result.estimate[i].argmax(), (L, h))
        assert drops[layer, j] > np.median(drops) and drops[layer, j] > 0, i
        assert np.allclose(drops, result.exact[i], atol=TOL, rtol=0)
        checked += 1
    assert checked >= 8
    assert np.median(result.spearman) > 0.6 and np.isfinite(result.estimate).all()  # the two agree on a trained model


def test_the_benchmark_runs_in_its_quick_form():
    """benchmarks/interventions.py on the tiny preset: every row timed, its ratio the median over the forward's."""
    from benchmarks.interventions import TARGETS, bench, table

    rows = bench("ViT-Tiny-Test/8", repeats=2, slow_repeats=1, warmup=0)
    assert [r["id"] for r in rows] == ["forward", "ablate_heads.zero", "ablate_heads.mean", "patch_activations",
                                       "head_importance"]
    assert rows[0]["forwards"] == 1.0 and all(r["seconds"] > 0 and r["forwards"] > 0 for r in rows)
    assert {r["id"] for r in rows if r["target_forwards"] is not None} == set(TARGETS)
    assert "| head_importance: all 8 heads" in table(rows, markdown=True)


def test_interventions_follow_the_family_block_layer_scale_registers_and_mean_pooling(tiny_model):
    """A DeiT III / DINOv2-like model (layer scale with gammas far from 1, four registers, a LayerNorm before the
    blocks, mean pooling with fc_norm): nothing switched off is the model's own forward; a head off equals the
    hand-zeroed copy; everything patched is the source's forward; head_importance equals one ablation at a time."""
    from explorer.model import ViT

    config = tiny_model.config.replace(layer_scale=True, register_tokens=4, position_covers="class_and_patches",
                                       pre_norm=True, pooling="mean", fc_norm=True)
    torch.manual_seed(3)
    model = ViT(config).eval()
    with torch.no_grad():
        model.head.weight.normal_(std=0.5)  # the head starts at zero: every logit 0 would hide any difference
        for block in model.blocks:
            block.gamma_1.uniform_(0.2, 2.0)
            block.gamma_2.uniform_(0.2, 2.0)
    x, source = _images(model, n=2).chunk(2)
    with torch.no_grad():
        own, theirs = model(x), model(source)
        assert torch.allclose(ablate_heads(model, x, []), own, atol=TOL, rtol=0)
        heads = [(1, 2), (2, 0)]
        assert torch.allclose(ablate_heads(model, x, heads), _zeroed(model, heads)(x), atol=TOL, rtol=0)
        assert not torch.allclose(_zeroed(model, heads)(x), own, atol=1e-3)  # the change is visible
        for stage in ("blocks.1.attn.output", "blocks.2.mlp.output", "blocks.1.z"):
            everything = patch_activations(model, x, source, stage)
            if stage == "blocks.1.z":  # z_1 carries everything after it
                assert torch.allclose(everything, theirs, atol=TOL, rtol=0), stage
            assert torch.allclose(patch_activations(model, x, source, stage, []), own, atol=TOL, rtol=0), stage
    result = head_importance(model, x, target=3)
    p = own.softmax(-1)[0, 3]
    for layer, j in [(1, 0), (2, 3)]:
        ablated = ablate_heads(model, x, [(layer, j)]).softmax(-1)[0, 3]
        assert abs(result.exact[layer - 1, j] - float(p - ablated)) < TOL, (layer, j)
