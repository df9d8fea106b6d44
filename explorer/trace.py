"""explorer.trace: run a ViT once and return every intermediate tensor under a stable dotted name.

Stage names and shapes (batch dimension removed; T = prefix + N tokens, N + 1 in the paper, cut by Trace.layout
(explorer.tokens); layers l = 1..L as in the paper; a stage a model lacks is not there):

    input.pixels                 (C, H, W)     the preprocessed (normalised) model input x
    input.image                  (H, W, C)     the same image un-normalised to [0, 1], for display
    embed.patches                (N, P, P, C)  x_p^i: the input cut into patches, row-major over the grid
    embed.feature_maps           (D, H/P, W/P) the patch-embedding conv's output, one map per dimension
    embed.patch_embeddings       (N, D)        x_p^i E
    embed.class_token            (D,)          x_class
    embed.sequence               (T, D)        [x_class; x_p^1 E; ...; x_p^N E]
    embed.position_embedding     (T, D)        E_pos, zero on the tokens it does not cover
    embed.z0                     (T, D)        z_0 (Eq. 1), what block 1 reads
    blocks.l.ln_1                (T, D)        LN(z_{l-1})
    blocks.l.attn.q              (h, T, d)     queries LN(z_{l-1}) W_q + b_q, split into h heads of d = D/h
    blocks.l.attn.k              (h, T, d)     keys LN(z_{l-1}) W_k + b_k, split likewise
    blocks.l.attn.weights        (h, T, T)     A = softmax(q k^T / sqrt(d)) per head; rows sum to 1 (see below)
    blocks.l.attn.output         (T, D)        MSA(LN(z_{l-1}))
    blocks.l.z_mid               (T, D)        z'_l (Eq. 2)
    blocks.l.ln_2                (T, D)        LN(z'_l)
    blocks.l.mlp.output          (T, D)        MLP(LN(z'_l))
    blocks.l.z                   (T, D)        z_l (Eq. 3)
    head.class_token             (D,)          z_L^0 (class pooling)
    head.tokens                  (T, D)        LN(z_L): every token through Eq. 4's LayerNorm (DINOv2's x_norm_*tokens;
                                               z_L itself with fc_norm, whose LN comes after the mean)
    head.y                       (D,)          y = LN(z_L^0) (Eq. 4), or the pooled mean; a backbone's output
    head.logits                  (K,)          (none for a backbone)
    head.probabilities           (K,)

The paper's descendants (explorer.config) add two stages: embed.sum (T, D), z_0 before the LayerNorm of a model with
pre_norm (CLIP's ln_pre); head.y_distillation (D,), LN(z_L^DIST), which DeiT's second head reads. With layer scale,
attn.output and mlp.output are the scaled branches, diag(gamma) MSA(...) and diag(gamma) MLP(...), what the stream adds.
A backbone (no classifier) has no head.logits or head.probabilities; head.class_token is there when Eq. 4 reads it.

The attention weights are computed when asked, not stored. A_l is h x T x T, by far the largest stage (every layer
of ViT-H/14 at 518 x 518 is 3.8 GB, against 1.3 GB for all the (T, D) stages and 0.45 GB for q and k), and the views
show one layer at a time or one query row of every layer. So the traced forward keeps q and k and takes the model's
fused kernel (its one switch; the explicit path if the switch is off), and Trace.attention(l) or
trace["blocks.l.attn.weights"] computes A_l from q and k with explorer.model.attention_weights, the explicit path's own
function, keeping the last few layers; Trace.attention_rows(query) computes one row of every layer, the same bits.
With the fused kernel, q and k of layers 2..L differ from the explicit path's by float rounding (about 1e-7), and A
by as little. `trace(..., attention="full")` takes the explicit path and stores every A_l, as the model computed it.

A trace records what is asked (as TransformerLens' `names_filter`): `trace(model, x, names_filter=...)` takes stage
names or glob-like patterns (`"blocks.*.attn.weights"`, `"head.*"`) or a predicate on the name; by default, every
stage. A stage not asked for is never stored, nor copied out of the model (explorer.model's `wants`), and one computed
only to be recorded (the patches, A, the probabilities) is not computed. Asking for A on demand keeps that layer's q and
k out of sight (they are not stages of the trace unless asked for too); in "full" mode a layer whose A is not asked for
takes the fused kernel.
"""
from __future__ import annotations

