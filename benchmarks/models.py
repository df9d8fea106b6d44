"""The models a benchmark measures: ours and a torchvision twin with the same weights, and the checkpoint folder the
app's session reads them from.

A model is named on the command line (command_line) as a preset (random weights; Table 1 presets are torchvision's own builders) or
as SHIPPED, the checkpoint the app ships (checkpoints/vit_fashion_mnist).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from explorer.app.settings import data_dir

ROOT = Path(__file__).resolve().parent.parent  # the checkout the benchmarks run from: app.py, assets/, checkpoints/
DEFAULT_CHECKPOINT = data_dir("checkpoints") / "vit_fashion_mnist"
DEFAULT_IMAGE = data_dir("assets") / "cat_chelsea.jpg"
SHIPPED = "shipped"


def command_line(module: str, doc: str, model_help: str) -> argparse.ArgumentParser:
    """The command line of `python -m <module>`, described by the first paragraph of `doc`, with the models it
    measures: --model (repeatable), --checkpoint (the shipped model's stem) and --image (the uploaded image)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=None, metavar="NAME", help=model_help)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="the shipped model's checkpoint stem (.safetensors + .json) (default: %(default)s)")
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="the uploaded image (default: %(default)s)")
    return parser


@dataclass
class Subject:
    """One model to measure: ours, torchvision's with the same weights, and how the app's session names it."""

    name: str  # "ViT-B/16", "ViT-Fashion/4 (checkpoint vit_fashion_mnist)", ...
    ours: object  # explorer.ViT, eval
    tv: object  # torchvision VisionTransformer, eval
    preprocessing: object  # explorer.images.Preprocessing
    class_names: list[str]
    checkpoint_dir: Path  # the app session's checkpoint folder
    session_model: str  # what the session resolves: a menu label or a checkpoint's stem
    tv_transform: Callable  # PIL image -> (C, H, W): torchvision's own preprocessing


def torchvision_twin(model):
    """A torchvision VisionTransformer holding exactly `model`'s weights (the inverse of weights.from_torchvision)."""
    import torch
    from torchvision.models import VisionTransformer

    from explorer.families.torchvision import _key_table

    c = model.config
    height, width = c.image_hw
    if height != width:
        raise ValueError(f"torchvision's ViT takes square images; this model takes {height}x{width}.")
    tv = VisionTransformer(image_size=height, patch_size=c.patch_size, num_layers=c.depth, num_heads=c.heads,
                           hidden_dim=c.hidden_dim, mlp_dim=c.mlp_dim, num_classes=c.num_classes,
                           representation_size=c.representation_size)
    if c.channels != 3:  # torchvision's stem is RGB; its forward never checks C
        tv.conv_proj = torch.nn.Conv2d(c.channels, c.hidden_dim, kernel_size=c.patch_size, stride=c.patch_size)
    theirs = tv.state_dict()
    ours = model.state_dict()
    state = {}
    for our_key, candidates in _key_table(c.depth, c.representation_size is not None).items():
        state[next(k for k in candidates if k in theirs)] = ours[our_key].detach().clone()
    tv.load_state_dict(state, strict=True)
    return tv.eval()


def _tv_transform(preprocessing):
    """torchvision transforms doing what `preprocessing` does (resize, centre crop, to tensor, normalise)."""
    from torchvision import transforms as T

    steps = [T.Grayscale()] if preprocessing.channels == 1 else []
    steps += [T.Resize(preprocessing.resize_size, interpolation=T.InterpolationMode(preprocessing.interpolation)),
              T.CenterCrop(preprocessing.crop_size), T.ToTensor(), T.Normalize(preprocessing.mean, preprocessing.std)]
    return T.Compose(steps)


def _stem(name: str) -> str:
    """The checkpoint stem under which a random-weight preset is saved for the app's session."""
    return "bench_" + "".join(ch if ch.isalnum() else "_" for ch in name).lower()


