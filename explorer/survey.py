"""python -m explorer.survey: the paper's analyses over many images, the model's accuracy, and how faithful each
explanation is; written as JSON, PNG figures and one self-contained HTML report.

    python -m explorer.survey                                      # the shipped model, 128 Fashion-MNIST test images
    python -m explorer.survey --model ViT-B/16 --data photos/ --out surveys/b16
    python -m explorer.survey --model "ViT-B/16 · random init" --data fashion-mnist --n 64
    torchrun --standalone --nproc-per-node=2 -m explorer.survey --n 10000 --out surveys/fashion
    python -m explorer.survey --bench                              # survey throughput against torchvision's forward

Per image, then over the images:
- mean attention distance of every head (App. D.7, Fig. 7 right), in pixels: class token dropped as query and key,
  each patch's weights renormalised over the patches (explorer.analysis.mean_attention_distance, renormalise=True);
  the mean over the images and its spread (the sample standard deviation over the images);
- the attention rollout map (Fig. 6; heads fused by their mean, nothing discarded), each image's scaled to a maximum
  of 1 as explorer.analysis.rollout_map does, then averaged;
- the top class; accuracy and per-class accuracy (recall) where the labels are known;
- for the first K images (--faithfulness K), the deletion and insertion areas (Petsiuk et al. 2018; explorer.explain)
  of rollout, relevance, Grad-CAM, the last layer's attention and a random order (seeded by the image's index), for
  the top class: mean and 95% confidence interval of the mean by Student's t with K - 1 degrees of freedom.
From the weights alone: the position-embedding similarity (Fig. 7 centre) and the principal components of the patch-
embedding filters (Fig. 7 left).

The images, in the order that decides which are "the first N":
- `--data fashion-mnist`: its 10,000 test images in file order (already shuffled over classes); labels are known when
  the model's classes are Fashion-MNIST's. `--data-idx FOLDER` reads the IDX files from another folder.
- a folder of class folders, DIR/<class>/*.jpg (or DIR/test/<class>/*.jpg, the training layout): round-robin over the
  classes (the first file of each class in sorted class order, then the second of each, ...), each class's files
  sorted by name, so that any N covers every class. Labels are known when every folder names one of the model's
  classes (compared ignoring case and punctuation: `T-shirt_top` is "T-shirt/top").
- a flat folder, DIR/*.jpg: sorted by name; no labels.
A file that cannot be read as an image is listed under "skipped" with one sentence and left out of every average.

A survey resumes where it stopped. Per-image results are appended to JSON-lines shard files (one per process) in
--work (default OUT/shards) and flushed after every batch; on a restart the images already in a shard are skipped, a
half-written last line is dropped, and the merge keeps one record per image index, so nothing is counted twice. The
work folder's manifest.json names the model (with a digest of its weights), the data and the faithfulness settings; a
work folder of another survey is refused, not mixed in. The shards are deleted after a complete run (--keep-shards
keeps them: a later run with a larger --n then only computes the new images).

Under torchrun the images still to do are split across the processes (the k-th goes to rank k mod world; gloo on CPU,
nccl on GPU with each process on cuda:LOCAL_RANK), and the per-image results are gathered to rank 0 through
torch.distributed (no shared file system needed), which merges them in index order and writes the outputs. So
survey.json does not depend on the number of processes; what does (processes, time, images per second) is in run.json.

Outputs in OUT: survey.json, run.json, report.html (the figures embedded, the numbers in tables) and the figures:
attention_distance.png, rollout.png, position_similarity.png, embedding_filters.png, and where they apply
faithfulness.png, accuracy.png, confusion.png.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import html
import json
import math
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import distributed
from .analysis import embedding_filter_components, patch_distances, position_similarity
from .config import CONFIGS
from .data import FASHION_MNIST_CLASSES, IMAGE_SUFFIXES, DataError, load_fashion_mnist, prepare_images
from .explain import ALL_POINTS_UP_TO, DEFAULT_STEPS, default_steps, faithfulness
from .images import ImageError, open_image
from .model import ViT
from .weights import (PRETRAINED, UNTRAINED, ModelBundle, WeightsUnavailable, get_weights, load_checkpoint,
                      load_pretrained, random_bundle)

SURVEY_FORMAT = "vit-explorer-survey/1"
DEFAULT_MODEL = "vit_fashion_mnist"  # the shipped checkpoint
PAPER_IMAGES = 128  # "averaged over 128 example images" (App. D.7)
FILTER_COMPONENTS = 28  # Fig. 7 left: "first 28 principal components"
REPO = Path(__file__).resolve().parents[1]


class SurveyError(ValueError):
    """A command line that can't be run as given; the message says what to change."""


# ---------------------------------------------------------------------------------------------------------------
# The model: every name the survey accepts

def _checkpoint_dirs() -> list[Path]:
    configured = os.environ.get("EXPLORER_CHECKPOINTS", "").strip()
    dirs = [Path(configured).expanduser()] if configured else []
    return dirs + [REPO / "checkpoints", Path(__file__).resolve().parent / "shipped_checkpoints"]


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
        from .families import load

        bundle = load(text)
    bundle.model = bundle.model.to(device).eval()
    return bundle


