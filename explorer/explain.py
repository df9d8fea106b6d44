"""Explanations of one prediction beyond attention rollout, how to test them, and the model at another resolution.

Shapes: B images, C x H x W each, a rows x cols grid of N patches, T = prefix + N tokens (N + 1 in the paper; cut by
the model's TokenLayout, explorer.tokens), D hidden size, K classes.
A map is (rows, cols) for a batch of one image (as the maps of explorer.analysis), (B, rows, cols) for B > 1.
`target` is a class index: None = each image's top class; one int for every image; or one per image.

relevance(model, x, target=None) -> map
    Chefer, Gur & Wolf 2021, "Generic Attention-model Explainability for Interpreting Bi-Modal and
    Encoder-Decoder Transformers" (ICCV), the rule for self-attention encoders:
        R = I (T x T);  for l = 1..L:  Ā_l = E_h[(∇A_l ⊙ A_l)^+],  R = R + Ā_l · R;   map = R[q, patches]
    A_l (h, T, T) are layer l's attention weights and ∇A_l = ∂y_t/∂A_l the gradient of the target's logit. q is the
    token the model pools (the class token; DeiT's, its first head's); for mean pooling the map is the mean of the
    patch rows of R, (1/N) Σ_i R[i, patches], as the pooled output is the patch tokens' mean.
    One forward (explicit attention, kept in the graph) and one backward. Not scaled: the values are R's.
grad_cam(model, x, target=None, layer=-1) -> map
    Selvaraju et al. 2017, "Grad-CAM", with the ViT reshape of pytorch-grad-cam's tutorial: the activations are the
    output of the LayerNorm before attention in block l (LN(z_{l-1}), `blocks[l].norm_1`), class token dropped,
    tokens laid on the grid as D maps A_k; w_k = mean over the grid of ∂y_t/∂A_k;  cam = ReLU(Σ_k w_k A_k).
    Returned at grid resolution and not scaled. pytorch-grad-cam computes the same numbers (its get_cam_image, then
    ReLU) and then, per image, min-max scales them, (cam − min) / (max + 1e-7), and resizes to H x W with
    cv2.resize (bilinear); tests/test_explain.py checks both against the package.
gradient_maps(model, x, target=None) -> {"relevance": map, "grad_cam": map}
    Both from one forward and one backward (the same target logit): what step 5 of the app paints first.
drop_patches(model, x, patches) -> logits (B, K)
    The model on the sequence without those patches: their tokens leave z_0 with their position embeddings, the
    class token stays. keep_patches(model, x, keep (R, n)) runs R shortened sequences of n patches in one forward.
deletion_curve / insertion_curve(model, x, order, target=None, steps=None) -> Curve
    Petsiuk, Das & Saenko 2018, "RISE", deletion and insertion: remove patches from the full image (or add them
    to the class token alone), most relevant first, and record the target's probability after each step; the area
    under the curve over the fraction of patches removed (inserted), in [0, 1], by the trapezoid rule. Patches are
    removed by dropping their tokens, not by painting pixels. Low deletion and high insertion areas are faithful.
    patch_order(map) gives the order of a map (most relevant first, ties by patch index).
    Cost: every step is its own sequence, so a curve over all N patches costs about (N/2 + 1) forwards of FLOPs
    whatever the batching; `steps` = S evaluates S + 1 evenly spaced counts instead (about S/2 + 1 forwards).
faithfulness(model, x, target=None, maps=None, steps="default", seed=0, progress=True) -> Faithfulness
    Both curves for rollout (explorer.analysis.rollout_map), relevance, Grad-CAM, the last layer's raw attention
    (the pooled query's row, mean over heads) and a random order (seeded); sequences of equal length share one forward.
    By default every patch is a point up to 64 patches, else 10 steps (default_steps), with a tqdm bar of forwards.
interpolate_position_embedding(position_embedding (1, T, D), old_grid, new_grid, layout) -> (1, T', D)
    Dosovitskiy et al. 2020, Sec. 3.2 (fine-tuning at higher resolution): 2-D bicubic interpolation of the patch
    position embeddings, the prefix tokens' kept, exactly as torchvision's interpolate_embeddings.
at_resolution(model, image_size) -> ViT
    A new model with the same weights for another input size (the position embedding interpolated).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import analysis
from .analysis import rollout_map
from .model import ViT
from .tokens import TokenLayout
from .trace import trace

# Tokens per batched forward of the curves: bounds memory, large enough that short sequences share a forward, small
# enough that a progress bar moves and a stop is heard within about ten sequences of ViT-B/16 (197 tokens each).
_TOKENS_PER_FORWARD = 2048


class GraphRecord(dict):
    """A record for ViT.forward whose stages stay in the autograd graph (explorer.model._keep does not detach)."""

    keep_graph = True


# ---------------------------------------------------------------------------------------------------------------
# Arguments

def _images(model: ViT, x: torch.Tensor) -> torch.Tensor:
    """The batch x, detached, on the model's device and dtype, after checking it is (B, C, H, W)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"Expected a batch of images (B, C, H, W) but got shape {tuple(getattr(x, 'shape', ()))}.")
    parameter = next(model.parameters())
    return x.detach().to(device=parameter.device, dtype=parameter.dtype)