def _random_preset(name: str):
    """(ours, torchvision twin, preprocessing, class names, torchvision transform) for a preset with random weights.
    Table 1 presets are torchvision's own builders (vit_b_16() etc.: random init, nothing downloaded)."""
    import torch
    import torchvision

    from explorer.config import CONFIGS
    from explorer.images import Preprocessing
    from explorer.model import ViT
    from explorer.weights import PRETRAINED, from_torchvision, get_weights

    if name not in CONFIGS:
        raise SystemExit(f"Unknown model {name!r}; choose {SHIPPED!r} or one of {', '.join(CONFIGS)}.")
    torch.manual_seed(0)
    if name in PRETRAINED:
        tv = getattr(torchvision.models, PRETRAINED[name][0])().eval()
        weights = get_weights(name, "DEFAULT")
        preprocessing = Preprocessing.from_torchvision(weights.transforms())
        class_names = list(weights.meta["categories"])
        tv_transform = weights.transforms()
    else:
        config = CONFIGS[name]
        tv = torchvision_twin(ViT(config))
        size, channels = config.image_hw[0], config.channels
        preprocessing = Preprocessing(resize_size=size, crop_size=size, channels=channels,
                                      mean=(0.5,) * channels, std=(0.5,) * channels)
        class_names = [f"class {i}" for i in range(config.num_classes)]
        tv_transform = _tv_transform(preprocessing)
    return from_torchvision(tv, name=name), tv, preprocessing, class_names, tv_transform


def prepare_checkpoints(models: list[str], checkpoint: Path, folder: Path) -> Path:
    """The app session's checkpoint folder for this run: the shipped checkpoint linked in, other non-Table-1 presets
    saved with random weights. (Table 1 presets are the session's own "random init" entries.)"""
    from explorer.app.registry import TABLE_1
    from explorer.weights import save_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    for name in models:
        if name == SHIPPED:
            for suffix in (".json", ".safetensors"):
                link = folder / (checkpoint.name + suffix)
                if not link.exists():
                    link.symlink_to(Path(str(checkpoint) + suffix).resolve())
        elif name not in TABLE_1 and not (folder / f"{_stem(name)}.json").exists():
            ours, _, preprocessing, class_names, _ = _random_preset(name)
            save_checkpoint(folder / _stem(name), ours, class_names, preprocessing,
                            provenance={"note": "benchmarks: random init"})
    return folder


def session_model(name: str, checkpoint: Path) -> str:
    """How the app's session names a model of this run (a checkpoint stem or a menu label)."""
    from explorer.app.registry import TABLE_1, untrained_label

    if name == SHIPPED:
        return checkpoint.name
    return untrained_label(name) if name in TABLE_1 else _stem(name)


def build_subject(name: str, checkpoint: Path, folder: Path) -> Subject:
    """ViT-B/16 exactly as issue 6 states it (torchvision.models.vit_b_16(), random init) and ours from it; the
    shipped checkpoint and a torchvision twin of it; or another preset with random weights."""
    from explorer.weights import load_checkpoint

    if name == SHIPPED:
        bundle = load_checkpoint(checkpoint)
        ours = bundle.model.eval()
        return Subject(f"{ours.config.name or 'shipped'} ({checkpoint.name})", ours, torchvision_twin(ours),
                       bundle.preprocessing, bundle.class_names, folder, session_model(name, checkpoint),
                       _tv_transform(bundle.preprocessing))
    ours, tv, preprocessing, class_names, tv_transform = _random_preset(name)
    return Subject(name, ours, tv, preprocessing, class_names, folder, session_model(name, checkpoint), tv_transform)


def prepare_photo(folder: Path) -> Path:
    """A 12-megapixel JPEG (4032x3024, a phone photo's size) made from the cat example: what visitors upload."""
    from PIL import Image

    path = folder / "photo_12mp.jpg"
    if not path.exists():
        with Image.open(DEFAULT_IMAGE) as image:
            image.convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC).save(path, quality=90)
    return path
