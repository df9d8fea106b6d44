"""Data sets for training: Fashion-MNIST read straight from its IDX files, and image folders (train/<class>/*.jpg)."""
from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530  # over the 60,000 training images
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(ValueError):
    """A data path or layout that can't be used; the message says what was expected."""


@dataclass
class Split:
    images: torch.Tensor  # (n, C, H, W) uint8
    labels: torch.Tensor  # (n,) int64


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    class_names: list[str]


def find_fashion_mnist(data: str | Path | None = None) -> Path:
    """The folder holding Fashion-MNIST's four IDX files: `data`, the Debian package's, or what dpkg lists."""
    candidates = [Path(data)] if data else [DEBIAN_FASHION_MNIST]
    if not data and shutil.which("dpkg"):
        try:
            listed = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, timeout=10)
            candidates += [Path(line).parent for line in listed.stdout.splitlines() if line.endswith("t10k-images-idx3-ubyte.gz")]
        except (OSError, subprocess.SubprocessError):
            pass
    for folder in candidates:
        if _idx_file(folder, "train-images-idx3-ubyte") and _idx_file(folder, "t10k-labels-idx1-ubyte"):
            return folder
    where = data or DEBIAN_FASHION_MNIST
    raise DataError(
        f"Fashion-MNIST's IDX files (train-images-idx3-ubyte.gz, ...) are not in {where}: run "
        f"`apt-get install -y dataset-fashion-mnist` or pass --data FOLDER."
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not): a big-endian header of magic, dims, then unsigned bytes."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = data[0] * 256 + data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file.")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(shape))} values, found {array.size}.")
    return array.reshape(shape)


def load_fashion_mnist(data: str | Path | None = None) -> Dataset:
    folder = find_fashion_mnist(data)

    def split(prefix: str) -> Split:
        images = read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte"))  # (n, 28, 28)
        labels = read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))  # (n,)
        return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))

    return Dataset("Fashion-MNIST", split("train"), split("t10k"), list(FASHION_MNIST_CLASSES))


def load_image_folder(root: str | Path, image_size: int, channels: int = 3) -> Dataset:
    """root/train/<class>/*.jpg and root/test/<class>/*.jpg, each image resized and centre-cropped to image_size."""
    from PIL import Image

    from .images import ImageError, Preprocessing, open_image

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"No folder at {root}; expected {root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg.")
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DataError(f"{root} has no {part}/ folder; expected {root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg.")
    class_names = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if len(class_names) < 2:
        raise DataError(f"{root / 'train'} needs one sub-folder per class (at least two); found {class_names}.")
    test_classes = sorted(p.name for p in (root / "test").iterdir() if p.is_dir())
    if not set(test_classes) <= set(class_names):
        raise DataError(f"{root / 'test'} has classes not in train/: {sorted(set(test_classes) - set(class_names))}.")
    crop = Preprocessing(resize_size=image_size, crop_size=image_size, channels=channels)

    def split(part: str) -> Split:
        images, labels = [], []
        for label, name in enumerate(class_names):
            for file in sorted((root / part / name).glob("*")) if (root / part / name).is_dir() else []:
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    image = crop.crop(open_image(file).image)[0]
                except ImageError as error:
                    raise DataError(f"{file}: {error}") from None
                array = np.asarray(image, dtype=np.uint8)
                images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))  # (C, H, W)
                labels.append(label)
        if not images:
            raise DataError(f"{root / part} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders.")
        return Split(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))

    del Image
    return Dataset(root.name, split("train"), split("test"), class_names)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of a uint8 (n, C, H, W) tensor."""
    x = images.float() / 255.0
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())
