"""explorer.analysis against hand-computed cases and properties that must hold."""
import math

import numpy as np
import pytest
import torch

import explorer
from explorer import analysis, common
from explorer.config import ViTConfig
from explorer.trace import Trace

# A 2x2 grid of 16-pixel patches: N = 4, T = 5.
SMALL = ViTConfig(image_size=32, patch_size=16, channels=3, hidden_dim=8, depth=3, heads=2, mlp_dim=16, num_classes=4)


def synthetic_trace(config: ViTConfig, attention: torch.Tensor) -> Trace:
    """A Trace holding only the given attention weights (L, h, T, T)."""
    stages = {f"blocks.{l + 1}.attn.weights": attention[l] for l in range(config.depth)}
    return Trace(config, stages)


def uniform(config: ViTConfig) -> torch.Tensor:
    T = config.seq_len
    return torch.full((config.depth, config.heads, T, T), 1.0 / T)


def test_rollout_of_uniform_attention_matches_closed_form():
    # Â = (U + I) / 2 with U = 1/T everywhere; U @ U = U, so Â^L = (1 - 2^-L) U + 2^-L I.
    L, T = SMALL.depth, SMALL.seq_len
    rollout = analysis.attention_rollout(uniform(SMALL))
    expected = (1 - 2.0 ** -L) * torch.full((T, T), 1.0 / T) + 2.0 ** -L * torch.eye(T)
    torch.testing.assert_close(rollout, expected)
    # The class token attends equally to all patches: the map is flat at its maximum.
    np.testing.assert_allclose(analysis.rollout_map(synthetic_trace(SMALL, uniform(SMALL))), np.ones((2, 2)), rtol=1e-6)


def test_rollout_of_identity_attention_is_identity():
    T = SMALL.seq_len
    identity = torch.eye(T).expand(SMALL.depth, SMALL.heads, T, T)
    torch.testing.assert_close(analysis.attention_rollout(identity), torch.eye(T))


def test_rollout_rows_sum_to_one_and_fusions_differ():
    torch.manual_seed(0)
    A = torch.rand(SMALL.depth, SMALL.heads, SMALL.seq_len, SMALL.seq_len).softmax(-1)
    for fusion in common.HEAD_FUSIONS:
        for discard in (0.0, 0.5, 0.9):
            R = analysis.attention_rollout(A, fusion, discard)
            torch.testing.assert_close(R.sum(-1), torch.ones(SMALL.seq_len))
    assert not torch.allclose(analysis.attention_rollout(A, "max"), analysis.attention_rollout(A, "min"))
    with pytest.raises(ValueError):
        analysis.attention_rollout(A, "median")
    with pytest.raises(ValueError):
        analysis.attention_rollout(A, discard_ratio=1.0)


def test_rollout_one_layer_by_hand_with_max_fusion_and_discard():
    # One layer, two heads, T = 3 (class token + 2 patches).
    head_1 = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    head_2 = torch.tensor([[0.2, 0.2, 0.6], [0.4, 0.4, 0.2], [0.3, 0.6, 0.1]])
    A = torch.stack([head_1, head_2])[None]  # (1, 2, 3, 3)
    fused = torch.tensor([[0.6, 0.3, 0.6], [0.4, 0.5, 0.3], [0.3, 0.6, 0.8]])  # element-wise max
    # discard 0.5 of the 4 patch-to-patch weights: the two smallest, 0.3 (1->2) and 0.5 (1->1); class token kept.
    kept = torch.tensor([[0.6, 0.3, 0.6], [0.4, 0.0, 0.0], [0.3, 0.6, 0.8]])
    augmented = kept + torch.eye(3)
    expected = augmented / augmented.sum(-1, keepdim=True)
    torch.testing.assert_close(analysis.attention_rollout(A, "max", 0.5), expected)
    augmented = fused + torch.eye(3)
    torch.testing.assert_close(analysis.attention_rollout(A, "max"), augmented / augmented.sum(-1, keepdim=True))


def test_query_attention_reads_the_query_row_over_patches():
    T = SMALL.seq_len
    A = torch.zeros(SMALL.depth, SMALL.heads, T, T)
    A[..., :, 0] = 1.0  # every token attends to the class token ...
    A[1, 0, 0] = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0])  # ... except: layer 2, head 1, class token -> patch 3 (1, 1)
    A[1, 1, 3] = torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0])  # layer 2, head 2, patch 2 (token 3) -> patches 0 and 1
    trace = synthetic_trace(SMALL, A)
    maps = analysis.query_attention(trace, layer=2, query=0)
    assert maps.shape == (2, 2, 2)
    np.testing.assert_array_equal(maps[0], [[0, 0], [0, 1]])
    maps = analysis.query_attention(trace, layer=2, query=analysis.patch_index(1, 0, (2, 2)) + 1)
    np.testing.assert_array_equal(maps[1], [[0.5, 0.5], [0, 0]])
    with pytest.raises(ValueError):
        analysis.query_attention(trace, layer=1, query=T)


def test_patch_index_and_position_are_inverse_row_major():
    grid = (3, 5)
    for i in range(15):
        assert analysis.patch_index(*analysis.patch_position(i, grid), grid) == i
    assert analysis.patch_position(7, grid) == (1, 2)
    with pytest.raises(ValueError):
        analysis.patch_position(15, grid)
    with pytest.raises(ValueError):
        analysis.patch_index(3, 0, grid)


