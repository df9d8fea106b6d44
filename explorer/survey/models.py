"""The model a survey is of, by any name the survey command accepts (a preset, a checkpoint, a folder or a Hub id)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..config import CONFIGS
from ..weights import (PRETRAINED, UNTRAINED, ModelBundle, WeightsUnavailable, get_weights, load_checkpoint,
                       load_pretrained, random_bundle)

REPO = Path(__file__).resolve().parents[2]


def _checkpoint_dirs() -> list[Path]:
    configured = os.environ.get("EXPLORER_CHECKPOINTS", "").strip()
    dirs = [Path(configured).expanduser()] if configured else []
    return dirs + [REPO / "checkpoints", Path(__file__).resolve().parents[1] / "shipped_checkpoints"]


def _checkpoint_stem(text: str) -> Path | None:
    """The stem of one of the project's checkpoints named by `text` (a path, a stem, or a name in the checkpoint
    folders: $EXPLORER_CHECKPOINTS, then the shipped ones), or None."""
    path = Path(text).expanduser()
    if path.suffix in (".safetensors", ".json") and path.is_file():
        return path
    candidates = [path] + ([folder / text for folder in _checkpoint_dirs()] if "/" not in text else [])
    for stem in candidates:
        if stem.with_name(stem.name + ".json").is_file() and stem.with_name(stem.name + ".safetensors").is_file():
            return stem
    return None


def resolve_model(name: str, device: str | torch.device = "cpu") -> ModelBundle:
    """A model by any name the survey accepts:

    - a torchvision preset, "ViT-B/16" (its default weights), or "ViT-B/16 · IMAGENET1K_SWAG_E2E_V1" (a variant);
      offline and not cached, WeightsUnavailable says which file to put where;
    - an untrained preset, "ViT-B/16 · random init" (any preset of explorer.CONFIGS; seed 0);
    - one of the project's checkpoints: a .safetensors/.json file, their stem, or a stem in $EXPLORER_CHECKPOINTS or
      the shipped checkpoints ("vit_fashion_mnist");
    - a model folder (timm's or transformers' save_pretrained) or a Hugging Face Hub id (explorer.families.load).
    """
    text = " ".join(str(name).split())
    preset, dot, weights = (part.strip() for part in text.partition("·"))
    if dot and weights.lower() == UNTRAINED:
        if preset not in CONFIGS:
            raise WeightsUnavailable(f"There is no preset {preset!r} to build at random init; choose one of "
                                     f"{', '.join(CONFIGS)}.")
        bundle = random_bundle(preset)
    elif preset in PRETRAINED:
        try:
            get_weights(preset, weights or "DEFAULT")
        except ValueError as error:  # an unknown weight variant; the message lists the choices
            raise WeightsUnavailable(str(error)) from None
        bundle = load_pretrained(preset, weights or "DEFAULT")
    elif dot:
        raise WeightsUnavailable(f"There is no model called {text!r}; give a torchvision preset with its weights "
                                 f"({', '.join(PRETRAINED)} · <variant>) or '<preset> · {UNTRAINED}'.")
    elif (stem := _checkpoint_stem(text)) is not None:
        bundle = load_checkpoint(stem)
    else:
        from ..families import load

        bundle = load(text)
    bundle.model = bundle.model.to(device).eval()
    return bundle
