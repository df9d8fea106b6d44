"""The images a survey takes, in the order that decides which are "the first N", with their labels where known.

- `fashion-mnist`: its 10,000 test images in file order (already shuffled over classes); labels are known when the
  model's classes are Fashion-MNIST's. `--data-idx FOLDER` reads the IDX files from another folder.
- a folder of class folders, DIR/<class>/*.jpg (or DIR/test/<class>/*.jpg, the training layout): round-robin over the
  classes (the first file of each class in sorted class order, then the second of each, ...), each class's files
  sorted by name, so that any N covers every class. Labels are known when every folder names one of the model's
  classes (compared ignoring case and punctuation: `T-shirt_top` is "T-shirt/top").
- a flat folder, DIR/*.jpg: sorted by name; no labels.
A file that cannot be read as an image is reported as skipped, with one sentence, and left out of every average.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data import FASHION_MNIST_CLASSES, IMAGE_SUFFIXES, DataError, load_fashion_mnist, prepare_images
from ..images import ImageError, open_image
from ..weights import ModelBundle


def plain(name: str) -> str:
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
        labelled = [plain(n) for n in bundle.class_names] == [plain(n) for n in FASHION_MNIST_CLASSES]
        where = f"IDX files in {folder}" if folder else "Debian dataset-fashion-mnist"
        notes = [] if labelled else [
            "The model's classes are not Fashion-MNIST's, so no accuracy is computed (its predictions are counted)."]
        super().__init__(f"Fashion-MNIST test set ({where})", "the test set's file order", len(test.labels),
                         list(bundle.class_names) if labelled else None, notes)

    def load(self, indices):
        from ..train import normalise

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
                known.setdefault(plain(n), i)  # a name listed twice (ImageNet's "crane"): its first index
            unknown = [c for c in classes if plain(c) not in known]
            if unknown and known:  # a model without classes (a backbone) is said so in survey.json's notes
                notes.append(f"The class folders {', '.join(unknown[:5])} are not among the model's classes, so no "
                             f"accuracy is computed (its predictions are counted).")
            if unknown:
                self.file_labels = [None] * len(self.files)
            else:
                self.file_labels = [known[plain(c)] for c in folders]
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
    """`fashion-mnist` or a folder (see this module's docstring for the order)."""
    if data.strip().lower() in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return FashionImages(bundle, idx_folder)
    return FolderImages(bundle, data)
