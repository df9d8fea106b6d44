"""Run the model with something changed: heads switched off, or one stage's tokens copied from another image's run.

Layers l = 1..L as in the paper and the trace's stage names, heads j = 0..h-1 as the trace's head axis, x a
preprocessed batch (B, C, H, W), K classes. A head's output is softmax(q k^T / sqrt(d)) v of that head, (T, d): the
head's d columns of the concatenation that U_msa (block.msa.projection) projects back to D (Eq. 2, Appendix A).

ablate_heads(model, x, heads, how="zero") -> logits (B, K)
    The model with the heads in `heads` (a list of (l, j)) switched off: "zero" removes a head's output before U_msa
    (as if U_msa's d columns of that head were zero); "mean" replaces it by its mean over the tokens.
head_importance(model, x, target=None) -> HeadImportance, its `exact` map (L, h)
    exact[l, j]: the drop in the target class's probability (default the top class) when head j of layer l alone is
    switched off ("zero"). z_{l-1} comes from one clean pass, so the layers before l are not run again; the h
    ablations of layer l run as one batch, and layer l's heads are taken from the clean pass.
    estimate[l, j]: attribution patching (Nanda 2023; Syed, Rager & Conmy 2023), the first-order estimate from the clean
    pass and one backward: p(o_lj = 0) ≈ p - ∇_{o_lj} p · o_lj, so the drop ≈ Σ_{T, d} ∇_{o_lj} p ⊙ o_lj.
    pearson and spearman: how well the two agree over the L·h heads of each image.
patch_activations(model, x, source, stage, positions=None) -> logits (B, K)
    x's run in which the stage's tokens at `positions` (indices into the whole sequence of T tokens; None: all,
    []: none) are those of `source`'s run (one image, or one per image of x). Stages: PATCHABLE_STAGES.

Nothing is stored on the model and no hook is registered: each run passes its change explicitly to `_block`, which
computes one encoder block from its pieces (norm_1, msa.head_outputs, msa.combine_heads, norm_2, mlp) exactly as
EncoderBlock.forward does; blocks the change does not touch run their own forward. So one model serves many threads
at once, and an exception leaves nothing behind. Dropout is the model's: call these on a model in eval mode.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .model import Record, ViT, _keep

HOW = ("zero", "mean")
PATCHABLE_STAGES = ("embed.z0", "blocks.l.ln_1", "blocks.l.attn.output", "blocks.l.z_mid", "blocks.l.ln_2",
                    "blocks.l.mlp.output", "blocks.l.z")
_BLOCK_STAGES = ("ln_1", "attn.output", "z_mid", "ln_2", "mlp.output", "z")
_SEQUENCES_PER_BATCH = 64  # head_importance: at most this many ablated sequences per batched forward


@dataclass
class _Change:
    """What one run changes. `off`: layer -> heads switched off; `stage`: the one stage whose tokens at `positions`
    (None: all) are replaced by `values` (B or 1, T, D), or, with no values, kept in `kept` (the source's run)."""

    off: dict[int, list[int]] = field(default_factory=dict)
    how: str = "zero"
    stage: str | None = None
    positions: torch.Tensor | None = None
    values: torch.Tensor | None = None
    keep_heads: bool = False  # keep every layer's head outputs (B, h, T, d) in `kept`, in the graph
    kept: dict[str, torch.Tensor] = field(default_factory=dict)
    record: Record = None  # a record as ViT.forward takes: every stage of the changed run, as it ran

    def touches(self, layer: int) -> bool:
        return layer in self.off or self.keep_heads or (self.stage or "").startswith(f"blocks.{layer}.")

    def at(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """The stage `name` as this run has it (patched, or as computed), written to the record."""
        if name == self.stage and self.values is None:
            self.kept[name] = tensor
        elif name == self.stage:
            values = self.values.expand_as(tensor)  # (B, T, D)
            if self.positions is None:
                tensor = values
            else:
                tensor = tensor.clone()
                tensor[:, self.positions] = values[:, self.positions]
        _keep(self.record, name, tensor)
        return tensor

    def heads(self, layer: int, heads: torch.Tensor) -> torch.Tensor:
        """Layer l's head outputs (B, h, T, d) with its heads in `off` switched off."""
        if self.keep_heads:
            self.kept[f"blocks.{layer}.heads"] = heads
        off = self.off.get(layer)
        if not off:
            return heads
        heads = heads.clone()
        if self.how == "zero":
            heads[:, off] = 0.0
        else:  # "mean": each head's mean over the tokens, for every token
            heads[:, off] = heads[:, off].mean(dim=-2, keepdim=True).expand_as(heads[:, off])
        return heads


def _block(block, z: torch.Tensor, layer: int, change: _Change, heads: torch.Tensor | None = None) -> torch.Tensor:
    """Encoder block l on z_{l-1} (B, T, D) with `change` applied -> z_l (B, T, D); EncoderBlock.forward's equations.
    `heads` (B, h, T, d), when given, are the block's head outputs, already changed (head_importance's batch)."""
    name = f"blocks.{layer}"
    if heads is None:
        normed = change.at(f"{name}.ln_1", block.norm_1(z))
        heads = change.heads(layer, block.msa.head_outputs(normed, change.record, f"{name}.attn"))  # (B, h, T, d)
    attention_output = block.msa.combine_heads(heads)  # MSA(LN(z_{l-1})): (B, T, D)
    if block.gamma_1 is not None:
        attention_output = block.gamma_1 * attention_output  # layer scale: diag(gamma_1) MSA(...)
    attention_output = change.at(f"{name}.attn.output", attention_output)
    z_mid = change.at(f"{name}.z_mid", attention_output + z)  # Eq. 2
    normed = change.at(f"{name}.ln_2", block.norm_2(z_mid))
    mlp_output = block.mlp(normed)  # (B, T, D)
    if block.gamma_2 is not None:
        mlp_output = block.gamma_2 * mlp_output  # layer scale: diag(gamma_2) MLP(...)
    mlp_output = change.at(f"{name}.mlp.output", mlp_output)
    return change.at(f"{name}.z", mlp_output + z_mid)  # Eq. 3


def _encode(model: ViT, z: torch.Tensor, change: _Change, first: int = 1) -> torch.Tensor:
    """Blocks first..L on z_{first-1} (B, T, D) -> z_L; the blocks the change touches through `_block`."""
    for layer in range(first, model.config.depth + 1):
        block = model.blocks[layer - 1]
        z = _block(block, z, layer, change) if change.touches(layer) else block(z, change.record, f"blocks.{layer}")
    return z


def _run(model: ViT, x: torch.Tensor, change: _Change) -> torch.Tensor:
    """The model's forward (Eq. 1-4) on x (B, C, H, W) with `change` -> logits (B, K); stages to change.record."""
    z0 = change.at("embed.z0", model.embed(x, change.record))  # (B, T, D)
    return model.classify(_encode(model, z0, change), change.record)


def _batch(model: ViT, x) -> torch.Tensor:
    """x as a detached batch (B, C, H, W) on the model's device and dtype."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"Expected a batch of images (B, C, H, W) but got shape {tuple(getattr(x, 'shape', ()))}.")
    parameter = next(model.parameters())
    return x.detach().to(parameter.device, parameter.dtype)


def _heads_off(model: ViT, heads) -> dict[int, list[int]]:
    """[(l, j), ...] -> {l: [j, ...]}, after checking every l in 1..L and j in 0..h-1."""
    L, h = model.config.depth, model.config.heads
    off: dict[int, list[int]] = {}
    for pair in heads:
        if (not isinstance(pair, Sequence) or len(pair) != 2
                or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in pair)
                or not (1 <= pair[0] <= L and 0 <= pair[1] < h)):
            raise ValueError(f"A head is (layer, head) with layer in 1..{L} and head in 0..{h - 1}, not {pair!r}.")
        off.setdefault(int(pair[0]), []).append(int(pair[1]))
    return {layer: sorted(set(js)) for layer, js in off.items()}


def ablate_heads(model: ViT, x: torch.Tensor, heads, how: str = "zero", record: Record = None) -> torch.Tensor:
    """Logits (B, K) of the model on x with the heads [(l, j), ...] switched off: "zero" removes each one's output
    before U_msa, "mean" replaces it by its mean over the tokens. Only the layers from the first changed one differ
    from a plain forward's computation, and they cost what a forward does. `record`: as ViT.forward's."""
    if how not in HOW:
        raise ValueError(f"how must be one of {HOW}, not {how!r}.")
    change = _Change(off=_heads_off(model, heads), how=how, record=record)
    with torch.no_grad():
        return _run(model, _batch(model, x), change)


class Intervened:
    """The model with heads switched off, called as the model is, (x, record=None) -> logits (B, K); every other
    attribute is the model's. So explorer.trace(Intervened(model, [(l, j)]), x) traces the changed run."""

    def __init__(self, model: ViT, heads, how: str = "zero"):
        if how not in HOW:
            raise ValueError(f"how must be one of {HOW}, not {how!r}.")
        self.model, self.heads, self.how = model, sorted(_heads_off(model, heads).items()), how

    def __call__(self, x: torch.Tensor, record: Record = None) -> torch.Tensor:
        change = _Change(off=dict(self.heads), how=self.how, record=record)
        return _run(self.model, x, change)

    def __getattr__(self, name: str):
        return getattr(self.model, name)


# ---------------------------------------------------------------------------------------------------------------
# Head importance

@dataclass
class HeadImportance:
    """What each head is worth for the target class. Maps are (L, h) for one image, (B, L, h) for a batch; row l - 1
    is layer l. The agreements and the target are one number per image (a float / an int for one image)."""

    exact: np.ndarray  # drop in p_target when the head alone is switched off ("zero"), the layers after it re-run
    estimate: np.ndarray  # its attribution-patching estimate, Σ ∇_o p ⊙ o over the head's output o (T, d)
    pearson: np.ndarray | float  # correlation of exact and estimate over the L·h heads
    spearman: np.ndarray | float  # the same on their ranks (ties ranked in head order)
    target: np.ndarray | int  # the class
    probability: np.ndarray | float  # p_target of the unchanged model


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    """None -> each image's top class; an int, or one per image, checked against 0..K-1. -> (B,)"""
    B, K = logits.shape
    if target is None:
        return logits.argmax(dim=-1)
    targets = np.asarray(target).reshape(-1)
    if targets.dtype.kind not in "iu" or targets.size not in (1, B) or targets.min() < 0 or targets.max() >= K:
        raise ValueError(f"The target is one class index in 0..{K - 1}, or one per image ({B}), not {target!r}.")
    return torch.as_tensor(targets, device=logits.device).long().expand(B)  # one class, or one per image: (B,)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r of two flat arrays (0 when either is constant)."""
    a, b = a - a.mean(), b - b.mean()
    scale = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / scale) if scale > 0 else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(np.float64)


def _clean_pass(model: ViT, x: torch.Tensor, target):
    """One forward keeping z_{l-1} and layer l's head outputs for every l, one backward of p_target.
    -> (inputs: L x z_{l-1} (B, T, D), heads: L x (B, h, T, d), p (B,), targets (B,), estimate (B, L, h))"""
    L = model.config.depth
    change = _Change(keep_heads=True)
    inputs = []
    with torch.enable_grad():
        z = model.embed(x.requires_grad_(True))  # (B, T, D); a graph even when the parameters are frozen
        for layer in range(1, L + 1):
            inputs.append(z.detach())
            z = _block(model.blocks[layer - 1], z, layer, change)
        probabilities = model.classify(z).float().softmax(dim=-1)  # (B, K)
        targets = _targets(target, probabilities.detach())
        p = probabilities.gather(1, targets[:, None])[:, 0]  # (B,)
        heads = [change.kept[f"blocks.{layer}.heads"] for layer in range(1, L + 1)]  # L x (B, h, T, d)
        gradients = torch.autograd.grad(p.sum(), heads)  # images never interact: each gets its own p's gradient
    estimate = torch.stack([(g * o).sum(dim=(-2, -1)) for g, o in zip(gradients, heads)], dim=1)  # (B, L, h)
    return inputs, [o.detach() for o in heads], p.detach(), targets, estimate.detach()


def _ablated_probabilities(model: ViT, z: torch.Tensor, heads: torch.Tensor, layer: int,
                           targets: torch.Tensor) -> torch.Tensor:
    """p_target with each head of layer l alone zeroed, all h at once: z_{l-1} (b, T, D) and the clean head outputs
    (b, h, T, d) -> (b, h). Layer l's heads are the clean ones, so only U_msa onwards is computed again."""
    b, h = heads.shape[:2]
    keep = 1.0 - torch.eye(h, device=heads.device, dtype=heads.dtype)  # row j: every head but j
    ablated = heads[:, None] * keep[None, :, :, None, None]  # (b, 1, h, T, d) * (1, h, h, 1, 1) -> (b, h, h, T, d)
    ablated = ablated.flatten(0, 1)  # (b·h, h, T, d): sequence (i, j) is image i with head j off
    z = z.repeat_interleave(h, dim=0)  # (b·h, T, D)
    z = _block(model.blocks[layer - 1], z, layer, _Change(), heads=ablated)
    z = _encode(model, z, _Change(), first=layer + 1)
    probabilities = model.classify(z).float().softmax(dim=-1)  # (b·h, K)
    return probabilities.gather(1, targets.repeat_interleave(h)[:, None]).view(b, h)


def head_importance(model: ViT, x: torch.Tensor, target=None) -> HeadImportance:
    """How much the target class's probability drops when each head alone is switched off (`exact`, (L, h) for one
    image), beside its attribution-patching estimate and their agreement. target None: each image's top class.
    Cost: one forward and one backward, then h ablations a layer, batched, from layer l on: about h(L + 1)/2 forwards."""
    x = _batch(model, x)
    inputs, heads, p, targets, estimate = _clean_pass(model, x, target)
    B, L, h = x.shape[0], model.config.depth, model.config.heads
    exact = torch.zeros(B, L, h, dtype=torch.float32, device=p.device)
    chunk = max(1, _SEQUENCES_PER_BATCH // h)  # images per batched forward
    with torch.no_grad():
        for layer in range(1, L + 1):
            for i in range(0, B, chunk):
                ablated = _ablated_probabilities(model, inputs[layer - 1][i:i + chunk], heads[layer - 1][i:i + chunk],
                                                 layer, targets[i:i + chunk])  # (b, h)
                exact[i:i + chunk, layer - 1] = p[i:i + chunk, None] - ablated
    exact, estimate = exact.cpu().numpy(), estimate.float().cpu().numpy()  # (B, L, h)
    pearson = np.array([_correlation(e.ravel(), a.ravel()) for e, a in zip(exact, estimate)])
    spearman = np.array([_correlation(_ranks(e.ravel()), _ranks(a.ravel())) for e, a in zip(exact, estimate)])
    targets, p = targets.cpu().numpy(), p.float().cpu().numpy()
    if B == 1:
        return HeadImportance(exact[0], estimate[0], float(pearson[0]), float(spearman[0]), int(targets[0]), float(p[0]))
    return HeadImportance(exact, estimate, pearson, spearman, targets, p)


# ---------------------------------------------------------------------------------------------------------------
# Activation patching

def _patchable(model: ViT, stage: str) -> str:
    """The stage name, checked against PATCHABLE_STAGES for this model's L."""
    parts = stage.split(".", 2) if isinstance(stage, str) else []
    if stage == "embed.z0" or (len(parts) == 3 and parts[0] == "blocks" and parts[1].isdigit()
                               and 1 <= int(parts[1]) <= model.config.depth and parts[2] in _BLOCK_STAGES):
        return stage
    raise ValueError(f"Can't patch {stage!r}: the stages are {', '.join(PATCHABLE_STAGES)} with l in "
                     f"1..{model.config.depth}.")


def _positions(positions, T: int) -> torch.Tensor | None:
    """None (all tokens) or the token indices as a tensor, each checked to be in 0..T-1."""
    if positions is None:
        return None
    indices = np.asarray(positions).reshape(-1)
    if indices.size and (indices.dtype.kind not in "iu" or indices.min() < 0 or indices.max() >= T):
        raise ValueError(f"Positions are token indices in 0..{T - 1}, not {positions!r}.")
    return torch.as_tensor(indices.astype(np.int64))


def patch_activations(model: ViT, x: torch.Tensor, source: torch.Tensor, stage: str, positions=None,
                      record: Record = None) -> torch.Tensor:
    """Logits (B, K) of x's run where the stage's tokens at `positions` (indices into T; None: all, []: none) come
    from `source`'s run (1 or B images). Cost: the source's run up to the stage, and one forward. `record`: x's
    run's stages, as ViT.forward's."""
    stage = _patchable(model, stage)
    x, source = _batch(model, x), _batch(model, source)
    if source.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"The source is one image or one per image of x ({x.shape[0]}), not {source.shape[0]}.")
    with torch.no_grad():
        kept = _Change(stage=stage)
        z = kept.at("embed.z0", model.embed(source))
        if stage != "embed.z0":
            last = int(stage.split(".")[1])
            for layer in range(1, last + 1):  # the source runs up to the stage's layer only
                z = _block(model.blocks[layer - 1], z, layer, kept) if layer == last else model.blocks[layer - 1](z)
        values = kept.kept[stage]  # (1 or B, T, D)
        change = _Change(stage=stage, positions=_positions(positions, values.shape[1]), values=values, record=record)
        return _run(model, x, change)
