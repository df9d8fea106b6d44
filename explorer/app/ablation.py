"""Heads switched off in the app: the entry of an image traced with some heads of Eq. 2's MSA removed ("zero").

A head is (l, j): layer l = 1..L as in the paper and the trace's stage names, head j = 0..h-1 as in the trace's head
axis. Switching head j of layer l off removes its output before the projection U_msa, which is the same computation as
zeroing U_msa's columns j·d .. (j+1)·d - 1 (d = D / h): `ablated_model` builds that model, sharing every other
parameter with the one in the menu (which is never changed: other visitors use it at the same time).

The entry with heads off is a second entry of the trace cache, under the key of the image's own entry with the heads
written into its first part (`heads_key`): every view of every step draws from it as from any entry, and its later
model runs (step 5's gradients, dropped patches) run the model with the same heads off. Its trace is one counted
model run ("heads off" in the server's stats).
Nothing here imports Gradio.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import re

from ..deferred import deferred
from .cache import Entry, has_logit_lens

# Imported when first used (explorer/deferred.py): the page is up before torch is loaded.
torch = deferred("torch")
analysis = deferred("explorer.analysis")
tracing = deferred("explorer.trace")

ALL_ON = "probabilities with every head on"  # the trace meta key of an entry with heads off: (K,) as a list
OUTPUT_ALL_ON = "output y with every head on"  # likewise y (D,): how far a backbone's features moved
RUN_KIND = "heads off"  # what the server counts the traces with heads off under (stats()["explain_runs"])
_MARK = "|heads off:"
_HEAD = re.compile(r"(\d+)\.(\d+)")


def normalised(heads, config) -> tuple[tuple[int, int], ...]:
    """`heads` as sorted distinct (l, j) within the model (1 <= l <= L, 0 <= j < h); others are dropped."""
    kept = {(int(l), int(j)) for l, j in (heads or ())}
    return tuple(sorted((l, j) for l, j in kept if 1 <= l <= config.depth and 0 <= j < config.heads))


def heads_key(key, heads) -> tuple[str, str, str]:
    """The cache key of `key`'s image and model with `heads` off (`key` itself, without any, when `heads` is empty)."""
    image, label, device = base_key(key)
    if not heads:
        return image, label, device
    return image + _MARK + ",".join(f"{l}.{j}" for l, j in heads), label, device


def base_key(key) -> tuple[str, str, str]:
    """The key of the image's own entry, all heads on."""
    image, label, device = key
    return str(image).split(_MARK)[0], label, device


def heads_of(key) -> tuple[tuple[int, int], ...]:
    """The heads (l, j) a key says are off (none for an image's own entry)."""
    if not key:
        return ()
    _, _, heads = str(key[0]).partition(_MARK)
    return tuple((int(l), int(j)) for l, j in _HEAD.findall(heads))


def toggled(heads, head) -> tuple[tuple[int, int], ...]:
    """`heads` with `head` switched off, or on again if it was off."""
    out = set(heads or ())
    out ^= {tuple(head)}
    return tuple(sorted(out))


def _shallow(module):
    """A copy of `module` whose own submodules and parameters can be replaced without touching the original's."""
    twin = copy.copy(module)
    twin._modules = dict(module._modules)
    twin._parameters = dict(module._parameters)
    return twin


def ablated_model(model, heads):
    """`model` with each head (l, j) of `heads` off: a copy sharing every parameter but U_msa's weight of those layers,
    whose columns of head j (the ones that read its output) are zero. The model itself is not changed."""
    if not heads:
        return model
    d = model.config.head_dim
    twin = _shallow(model)
    blocks = twin._modules["blocks"] = _shallow(model.blocks)
    for l in sorted({l for l, _ in heads}):
        block = blocks._modules[str(l - 1)] = _shallow(model.blocks[l - 1])
        msa = block._modules["msa"] = _shallow(block.msa)
        projection = msa._modules["projection"] = _shallow(block.msa.projection)
        weight = projection.weight.detach().clone()  # U_msa: (D, D), columns j·d .. (j+1)·d - 1 read head j
        for j in (j for layer, j in heads if layer == l):
            weight[:, j * d:(j + 1) * d] = 0
        projection._parameters["weight"] = torch.nn.Parameter(weight, requires_grad=False)
    return twin


def _run_ablated(run_model, label: str, pixels, heads, kind: str, fn):
    """Entry.run_model of an entry with heads off: fn(model, x) on the model with those heads off, counted as `kind`."""
    return run_model(label, pixels, kind, lambda model, x: fn(ablated_model(model, heads), x))


def _traced(model, x, entry: Entry, heads):
    """The trace and the logit lens of `entry`'s input x through `model` with `heads` off."""
    preprocessing = entry.preprocessing
    meta = dict(entry.trace.meta, heads_off=[list(head) for head in heads])
    if entry.config.has_classifier:
        meta[ALL_ON] = entry.trace.probabilities.tolist()
    meta[OUTPUT_ALL_ON] = entry.trace["head.y"].tolist()
    ablated = ablated_model(model, heads)
    result = tracing.trace(ablated, x, mean=preprocessing.mean, std=preprocessing.std,
                           class_names=entry.trace.class_names, meta=meta)
    return result, analysis.logit_lens(result, ablated, k=5) if has_logit_lens(entry.config) else None


def _fresh_memo():
    return next(f for f in dataclasses.fields(Entry) if f.name == "memo").default_factory()


def ablated_entry(server, entry: Entry, heads, source=None) -> Entry:
    """The entry of `entry`'s image with `heads` off (`entry` itself when none is): traced once, a counted model run,
    and kept in the server's trace cache beside the image's own entry. `source` (the upload, as Server.entry takes it)
    traces the image again if the cache has dropped its own entry."""
    base = server.entry(base_key(entry.key), source) if heads_of(entry.key) else entry
    heads = normalised(heads, base.config)
    if not heads:
        return base
    key = heads_key(base.key, heads)

    def compute() -> Entry:
        label, pixels = base.spec.label, base.trace["input.pixels"]  # (C, H, W)
        result, lens = server.run_model(label, pixels, RUN_KIND, lambda model, x: _traced(model, x, base, heads))
        # Traced with every stage (stages=None): nothing to trace again, and the base entry's retrace (all heads on)
        # must never replace this trace.
        return dataclasses.replace(base, key=key, trace=result, logit_lens=lens, memo=_fresh_memo(),
                                   run_model=functools.partial(_run_ablated, server.run_model, label, pixels, heads),
                                   stages=None, retrace=None)
    return server.cache.get_or_compute(key, compute)


def describe(heads) -> str:
    """The heads off in words, heads numbered from 1 as the page shows them ("layer 3 head 2, layer 7 head 1")."""
    return ", ".join(f"layer {l} head {j + 1}" for l, j in heads)