def weights_digest(model: torch.nn.Module) -> str:
    """A short digest of every parameter and buffer (names, shapes and bytes): which weights a survey is of."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# The images

def _plain(name: str) -> str:
    """A class name compared ignoring case and punctuation: "T-shirt/top" and "t-shirt_top" are the same."""
    return re.sub(r"[^0-9a-z]+", "", name.lower())


@dataclass
class Images:
    """The images a survey can take, in survey order, with what the model should be fed and the labels if known."""

    description: str
    order: str  # how "the first N" are chosen, in words
    count: int
    class_names: list[str] | None  # names of the label indices (the model's classes) when labels are known
    notes: list[str] = field(default_factory=list)

    def load(self, indices: list[int]) -> tuple[dict[int, torch.Tensor], dict[int, int | None], dict[int, str]]:
        """-> (index -> model input (C, H, W), index -> label or None, index -> why the image was skipped)."""
        raise NotImplementedError

    def name(self, index: int) -> str:
        return f"image {index}"


class FashionImages(Images):
    """Fashion-MNIST's test set, prepared as explorer.evaluate prepares it (never inverted)."""

    def __init__(self, bundle: ModelBundle, folder: str | Path | None = None):
        test = load_fashion_mnist(folder).test
        self.images, self.labels, self.preprocessing = test.images, test.labels, bundle.preprocessing
        labelled = [_plain(n) for n in bundle.class_names] == [_plain(n) for n in FASHION_MNIST_CLASSES]
        where = f"IDX files in {folder}" if folder else "Debian dataset-fashion-mnist"
        notes = [] if labelled else [
            "The model's classes are not Fashion-MNIST's, so no accuracy is computed (its predictions are counted)."]
        super().__init__(f"Fashion-MNIST test set ({where})", "the test set's file order", len(test.labels),
                         list(bundle.class_names) if labelled else None, notes)

    def load(self, indices):
        from .train import normalise

        batch = prepare_images(self.images[indices], self.preprocessing)  # (B, C', crop, crop) uint8
        x = normalise(batch, self.preprocessing)  # (B, C, H, W)
        labels = self.labels[indices].tolist() if self.class_names else [None] * len(indices)
        return dict(zip(indices, x)), dict(zip(indices, labels)), {}

    def name(self, index):
        return f"test image {index}"


class FolderImages(Images):
    """DIR/<class>/*.jpg (round-robin over the classes) or DIR/*.jpg (by name), through the model's preprocessing."""

    def __init__(self, bundle: ModelBundle, folder: str | Path):
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise DataError(f"No folder at {root}; --data must be 'fashion-mnist' or a folder of images "
                            f"(DIR/<class>/*.jpg or DIR/*.jpg).")
        if _class_folders(root / "test") and not _class_folders(root) - {"train", "test"}:
            root = root / "test"  # the training layout: survey its test split
        files_here = _image_files(root)
        classes = sorted(_class_folders(root))
        if files_here and classes:
            raise DataError(f"{root} holds both images and class folders ({', '.join(classes[:3])}); put every image "
                            f"in a class folder, or none.")
        if not files_here and not classes:
            raise DataError(f"{root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}), neither directly nor in "
                            f"class folders.")
        notes = []
        if classes:
            per_class = [_image_files(root / c) for c in classes]
            self.files, folders = [], []
            for k in range(max(len(files) for files in per_class)):  # round-robin: every class before any repeats
                for c, files in zip(classes, per_class):
                    if k < len(files):
                        self.files.append(files[k])
                        folders.append(c)
            known = {}
            for i, n in enumerate(bundle.class_names):
                known.setdefault(_plain(n), i)  # a name listed twice (ImageNet's "crane"): its first index
            unknown = [c for c in classes if _plain(c) not in known]
            if unknown:
                notes.append(f"The class folders {', '.join(unknown[:5])} are not among the model's classes, so no "
                             f"accuracy is computed (its predictions are counted).")
                self.file_labels = [None] * len(self.files)
            else:
                self.file_labels = [known[_plain(c)] for c in folders]
            order = "round-robin over the class folders (sorted), each folder's files sorted by name"
            description = f"{root} ({len(classes)} class folders)"
        else:
            self.files, self.file_labels = files_here, [None] * len(files_here)
            order = "file names, sorted"
            description = f"{root} (no class folders: no labels)"
        self.preprocessing = bundle.preprocessing
        labelled = self.file_labels and self.file_labels[0] is not None
        super().__init__(description, order, len(self.files), list(bundle.class_names) if labelled else None, notes)
        self.root = root

    def load(self, indices):
        inputs, labels, skipped = {}, {}, {}
        for i in indices:
            try:
                inputs[i] = self.preprocessing(open_image(self.files[i]).image)[0]  # (C, H, W)
            except ImageError as error:
                skipped[i] = str(error)
            labels[i] = self.file_labels[i]
        return inputs, labels, skipped

    def name(self, index):
        return self.files[index].relative_to(self.root).as_posix()


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith(".")), key=lambda p: p.name)


def _class_folders(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and _image_files(p)}


def open_images(data: str, bundle: ModelBundle, idx_folder: str | None = None) -> Images:
    """`fashion-mnist` or a folder (see the module's docstring for the order)."""
    if data.strip().lower() in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return FashionImages(bundle, idx_folder)
    return FolderImages(bundle, data)


# ---------------------------------------------------------------------------------------------------------------
# One batch: a forward whose record reduces each layer's attention as it arrives

