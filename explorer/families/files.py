"""A model folder's files read safely: config.json, model.safetensors (or its shards); never a pickle.

A folder whose weights are only pytorch_model.bin, *.pth or *.ckpt is refused with one sentence: unlike torchvision's
own files, a user's file is not read even with torch.load(weights_only=True).
"""
from __future__ import annotations

import json
from pathlib import Path

from ..common import reason
from ..deferred import deferred
from ..weights import PICKLE_SUFFIXES, WeightsUnavailable

# Imported when first used (explorer/deferred.py): the app's menu reads model folders' configs without them.
torch = deferred("torch")
safetensors_torch = deferred("safetensors.torch")


def read_json(path: Path) -> dict:
    """The JSON object in `path`; one-sentence WeightsUnavailable when it is missing or not a JSON object."""
    if not path.is_file():
        raise WeightsUnavailable(f"No {path.name} in {path.parent}; a model folder holds config.json and "
                                 f"model.safetensors.")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise WeightsUnavailable(f"{path} is not valid JSON ({reason(error)}); save the model again.") from None
    if not isinstance(data, dict):
        raise WeightsUnavailable(f"{path} does not hold a JSON object; save the model again.")
    return data


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors_torch.load_file(str(path), device="cpu")
    except Exception as error:  # safetensors raises its own error type for a damaged header
        raise WeightsUnavailable(f"{path} is not a readable safetensors file ({reason(error)}); save the model "
                                 f"again.") from None


def pickles_in(folder: Path) -> list[str]:
    """The names of the pickle files in `folder` (weights the explorer never unpickles), sorted."""
    return sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES) if folder.is_dir() else []


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of model.safetensors in `folder`, or of the shards model.safetensors.index.json lists."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return _load_safetensors(single)
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        if not shards or any(Path(s).name != s for s in shards):
            raise WeightsUnavailable(f"{index} lists no shards in its folder; save the model again.")
        tensors: dict[str, torch.Tensor] = {}
        for shard in shards:
            if not (folder / shard).is_file():
                raise WeightsUnavailable(f"The shard {shard} listed in {index.name} is missing from {folder}.")
            tensors.update(_load_safetensors(folder / shard))
        return tensors
    pickles = pickles_in(folder)
    if pickles:
        raise WeightsUnavailable(
            f"{folder} holds only {pickles[0]}, a pickle file, which can run code when loaded; save the weights as "
            f"model.safetensors and pass the folder again."
        )
    raise WeightsUnavailable(f"No model.safetensors in {folder}; put the weights file next to its config.json.")


def is_project_checkpoint(path: Path) -> bool:
    """Whether `path` is the JSON side file of one of the project's checkpoints (explorer.weights.save_checkpoint)."""
    try:
        return json.loads(path.read_text()).get("format", "").startswith("vit-explorer/")
    except Exception:
        return False
