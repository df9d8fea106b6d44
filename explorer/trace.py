"""explorer.trace: run a ViT once and return every intermediate tensor under a stable dotted name.

Stage names and shapes (batch dimension removed; T = N + 1; layers l = 1..L as in the paper):

    input.pixels                 (C, H, W)     the preprocessed (normalised) model input x
    input.image                  (H, W, C)     the same image un-normalised to [0, 1], for display
    embed.patches                (N, P, P, C)  x_p^i: the input cut into patches, row-major over the grid
    embed.feature_maps           (D, H/P, W/P) the patch-embedding conv's output, one map per dimension
    embed.patch_embeddings       (N, D)        x_p^i E
    embed.class_token            (D,)          x_class
    embed.sequence               (T, D)        [x_class; x_p^1 E; ...; x_p^N E]
    embed.position_embedding     (T, D)        E_pos
    embed.z0                     (T, D)        z_0 (Eq. 1)
    blocks.l.ln_1                (T, D)        LN(z_{l-1})
    blocks.l.attn.weights        (h, T, T)     softmax(q k^T / sqrt(d)) per head; rows sum to 1
    blocks.l.attn.output         (T, D)        MSA(LN(z_{l-1}))
    blocks.l.z_mid               (T, D)        z'_l (Eq. 2)
    blocks.l.ln_2                (T, D)        LN(z'_l)
    blocks.l.mlp.output          (T, D)        MLP(LN(z'_l))
    blocks.l.z                   (T, D)        z_l (Eq. 3)
    head.class_token             (D,)          z_L^0
    head.y                       (D,)          y = LN(z_L^0) (Eq. 4)
    head.logits                  (K,)
    head.probabilities           (K,)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

from .config import ViTConfig
from .model import ViT

# Stages that are views of parameters: copied so that a trace never aliases a model's weights.
_PARAMETER_STAGES = ("embed.class_token", "embed.position_embedding")


@dataclass
class Trace:
    """The output and every intermediate of one forward pass, detached and on the CPU."""

    config: ViTConfig
    stages: dict[str, torch.Tensor]
    class_names: Sequence[str] | None = None
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self.stages[name]
        except KeyError:
            raise KeyError(f"No stage named {name!r}; see Trace.names().") from None

    def __contains__(self, name: str) -> bool:
        return name in self.stages

    def names(self) -> list[str]:
        return list(self.stages)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(t.shape) for name, t in self.stages.items()}

    @property
    def depth(self) -> int:
        return self.config.depth

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def logits(self) -> torch.Tensor:
        return self.stages["head.logits"]

    @property
    def probabilities(self) -> torch.Tensor:
        return self.stages["head.probabilities"]

    @property
    def image(self) -> torch.Tensor:
        return self.stages["input.image"]

    def attention(self, layer: int) -> torch.Tensor:
        """A_l for layer l (1-based): (h, T, T)."""
        return self[f"blocks.{layer}.attn.weights"]

    def attentions(self) -> torch.Tensor:
        """All attention weights: (L, h, T, T)."""
        return torch.stack([self.attention(l) for l in range(1, self.depth + 1)])

    def residual_stream(self) -> torch.Tensor:
        """z_0, z_1, ..., z_L: (L + 1, T, D)."""
        return torch.stack([self["embed.z0"]] + [self[f"blocks.{l}.z"] for l in range(1, self.depth + 1)])

    def residual_mid(self) -> torch.Tensor:
        """z'_1, ..., z'_L: (L, T, D)."""
        return torch.stack([self[f"blocks.{l}.z_mid"] for l in range(1, self.depth + 1)])

    def top_k(self, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable classes as (name, probability), by analysis.ranking (ties in class order)."""
        from .analysis import ranking  # analysis imports this module

        probabilities = self.probabilities.numpy()  # (K,)
        names = self.class_names or [str(i) for i in range(probabilities.size)]
        return [(names[i], float(probabilities[i])) for i in ranking(probabilities, k).tolist()]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.stages.values())


def trace(
    model: ViT,
    x: torch.Tensor,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    meta: dict | None = None,
) -> Trace:
    """Run `model` on a batch of one preprocessed image x (1, C, H, W) and return its Trace.

    `mean` and `std` (the normalisation the input went through) give `input.image` in [0, 1];
    without them the input is min-max scaled for display. Attention is always computed explicitly here.
    The model is not modified, so threads may trace different images with the same model at once.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"trace takes a batch of one image (1, C, H, W) but got shape {tuple(x.shape)}.")
    parameter = next(model.parameters())
    # A private copy: input.pixels is a view of it, so a trace never aliases the caller's tensor.
    x = x.detach().to(device=parameter.device, dtype=parameter.dtype, copy=True)
    record: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        model(x, record)
    stages: dict[str, torch.Tensor] = {}
    pixels = x[0].cpu()  # (C, H, W)
    stages["input.pixels"] = pixels
    stages["input.image"] = _displayable(pixels, mean, std)  # (H, W, C)
    for name, tensor in record.items():
        tensor = tensor[0].cpu()  # drop the batch dimension
        stages[name] = tensor.clone() if name in _PARAMETER_STAGES else tensor
    return Trace(model.config, stages, class_names, dict(meta or {}))


def _displayable(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    """(C, H, W) normalised -> (H, W, C) in [0, 1]."""
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean, dtype=pixels.dtype).view(-1, 1, 1)
        std_t = torch.tensor(std, dtype=pixels.dtype).view(-1, 1, 1)
        image = pixels * std_t + mean_t
    else:
        low, high = pixels.min(), pixels.max()
        image = (pixels - low) / (high - low).clamp_min(1e-12)
    return image.clamp(0, 1).permute(1, 2, 0).contiguous()