class SurveyRecord(dict):
    """A record for ViT.forward (explorer.model) that keeps only what the survey needs.

    Each layer's attention weights A_l (B, h, T, T) are reduced the moment the model writes them: to the mean attention
    distance of each head (B, h) and to the head mean Ā_l = mean_h A_l (B, T, T) for rollout. Every other stage is
    dropped, so memory holds one layer's A at a time, not L of them. Both reductions are batched matrix products (one
    read of A each), much cheaper than elementwise products and sums over A.
    """

    def __init__(self, grid: tuple[int, int], patch_size: int, device):
        super().__init__()
        distances = patch_distances(grid, patch_size).float().to(device)  # P·||g_i − g_j||: (N, N)
        self.distances_and_ones = torch.stack([distances, torch.ones_like(distances)], dim=-1)  # (N, N, 2)
        self.mean_distance: list[torch.Tensor] = []  # per layer, (B, h) float64
        self.head_means: list[torch.Tensor] = []  # per layer, Ā_l: (B, T, T)

    def __setitem__(self, name: str, tensor: torch.Tensor) -> None:
        if not name.endswith(".attn.weights"):
            return
        layer = int(name.split(".")[1])  # "blocks.l.attn.weights", l = 1..L, written in order
        assert layer == len(self.mean_distance) + 1, f"attention of layer {layer} came out of order"
        A = tensor.detach().contiguous()  # (B, h, T, T)
        B, h, T, _ = A.shape
        patches = A[:, :, 1:, 1:]  # the class token dropped as query and key: (B, h, N, N)
        # Σ_j A[i, j] P ||g_i − g_j|| and Σ_j A[i, j] over the patches, for every query i: (B, h, N, 2)
        sums = torch.einsum("bhij,ijk->bhik", patches, self.distances_and_ones)
        per_query = sums[..., 0].double() / sums[..., 1].double().clamp_min(1e-12)  # renormalised over the patches
        self.mean_distance.append(per_query.mean(dim=-1))  # (1/N) Σ_i: (B, h)
        weights = torch.full((1, h), 1.0 / h, dtype=A.dtype, device=A.device)
        self.head_means.append((weights @ A.reshape(B, h, T * T)).reshape(B, T, T))  # mean over heads: (B, T, T)

    def rollout_maps(self, grid: tuple[int, int]) -> torch.Tensor:
        """The class token's row of R = Â_L ··· Â_1, Â_l = rownorm(Ā_l + I), over the patches, each map scaled to
        a maximum of 1: (B, rows, cols). Computed from the left, one row at a time (e_0ᵀ Â_L, then · Â_{L-1}, ...),
        without forming Â: r Â = u Ā + u with u_i = r_i / s_i, s_i = 1 + Σ_j Ā[i, j] the row sums of Ā + I."""
        B, T, _ = self.head_means[0].shape
        row = torch.zeros(B, 1, T, dtype=self.head_means[0].dtype, device=self.head_means[0].device)
        row[:, 0, 0] = 1.0  # e_0: the class token
        for head_mean in reversed(self.head_means):
            u = row / (head_mean.sum(dim=-1) + 1.0).unsqueeze(1)  # (B, 1, T)
            row = u @ head_mean + u  # (B, 1, T) @ (B, T, T) -> (B, 1, T)
        maps = row[:, 0, 1:]  # class token -> patches: (B, N)
        maps = maps / maps.amax(dim=-1, keepdim=True).clamp_min(1e-12)
        return maps.reshape(-1, *grid)  # (B, rows, cols)


@dataclass
class BatchResult:
    predictions: np.ndarray  # (B,) top class (ties: the first, as explorer.analysis.ranking)
    mean_distance: np.ndarray  # (B, L, h) pixels
    rollout: np.ndarray  # (B, rows, cols)


def survey_batch(model: ViT, x: torch.Tensor) -> BatchResult:
    """One batched forward (B, C, H, W) -> each image's top class, mean attention distances and rollout map."""
    config = model.config
    parameter = next(model.parameters())
    record = SurveyRecord(config.grid, config.patch_size, parameter.device)
    with torch.inference_mode():
        logits = model(x.to(device=parameter.device, dtype=parameter.dtype), record)  # (B, K); explicit attention
        maps = record.rollout_maps(config.grid)
        distance = torch.stack(record.mean_distance, dim=1)  # (B, L, h)
    return BatchResult(logits.argmax(dim=-1).cpu().numpy(), distance.cpu().numpy(), maps.float().cpu().numpy())


def faithfulness_steps(model: ViT, steps: int | None = None) -> int | None:
    """The curves' resolution: every patch count up to 64 patches, else 10 evenly spaced steps (or `steps`)."""
    if steps:
        return int(steps)
    return default_steps(model.config)


def _rounded(array, decimals: int):
    return np.round(np.asarray(array, dtype=np.float64), decimals).tolist()


def image_records(model: ViT, images: Images, indices: list[int], faithfulness_images: int,
                  steps: int | None) -> list[dict]:
    """The per-image records of `indices` (one batch): what a shard line holds."""
    inputs, labels, skipped = images.load(indices)
    records = {i: {"index": i, "name": images.name(i), "skipped": skipped[i]} for i in skipped}
    good = [i for i in indices if i in inputs]
    if good:
        result = survey_batch(model, torch.stack([inputs[i] for i in good]))
        for b, i in enumerate(good):
            record = {"index": i, "label": labels[i], "prediction": int(result.predictions[b]),
                      "mean_distance": _rounded(result.mean_distance[b], 9),
                      "rollout": _rounded(result.rollout[b], 9)}
            if i < faithfulness_images:
                f = faithfulness(model, inputs[i][None], target=None, steps=steps, seed=i)
                record["faithfulness"] = {name: [round(d, 12), round(s, 12)] for name, (d, s) in f.areas().items()}
            records[i] = record
    return [records[i] for i in indices]


# ---------------------------------------------------------------------------------------------------------------
# Shards: JSON lines, one file per process, appended after every batch

def read_shards(work: Path) -> dict[int, dict]:
    """Every complete record in work/shard-*.jsonl, by image index (the first record of an index wins)."""
    records: dict[int, dict] = {}
    for path in sorted(work.glob("shard-*.jsonl")):
        with path.open("r", encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a line cut short by a kill: ignored, and cut off before anything is appended
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("index"), int):
                    records.setdefault(record["index"], record)
    return records


