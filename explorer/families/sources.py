"""The one model source resolver: a name -> a ModelBundle, for explorer.load, the app's menu and the survey.

`load(name, device="cpu", *, models_dir=None)` accepts, tried in this order:
- a file or folder that exists: one of the project's checkpoints (its .safetensors or .json, or a folder holding
  one), a model folder (timm's or transformers' save_pretrained: config.json + model.safetensors, or its shards), or
  that folder's config.json or model.safetensors;
- an untrained preset, "ViT-B/16 · random init" (any preset of explorer.CONFIGS; seed 0);
- a torchvision preset, "ViT-B/16" (its default weights), or "ViT-B/16 · IMAGENET1K_SWAG_E2E_V1" (a variant);
- one of the project's checkpoints by stem, or by name in $EXPLORER_CHECKPOINTS or the shipped checkpoints
  ("vit_fashion_mnist");
- a Hugging Face Hub id, "google/vit-base-patch16-224" (also "hf-hub:google/..."): from the folder
  <models_dir>/google--vit-base-patch16-224 when it holds a config.json (models_dir: $EXPLORER_MODELS, read at each
  call, unless given), else from huggingface_hub's cache, downloaded into it once where the network is allowed.
A checkpoint is read with its own preprocessing and class names, so that a photo is read as its authors' pipeline
reads it. Whatever can't be had is a WeightsUnavailable (UnsupportedModel for a model the explorer would compute
differently) whose text is one sentence saying what to do.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..common import reason
from ..config import CONFIGS
from ..deferred import deferred
from ..weights import (PICKLE_SUFFIXES, PRETRAINED, UNTRAINED, ModelBundle, WeightsUnavailable, get_weights,
                       load_checkpoint, load_pretrained, random_bundle)
from .catalogue import catalogue_entry
from .files import is_project_checkpoint, read_json
from .hub import hub_folder_name, snapshot
from .timm import load_timm_folder
from .transformers import load_transformers_folder

# Imported when first used (explorer/deferred.py).
torch = deferred("torch")

PACKAGE = Path(__file__).resolve().parents[1]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def load(name: str | os.PathLike, device: str | torch.device = "cpu", *,
         models_dir: str | os.PathLike | None = None) -> ModelBundle:
    """The model `name` stands for (see the module's docstring for every form), on `device`, in eval mode."""
    given = os.fspath(name).strip()
    text = " ".join(given.split())
    preset, dot, weights = (part.strip() for part in text.partition("·"))
    path = Path(given).expanduser()
    if path.exists():  # first: a folder may be called anything, "a · b" too
        bundle = _load_local(path)
    elif dot and weights.lower() == UNTRAINED:
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
        raise WeightsUnavailable(f"There is no model called {text!r}; give a torchvision preset ({', '.join(PRETRAINED)}) "
                                 f"with one of its weight variants, such as 'ViT-B/16 · IMAGENET1K_V1', or a preset at "
                                 f"random init, such as 'ViT-B/16 · {UNTRAINED}'.")
    elif (stem := _checkpoint_stem(given)) is not None:
        bundle = load_checkpoint(stem)
    else:
        bundle = _load_hub(_hub_id(text, path), models_dir)
    bundle.model = bundle.model.to(device).eval()
    return bundle


def _hub_id(text: str, path: Path) -> str:
    """The Hub id `text` names ("hf-hub:" allowed); one-sentence WeightsUnavailable when it names nothing at all."""
    repo_id = text.removeprefix("hf-hub:")
    if not _HUB_ID.fullmatch(repo_id) or repo_id.startswith((".", "/")):
        raise WeightsUnavailable(f"No file or folder at {path}, and {text!r} is neither a preset, a checkpoint's name "
                                 f"nor a Hugging Face Hub id such as google/vit-base-patch16-224.")
    return repo_id


def checkpoint_dirs() -> list[Path]:
    """Where a checkpoint's bare name is looked up: $EXPLORER_CHECKPOINTS, then the shipped checkpoints (a source
    checkout's checkpoints/, the installed package's copy)."""
    configured = os.environ.get("EXPLORER_CHECKPOINTS", "").strip()
    dirs = [Path(configured).expanduser()] if configured else []
    return dirs + [PACKAGE.parent / "checkpoints", PACKAGE / "shipped_checkpoints"]


def _checkpoint_stem(text: str) -> Path | None:
    """The stem of one of the project's checkpoints named by `text` (a stem, or a name in checkpoint_dirs()), or
    None."""
    path = Path(text).expanduser()
    candidates = [path] + ([folder / text for folder in checkpoint_dirs()] if "/" not in text else [])
    for stem in candidates:
        if stem.with_name(stem.name + ".json").is_file() and stem.with_name(stem.name + ".safetensors").is_file():
            return stem
    return None


def _load_local(path: Path) -> ModelBundle:
    if path.is_dir():
        return _load_folder(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise WeightsUnavailable(
            f"{path.name} is a pickle file, which can run code when loaded; only .safetensors weights are accepted."
        )
    if path.name == "config.json" or (path.name.startswith("model") and path.suffix == ".safetensors"
                                      and (path.parent / "config.json").is_file()):
        return _load_folder(path.parent)
    if path.suffix in (".safetensors", ".json"):
        return load_checkpoint(path)
    raise WeightsUnavailable(f"{path.name} is not a checkpoint; give a folder with config.json and model.safetensors, "
                             f"or a .safetensors file.")


def _load_folder(folder: Path, hub_id: str | None = None) -> ModelBundle:
    if not (folder / "config.json").is_file():
        ours = [p for p in sorted(folder.glob("*.json")) if is_project_checkpoint(p)]
        if len(ours) == 1:
            return load_checkpoint(ours[0])
        raise WeightsUnavailable(f"No config.json in {folder}; a model folder holds config.json and model.safetensors, "
                                 f"as transformers' and timm's save_pretrained write them.")
    hf_config = read_json(folder / "config.json")
    where = f"Hugging Face Hub {hub_id}" if hub_id else str(folder)
    convert = (load_timm_folder if "architecture" in hf_config  # timm writes architecture + pretrained_cfg
               else load_transformers_folder if "model_type" in hf_config else None)
    if convert is not None:
        try:
            return convert(folder, hf_config, hub_id, where)
        except WeightsUnavailable:
            raise
        except (ValueError, KeyError, AssertionError) as error:  # the key table's shape and name checks
            raise WeightsUnavailable(f"The weights in {where} do not match its config.json ({reason(error)}); save "
                                     f"the model again so that both files come from the same model.") from None
    raise WeightsUnavailable(f"{folder / 'config.json'} is neither a timm nor a transformers config (it has no "
                             f"'architecture' or 'model_type').")


def _load_hub(repo_id: str, models_dir) -> ModelBundle:
    """A Hub checkpoint: from <models_dir>/<owner>--<name> if it holds a config.json (its files put there by hand),
    else through huggingface_hub's cache."""
    if models_dir is None:
        models_dir = os.environ.get("EXPLORER_MODELS", "").strip() or None
    name = hub_folder_name(repo_id)
    folder = Path(models_dir).expanduser() / name if models_dir else None
    if folder is not None and (folder / "config.json").is_file():
        bundle = _load_folder(folder)
        bundle.weights = repo_id
        bundle.meta["hub_id"] = repo_id
        return bundle
    # In words, not "<folder>": the app shows this sentence as Markdown, where <folder> would be taken for a tag.
    put_in = (str(folder) if folder is not None
              else f"a folder named {name} inside a folder of your choice, and set EXPLORER_MODELS to that folder")
    pinned = catalogue_entry(repo_id)  # the catalogue's checkpoints: one revision, one SHA-256 (catalogue.py)
    return _load_folder(snapshot(repo_id, put_in, pinned.revision if pinned else None, pinned and pinned.sha256),
                        hub_id=repo_id)
