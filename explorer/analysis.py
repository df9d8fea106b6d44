"""The paper's analyses as pure functions of a Trace (or of a model's weights).

- attention rollout (Appendix D.8, Fig. 6; Abnar & Zuidema 2020)
- the attention of one query token (the class token or a patch), per head
- mean attention distance in pixels (Appendix D.7, Fig. 7 right)
- position-embedding cosine similarity (Fig. 7 centre)
- principal components of the patch-embedding filters (Fig. 7 left)
- the "logit lens": the class token after each layer through the final LN and head
- token norms of the residual stream
- interventions (explorer.interventions, re-exported here): heads switched off (ablate_heads), what each head is
  worth for a class (head_importance), activations patched in from another image (patch_activations)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .common import HEAD_FUSIONS, ranking
from .interventions import ablate_heads, head_importance, patch_activations  # noqa: F401 (the analyses' API)
from .trace import Trace



def patch_index(row: int, col: int, grid: tuple[int, int]) -> int:
    """Patch (row, col) -> its index i in the sequence x_p^1..x_p^N (0-based, row-major). Its token is i + 1."""
    rows, cols = grid
    if not (0 <= row < rows and 0 <= col < cols):
        raise ValueError(f"Patch ({row}, {col}) is outside the {rows}x{cols} grid.")
    return row * cols + col


def patch_position(index: int, grid: tuple[int, int]) -> tuple[int, int]:
    """Patch index i -> (row, col)."""
    rows, cols = grid
    if not 0 <= index < rows * cols:
        raise ValueError(f"Patch index {index} is outside 0..{rows * cols - 1}.")
    return divmod(index, cols)


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(..., h, T, T) -> (..., T, T) by the mean, max or min over heads."""
    if head_fusion == "mean":
        return attention.mean(dim=-3)
    if head_fusion == "max":
        return attention.amax(dim=-3)
    if head_fusion == "min":
        return attention.amin(dim=-3)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, not {head_fusion!r}.")


def attention_rollout(attentions: torch.Tensor, head_fusion: str = "mean", discard_ratio: float = 0.0) -> torch.Tensor:
    """Attention rollout R = Â_L ··· Â_1 with Â_l = rownorm(fuse(A_l) + I). (L, h, T, T) -> (T, T).

    `discard_ratio` zeroes that fraction of the smallest fused weights of each layer before adding I; weights to or
    from the class token are never discarded.
    """
    L, h, T, _ = attentions.shape
    identity = torch.eye(T, dtype=attentions.dtype)
    rollout = identity.clone()  # (T, T)
    for l in range(L):
        fused = fuse_heads(attentions[l].to(identity.dtype), head_fusion)  # (h, T, T) -> (T, T)
        fused = discard_smallest(fused, discard_ratio)  # (T, T)
        augmented = fused + identity  # the residual connection
        augmented = augmented / augmented.sum(dim=-1, keepdim=True)  # row-normalise
        rollout = augmented @ rollout  # (T, T)
    return rollout


def fused_attentions(trace: Trace, head_fusion: str = "mean") -> torch.Tensor:
    """fuse(A_l) for every layer l = 1..L: (L, h, T, T) -> (L, T, T). Rollout's first step, worth keeping when the
    discard ratio changes (fusing one head by any rule leaves it unchanged). One layer's A at a time."""
    return torch.stack([fuse_heads(trace.attention(l), head_fusion) for l in range(1, trace.depth + 1)])  # (L, T, T)


def rollout_map(trace: Trace, head_fusion: str = "mean", discard_ratio: float = 0.0,
                fused: torch.Tensor | None = None) -> np.ndarray:
    """Fig. 6: the class token's row of the rollout over the patches, as (rows, cols), scaled to a maximum of 1.
    `fused` (L, T, T), from fused_attentions(trace, head_fusion), saves fusing the heads again."""
    if fused is None:
        fused = fused_attentions(trace, head_fusion)  # (L, T, T)
    layers = [discard_smallest(layer, discard_ratio) for layer in fused]  # L x (T, T)
    return class_token_rollout(layers).reshape(trace.grid).numpy()  # (N,) -> (rows, cols)


def query_attention(trace: Trace, layer: int, query: int = 0) -> np.ndarray:
    """Attention of token `query` (0 = class token, i + 1 = patch i) to every patch, per head: (h, rows, cols)."""
    attention = trace.attention(layer)  # (h, T, T)
    T = attention.shape[-1]
    if not 0 <= query < T:
        raise ValueError(f"Query token {query} is outside 0..{T - 1}.")
    return attention[:, query, 1:].reshape(-1, *trace.grid).numpy()  # (h, N) -> (h, rows, cols)


