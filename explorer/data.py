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


FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def find_fashion_mnist(data: str | Path | None = None) -> Path:
    """The folder holding Fashion-MNIST's four IDX files: `data`, else the Debian package's, else where dpkg lists them."""
    if data:
        folder = Path(data)
        if not folder.is_dir():
            raise DataError(f"No folder at {folder}; --data must be a folder holding Fashion-MNIST's four IDX files "
                            f"({', '.join(f + '.gz' for f in FASHION_MNIST_FILES)}).")
        missing = [f + ".gz" for f in FASHION_MNIST_FILES if not _idx_file(folder, f)]
        if missing:
            raise DataError(f"{folder} lacks {', '.join(missing)}; --data must be a folder holding all four "
                            f"Fashion-MNIST IDX files (gzipped or not).")
        return folder
    candidates = [DEBIAN_FASHION_MNIST]
    if shutil.which("dpkg"):
        try:
            listed = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, timeout=10)
            candidates += [Path(line).parent for line in listed.stdout.splitlines() if line.endswith("t10k-images-idx3-ubyte.gz")]
        except (OSError, subprocess.SubprocessError):
            pass
    for folder in candidates:
        if all(_idx_file(folder, f) for f in FASHION_MNIST_FILES):
            return folder
    raise DataError(
        f"Fashion-MNIST's IDX files (train-images-idx3-ubyte.gz, ...) are not in {DEBIAN_FASHION_MNIST}: run "
        f"`apt-get install -y dataset-fashion-mnist` or pass --data FOLDER."
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not): a big-endian header [0, 0, 0x08, ndim], ndim uint32 sizes, then the bytes."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} could not be read ({error}); download or install the data set again.") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (its header should start 00 00 08).")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated inside its header.")
    shape = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{path} holds {array.size} values but its header says {'x'.join(map(str, shape))}; "
                        f"the file is truncated or damaged.")
    return array.reshape(shape)


def write_idx(path: str | Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz): the inverse of read_idx."""
    path, array = Path(path), np.ascontiguousarray(array, dtype=np.uint8)
    data = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as f:
        f.write(data)
    return path


def load_fashion_mnist(data: str | Path | None = None) -> Dataset:
    """Fashion-MNIST (or any data set in its IDX format, 10 classes) as uint8 tensors (n, 1, 28, 28)."""
    folder = find_fashion_mnist(data)

    def split(prefix: str) -> Split:
        images = read_idx(_idx_file(folder, f"{prefix}-images-idx3-ubyte"))  # (n, H, W)
        labels = read_idx(_idx_file(folder, f"{prefix}-labels-idx1-ubyte"))  # (n,)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{folder}: {prefix} images {images.shape} and labels {labels.shape} don't match; "
                            f"expected (n, H, W) images and (n,) labels.")
        if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"{folder}: {prefix} labels go up to {labels.max()}; Fashion-MNIST has 10 classes (0-9).")
        return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))

    return Dataset("Fashion-MNIST", split("train"), split("t10k"), list(FASHION_MNIST_CLASSES))


def _check_root(root: Path, parts: tuple[str, ...]) -> None:
    layout = f"{root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg"
    if not root.is_dir():
        raise DataError(f"No folder at {root}; expected {layout}.")
    for part in parts:
        if not (root / part).is_dir():
            if root.name in ("train", "test") and (root.parent / part).is_dir():
                raise DataError(f"{root} is the {root.name}/ folder itself: pass its parent, {root.parent}.")
            raise DataError(f"{root} has no {part}/ folder; expected {layout}.")


def image_folder_classes(root: str | Path) -> list[str]:
    """The class names of an image folder: the sub-folders of root/train, sorted."""
    root = Path(root)
    _check_root(root, ("train",))
    class_names = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if len(class_names) < 2:
        raise DataError(f"{root / 'train'} needs one sub-folder per class (at least two); found {class_names}.")
    return class_names


def load_image_split(folder: str | Path, class_names: list[str], preprocessing) -> Split:
    """folder/<class>/*.jpg -> uint8 images (n, C, crop, crop) cropped as `preprocessing.crop` does; labels index class_names."""
    from .images import ImageError, open_image

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"No folder at {folder}; expected {folder}/<class>/*.jpg.")
    extra = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in class_names)
    if extra:
        raise DataError(f"{folder} has class folders {extra} that the model doesn't know; its classes are {class_names}.")
    images, labels = [], []
    for label, name in enumerate(class_names):
        for file in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                image = preprocessing.crop(open_image(file).image)[0]
            except ImageError as error:
                raise DataError(f"{file}: {error}") from None
            array = np.asarray(image, dtype=np.uint8)
            images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))  # (H, W, C) -> (C, H, W)
            labels.append(label)
    if not images:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders "
                        f"({folder}/<class>/*.jpg).")
    return Split(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))  # (n, C, H, W), (n,)


def load_image_folder(root: str | Path, image_size: int = 224, channels: int = 3, preprocessing=None) -> Dataset:
    """root/train/<class>/*.jpg and root/test/<class>/*.jpg.

    Each image is cropped by `preprocessing` (a model's recipe: resize the shorter side, centre crop), or, when none
    is given, resized and centre-cropped to image_size x image_size with `channels` channels.
    """
    from .images import Preprocessing

    root = Path(root)
    _check_root(root, ("train", "test"))
    class_names = image_folder_classes(root)
    crop = preprocessing or Preprocessing(resize_size=image_size, crop_size=image_size, channels=channels)
    return Dataset(root.name, load_image_split(root / "train", class_names, crop),
                   load_image_split(root / "test", class_names, crop), class_names)


def prepare_images(images: torch.Tensor, preprocessing) -> torch.Tensor:
    """A data set's own uint8 images (n, C, H, W) -> what the model takes, (n, C', crop, crop) uint8.

    Images that already have the model's shape pass unchanged (Fashion-MNIST for the 28x28 model: that is how it was
    trained). Others are cropped as `preprocessing.crop` does, but never inverted: a data set's own images are
    already as the model was trained on them.
    """
    import dataclasses

    from PIL import Image

    channels, size = preprocessing.channels, preprocessing.crop_size
    if tuple(images.shape[1:]) == (channels, size, size):
        return images
    crop = dataclasses.replace(preprocessing, invert="never")
    out = []
    for image in images:
        array = image.permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)
        pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        cropped = np.asarray(crop.crop(pil)[0], dtype=np.uint8)
        out.append(torch.from_numpy(cropped[None] if cropped.ndim == 2 else cropped.transpose(2, 0, 1).copy()))
    return torch.stack(out) if out else torch.zeros(0, channels, size, size, dtype=torch.uint8)  # (n, C', crop, crop)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0, 1] units of a uint8 (n, C, H, W) tensor."""
    x = images.float() / 255.0
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())
