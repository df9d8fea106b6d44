"""High-norm tokens (Darcet et al. 2023, "Vision Transformers Need Registers") as pure functions of a Trace (and of a
survey's batch): the norm of every token of the residual stream layer by layer, the patch tokens whose norm stands far
above the others', and where the class token's attention goes, layer by layer: to the registers, to those outliers, to
the other patches.

Darcet et al. found that large, long-trained ViTs (DINOv2, OpenCLIP, DeiT III) turn a few patch tokens of
low-information background into stores of global information: from the middle layers on their norm is several times
the typical patch token's (a second mode of the norms' histogram, above 150 for DINOv2 ViT-g), their local information
is lost, and the class token's attention concentrates on them. Given k register tokens, the model moves that role to
the registers, and the outliers disappear.

    norms      (L + 1, T)  ||z_l|| of every token, l = 0..L (z_0: Eq. 1's output)
    outliers   (L + 1, N)  patch i is an outlier of z_l
    cutoff     (L + 1,)    the norm above which a patch token of z_l is an outlier
    attention  (L,) each   layer l's attention from the query to: the registers, the outlier patches of z_{l-1} (the
                           stream that layer reads, so the tokens its keys come from), the other patches, and the
                           prefix tokens that are not registers (the class token itself, DeiT's distillation token);
                           the mean over heads; the four sum to 1 in every layer.

Tokens are cut by the model's TokenLayout (explorer.tokens) alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .tokens import CLASS, TokenLayout
from .trace import Trace

MAD_TO_SD = 1.4826  # sd = 1.4826 MAD for normally distributed values
ROBUST_SDS = 4.0  # an outlier lies more than 4 robust standard deviations above the median patch norm ...
MEDIAN_MULTIPLE = 2.0  # ... and at least twice as high as it
MASSES = ("registers", "outliers", "patches", "prefix")  # where the query's attention goes; each row sums to 1
OUTLIER_RULE = (f"norm above max(median + {ROBUST_SDS:g} × {MAD_TO_SD} × MAD, {MEDIAN_MULTIPLE:g} × median) of the "
                f"layer's patch norms")


@dataclass(frozen=True)
class HighNormTokens:
    """What high_norm_tokens finds in one traced image."""

    layout: TokenLayout
    norms: np.ndarray  # (L + 1, T) ||z_l|| of every token
    outliers: np.ndarray  # (L + 1, N) bool: patch i is an outlier of z_l
    cutoff: np.ndarray  # (L + 1,) the norm above which a patch token of z_l is an outlier
    rule: str  # the rule that set `cutoff`, in words
    attention: dict[str, np.ndarray]  # MASSES -> (L,): layer l's attention mass from the query to each kind of token
    query: str  # whose attention: "the class token" or "the mean of the patch tokens' rows"

    def outlier_patches(self, layer: int) -> list[int]:
        """The patch indices i (0-based) that are outliers of z_l, l = 0..L."""
        return np.flatnonzero(self.outliers[layer]).tolist()

    def first_layer(self) -> int | None:
        """The first l whose z_l has an outlier patch, or None."""
        rows = np.flatnonzero(self.outliers.any(axis=1))
        return int(rows[0]) if rows.size else None


def outlier_cutoff(patch_norms: np.ndarray) -> np.ndarray:
    """The outlier rule, per layer: (..., N) patch norms -> (...,) cut-off.

    max(median + 4 * 1.4826 * MAD, 2 * median). The median and the MAD (median absolute deviation, times 1.4826 a
    standard deviation for normal values) are those of the layer's own patch tokens, so a few outliers cannot move
    them (unlike the mean and sd, which the outliers themselves inflate), and the rule needs no model-specific constant,
    where Darcet et al. read an absolute cut-off (150 for DINOv2 ViT-g) off their bimodal histogram. Their artifacts
    form a second mode several times the typical norm; the floor of twice the median keeps a token in the
    upper tail of a tight unimodal layer (z_0 of a flat image: MAD near 0) from being called one.
    """
    median = np.median(patch_norms, axis=-1)
    mad = np.median(np.abs(patch_norms - median[..., None]), axis=-1)
    return np.maximum(median + ROBUST_SDS * MAD_TO_SD * mad, MEDIAN_MULTIPLE * median)


def high_norm_tokens(trace: Trace, threshold: float | None = None) -> HighNormTokens:
    """Darcet et al. 2023: token norms per layer, the outlier patches per layer (outlier_cutoff's rule, or every patch
    whose norm exceeds `threshold`, an absolute norm as Darcet et al. use), and per layer where the class token's
    attention goes (a model without a class token: the mean of the patch tokens' rows). Reads embed.z0, blocks.*.z and
    one attention row per layer (every row for the mean)."""
    layout = trace.layout
    stream = [trace["embed.z0"]] + [trace[f"blocks.{l}.z"] for l in range(1, trace.depth + 1)]  # L + 1 x (T, D)
    norms = torch.stack([torch.linalg.vector_norm(z.double(), dim=-1) for z in stream]).numpy()  # (L + 1, T)
    patch_norms = layout.patches(norms, -1)  # (L + 1, N)
    if threshold is None:
        cutoff = outlier_cutoff(patch_norms)  # (L + 1,)
        rule = OUTLIER_RULE
    else:
        if not threshold > 0:
            raise ValueError(f"The norm threshold must be a positive number, not {threshold}.")
        cutoff = np.full(len(stream), float(threshold))
        rule = f"norm above {threshold:g}"
    outliers = patch_norms > cutoff[:, None]  # (L + 1, N)
    attention, query = class_token_attention(trace, outliers)
    return HighNormTokens(layout, norms, outliers, cutoff, rule, attention, query)


def class_token_attention(trace: Trace, outliers: np.ndarray) -> tuple[dict[str, np.ndarray], str]:
    """Per layer l = 1..L, the mean over heads of the query's attention row summed over each kind of token (MASSES,
    each (L,)), with `outliers` (L + 1, N) the outlier patches of z_0..z_L (layer l's keys come from z_{l-1}); and
    the query in words. The query is the class token (one row of every layer, Trace.attention_rows), else the mean of
    the patch tokens' rows (every row of every layer, one layer at a time)."""
    layout = trace.layout
    query = layout.index(CLASS)
    if query is not None:
        rows = trace.attention_rows(query).double().mean(dim=1)  # (L, h, T) -> (L, T)
    else:
        rows = torch.stack([layout.patches(trace.attention(l).double(), -2).mean(dim=(0, 1))  # (h, N, T) -> (T,)
                            for l in range(1, trace.depth + 1)])  # (L, T)
    masses = attention_shares(rows, torch.from_numpy(outliers), layout)
    return {name: mass.numpy() for name, mass in masses.items()}, query_words(layout)


def query_words(layout: TokenLayout) -> str:
    """Whose attention class_token_attention reads, in words."""
    return "the class token" if layout.index(CLASS) is not None else "the mean of the patch tokens' rows"


def attention_shares(rows: torch.Tensor, outliers: torch.Tensor, layout: TokenLayout) -> dict[str, torch.Tensor]:
    """The query's attention row of each layer (rows (..., L, T), the mean over heads) summed over each kind of token:
    MASSES, each (..., L). `outliers` (..., L + 1, N): the outlier patches of z_0..z_L; layer l reads z_{l-1}'s."""
    registers = [t for t, label in enumerate(layout.prefix_labels) if label.startswith("REG")]
    others = [t for t in range(layout.num_prefix) if t not in registers]
    prefix = layout.prefix(rows, -1)  # (..., L, prefix)
    patches = layout.patches(rows, -1)  # (..., L, N)
    marked = outliers[..., :-1, :].to(rows.device)  # the outliers of z_{l-1}, what layer l reads: (..., L, N)
    return {
        "registers": prefix[..., registers].sum(dim=-1),  # (..., L, prefix) -> (..., L); 0 without registers
        "outliers": (patches * marked).sum(dim=-1),  # (..., L, N) -> (..., L)
        "patches": (patches * ~marked).sum(dim=-1),
        "prefix": prefix[..., others].sum(dim=-1),
    }


def survey_shares(norms: torch.Tensor, head_means: list[torch.Tensor], layout: TokenLayout) -> dict[str, np.ndarray]:
    """For a survey's batch (explorer.survey): from ||z_0..z_L|| (B, L + 1, T) and each layer's head mean of A
    (L x (B, T, T)), each image's outlier count per layer, "outlier_count" (B, L + 1), by outlier_cutoff's rule, and
    the query's attention shares per layer (MASSES, each (B, L)), as high_norm_tokens gives them for one image."""
    norms = norms.double().cpu()  # (B, L + 1, T)
    patch_norms = layout.patches(norms, -1).numpy()  # (B, L + 1, N)
    outliers = torch.from_numpy(patch_norms > outlier_cutoff(patch_norms)[..., None])  # (B, L + 1, N)
    query = layout.index(CLASS)
    if query is not None:
        rows = [layout.token(mean, query, -2) for mean in head_means]  # L x (B, T)
    else:
        rows = [layout.patches(mean, -2).mean(dim=-2) for mean in head_means]  # (B, N, T) -> (B, T)
    shares = attention_shares(torch.stack(rows, dim=-2).double().cpu(), outliers, layout)  # (B, L, T) -> (B, L) each
    return {"outlier_count": outliers.sum(dim=-1).numpy(), **{name: v.numpy() for name, v in shares.items()}}
