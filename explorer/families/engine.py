"""The one conversion engine: another library's ViT weights into an explorer.ViT, by a key table given as data.

A key table maps each of our parameter names to its sources, newest layout first. A source is one tensor name
(copied as is; a tensor that lacks only leading dimensions of 1, as CLIP's class embedding (D,) for our (1, 1, D), is
viewed with them) or a tuple of names concatenated along dim 0 (three Linear layers' [W_q; W_k; W_v]: (3D, D), the
layout of our qkv). torchvision's, timm's and transformers' tables live in explorer.families.torchvision, .timm
and .transformers: each is data, and `convert` is the only code that applies one.

Every shape is asserted, every source tensor must be used (or named in `ignore`), the model is built on the meta
device (no throw-away initialisation: ViT-H/14 has 632M parameters) and takes the tensors with
load_state_dict(strict=True, assign=True). A wrong table or file is a one-sentence ValueError naming the tensor.
"""
from __future__ import annotations

from typing import Union

from ..config import ViTConfig
from ..deferred import deferred

# Imported when first used (explorer/deferred.py): the app's menu imports this module without torch.
torch = deferred("torch")

# A source of one of our parameters: a tensor name, or names concatenated along dim 0.
Source = Union[str, tuple[str, ...]]
# Our parameter name -> its possible sources, newest layout first.
KeyTable = dict[str, tuple[Source, ...]]


def _names(source: Source) -> tuple[str, ...]:
    return (source,) if isinstance(source, str) else tuple(source)


def convert(state_dict: dict[str, torch.Tensor], table: KeyTable, config: ViTConfig, family: str, *,
            zero: frozenset[str] = frozenset(), ignore: frozenset[str] = frozenset(), copy: bool = True) -> ViT:
    """A ViT(config) holding `state_dict`'s tensors, renamed by `table`. Keys in `zero` are biases the source layer
    does not have (b = 0, the same computation); keys in `ignore` are source tensors its own forward never reads.
    With copy=False the parameters share storage with the given tensors where no cast or concatenation is needed
    (fine for a state dict just read from a file); a meta-device state dict gives a meta-device model."""
    from ..model import ViT

    with torch.device("meta"):
        model = ViT(config)
    ours = model.state_dict()
    assert set(table) == set(ours), f"{family} key table out of date: {sorted(set(table) ^ set(ours))[:5]}"
    device = next(iter(state_dict.values())).device if state_dict else torch.device("cpu")
    converted, used = {}, set()
    for our_key, sources in table.items():
        expected = ours[our_key]
        if our_key in zero:
            converted[our_key] = torch.zeros(expected.shape, dtype=expected.dtype, device=device)
            continue
        names = next((n for n in map(_names, sources) if all(k in state_dict for k in n)), None)
        if names is None:
            raise ValueError(f"The {family} weights lack {_names(sources[0])[0]} (needed for {our_key}).")
        parts = [state_dict[k].detach() for k in names]
        tensor = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)  # e.g. [W_q; W_k; W_v]: (3D, D)
        leading = expected.dim() - tensor.dim()
        if leading > 0 and tuple(expected.shape) == (1,) * leading + tuple(tensor.shape):
            tensor = tensor.reshape(expected.shape)  # e.g. (D,) -> (1, 1, D): the same numbers
        if tensor.shape != expected.shape:
            raise ValueError(f"The {family} tensor {'+'.join(names)} has shape {tuple(tensor.shape)}; expected "
                             f"{tuple(expected.shape)}.")
        tensor = tensor.to(dtype=expected.dtype)  # float32 like a fresh ViT; no copy if it already is
        converted[our_key] = tensor.clone() if copy and len(parts) == 1 else tensor
        used.update(names)
    unused = set(state_dict) - used - ignore
    if unused:
        raise ValueError(f"The {family} weights have tensors this model would not use: {sorted(unused)[:5]}.")
    model.load_state_dict(converted, strict=True, assign=True)
    return model.eval()