def last_layer_attention(trace: Trace) -> np.ndarray:
    """The raw attention of the class token to each patch in the last layer L, mean over heads: (rows, cols)."""
    attention = trace.attention(trace.depth)  # (h, T, T)
    return attention[:, 0, 1:].mean(dim=0).reshape(trace.grid).numpy()  # (h, N) -> (rows, cols)


def query_attention_layers(trace: Trace, query: int = 0) -> np.ndarray:
    """query_attention for every layer l = 1..L: (L, h, rows, cols). Only the query's row of each A is computed."""
    rows = trace.attention_rows(query)  # (L, h, T)
    return rows[:, :, 1:].reshape(*rows.shape[:2], *trace.grid).numpy()  # (L, h, N) -> (L, h, rows, cols)


def attention_matrix(trace: Trace, layer: int, head: int | None = None) -> np.ndarray:
    """A of layer l (1-based) for head `head` (1-based), or the mean over heads when None: (T, T)."""
    attention = trace.attention(layer)  # (h, T, T)
    if head is None:
        return attention.mean(dim=0).numpy()  # (T, T)
    if not 1 <= head <= attention.shape[0]:
        raise ValueError(f"Head {head} is outside 1..{attention.shape[0]}.")
    return attention[head - 1].numpy()  # (T, T)