class Shard:
    """This process's shard file, opened for appending after cutting off a half-written last line."""

    def __init__(self, work: Path, rank: int):
        self.path = work / f"shard-{rank}.jsonl"
        if self.path.exists():
            data = self.path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) != len(data):
                self.path.write_bytes(complete)
        self.file = self.path.open("a", encoding="utf-8")

    def append(self, records: list[dict]) -> None:
        self.file.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def check_manifest(work: Path, manifest: dict) -> None:
    """Write work/manifest.json, or check that the one there describes this survey (else refuse to mix results)."""
    path = work / "manifest.json"
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except ValueError:
            existing = None
        if existing != manifest:
            differs = sorted(k for k in manifest if not isinstance(existing, dict) or existing.get(k) != manifest[k])
            what = ", ".join(differs) or "its manifest"
            raise SurveyError(f"The work folder {work} holds the shards of another survey ({what} differ); delete it "
                              f"or choose another --work.")
        return
    temporary = path.with_name(f"manifest.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, path)  # atomic: processes that write it at once write the same text


# ---------------------------------------------------------------------------------------------------------------
# Merging: the survey's numbers from the per-image records, in index order

_T_QUANTILES: dict[tuple[float, int], float] = {}


def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with `df` degrees of freedom, by bisection on its exact CDF for integer
    df (Abramowitz & Stegun 26.7.3-4)."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"Need 0.5 < p < 1 and df >= 1, got p={p}, df={df}.")
    key = (p, df)
    if key not in _T_QUANTILES:
        target = 2 * p - 1  # P(|T| <= t)
        low, high = 0.0, 1.0
        while _t_central(high, df) < target:
            high *= 2
        for _ in range(64):  # the bracket shrinks to 2^-64 of its width
            middle = (low + high) / 2
            low, high = (middle, high) if _t_central(middle, df) < target else (low, middle)
        _T_QUANTILES[key] = (low + high) / 2
    return _T_QUANTILES[key]


def _t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer df."""
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # odd: (2/π)(θ + sinθ cosθ (1 + 2/3 c² + 2·4/(3·5) c⁴ + ...)) up to c^(df-3)
        total, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= (2 * k) / (2 * k + 1) * c2
        return 2 / math.pi * (theta + (math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0))
    total, term = 0.0, 1.0  # even: sinθ (1 + 1/2 c² + 1·3/(2·4) c⁴ + ...) up to c^(df-2)
    for k in range(1, df // 2 + 1):
        total += term
        term *= (2 * k - 1) / (2 * k) * c2
    return math.sin(theta) * total


def mean_and_interval(values) -> dict:
    """Mean, sample standard deviation, and the 95% confidence interval of the mean by Student's t (n - 1 df)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return {"mean": mean, "std": None, "ci95": None, "n": n}
    std = float(values.std(ddof=1))
    half = t_quantile(0.975, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def summarise(records: list[dict], bundle: ModelBundle, images: Images, settings: dict) -> dict:
    """survey.json's content from the per-image records (sorted by index)."""
    model, config = bundle.model, bundle.model.config
    good = [r for r in records if "skipped" not in r]
    skipped = [{"index": r["index"], "name": r["name"], "reason": r["skipped"]} for r in records if "skipped" in r]
    if not good:
        raise SurveyError("No image of the survey could be read; see the skipped files in the work folder's shards.")
    distance = np.array([r["mean_distance"] for r in good], dtype=np.float64)  # (n, L, h)
    rollout = np.array([r["rollout"] for r in good], dtype=np.float64)  # (n, rows, cols)
    n = len(good)
    names = list(bundle.class_names)

    mad = {
        "unit": "pixels",
        "class_token": "dropped as query and key; each patch's weights renormalised over the patches",
        "images": n,
        "mean": _rounded(distance.mean(axis=0), 9),  # (L, h)
        "std": _rounded(distance.std(axis=0, ddof=1) if n > 1 else np.zeros(distance.shape[1:]), 9),  # (L, h)
        "layer_mean": _rounded(distance.mean(axis=(0, 2)), 9),  # (L,): mean over images and heads
        # a head that spreads its attention evenly over the patches: the mean distance between two patches
        "uniform_attention": round(float(patch_distances(config.grid, config.patch_size).mean()), 9),
    }
    rollout_summary = {"head_fusion": "mean", "discard_ratio": 0.0, "images": n,
                       "scaling": "each image's map scaled to a maximum of 1, then averaged",
                       "mean_map": _rounded(rollout.mean(axis=0), 9)}

    E_pos = model.position_embedding.detach().float().cpu()[0]  # (T, D)
    similarity = position_similarity(E_pos, config.grid)  # (rows, cols, rows, cols)
    components, explained = embedding_filter_components(
        model.patch_embedding.projection.weight.detach().float().cpu(), FILTER_COMPONENTS)

    predictions = np.array([r["prediction"] for r in good])
    counts = np.bincount(predictions, minlength=len(names))
    predicted = {names[k]: int(counts[k]) for k in np.argsort(-counts, kind="stable") if counts[k]}

    accuracy = None
    labelled = [r for r in good if r.get("label") is not None]
    if images.class_names is not None and labelled:
        plain = [_plain(n) for n in names]
        correct = [plain[r["prediction"]] == plain[r["label"]] for r in labelled]  # by name: duplicates count
        per_class = {}
        for k in sorted({r["label"] for r in labelled}):
            hits = [c for r, c in zip(labelled, correct) if r["label"] == k]
            per_class[names[k]] = {"images": len(hits), "correct": int(sum(hits)), "accuracy": sum(hits) / len(hits)}
        accuracy = {"images": len(labelled), "correct": int(sum(correct)), "accuracy": sum(correct) / len(labelled),
                    "per_class": per_class}
        if len(names) <= 30:
            confusion = np.zeros((len(names), len(names)), dtype=np.int64)
            np.add.at(confusion, ([r["label"] for r in labelled], [r["prediction"] for r in labelled]), 1)
            accuracy["confusion"] = confusion.tolist()  # rows: true class, columns: predicted

    faithful = None
    curves = [r for r in good if "faithfulness" in r]
    if curves:
        methods = list(curves[0]["faithfulness"])
        faithful = {
            "images": len(curves), "steps": settings["faithfulness_steps"], "target": "the top class",
            "interval": "95% confidence interval of the mean, Student's t with n - 1 degrees of freedom",
            "better": {"deletion": "lower", "insertion": "higher"},
            "methods": {m: {mode: mean_and_interval([r["faithfulness"][m][j] for r in curves])
                            for j, mode in enumerate(("deletion", "insertion"))} for m in methods},
        }

    return {
        "format": SURVEY_FORMAT,
        "model": {"name": bundle.name, "weights": bundle.weights, "source": bundle.source,
                  "trained": bundle.trained, "config": config.to_dict(), "parameters": model.num_parameters(),
                  "digest": settings["digest"], "class_names": names if len(names) <= 30 else None},
        "data": {"source": images.description, "order": images.order, "available": images.count,
                 "surveyed": len(records), "labelled": images.class_names is not None, "notes": images.notes},
        "settings": {"n": settings["n"], "faithfulness_images": settings["faithfulness_images"],
                     "faithfulness_steps": settings["faithfulness_steps"]},
        "images": n,
        "skipped": skipped,
        "accuracy": accuracy,
        "predicted_classes": predicted,
        "mean_attention_distance": mad,
        "rollout": rollout_summary,
        "position_similarity": {"grid": list(config.grid), "similarity": _rounded(similarity, 8)},
        "embedding_filters": {"components": _rounded(components, 8),
                              "explained_variance_ratio": _rounded(explained, 10),
                              "shape": "(n, P, P, C), each min-max scaled to [0, 1]"},
        "faithfulness": faithful,
    }


# ---------------------------------------------------------------------------------------------------------------
# Figures (matplotlib's object-oriented API: no pyplot state) and the report

def distance_figure(survey: dict):
    """Fig. 7 right: one dot per head against depth, with the spread over the images (± 1 standard deviation)."""
    from matplotlib.figure import Figure

    mad = survey["mean_attention_distance"]
    mean, std = np.array(mad["mean"]), np.array(mad["std"])  # (L, h)
    L, h = mean.shape
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    offsets = (np.arange(h) - (h - 1) / 2) * min(0.6 / h, 0.08)
    for head in range(h):
        ax.errorbar(np.arange(1, L + 1) + offsets[head], mean[:, head], yerr=std[:, head], fmt="o", ms=4,
                    capsize=2, elinewidth=0.8, label=f"head {head + 1}" if h <= 16 else None)
    if mad.get("uniform_attention") is not None:
        ax.axhline(mad["uniform_attention"], color="gray", ls="--", lw=1, label="attention spread evenly")
    ax.set(xlabel="network depth (layer)", ylabel="mean attention distance (pixels)", ylim=(0, None),
           title=f"Mean attention distance (Fig. 7 right)\n{mad['images']:,} images; bars: ± 1 std over the images")
    ax.set_xticks(range(1, L + 1))
    ax.grid(alpha=0.3)
    if h <= 16:
        ax.legend(fontsize=7, ncols=2 if h > 8 else 1, loc="lower right")
    elif mad.get("uniform_attention") is not None:
        ax.legend(fontsize=7, loc="lower right")
    return fig


def rollout_figure(survey: dict):
    from matplotlib.figure import Figure

    rollout = survey["rollout"]
    fig = Figure(figsize=(4.6, 4.0), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(np.array(rollout["mean_map"]), cmap="inferno", vmin=0)
    ax.set(title=f"Mean attention rollout (Fig. 6), {rollout['images']:,} images", xlabel="patch column",
           ylabel="patch row")
    fig.colorbar(im, ax=ax, shrink=0.85, label="mean of each image's map (max 1)")
    return fig


def position_figure(survey: dict):
    """Fig. 7 centre: tile (r, c) is the cosine similarity of patch (r, c)'s position embedding with all others."""
    from matplotlib.figure import Figure

    similarity = np.array(survey["position_similarity"]["similarity"])  # (rows, cols, rows, cols)
    rows, cols = similarity.shape[:2]
    mosaic = np.full((rows * (rows + 1) - 1, cols * (cols + 1) - 1), np.nan)  # one blank line between tiles
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (rows + 1):r * (rows + 1) + rows, c * (cols + 1):c * (cols + 1) + cols] = similarity[r, c]
    fig = Figure(figsize=(5.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(mosaic, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    step = max(1, rows // 7)
    ax.set_xticks([c * (cols + 1) + (cols - 1) / 2 for c in range(0, cols, step)], range(1, cols + 1, step))
    ax.set_yticks([r * (rows + 1) + (rows - 1) / 2 for r in range(0, rows, step)], range(1, rows + 1, step))
    ax.set(xlabel="input patch column", ylabel="input patch row", title="Position embedding similarity (Fig. 7 centre)")
    fig.colorbar(im, ax=ax, shrink=0.85, label="cosine similarity")
    return fig


def filters_figure(survey: dict):
    """Fig. 7 left: the first principal components of the patch-embedding filters, each P x P x C."""
    from matplotlib.figure import Figure

    components = np.array(survey["embedding_filters"]["components"])  # (n, P, P, C)
    explained = survey["embedding_filters"]["explained_variance_ratio"]
    n = len(components)
    columns = min(7, n)
    lines = math.ceil(n / columns)
    fig = Figure(figsize=(1.1 * columns + 0.4, 1.15 * lines + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(lines, columns, squeeze=False)).reshape(-1)
    for k, ax in enumerate(axes):
        ax.axis("off")
        if k < n:
            image = components[k]
            ax.imshow(image[:, :, 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"{k + 1}: {explained[k]:.1%}", fontsize=7)
    channels = "RGB" if components.shape[-1] == 3 else "grayscale"
    fig.suptitle(f"{channels} embedding filters: first {n} principal components (Fig. 7 left)", fontsize=9)
    return fig


def faithfulness_figure(survey: dict):
    from matplotlib.figure import Figure

    faithful = survey["faithfulness"]
    methods = list(faithful["methods"])
    fig = Figure(figsize=(8.0, 3.4), layout="constrained")
    for ax, mode in zip(fig.subplots(1, 2), ("deletion", "insertion")):
        stats = [faithful["methods"][m][mode] for m in methods]
        means = [s["mean"] for s in stats]
        errors = np.array([[s["mean"] - s["ci95"][0], s["ci95"][1] - s["mean"]] if s["ci95"] else [0, 0]
                           for s in stats]).T
        ax.bar(range(len(methods)), means, yerr=errors, capsize=3, color="#4C72B0" if mode == "deletion" else "#DD8452")
        ax.set_xticks(range(len(methods)), methods, rotation=20)
        ax.set(ylim=(0, 1), ylabel="area under the curve",
               title=f"{mode} ({faithful['better'][mode]} is faithful), {faithful['images']} images")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Faithfulness of each explanation: mean and 95% CI (Student's t)", fontsize=9)
    return fig


def accuracy_figure(survey: dict):
    from matplotlib.figure import Figure

    per_class = survey["accuracy"]["per_class"]
    names = list(per_class)
    fig = Figure(figsize=(max(5.0, 0.45 * len(names) + 2), 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(range(len(names)), [per_class[n]["accuracy"] for n in names], color="#55A868")
    ax.axhline(survey["accuracy"]["accuracy"], color="black", lw=1, ls="--", label="all classes")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set(ylim=(0, 1), ylabel="accuracy (recall)",
           title=f"Per-class accuracy, {survey['accuracy']['images']:,} labelled images")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def write_figures(survey: dict, out: Path) -> dict[str, Path]:
    """Every figure that applies, as PNG in `out`: name -> path."""
    figures = {
        "attention_distance": distance_figure(survey),
        "rollout": rollout_figure(survey),
        "position_similarity": position_figure(survey),
        "embedding_filters": filters_figure(survey),
    }
    if survey["faithfulness"]:
        figures["faithfulness"] = faithfulness_figure(survey)
    if survey["accuracy"]:
        figures["accuracy"] = accuracy_figure(survey)
        if "confusion" in survey["accuracy"]:
            from .evaluate import confusion_figure

            figures["confusion"] = confusion_figure(
                np.array(survey["accuracy"]["confusion"]), survey["model"]["class_names"],
                f"Confusion, {survey['accuracy']['images']:,} labelled images")
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=90)
    return paths


def _table(header: list[str], rows: list[list]) -> str:
    cells = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def report_html(survey: dict, run: dict, figures: dict[str, Path]) -> str:
    """One self-contained page: the figures as data URIs, the numbers in tables."""
    model, data = survey["model"], survey["data"]
    esc = html.escape
    parts = [f"<h1>Survey: {esc(model['name'])} · {esc(model['weights'])}</h1>",
             f"<p>{esc(model['source'])}. {survey['images']:,} images of {esc(data['source'])}, the first "
             f"{data['surveyed']:,} in {esc(data['order'])}."
             + ("" if model["trained"] else " <b>Random init: predictions are meaningless; shapes are real.</b>")
             + "</p>"]
    for note in data["notes"]:
        parts.append(f"<p class=note>{esc(note)}</p>")
    if survey["skipped"]:
        parts.append(f"<p class=note>{len(survey['skipped'])} files could not be read and are left out: "
                     + esc("; ".join(f"{s['name']}: {s['reason']}" for s in survey["skipped"][:10])) + "</p>")

    accuracy = survey["accuracy"]
    if accuracy:
        parts.append("<h2>Accuracy</h2>")
        parts.append(f"<p>Top-1 accuracy <b>{accuracy['accuracy']:.4f}</b> ({accuracy['correct']:,} / "
                     f"{accuracy['images']:,}).</p>")
        parts.append(_table(["class", "images", "correct", "accuracy"],
                            [[k, v["images"], v["correct"], f"{v['accuracy']:.4f}"]
                             for k, v in accuracy["per_class"].items()]))
        parts += [_image(figures[k], k) for k in ("accuracy", "confusion") if k in figures]
    else:
        top = list(survey["predicted_classes"].items())[:10]
        parts.append("<h2>Predictions</h2><p>No labels: the most predicted classes.</p>")
        parts.append(_table(["class", "images"], top))

    mad = survey["mean_attention_distance"]
    mean, std = np.array(mad["mean"]), np.array(mad["std"])
    parts.append("<h2>Mean attention distance (Fig. 7 right)</h2>")
    parts.append(f"<p>Per head, (1/N) Σ_i Σ_j A[i, j] · P · ‖g_i − g_j‖ in pixels; the class token "
                 f"{esc(mad['class_token'])}. Mean ± standard deviation over {mad['images']:,} images. A head that "
                 f"spread its attention evenly over the patches would score {mad['uniform_attention']:.2f} px (the "
                 f"dashed line).</p>")
    parts.append(_image(figures["attention_distance"], "mean attention distance"))
    parts.append(_table(["layer", "mean over heads"] + [f"head {h + 1}" for h in range(mean.shape[1])],
                        [[l + 1, f"{mad['layer_mean'][l]:.2f}"] + [f"{mean[l, h]:.2f} ± {std[l, h]:.2f}"
                                                                    for h in range(mean.shape[1])]
                         for l in range(mean.shape[0])]))
    parts.append("<h2>Attention rollout (Fig. 6)</h2>")
    parts.append(f"<p>Heads fused by their mean, nothing discarded; {esc(survey['rollout']['scaling'])}.</p>")
    parts.append(_image(figures["rollout"], "mean rollout"))
    parts.append("<h2>Position embeddings (Fig. 7 centre)</h2>")
    parts.append(_image(figures["position_similarity"], "position embedding similarity"))
    parts.append("<h2>Embedding filters (Fig. 7 left)</h2>")
    parts.append(_image(figures["embedding_filters"], "embedding filter principal components"))
    explained = survey["embedding_filters"]["explained_variance_ratio"]
    parts.append(_table(["component", "explained variance"], [[k + 1, f"{v:.2%}"] for k, v in enumerate(explained)]))

    faithful = survey["faithfulness"]
    if faithful:
        steps = "every patch count" if faithful["steps"] is None else f"{faithful['steps']} steps"
        parts.append("<h2>Faithfulness (deletion and insertion)</h2>")
        parts.append(f"<p>Areas under the top class's probability as patches are removed (deletion: lower is "
                     f"faithful) or added (insertion: higher is faithful), most relevant first, {steps}; "
                     f"{faithful['images']} images; {esc(faithful['interval'])}.</p>")
        parts.append(_image(figures["faithfulness"], "faithfulness"))

        def cell(s):
            return f"{s['mean']:.4f}" + (f" [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]" if s["ci95"] else "")

        parts.append(_table(["method", "deletion area (95% CI)", "insertion area (95% CI)"],
                            [[m, cell(v["deletion"]), cell(v["insertion"])] for m, v in faithful["methods"].items()]))
    parts.append("<h2>Run</h2>")
    parts.append(_table(["", ""], [[k, v] for k, v in run.items()]))
    style = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;"
             "margin:1em 0}.note{color:#8a5a00}")
    title = f"Survey: {model['name']} on {data['source']}"
    return (f"<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_outputs(survey: dict, run: dict, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "survey.json").write_text(json.dumps(survey, indent=1) + "\n")
    (out / "run.json").write_text(json.dumps(run, indent=1) + "\n")
    figures = write_figures(survey, out)
    (out / "report.html").write_text(report_html(survey, run, figures), encoding="utf-8")
    return {"survey": out / "survey.json", "run": out / "run.json", "report": out / "report.html", **figures}


# ---------------------------------------------------------------------------------------------------------------
# The run

def run_survey(args, argv: list[str] | None = None) -> dict | None:
    """The survey as `args` say, in this process's share; rank 0 returns the paths it wrote, others None."""
    processes = distributed.start(args.device)
    try:
        result = _run(args, processes, argv)
    except BaseException:
        distributed.abandon(processes)  # no last barrier: the other processes may never reach it
        raise
    distributed.finish(processes)
    return result


def _run(args, processes: distributed.Processes, argv) -> dict | None:
    if args.n < 1 or args.batch_size < 1 or args.faithfulness < 0:
        raise SurveyError(f"--n and --batch-size must be at least 1 and --faithfulness at least 0 (got {args.n}, "
                          f"{args.batch_size}, {args.faithfulness}).")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    out = Path(args.out)
    work = Path(args.work) if args.work else out / "shards"
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SurveyError(f"Can't create the folder {work} ({error.strerror}); choose another --out or "
                          f"--work.") from None
    bundle = resolve_model(args.model, processes.device)
    images = open_images(args.data, bundle, args.data_idx)
    n = min(args.n, images.count)
    faithfulness_images = min(args.faithfulness, n)
    steps = faithfulness_steps(bundle.model, args.steps)
    digest = weights_digest(bundle.model)
    check_manifest(work, {"format": SURVEY_FORMAT, "model": f"{bundle.name} · {bundle.weights}", "digest": digest,
                          "data": images.description, "faithfulness_images": faithfulness_images,
                          "faithfulness_steps": steps})

    records = {i: r for i, r in read_shards(work).items() if i < n}
    done = set().union(*processes.all_gather(sorted(records)))  # what every process found: one split for all
    todo = [i for i in range(n) if i not in done]
    mine = todo[processes.rank::processes.world]
    shard = Shard(work, processes.rank)
    computed_start = time.time()
    bar = tqdm(total=len(mine), desc=f"survey (rank 0 of {processes.world})" if processes.distributed else "survey",
               unit="img", disable=not processes.main, mininterval=1, file=sys.stdout)
    try:
        for b in range(0, len(mine), args.batch_size):
            batch = mine[b:b + args.batch_size]
            new = image_records(bundle.model, images, batch, faithfulness_images, steps)
            shard.append(new)
            records.update((r["index"], r) for r in new)
            bar.update(len(batch))
    finally:
        bar.close()
        shard.close()
    compute_s = time.time() - computed_start
    shares = processes.all_gather((len(mine), compute_s))  # every process's (images, seconds)
    gathered = processes.gather(records)
    if not processes.main:
        return None

    merged: dict[int, dict] = {}
    for part in gathered:
        for i, record in part.items():
            merged.setdefault(i, record)  # one record per image, whichever process holds it
    missing = [i for i in range(n) if i not in merged]
    if missing:
        raise SurveyError(f"{len(missing)} images have no result (first: {missing[0]}); run the survey again.")
    settings = {"n": n, "faithfulness_images": faithfulness_images, "faithfulness_steps": steps, "digest": digest}
    survey = summarise([merged[i] for i in range(n)], bundle, images, settings)
    computed = sum(count for count, _ in shares)
    compute_s = max(seconds for _, seconds in shares)  # the slowest process's share: the wall time of the work
    arguments = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    launcher = f"torchrun --nproc-per-node={processes.world}" if processes.distributed else "python"
    run = {
        "command": f"{launcher} -m explorer.survey {arguments}",
        "processes": processes.world,
        "backend": processes.backend or "none (one process)",
        "device": str(processes.device),
        "threads_per_process": torch.get_num_threads(),
        "images_resumed": n - computed,
        "images_computed": computed,
        "compute_s": round(compute_s, 2),
        "images_per_s": round(computed / compute_s, 2) if compute_s > 0 and computed else None,
        "total_s": round(time.time() - start, 2),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
    }
    paths = write_outputs(survey, run, out)
    if not args.keep_shards:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Survey of {n:,} images written to {out}: survey.json, report.html and {len(paths) - 3} figures "
          f"({run['total_s']:.0f} s, {processes.world} process{'es' if processes.world > 1 else ''}).", flush=True)
    if survey["accuracy"]:
        print(f"Accuracy {survey['accuracy']['accuracy']:.4f} ({survey['accuracy']['correct']:,} / "
              f"{survey['accuracy']['images']:,})", flush=True)
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Throughput: survey images per second against torchvision's plain forward

def _interleaved_seconds(functions: dict, repeats: int, barrier=None) -> dict[str, list[float]]:
    """Seconds of each call, the functions taking turns (one warm-up each first), so that a change in the machine's
    load during the measurement affects all of them alike. With a barrier, every process starts each call together."""
    times = {name: [] for name in functions}
    for repeat in range(repeats + 1):
        for name, function in functions.items():
            if barrier is not None:
                barrier.wait()
            start = time.perf_counter()
            with torch.inference_mode():
                function()
            if repeat:  # the first round warms up
                times[name].append(time.perf_counter() - start)
            if barrier is not None:
                barrier.wait()
    return times


def _bench_models(name: str, seed: int = 0):
    """A random-weight explorer.ViT of a Table 1 preset and torchvision's model of the same preset."""
    import torchvision

    if name not in PRETRAINED:
        raise ValueError(f"The benchmark compares with torchvision: choose one of {', '.join(PRETRAINED)}.")
    torch.manual_seed(seed)
    ours = ViT(CONFIGS[name]).eval()
    reference = getattr(torchvision.models, PRETRAINED[name][0])().eval()
    return ours, reference


def _bench_functions(name: str, batch_size: int, seed: int) -> dict:
    """torchvision's plain forward and the survey's batch, on the same random input."""
    ours, reference = _bench_models(name)
    height, width = CONFIGS[name].image_hw
    x = torch.randn(batch_size, 3, height, width, generator=torch.Generator().manual_seed(seed))
    return {"torchvision": lambda: reference(x), "survey": lambda: survey_batch(ours, x)}


def _bench_worker(rank: int, name: str, batch_size: int, repeats: int, threads: int, barrier, queue) -> None:
    torch.set_num_threads(threads)
    queue.put((rank, _interleaved_seconds(_bench_functions(name, batch_size, 1 + rank), repeats, barrier)))


def bench(batch_size: int = 32, repeats: int = 2, processes: tuple[int, ...] = (1, 2), threads: int | None = None,
          model: str = "ViT-B/16") -> dict:
    """Survey images per second on a random-weight `model` (explorer.ViT; ViT-B/16 by default) at `batch_size`, against
    torchvision's model of the same preset (vit_b_16()) and its plain forward at the same batch, in one process and in
    several sharing the machine's cores (threads / processes torch threads each, every process on its own batch at
    the same time; a batch's time is the slowest process's). The two are timed in turns, medians of `repeats` after a
    warm-up. The survey's batch is the whole per-image work of a default survey (explicit attention, mean attention
    distance, rollout, top class); faithfulness (--faithfulness K, a fixed number of images) is not in it."""
    import torch.multiprocessing as mp

    threads = threads or torch.get_num_threads()
    rows = []
    for count in processes:
        per_process = max(1, threads // count)
        if count == 1:
            torch.set_num_threads(per_process)
            times = _interleaved_seconds(_bench_functions(model, batch_size, 1), repeats)
            torchvision_s, survey_s = float(np.median(times["torchvision"])), float(np.median(times["survey"]))
            best = min(times["torchvision"]) / min(times["survey"])
        else:
            context = mp.get_context("spawn")
            barrier, queue = context.Barrier(count), context.Queue()
            workers = [context.Process(target=_bench_worker,
                                       args=(r, model, batch_size, repeats, per_process, barrier, queue))
                       for r in range(count)]
            for w in workers:
                w.start()
            results = [queue.get(timeout=3600) for _ in workers]
            for w in workers:
                w.join()
            # a repeat ends when the slowest process does: the wall time of count batches done at once
            walls = {name: np.max([r[name] for _, r in results], axis=0) for name in ("torchvision", "survey")}
            torchvision_s, survey_s = float(np.median(walls["torchvision"])), float(np.median(walls["survey"]))
            best = float(walls["torchvision"].min() / walls["survey"].min())
        images = batch_size * count
        rows.append({"processes": count, "threads_per_process": per_process, "batch_size": batch_size,
                     "torchvision_images_per_s": round(images / torchvision_s, 2),
                     "survey_images_per_s": round(images / survey_s, 2),
                     "ratio": round(torchvision_s / survey_s, 3),  # of the medians
                     "ratio_best": round(best, 3),  # of the fastest repeats: least disturbed by other work
                     "torchvision_s_per_batch": round(torchvision_s, 3), "survey_s_per_batch": round(survey_s, 3)})
    height, width = CONFIGS[model].image_hw
    return {"model": f"{model} (random weights, {height}x{width})", "device": "cpu", "repeats": repeats,
            "target": "survey images/s >= 0.9x torchvision's forward at batch 32", "rows": rows,
            "torch": torch.__version__}


# ---------------------------------------------------------------------------------------------------------------
# Command line

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m explorer.survey", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help="a checkpoint (stem or file), a model folder or Hub id, a torchvision preset ('ViT-B/16', "
                        "'ViT-B/16 · IMAGENET1K_SWAG_E2E_V1') or an untrained one ('ViT-B/16 · random init'); "
                        f"default: the shipped {DEFAULT_MODEL}")
    p.add_argument("--data", default="fashion-mnist",
                   help="'fashion-mnist' (its test set) or a folder: DIR/<class>/*.jpg or DIR/*.jpg")
    p.add_argument("--data-idx", default=None,
                   help="folder of Fashion-MNIST's IDX files (default: the Debian package's)")
    p.add_argument("--n", "-n", "--images", dest="n", type=int, default=PAPER_IMAGES,
                   help=f"images: the first N (default {PAPER_IMAGES}, as the paper). Under torchrun write -n or "
                        f"--images: torchrun's own parser takes --n for an abbreviation of its --nnodes")
    p.add_argument("--out", default="survey", help="output folder (survey.json, run.json, report.html, figures)")
    p.add_argument("--work", default=None, help="folder of the per-image shards (default: OUT/shards)")
    p.add_argument("--keep-shards", action="store_true", help="keep the shards after a complete run")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward (per process)")
    p.add_argument("--faithfulness", type=int, default=16, metavar="K",
                   help="deletion and insertion areas for the first K images (0: none; each costs many forwards)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"points on each faithfulness curve (default: every patch count up to "
                        f"{ALL_POINTS_UP_TO} patches, else {DEFAULT_STEPS})")
    p.add_argument("--device", default="auto", help="auto (cuda if there is a GPU), cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--bench", action="store_true",
                   help="instead: survey images/s on a random ViT-B/16 against torchvision's forward, 1 and 2 "
                        "processes")
    p.add_argument("--bench-repeats", type=int, default=2)
    p.add_argument("--bench-model", default="ViT-B/16", choices=sorted(PRETRAINED), help="the preset --bench measures")
    p.add_argument("--bench-json", default=None, help="write the --bench result to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.bench:
        result = bench(args.batch_size, args.bench_repeats, threads=args.threads, model=args.bench_model)
        for row in result["rows"]:
            print(f"{row['processes']} process(es) x {row['threads_per_process']} threads, batch {row['batch_size']}: "
                  f"torchvision {row['torchvision_images_per_s']:.2f} img/s, survey {row['survey_images_per_s']:.2f} "
                  f"img/s, ratio {row['ratio']:.3f} (medians; {row['ratio_best']:.3f} of the fastest repeats)")
        if args.bench_json:
            Path(args.bench_json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.bench_json).write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result), flush=True)
        return 0
    try:
        run_survey(args, argv)
    except (DataError, SurveyError, WeightsUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted: the images done so far are in the shards; run the same command again to resume.",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