import fnmatch
import re
import sys
import threading
import types
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .common import ranking
from .config import ViTConfig
from .model import ViT, attention_weights
from .tokens import TokenLayout

# Stages that are views of parameters: copied so that a trace never aliases a model's weights.
_PARAMETER_STAGES = ("embed.class_token", "embed.position_embedding")
ATTENTION_MODES = ("on_demand", "full")
# A_l is computed in blocks of this many queries, so that one query's row (Trace.attention_rows) is the same
# computation as in the whole matrix, bit for bit, at about 64/T of its cost. The remainder joins the last block:
# a block of a row or two can take another BLAS kernel than the explicit path's whole matrix and differ in the last bit.
_QUERY_BLOCK = 64
_RECENT_LAYERS = 2  # on-demand A_l kept: a view's repeated asks (per-head maps, then the matrix) compute it once
_WEIGHTS = re.compile(r"blocks\.(\d+)\.attn\.weights")
NamesFilter = str | Sequence[str] | Callable[[str], bool] | None


def stage_filter(names_filter: NamesFilter) -> Callable[[str], bool]:
    """A names filter as a predicate on stage names: None asks for every stage; a name or glob-like pattern
    ("blocks.*.z", matched whole by fnmatch, so `*` crosses dots), or a list of them, for the stages they match; a
    callable is the predicate itself."""
    if names_filter is None:
        return lambda name: True
    if callable(names_filter):
        return names_filter
    patterns = (names_filter,) if isinstance(names_filter, str) else tuple(names_filter)
    if not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"names_filter takes stage names, patterns or a predicate, not {names_filter!r}.")
    exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
    globs = tuple(p for p in patterns if p not in exact)
    return lambda name: name in exact or any(fnmatch.fnmatchcase(name, p) for p in globs)