def _one_image(model: ViT, x: torch.Tensor) -> torch.Tensor:
    x = _images(model, x)
    if x.shape[0] != 1:
        raise ValueError(f"Expected a batch of one image (1, C, H, W) but got shape {tuple(x.shape)}.")
    return x


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    """None -> each image's top class; an int -> that class for every image; a sequence -> one per image. (B,)"""
    B, K = logits.shape
    if target is None:
        return logits.argmax(dim=-1)  # ties: the first class, as explorer.analysis.ranking
    targets = torch.as_tensor(target, device=logits.device).reshape(-1)
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(f"A target is a class index (an int) but got {target!r}.")
    targets = targets.long()
    if targets.numel() == 1:
        targets = targets.expand(B)
    if targets.numel() != B:
        raise ValueError(f"Expected one target or one per image ({B}) but got {targets.numel()}.")
    if ((targets < 0) | (targets >= K)).any():
        raise ValueError(f"Target classes must be in 0..{K - 1} but got {targets.tolist()}.")
    return targets


def _target_class(model: ViT, x: torch.Tensor, target) -> int:
    """One image's target class: the given one, or the model's top class."""
    with torch.no_grad():
        logits = model(x)  # (1, K)
    return int(_targets(target, logits)[0])


def _layer_number(model: ViT, layer: int) -> int:
    """A layer l in 1..L (the paper's numbering), or counted from the end: -1 is L."""
    L = model.config.depth
    is_int = isinstance(layer, (int, np.integer)) and not isinstance(layer, bool)
    if not is_int or not (1 <= layer <= L or -L <= layer <= -1):
        raise ValueError(f"The layer must be in 1..{L} or -{L}..-1 (-1 is the last) but got {layer!r}.")
    return int(layer) if layer > 0 else L + 1 + int(layer)


def _maps(maps: torch.Tensor) -> np.ndarray:
    """(B, rows, cols) -> numpy; a batch of one loses its batch dimension."""
    maps = maps.detach().float().cpu().numpy()
    return maps[0] if maps.shape[0] == 1 else maps


# ---------------------------------------------------------------------------------------------------------------
# Gradient maps

def _forward_backward(model: ViT, x: torch.Tensor, target, stages: Sequence[str]):
    """One forward keeping `stages` in the graph and one backward of the target logits. -> (record, targets, grads)

    The target logits of all images are summed: the images of a batch never interact, so each image's gradients
    are those of its own logit.
    """
    x = _images(model, x).requires_grad_(True)  # a graph even when the parameters are frozen
    record = GraphRecord()
    with torch.enable_grad():
        logits = model(x, record)  # (B, K); a record always takes the explicit attention path
        targets = _targets(target, logits.detach())  # (B,)
        score = logits.gather(1, targets[:, None]).sum()  # Σ_b y_{b, t_b}
        gradients = torch.autograd.grad(score, [record[name] for name in stages])
    return record, targets, dict(zip(stages, gradients))


def _attention_stages(model: ViT) -> list[str]:
    return [f"blocks.{l}.attn.weights" for l in range(1, model.config.depth + 1)]


def _relevance(model: ViT, record, gradients, stages: list[str]) -> np.ndarray:
    """R = I; R = R + E_h[(∇A_l ⊙ A_l)^+] · R over the attention `stages`; the pooled query's row as maps."""
    with torch.no_grad():
        B, h, T, _ = record[stages[0]].shape
        R = torch.eye(T, dtype=gradients[stages[0]].dtype, device=gradients[stages[0]].device).expand(B, T, T)
        for name in stages:
            A = record[name].detach()  # (B, h, T, T)
            A_bar = (gradients[name] * A).clamp(min=0).mean(dim=1)  # E_h[(∇A ⊙ A)^+]: (B, h, T, T) -> (B, T, T)
            R = R + A_bar @ R  # (B, T, T)
        layout = model.layout
        row = layout.query_row(R, layout.pooled_query)  # the pooled query's row: (B, T, T) -> (B, T)
        return _maps(layout.patches(row, -1).reshape(B, *model.config.grid))  # (B, N) -> (B, rows, cols)


