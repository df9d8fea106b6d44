"""The patch features of one traced image, as a backbone's users look at them: their principal components as colours
over the patch grid (the DINOv2 paper's figure), one patch's cosine similarity to every patch, and how far the output
y moved when something changed (heads off, patches dropped): notebook functions of a Trace, no model.

    features(trace)                      (N, D)  the patch tokens after Eq. 4's LayerNorm (DINOv2's x_norm_patchtokens)
    patch_feature_pca(trace, k=3)        FeaturePCA: the first k components of the N patch features over the grid
    patch_similarity(trace, i)           (rows, cols)  cos(f_i, f_j) for every patch j
    output_change(y, y_changed)          (cosine similarity, relative distance) of two outputs y

The features are the trace's `head.tokens` (T, D), LN(z_L), cut by trace.layout: every token as the final LayerNorm
leaves it, which is what a backbone hands on to whatever reads its patches. Computed in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .trace import Trace

FEATURE_STAGES = ("head.tokens",)  # the stages these functions read


def features(trace: Trace) -> torch.Tensor:
    """The N patch features f_i = LN(z_L^i), float64: (T, D) -> (N, D)."""
    return trace.layout.patches(trace["head.tokens"].double(), 0)  # (T, D) -> (N, D)


@dataclass(frozen=True)
class FeaturePCA:
    """The first k principal components of the N patch features, each min-max scaled to [0, 1] over the patches."""

    components: np.ndarray  # (rows, cols, k) in [0, 1]; k = 3 reads as RGB
    explained: np.ndarray  # (k,) the fraction of the features' variance each component carries


def patch_feature_pca(trace: Trace, k: int = 3) -> FeaturePCA:
    """PCA of the N patch features (centred over the patches; an SVD in float64). Each component's sign is fixed so
    that its largest projection in magnitude is positive, then it is min-max scaled over the patches (a component
    that is constant, as beyond the features' rank, is 0 everywhere)."""
    f = features(trace)  # (N, D)
    centred = f - f.mean(dim=0, keepdim=True)  # (N, D)
    _, S, Vh = torch.linalg.svd(centred, full_matrices=False)  # S (r,), Vh (r, D), r = min(N, D)
    projections = centred @ Vh[:k].T  # (N, D) @ (D, k') -> (N, k'), k' = min(k, r)
    biggest = projections.gather(0, projections.abs().argmax(dim=0, keepdim=True))  # (1, k')
    projections = projections * torch.where(biggest < 0, -1.0, 1.0)  # (N, k')
    low, high = projections.min(dim=0).values, projections.max(dim=0).values  # (k',)
    span = high - low  # a component beyond the features' rank spans rounding errors only
    constant = span <= 1e-9 * S.max()  # (k',); all of them when every patch has the same features
    scaled = torch.where(constant, 0.0, (projections - low) / torch.where(constant, 1.0, span))  # (N, k')
    missing = k - scaled.shape[1]  # k > rank: those components are 0
    components = torch.cat([scaled, torch.zeros(f.shape[0], missing, dtype=torch.float64)], dim=1)  # (N, k)
    variance = S ** 2  # (r,)
    share = variance / variance.sum() if variance.sum() > 0 else variance  # (r,)
    explained = torch.where(constant, 0.0, share.narrow(0, 0, scaled.shape[1]))  # (k',)
    explained = torch.cat([explained, torch.zeros(missing, dtype=torch.float64)])  # (k,)
    return FeaturePCA(components.reshape(*trace.grid, k).numpy(), explained.numpy())  # (N, k) -> (rows, cols, k)


def patch_similarity(trace: Trace, i: int) -> np.ndarray:
    """cos(f_i, f_j) = f_i · f_j / (|f_i| |f_j|) of patch i (0-based, row-major) with every patch j: (rows, cols).
    A zero feature vector is similar to nothing (0)."""
    f = features(trace)  # (N, D)
    if not 0 <= int(i) < f.shape[0]:
        raise ValueError(f"Patch {i} is outside 0..{f.shape[0] - 1}.")
    norms = f.norm(dim=1)  # (N,)
    unit = f / norms.clamp(min=1e-300)[:, None]  # (N, D)
    similarity = unit @ unit[int(i)]  # (N, D) @ (D,) -> (N,)
    similarity = torch.where((norms > 0) & (norms[int(i)] > 0), similarity, 0.0)
    return similarity.reshape(trace.grid).numpy()  # (N,) -> (rows, cols)


def output_change(y, y_changed) -> tuple[float, float]:
    """How far the output moved: (cos(y, y'), |y' - y| / |y|), in float64."""
    y = torch.as_tensor(np.asarray(y), dtype=torch.float64).reshape(-1)  # (D,)
    y_changed = torch.as_tensor(np.asarray(y_changed), dtype=torch.float64).reshape(-1)  # (D,)
    norms = y.norm() * y_changed.norm()
    cosine = float(y @ y_changed / norms) if norms > 0 else 0.0
    relative = float((y_changed - y).norm() / y.norm()) if y.norm() > 0 else float("inf")
    return cosine, relative