@dataclass
class Trace:
    """The output and every intermediate of one forward pass, detached and on the CPU.

    `stages` holds what was stored; the attention weights not among them are computed from q and k when asked
    (`attention_inputs`: the q and k kept for that alone, where a names filter asked for A and not for them; `order`:
    every name the forward gave, in its order).
    """

    config: ViTConfig
    stages: dict[str, torch.Tensor]
    class_names: Sequence[str] | None = None
    meta: dict = field(default_factory=dict)
    attention_inputs: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    order: tuple[str, ...] = field(default=(), repr=False)
    _recent: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False, compare=False)  # layer -> A_l
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name in self.stages:
            return self.stages[name]
        layer = self._on_demand_layer(name)
        if layer is None:
            raise KeyError(f"No stage named {name!r}; see Trace.names().")
        return self.attention(layer)

    def __contains__(self, name: str) -> bool:
        return name in self.stages or self._on_demand_layer(name) is not None

    def _on_demand_layer(self, name: str) -> int | None:
        """l when `name` is blocks.l.attn.weights, not stored, and q and k of layer l are: A_l can be computed."""
        match = _WEIGHTS.fullmatch(name)
        if match is None or name in self.stages:
            return None
        prefix = name[: -len("weights")]
        kept = self._stored(f"{prefix}q") is not None and self._stored(f"{prefix}k") is not None
        return int(match.group(1)) if kept else None

    def _stored(self, name: str) -> torch.Tensor | None:
        """A stage, or a q or k kept only to compute A on demand; None if neither."""
        tensor = self.stages.get(name)
        return self.attention_inputs.get(name) if tensor is None else tensor

    def _qk(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """q and k of layer l: (h, T, d) each."""
        return self._stored(f"blocks.{layer}.attn.q"), self._stored(f"blocks.{layer}.attn.k")

    def names(self) -> list[str]:
        """Every stage, stored or computed on demand, in the order of the forward pass."""
        names = []
        for name in self.order or self.stages:
            if name in self.stages:
                names.append(name)
            if name.endswith(".attn.k") and self._on_demand_layer(name[: -len("k")] + "weights") is not None:
                names.append(name[: -len("k")] + "weights")
        return names

    def shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for name in self.names():
            if name in self.stages:
                shapes[name] = tuple(self.stages[name].shape)
            else:  # (h, T, d) q and k -> (h, T, T), without computing A
                q, k = self._qk(int(_WEIGHTS.fullmatch(name).group(1)))
                shapes[name] = (*q.shape[:-1], k.shape[-2])
        return shapes

    @property
    def depth(self) -> int:
        return self.config.depth

    @property
    def grid(self) -> tuple[int, int]:
        return self.config.grid

    @property
    def layout(self) -> TokenLayout:
        """Which tokens precede the patches (explorer.tokens): the one way to cut a stage's token axis."""
        return self.config.layout

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
        """A_l for layer l (1-based): (h, T, T). Stored, or computed from q and k (the last few layers are kept)."""
        name = f"blocks.{layer}.attn.weights"
        if name in self.stages:
            return self.stages[name]
        with self._lock:
            if layer in self._recent:
                self._recent.move_to_end(layer)
                return self._recent[layer]
        if self._on_demand_layer(name) is None:
            raise KeyError(f"No stage named {name!r}; see Trace.names().")
        q, k = self._qk(layer)  # (h, T, d) each
        h, T, _ = q.shape
        weights = q.new_empty(h, T, k.shape[-2])  # (h, T, T)
        for block in range(_blocks(T)):
            queries = _block(block, T)
            weights[:, queries] = attention_weights(q[:, queries], k)  # (h, 64 to 127, d) -> (h, 64 to 127, T)
        with self._lock:
            self._recent[layer] = weights
            self._recent.move_to_end(layer)
            while len(self._recent) > _RECENT_LAYERS:
                self._recent.popitem(last=False)
        return weights

    def attentions(self) -> torch.Tensor:
        """All attention weights: (L, h, T, T). Every layer at once (3.8 GB for ViT-H/14 at 518): the analyses of
        explorer.analysis take one layer at a time instead."""
        return torch.stack([self.attention(l) for l in range(1, self.depth + 1)])

    def attention_rows(self, query: int) -> torch.Tensor:
        """Row `query` of A_l for every layer l = 1..L: (L, h, T). Tokens as Trace.layout numbers them.

        Equal to attentions()[:, :, query] bit for bit, at the cost of one block of queries per layer.
        """
        T = self.config.seq_len
        self.layout.label(query)  # a one-sentence ValueError outside 0..T-1
        rows = []
        for layer in range(1, self.depth + 1):
            name = f"blocks.{layer}.attn.weights"
            with self._lock:
                known = self.stages.get(name, self._recent.get(layer))  # stored, or computed lately
            if known is not None:
                rows.append(known[:, query])  # (h, T)
                continue
            if self._on_demand_layer(name) is None:
                raise KeyError(f"No stage named {name!r}; see Trace.names().")
            q, k = self._qk(layer)  # (h, T, d) each
            queries = _block(min(query // _QUERY_BLOCK, _blocks(T) - 1), T)  # the block attention() computes it in
            rows.append(attention_weights(q[:, queries], k)[:, query - queries.start])  # (h, T)
        return torch.stack(rows)  # (L, h, T)

    def residual_stream(self) -> torch.Tensor:
        """z_0, z_1, ..., z_L: (L + 1, T, D)."""
        return torch.stack([self["embed.z0"]] + [self[f"blocks.{l}.z"] for l in range(1, self.depth + 1)])

    def residual_mid(self) -> torch.Tensor:
        """z'_1, ..., z'_L: (L, T, D)."""
        return torch.stack([self[f"blocks.{l}.z_mid"] for l in range(1, self.depth + 1)])

    def top_k(self, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable classes as (name, probability), by common.ranking (ties in class order)."""

        probabilities = self.probabilities.numpy()  # (K,)
        names = self.class_names or [str(i) for i in range(probabilities.size)]
        return [(names[i], float(probabilities[i])) for i in ranking(probabilities, k).tolist()]

    def nbytes(self) -> int:
        """What the trace holds: the stored stages and the on-demand attention weights it keeps."""
        with self._lock:
            held = list(self.stages.values()) + list(self.attention_inputs.values()) + list(self._recent.values())
        return sum(t.numel() * t.element_size() for t in held)


def _blocks(T: int) -> int:
    """How many blocks of queries A is computed in: 64 queries each, the last up to 127 (all T when T < 128)."""
    return max(T // _QUERY_BLOCK, 1)


def _block(index: int, T: int) -> slice:
    """The queries of block `index` (0-based) of T."""
    start = index * _QUERY_BLOCK
    return slice(start, T if index == _blocks(T) - 1 else start + _QUERY_BLOCK)


class _Record(dict):
    """The record trace() passes to the model (explorer.model): whether it wants A, which stages it wants (`asked`, and
    q and k of a layer whose A is asked for on demand), and stages that view a larger buffer (q and k inside the qkv
    projection) copied out as they come, so the trace never keeps the rest (v) alive."""

    def __init__(self, attention_weights: bool, asked: Callable[[str], bool]):
        super().__init__()
        self.attention_weights = attention_weights
        self.asked = asked

    def wants(self, name: str) -> bool:
        if self.asked(name):
            return True
        if self.attention_weights or not name.endswith((".attn.q", ".attn.k")):
            return False
        return bool(self.asked(name[: -len("q")] + "weights"))  # A on demand needs q and k

    def __setitem__(self, name: str, tensor: torch.Tensor) -> None:
        if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        super().__setitem__(name, tensor)


def trace(
    model: ViT,
    x: torch.Tensor,
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    meta: dict | None = None,
    attention: str = "on_demand",
    names_filter: NamesFilter = None,
) -> Trace:
    """Run `model` on a batch of one preprocessed image x (1, C, H, W) and return its Trace.

    `mean` and `std` (the normalisation the input went through) give `input.image` in [0, 1];
    without them the input is min-max scaled for display. `attention`: "on_demand" (A_l computed from q and k when
    asked; the forward takes the model's fused kernel if switched on) or "full" (the explicit path, every A_l stored).
    `names_filter` (stage names, glob-like patterns or a predicate; see stage_filter) says which stages to record:
    every one by default. The model is not modified, so threads may trace different images with the same model at once.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"trace takes a batch of one image (1, C, H, W) but got shape {tuple(x.shape)}.")
    if attention not in ATTENTION_MODES:
        raise ValueError(f"attention must be one of {ATTENTION_MODES}, not {attention!r}.")
    parameter = next(model.parameters())
    # A private copy: input.pixels is a view of it, so a trace never aliases the caller's tensor.
    x = x.detach().to(device=parameter.device, dtype=parameter.dtype, copy=True)
    asked = stage_filter(names_filter)
    record = _Record(attention_weights=attention == "full", asked=asked)
    with torch.no_grad():
        model(x, record)
    stages: dict[str, torch.Tensor] = {}
    pixels = x[0].cpu()  # (C, H, W)
    if asked("input.pixels"):
        stages["input.pixels"] = pixels
    if asked("input.image"):
        stages["input.image"] = _displayable(pixels, mean, std)  # (H, W, C)
    inputs: dict[str, torch.Tensor] = {}
    for name, tensor in record.items():
        tensor = tensor[0].cpu()  # drop the batch dimension
        (stages if asked(name) else inputs)[name] = tensor.clone() if name in _PARAMETER_STAGES else tensor
    order = tuple(name for name in ("input.pixels", "input.image") if name in stages) + tuple(record)
    return Trace(model.config, stages, class_names, dict(meta or {}), inputs, order)


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


class _CallableModule(types.ModuleType):
    """This module, callable as its `trace` function. `explorer.trace` is the function while the package's names are
    imported lazily (explorer/__init__.py), but once any module has imported explorer.trace, Python sets the package
    attribute to this module; so the module answers a call as the function would, and `explorer.trace(model, x)`
    works whichever came first."""

    def __call__(self, *args, **kwargs) -> Trace:
        return trace(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