def patch_distances(grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """P · ||g_i - g_j||: pixel distance between the centres of patches i and j, (N, N)."""
    rows, cols = grid
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    positions = torch.stack([r.flatten(), c.flatten()], dim=1).double()  # (N, 2)
    return torch.cdist(positions, positions) * patch_size  # (N, N)


def mean_attention_distance(trace: Trace, renormalise: bool = True) -> np.ndarray:
    """Appendix D.7: per layer and head, (1/N) Σ_i Σ_j A[i, j] · P · ||g_i − g_j||, in pixels. -> (L, h).

    The class token is dropped as query and key. With `renormalise`, each patch's remaining weights are rescaled to sum
    to 1 (a distribution over patches); without, the weight given to the class token simply counts for nothing.
    """
    distances = patch_distances(trace.grid, trace.config.patch_size)  # (N, N)
    per_layer = [attention_distance(trace.attention(l).double(), distances, renormalise)
                 for l in range(1, trace.depth + 1)]
    return torch.stack(per_layer).float().numpy()  # one layer's A at a time: L x (h,) -> (L, h)


def position_similarity(position_embedding: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """Fig. 7 centre: cosine similarity between the position embeddings of all patch pairs, (rows, cols, rows, cols)."""
    E = position_embedding[1:].double()  # drop the class token's row: (T, D) -> (N, D)
    E = E / E.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    similarity = E @ E.T  # (N, N)
    return similarity.reshape(*grid, *grid).float().numpy()


def embedding_filter_components(projection_weight: torch.Tensor, n: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 7 left: the first n principal components of the D patch-embedding filters, each as a P x P x C image.

    Returns (components (n, P, P, C) min-max scaled to [0, 1], explained variance ratio (n,)).
    """
    D, C, P, _ = projection_weight.shape
    filters = projection_weight.detach().double().permute(0, 2, 3, 1).reshape(D, P * P * C)  # (D, C, P, P) -> (D, P²C)
    centred = filters - filters.mean(dim=0, keepdim=True)
    _, singular_values, components = torch.linalg.svd(centred, full_matrices=False)  # components: (min(D, P²C), P²C)
    variance = singular_values ** 2
    explained = (variance / variance.sum().clamp_min(1e-30))[:n]
    components = components[:n].reshape(-1, P, P, C)  # (n, P, P, C)
    low = components.amin(dim=(1, 2, 3), keepdim=True)
    high = components.amax(dim=(1, 2, 3), keepdim=True)
    scaled = (components - low) / (high - low).clamp_min(1e-12)
    return scaled.float().numpy(), explained.float().numpy()


@dataclass
class LogitLens:
    probabilities: np.ndarray  # (L + 1, K): row l = softmax(head(LN(z_l^0))), row 0 from z_0
    top_indices: np.ndarray  # (L + 1, k)
    top_probabilities: np.ndarray  # (L + 1, k)


def logit_lens(trace: Trace, model, k: int = 5) -> LogitLens:
    """The class token after every layer (z_0^0 .. z_L^0) through the final LayerNorm and head (Eq. 4)."""
    class_tokens = trace.residual_stream()[:, 0]  # (L + 1, T, D) -> (L + 1, D)
    parameter = next(model.parameters())
    with torch.no_grad():
        logits = model.head_of(class_tokens.to(parameter.device, parameter.dtype)).float().cpu()  # (L + 1, K)
    probabilities = logits.softmax(dim=-1).numpy()  # (L + 1, K)
    top = np.stack([ranking(row, k) for row in probabilities])  # (L + 1, k)
    return LogitLens(probabilities, top, np.take_along_axis(probabilities, top, axis=-1))


def token_norms(trace: Trace) -> dict[str, np.ndarray]:
    """L2 norms of every token in the residual stream: z_0..z_L (L + 1, T) and z'_1..z'_L (L, T)."""
    return {
        "z": trace.residual_stream().norm(dim=-1).numpy(),
        "z_mid": trace.residual_mid().norm(dim=-1).numpy(),
    }


def fused_attentions_and_distance(trace: Trace, head_fusion: str = "mean",
                                  renormalise: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """fused_attentions(trace, head_fusion) (L, T, T) and mean_attention_distance(trace, renormalise) (L, h), the same
    numbers, from one pass over the layers: a trace computes each A_l from q and k when asked, so this computes it once
    where the two functions would compute it twice."""
    distances = patch_distances(trace.grid, trace.config.patch_size)  # (N, N)
    fused, distance = [], []
    for l in range(1, trace.depth + 1):
        attention = trace.attention(l)  # (h, T, T)
        fused.append(fuse_heads(attention, head_fusion))  # (T, T)
        distance.append(attention_distance(attention.double(), distances, renormalise))  # (h,)
    return torch.stack(fused), torch.stack(distance).float().numpy()  # (L, T, T), (L, h)


# ---------------------------------------------------------------------------------------------------------------
# One layer or one rollout for any number of images at once: the app's single trace and the survey's batches

def attention_distance(attention: torch.Tensor, distances: torch.Tensor, renormalise: bool = True) -> torch.Tensor:
    """mean_attention_distance of one layer, for one image or a batch: A_l (..., h, T, T) and the patch distances
    P·||g_i − g_j|| (N, N) -> (..., h), float64. One matrix product in A's dtype (one read of A) gives, for every
    query i, Σ_j A[i, j] P ||g_i − g_j|| and Σ_j A[i, j] over the patches; `renormalise` divides the first by the
    second."""
    patches = attention[..., 1:, 1:]  # the class token dropped as query and key: (..., h, N, N)
    distances = distances.to(patches.device, patches.dtype)  # (N, N)
    weights = torch.stack([distances, torch.ones_like(distances)], dim=-1)  # (N, N, 2)
    sums = torch.einsum("...ij,ijk->...ik", patches, weights)  # (..., h, N, 2)
    per_query = sums[..., 0].double()  # (..., h, N)
    if renormalise:
        per_query = per_query / sums[..., 1].double().clamp_min(1e-12)  # each query's weights summing to 1
    return per_query.mean(dim=-1)  # (1/N) Σ_i: (..., h)


def discard_smallest(fused: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """Rollout's discard step: zero that fraction of the smallest patch-to-patch weights of fuse(A_l), (T, T) ->
    (T, T); weights to or from the class token are never discarded."""
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), not {discard_ratio}.")
    T = fused.shape[-1]
    patches = fused[1:, 1:].flatten()  # patch-to-patch weights only: (N²,)
    count = int(patches.numel() * discard_ratio)
    if not count:
        return fused
    smallest = patches.topk(count, largest=False).indices
    patches = patches.clone()
    patches[smallest] = 0
    fused = fused.clone()
    fused[1:, 1:] = patches.view(T - 1, T - 1)
    return fused


def class_token_rollout(fused: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Fig. 6 for one image or a batch: the class token's row of R = Â_L ··· Â_1, Â_l = rownorm(Ā_l + I), over the
    patches and scaled to a maximum of 1. Ā_l = fuse(A_l) for l = 1..L, each (..., T, T) -> (..., N).

    Computed from the left, one row at a time (e_0ᵀ Â_L, then · Â_{L-1}, ...), without forming Â or R:
    r Â = u Ā + u with u_i = r_i / s_i, s_i = 1 + Σ_j Ā[i, j] the row sums of Ā + I."""
    row = torch.zeros_like(fused[-1][..., :1, :])  # (..., 1, T)
    row[..., 0, 0] = 1.0  # e_0: the class token
    for l in reversed(range(len(fused))):
        u = row / (fused[l].sum(dim=-1) + 1.0).unsqueeze(-2)  # (..., 1, T)
        row = u @ fused[l] + u  # (..., 1, T) @ (..., T, T) -> (..., 1, T)
    row = row[..., 0, 1:]  # class token -> patches: (..., N)
    return row / row.amax(dim=-1, keepdim=True).clamp_min(1e-12)