def _grad_cam(model: ViT, record, gradients, stage: str) -> np.ndarray:
    """ReLU(Σ_k w_k A_k) on the LayerNorm output `stage`, w_k the gradients' mean over the patches, as maps."""
    with torch.no_grad():
        activations = model.layout.patches(record[stage].detach())  # A_k, prefix dropped: (B, T, D) -> (B, N, D)
        # pytorch-grad-cam reshapes to (B, D, rows, cols) and averages the gradients over rows and cols: over N.
        weights = model.layout.patches(gradients[stage]).mean(dim=1)  # w_k: (B, N, D) -> (B, D)
        cam = (activations * weights[:, None, :]).sum(dim=-1).clamp(min=0)  # ReLU(Σ_k w_k A_k): (B, N)
        return _maps(cam.reshape(-1, *model.config.grid))  # (B, N) -> (B, rows, cols)


def relevance(model: ViT, x: torch.Tensor, target=None) -> np.ndarray:
    """Chefer et al. 2021: R = I; R = R + E_h[(∇A_l ⊙ A_l)^+] · R for l = 1..L; the map is the pooled query's row of R
    over the patches (the class token's, or the mean of the patch rows for mean pooling).

    (B, C, H, W) -> (rows, cols) for B = 1, (B, rows, cols) otherwise.
    """
    stages = _attention_stages(model)
    record, _, gradients = _forward_backward(model, x, target, stages)
    return _relevance(model, record, gradients, stages)


def grad_cam(model: ViT, x: torch.Tensor, target=None, layer: int = -1) -> np.ndarray:
    """Grad-CAM on LN(z_{l-1}) of block `layer` (1..L, or -1 for the last): ReLU(Σ_k w_k A_k), not scaled.

    (B, C, H, W) -> (rows, cols) for B = 1, (B, rows, cols) otherwise.
    """
    stage = f"blocks.{_layer_number(model, layer)}.ln_1"
    record, _, gradients = _forward_backward(model, x, target, [stage])
    return _grad_cam(model, record, gradients, stage)


def gradient_maps(model: ViT, x: torch.Tensor, target=None) -> dict[str, np.ndarray]:
    """relevance and grad_cam (last block) from one forward and one backward: {"relevance", "grad_cam"} -> maps.
    Both differentiate the same target logit, so one backward gives the gradients of both."""
    stages = _attention_stages(model)
    stage = f"blocks.{model.config.depth}.ln_1"
    record, _, gradients = _forward_backward(model, x, target, stages + [stage])
    return {"relevance": _relevance(model, record, gradients, stages),
            "grad_cam": _grad_cam(model, record, gradients, stage)}


def last_layer_attention(model: ViT, x: torch.Tensor) -> np.ndarray:
    """The raw attention of the pooled query (the class token, or the mean of the patch rows) to each patch in layer L,
    mean over heads: (1, C, H, W) -> (rows, cols)."""
    return analysis.last_layer_attention(trace(model, _one_image(model, x)))


# ---------------------------------------------------------------------------------------------------------------
# Dropping patches

def _check_keep(keep: torch.Tensor, N: int) -> None:
    if keep.dim() != 2:
        raise ValueError(f"keep must be (R, n) patch indices, n equal for all rows, but got shape {tuple(keep.shape)}.")
    if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= N):
        raise ValueError(f"Patch indices must be in 0..{N - 1}.")
    if keep.shape[1] > 1 and (keep.sort(dim=1).values.diff(dim=1) == 0).any():
        raise ValueError("A row of keep lists a patch twice.")