def test_mean_attention_distance_by_hand():
    # 2x2 grid, P = 16: from any patch the distances are 0, 16, 16 and 16·√2.
    mean_distance = (0 + 16 + 16 + 16 * math.sqrt(2)) / 4
    np.testing.assert_allclose(analysis.mean_attention_distance(synthetic_trace(SMALL, uniform(SMALL))),
                               np.full((SMALL.depth, SMALL.heads), mean_distance), rtol=1e-6)
    # Without renormalising, the 1/5 given to the class token counts for nothing: 4/5 of the above.
    np.testing.assert_allclose(
        analysis.mean_attention_distance(synthetic_trace(SMALL, uniform(SMALL)), renormalise=False),
        np.full((SMALL.depth, SMALL.heads), mean_distance * 4 / 5), rtol=1e-6)
    # Every patch attends only to itself: distance 0. Only to the diagonally opposite patch: 16·√2.
    T = SMALL.seq_len
    A = torch.zeros(SMALL.depth, SMALL.heads, T, T)
    A[:, 0] = torch.eye(T)
    opposite = torch.zeros(T, T)
    opposite[0, 0] = 1
    for i, j in [(0, 3), (1, 2), (2, 1), (3, 0)]:
        opposite[i + 1, j + 1] = 1
    A[:, 1] = opposite
    distance = analysis.mean_attention_distance(synthetic_trace(SMALL, A))
    np.testing.assert_allclose(distance[:, 0], 0, atol=1e-9)
    np.testing.assert_allclose(distance[:, 1], 16 * math.sqrt(2), rtol=1e-6)


def test_position_similarity_is_cosine_similarity_of_patch_rows():
    torch.manual_seed(1)
    E_pos = torch.randn(SMALL.seq_len, SMALL.hidden_dim)
    similarity = analysis.position_similarity(E_pos, SMALL.grid)
    assert similarity.shape == (2, 2, 2, 2)
    for i in range(4):
        for j in range(4):
            r, c = divmod(i, 2)
            rr, cc = divmod(j, 2)
            expected = torch.nn.functional.cosine_similarity(E_pos[i + 1], E_pos[j + 1], dim=0)
            assert similarity[r, c, rr, cc] == pytest.approx(float(expected), abs=1e-6)
    np.testing.assert_allclose(np.einsum("ijij->ij", similarity), 1.0, rtol=1e-6)  # each patch with itself
    # Orthogonal embeddings: each tile is 1 at its own patch and 0 elsewhere.
    E_orthogonal = torch.cat([torch.randn(1, 8), torch.eye(8)[:4]])
    np.testing.assert_allclose(analysis.position_similarity(E_orthogonal, (2, 2)).reshape(4, 4), np.eye(4), atol=1e-7)


def test_filter_components_recover_a_rank_one_filter_bank():
    P, C, D = 4, 3, 32
    torch.manual_seed(2)
    v = torch.randn(P, P, C)
    scales = torch.randn(D)
    weight = (scales[:, None, None, None] * v).permute(0, 3, 1, 2)  # (D, P, P, C) -> (D, C, P, P)
    components, explained = analysis.embedding_filter_components(weight, n=5)
    assert components.shape == (5, P, P, C) and explained.shape == (5,)
    assert explained[0] == pytest.approx(1.0, abs=1e-6)
    assert components.min() >= 0 and components.max() <= 1
    def minmax(x):
        return (x - x.min()) / (x.max() - x.min())
    first = torch.from_numpy(components[0]).double()
    assert torch.allclose(first, minmax(v.double()), atol=1e-5) or torch.allclose(first, minmax(-v.double()), atol=1e-5)


def test_logit_lens_last_row_is_the_prediction_and_first_is_z0():
    torch.manual_seed(3)
    model = explorer.ViT(explorer.CONFIGS["ViT-Tiny-Test/8"]).eval()
    torch.nn.init.normal_(model.head.weight, std=0.5)
    trace = explorer.trace(model, torch.randn(1, 3, 32, 32))
    lens = analysis.logit_lens(trace, model, k=3)
    L = model.config.depth
    assert lens.probabilities.shape == (L + 1, 10) and lens.top_indices.shape == (L + 1, 3)
    np.testing.assert_allclose(lens.probabilities[-1], trace.probabilities.numpy(), rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        expected_0 = model.head(model.norm(trace["embed.z0"][0])).softmax(-1)
    np.testing.assert_allclose(lens.probabilities[0], expected_0.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(lens.probabilities.sum(-1), 1.0, rtol=1e-5)
    assert (np.diff(lens.top_probabilities, axis=1) <= 0).all()


def test_token_norms_match_the_trace():
    torch.manual_seed(4)
    model = explorer.ViT(explorer.CONFIGS["ViT-Tiny-Test/8"]).eval()
    trace = explorer.trace(model, torch.randn(1, 3, 32, 32))
    norms = analysis.token_norms(trace)
    L, T = model.config.depth, model.config.seq_len
    assert norms["z"].shape == (L + 1, T) and norms["z_mid"].shape == (L, T)
    assert norms["z"][0, 5] == pytest.approx(float(trace["embed.z0"][5].norm()), rel=1e-5)
    assert norms["z"][L, 0] == pytest.approx(float(trace["head.class_token"].norm()), rel=1e-5)
    assert norms["z_mid"][0, 2] == pytest.approx(float(trace["blocks.1.z_mid"][2].norm()), rel=1e-5)
