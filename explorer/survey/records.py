"""One batch of a survey: a forward whose record reduces each layer's attention as it arrives, then a record per image.

Per image: the top class (none for a backbone, whose output is features); the mean attention distance of every head (App. D.7, Fig. 7 right) in pixels, the class token
dropped as query and key and each patch's weights renormalised over the patches; the attention rollout map (Fig. 6;
heads fused by their mean, nothing discarded) scaled to a maximum of 1; what each head is worth for the top class
(explorer.analysis.head_importance: the drop in its probability when the head alone is switched off, and how well
attribution patching's estimate agrees, Spearman over the heads), unless switched off; and, for the first K images, the
deletion and insertion areas (Petsiuk et al. 2018; explorer.explain) of each explanation for the top class; and the
token norms ||z_l|| layer by layer (l = 0..L) of each prefix token (CLS, DIST, REG1..k) and of the patches (their mean
and their largest), where registers and high-norm patches show (Darcet et al. 2023). Head
importance and faithfulness read a class's probability, so a backbone (no classifier) has neither.
The high-norm tokens (explorer.highnorm): each layer's count of outlier patches and where the class token's
attention goes (registers, outliers, other patches, prefix). The reductions are explorer.analysis's (LayerReductions, shared with a single image's trace), taken over the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..analysis import PAPER_LAYOUT, LayerReductions, pooled_rollout, head_importance
from ..explain import default_steps, faithfulness
from ..highnorm import survey_shares
from ..model import ViT
from ..tokens import TokenLayout
from .images import Images


class SurveyRecord(LayerReductions):
    """The survey's record for ViT.forward (explorer.model): explorer.analysis's LayerReductions asking for what the
    survey's statistics read, and nothing else: each layer's attention weights A_l (B, h, T, T), reduced the moment the
    model writes them to the mean attention distance of each head (B, h) and to the head mean Ā_l = mean_h A_l (B, T, T)
    for rollout, and the residual stream z_l (B, T, D) to its token norms (B, T) (the survey's token norms and
    high-norm tokens). No stage is kept, so memory holds one layer's A at a time, not L of them.
    """

    def __init__(self, grid: tuple[int, int], patch_size: int, device, layout: TokenLayout = PAPER_LAYOUT):
        super().__init__(grid, patch_size, device, fusions=("mean",), entropy=False, norms=True, layout=layout)

    @property
    def mean_distance(self) -> list[torch.Tensor]:
        return self.distance  # per layer, (B, h)

    @property
    def head_means(self) -> list[torch.Tensor]:
        return self.fused["mean"]  # per layer, Ā_l: (B, T, T)

    def rollout_maps(self, grid: tuple[int, int]) -> torch.Tensor:
        """The pooled query's rollout (the class token, or the mean of the patch rows) over the patches, each map scaled
        to a maximum of 1: (B, rows, cols)."""
        return pooled_rollout(self.head_means, self.layout).reshape(-1, *grid)  # (B, N) -> (B, rows, cols)

    def token_norms(self) -> torch.Tensor:
        """||z_l|| of each prefix token, then the patches' mean and largest, l = 0..L: (B, L + 1, prefix + 2)."""
        norms = self.norms_stack()  # (B, L + 1, T)
        patches = self.layout.patches(norms, -1)  # (B, L + 1, N)
        return torch.cat([self.layout.prefix(norms, -1), patches.mean(-1, keepdim=True),
                          patches.amax(-1, keepdim=True)], dim=-1)  # (B, L + 1, prefix + 2)


@dataclass
class BatchResult:
    predictions: np.ndarray | None  # (B,) top class (ties: the first, as explorer.common.ranking); None: a backbone
    mean_distance: np.ndarray  # (B, L, h) pixels
    rollout: np.ndarray  # (B, rows, cols)
    token_norms: np.ndarray  # (B, L + 1, prefix + 2): each prefix token, the patches' mean, their largest
    high_norm: dict | None = None  # explorer.highnorm.survey_shares: outlier counts (B, L + 1), attention shares (B, L)


def survey_batch(model: ViT, x: torch.Tensor) -> BatchResult:
    """One batched forward (B, C, H, W) -> each image's top class (None for a backbone), mean attention distances,
    rollout map and token norms."""
    config = model.config
    parameter = next(model.parameters())
    record = SurveyRecord(config.grid, config.patch_size, parameter.device, config.layout)
    with torch.inference_mode():
        output = model(x.to(device=parameter.device, dtype=parameter.dtype), record)  # (B, K) or (B, D); explicit
        maps = record.rollout_maps(config.grid)
        distance = torch.stack(record.mean_distance, dim=1)  # (B, L, h)
        norms = record.token_norms()  # (B, L + 1, prefix + 2)
        high_norm = survey_shares(record.norms_stack(), record.head_means, config.layout)
    predictions = output.argmax(dim=-1).cpu().numpy() if config.has_classifier else None  # features are no classes
    return BatchResult(predictions, distance.cpu().numpy(), maps.float().cpu().numpy(), norms.float().cpu().numpy(),
                       high_norm)


def faithfulness_steps(model: ViT, steps: int | None = None) -> int | None:
    """The curves' resolution: every patch count up to 64 patches, else 10 evenly spaced steps (or `steps`)."""
    if steps:
        return int(steps)
    return default_steps(model.config)


def rounded(array, decimals: int) -> list:
    """An array as nested lists of floats rounded to `decimals`: what the JSON files hold."""
    return np.round(np.asarray(array, dtype=np.float64), decimals).tolist()


def image_records(model: ViT, images: Images, indices: list[int], faithfulness_images: int,
                  steps: int | None, heads: bool = True) -> list[dict]:
    """The per-image records of `indices` (one batch): what a shard line holds. `heads`: with head importance.
    A backbone (no classifier) gets neither a prediction, head importance nor faithfulness: each needs a class."""
    classifier = model.config.has_classifier
    inputs, labels, skipped = images.load(indices)
    records = {i: {"index": i, "name": images.name(i), "skipped": skipped[i]} for i in skipped}
    good = [i for i in indices if i in inputs]
    if good:
        x = torch.stack([inputs[i] for i in good])  # (B, C, H, W)
        result = survey_batch(model, x)
        importance = head_importance(model, x) if heads and classifier else None  # the top class: predictions
        for b, i in enumerate(good):
            prediction = int(result.predictions[b]) if classifier else None
            record = {"index": i, "label": labels[i], "prediction": prediction,
                      "mean_distance": rounded(result.mean_distance[b], 9),
                      "rollout": rounded(result.rollout[b], 9), "token_norms": rounded(result.token_norms[b], 6),
                      "high_norm": {name: rounded(values[b], 9) for name, values in result.high_norm.items()}}
            if importance is not None:
                exact = importance.exact.reshape(len(good), *importance.exact.shape[-2:])  # (B, L, h)
                record["head_importance"] = rounded(exact[b], 9)
                record["head_importance_spearman"] = round(float(np.atleast_1d(importance.spearman)[b]), 9)
            if classifier and i < faithfulness_images:
                f = faithfulness(model, inputs[i][None], target=None, steps=steps, seed=i, progress=False)
                record["faithfulness"] = {name: [round(d, 12), round(s, 12)] for name, (d, s) in f.areas().items()}
            records[i] = record
    return [records[i] for i in indices]