def _encode_kept(model: ViT, z0: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Logits of the sequences [the prefix tokens of z_0; z_0 of patch i for i in keep[r]]: z0 (1 or R, T, D),
    keep (R, n) -> (R, K)."""
    R, layout = keep.shape[0], model.layout
    prefix = torch.arange(layout.num_prefix, device=keep.device).expand(R, -1)  # (R, prefix)
    tokens = torch.cat([prefix, layout.patch_token(keep)], dim=1)  # the prefix tokens first: (R, prefix + n)
    rows = torch.arange(R, device=keep.device)[:, None] if z0.shape[0] > 1 else keep.new_zeros(R, 1)  # (R, 1)
    z = z0[rows, tokens]  # (1 or R, T, D) -> (R, prefix + n, D); position embeddings travel with their tokens
    return model.classify(model.encode(z))  # (R, K)


def keep_patches(model: ViT, x: torch.Tensor, keep) -> torch.Tensor:
    """The model on x with only the patches `keep` (R, n) (and the class token): one forward of R sequences.

    x is (1, C, H, W), shared by all rows, or (R, C, H, W). -> logits (R, K)
    """
    parameter = next(model.parameters())
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"Expected a batch of images (B, C, H, W) but got shape {tuple(getattr(x, 'shape', ()))}.")
    x = x.to(device=parameter.device, dtype=parameter.dtype)
    keep = torch.as_tensor(keep, dtype=torch.long, device=parameter.device)
    _check_keep(keep, model.config.num_patches)
    if x.shape[0] not in (1, keep.shape[0]):
        raise ValueError(f"Expected one image or one per row of keep ({keep.shape[0]}) but got {x.shape[0]}.")
    return _encode_kept(model, model.embed(x), keep)  # (R, K)


def drop_patches(model: ViT, x: torch.Tensor, patches) -> torch.Tensor:
    """The model on x without the given patches (indices 0..N-1, the same for every image): (B, C, H, W) -> (B, K)."""
    N = model.config.num_patches
    patches = torch.as_tensor(np.asarray(list(patches), dtype=np.int64).reshape(-1))  # (n_drop,)
    if patches.numel() and (int(patches.min()) < 0 or int(patches.max()) >= N):
        raise ValueError(f"Patch indices must be in 0..{N - 1}.")
    dropped = torch.zeros(N, dtype=torch.bool)
    dropped[patches] = True
    keep = (~dropped).nonzero()[:, 0]  # the remaining patches in sequence order: (N - n_drop,)
    B = x.shape[0] if isinstance(x, torch.Tensor) and x.dim() == 4 else 1
    return keep_patches(model, x, keep[None].expand(B, -1))  # (B, K)


# ---------------------------------------------------------------------------------------------------------------
# Deletion and insertion (Petsiuk et al. 2018)

@dataclass
class Curve:
    """The target's probability as patches are removed (deletion) or added (insertion) in a map's order."""

    counts: np.ndarray  # (S,) patches removed (deletion) or present (insertion) at each step, 0..N
    fractions: np.ndarray  # (S,) counts / N, from 0 to 1
    probabilities: np.ndarray  # (S,) softmax probability of the target class after each step
    area: float  # trapezoid area under probabilities over fractions: low is faithful for deletion, high for insertion


@dataclass
class Faithfulness:
    target: int
    maps: dict[str, np.ndarray]  # method -> (rows, cols); the random order's map is its random scores
    deletion: dict[str, Curve]
    insertion: dict[str, Curve]

    def areas(self) -> dict[str, tuple[float, float]]:
        """method -> (deletion area, insertion area)."""
        return {name: (self.deletion[name].area, self.insertion[name].area) for name in self.deletion}


MODES = ("deletion", "insertion")


def patch_order(relevance_map) -> np.ndarray:
    """A map (rows, cols) -> the patch indices 0..N-1, most relevant first; ties in patch order. (N,)"""
    values = np.asarray(relevance_map, dtype=np.float64).reshape(-1)  # (N,)
    return np.argsort(-values, kind="stable")


def _order(order, N: int) -> np.ndarray:
    order = np.asarray(order)
    is_permutation = np.issubdtype(order.dtype, np.integer) and np.array_equal(np.sort(order), np.arange(N))
    if order.shape != (N,) or not is_permutation:
        raise ValueError(f"An order must be a permutation of the patches 0..{N - 1}; patch_order(map) ranks a map.")
    return order.astype(np.int64)


def _counts(N: int, steps: int | None) -> np.ndarray:
    """Patches removed (or present) at each step: every count 0..N, or steps + 1 evenly spaced ones."""
    if steps is None:
        return np.arange(N + 1)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive int (or None for every patch) but got {steps!r}.")
    return np.unique(np.round(np.linspace(0, N, int(steps) + 1)).astype(np.int64))


def _area(fractions: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.sum(np.diff(fractions) * (probabilities[1:] + probabilities[:-1]) / 2))


Progress = Callable[[int, int], object]  # (forwards done, forwards in all), called after each; it may raise to stop


def _progress_bar(total: int, desc: str) -> Progress:
    """A tqdm bar (tqdm.auto: a widget in a notebook) advanced by each call; closed at the last forward."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="forward", leave=False)

    def advance(done: int, total: int) -> None:
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return advance


def _curves(model: ViT, x: torch.Tensor, target: int, requests: Sequence[tuple[np.ndarray, str]],
            steps: int | None, progress: bool | Progress = False) -> list[Curve]:
    """Curves for (order, mode) pairs of one image; all sequences of one length share batched forwards. `progress`:
    True for a tqdm bar, or a callable told (forwards done, forwards in all) after each forward."""
    N = model.config.num_patches
    counts = _counts(N, steps)  # (S,)
    by_length: dict[int, list[tuple[int, int, np.ndarray]]] = defaultdict(list)
    for r, (order, mode) in enumerate(requests):
        for s, count in enumerate(counts):
            kept = order[count:] if mode == "deletion" else order[:count]
            by_length[len(kept)].append((r, s, np.sort(kept)))  # sequence order: the set is what matters
    forwards = [(n, rows[start:start + max(1, _TOKENS_PER_FORWARD // (n + 1))])
                for n, rows in by_length.items()
                for start in range(0, len(rows), max(1, _TOKENS_PER_FORWARD // (n + 1)))]
    if progress is True:
        progress = _progress_bar(len(forwards), "deletion and insertion curves")
    probabilities = np.zeros((len(requests), len(counts)))
    with torch.inference_mode():
        z0 = model.embed(x)  # (1, T, D), once for every sequence
        for done, (n, chunk) in enumerate(forwards, start=1):
            keep = np.stack([kept for _, _, kept in chunk]).reshape(len(chunk), n)  # (R, n)
            keep = torch.as_tensor(keep, device=z0.device)
            p = _encode_kept(model, z0, keep).float().softmax(dim=-1)[:, target]  # (R, K) -> (R,)
            for (r, s, _), value in zip(chunk, p.tolist()):
                probabilities[r, s] = value
            if progress:
                progress(done, len(forwards))
    fractions = counts / N
    return [Curve(counts, fractions, p, _area(fractions, p)) for p in probabilities]


# Each point of a curve is a forward of its own sequence: every patch is a point on grids up to this many patches,
# else DEFAULT_STEPS evenly spaced counts (ViT-B/16's 196 patches, one point each, would cost ~100 forwards a curve).
ALL_POINTS_UP_TO = 64
DEFAULT_STEPS = 10


def default_steps(config) -> int | None:
    """The `steps` a curve of this model's patch grid is drawn with by default (None: every patch)."""
    return None if config.num_patches <= ALL_POINTS_UP_TO else DEFAULT_STEPS


def deletion_curve(model: ViT, x: torch.Tensor, order, target: int | None = None, steps: int | None = None) -> Curve:
    """Remove patches in `order` (most relevant first) from the image (1, C, H, W); the target's probability after
    each step, starting with none removed. target None = the top class."""
    x = _one_image(model, x)
    order = _order(order, model.config.num_patches)
    return _curves(model, x, _target_class(model, x, target), [(order, "deletion")], steps)[0]


def insertion_curve(model: ViT, x: torch.Tensor, order, target: int | None = None, steps: int | None = None) -> Curve:
    """Add patches in `order` (most relevant first) to the class token alone; the target's probability after each
    step, starting with no patch. target None = the top class of the whole image."""
    x = _one_image(model, x)
    order = _order(order, model.config.num_patches)
    return _curves(model, x, _target_class(model, x, target), [(order, "insertion")], steps)[0]


def explanation_maps(model: ViT, x: torch.Tensor, target: int | None = None) -> dict[str, np.ndarray]:
    """rollout, relevance, grad_cam and the last layer's attention for one image (1, C, H, W): name -> (rows, cols)."""
    x = _one_image(model, x)
    return {"rollout": rollout_map(trace(model, x)), **gradient_maps(model, x, target),
            "attention": last_layer_attention(model, x)}


def faithfulness(model: ViT, x: torch.Tensor, target: int | None = None, maps: dict[str, np.ndarray] | None = None,
                 steps: int | None | str = "default", seed: int = 0, progress: bool | Progress = True) -> Faithfulness:
    """Deletion and insertion curves of each map for one image (1, C, H, W), and of a random order (seeded).

    maps None = explanation_maps (rollout, relevance, grad_cam, attention); a "random" map is added unless given.
    steps "default" = default_steps(model.config): every patch up to 64 patches, else 10 steps (None: every patch).
    progress: a tqdm bar (True), none (False), or a callable told (forwards done, forwards in all).
    """
    if isinstance(steps, str):
        if steps != "default":
            raise ValueError(f"steps must be a positive int, None (every patch) or 'default' but got {steps!r}.")
        steps = default_steps(model.config)
    x = _one_image(model, x)
    target = _target_class(model, x, target)
    grid, N = model.config.grid, model.config.num_patches
    maps = dict(explanation_maps(model, x, target) if maps is None else maps)
    for name, values in maps.items():
        if np.shape(values) != grid:
            raise ValueError(f"The map {name!r} has shape {np.shape(values)}; expected the grid {grid}.")
    if "random" not in maps:
        maps["random"] = np.random.default_rng(seed).random(N).reshape(grid)  # its order is a random permutation
    names = list(maps)
    requests = [(patch_order(maps[name]), mode) for mode in MODES for name in names]
    curves = _curves(model, x, target, requests, steps, progress)
    return Faithfulness(
        target, {name: np.asarray(maps[name]) for name in names},
        deletion=dict(zip(names, curves[:len(names)])), insertion=dict(zip(names, curves[len(names):])),
    )


# ---------------------------------------------------------------------------------------------------------------
# Another resolution (Sec. 3.2)

def _grid(grid) -> tuple[int, int]:
    if isinstance(grid, (int, np.integer)):
        grid = (grid, grid)
    rows, cols = (int(g) for g in grid)
    if rows < 1 or cols < 1:
        raise ValueError(f"A grid must have at least one row and column but got {grid}.")
    return rows, cols


def interpolate_position_embedding(position_embedding: torch.Tensor, old_grid, new_grid,
                                   layout: TokenLayout = analysis.PAPER_LAYOUT) -> torch.Tensor:
    """Sec. 3.2: E_pos (1, prefix + old rows·cols, D) -> (1, prefix + new rows·cols, D), bicubic over the grid
    (align_corners, as torchvision's interpolate_embeddings); the prefix tokens' rows are kept as is. A grid is
    (rows, cols) or an int; `layout` says which rows are prefix tokens (the paper's: the class token's)."""
    old_grid, new_grid = _grid(old_grid), _grid(new_grid)
    T = layout.num_prefix + old_grid[0] * old_grid[1]
    if position_embedding.dim() != 3 or tuple(position_embedding.shape[:2]) != (1, T):
        raise ValueError(
            f"Expected a position embedding (1, {T}, D) for a {old_grid[0]}x{old_grid[1]} "
            f"grid but got shape {tuple(position_embedding.shape)}."
        )
    if new_grid == old_grid:
        return position_embedding.clone()  # as torchvision: nothing to interpolate
    D = position_embedding.shape[-1]
    prefix_embedding = layout.prefix(position_embedding)  # (1, prefix, D), not interpolated
    patch_embedding = layout.patches(position_embedding).permute(0, 2, 1)  # (1, N, D) -> (1, D, N)
    patch_embedding = patch_embedding.reshape(1, D, *old_grid)  # (1, D, N) -> (1, D, rows, cols)
    patch_embedding = F.interpolate(  # (1, D, rows, cols) -> (1, D, rows', cols')
        patch_embedding, size=new_grid, mode="bicubic", align_corners=True)
    patch_embedding = patch_embedding.reshape(1, D, -1).permute(0, 2, 1)  # (1, D, N') -> (1, N', D)
    return torch.cat([prefix_embedding, patch_embedding], dim=1)  # (1, T', D)


def at_resolution(model: ViT, image_size) -> ViT:
    """A new ViT with the same weights (copied) for inputs of `image_size` (int or (H, W)); E_pos interpolated."""
    config = model.config.replace(image_size=image_size)  # the config says why if P does not divide the size
    with torch.device("meta"):
        resized = ViT(config)  # no throw-away initialisation: the weights below replace every parameter
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    state["position_embedding"] = interpolate_position_embedding(  # its own rows: (1, T, D) -> (1, T', D)
        state["position_embedding"], model.config.grid, config.grid, model.layout.position)
    resized.load_state_dict(state, strict=True, assign=True)
    resized.fused_attention = model.fused_attention
    return resized.train(model.training)
