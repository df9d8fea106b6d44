"""explorer.data: IDX files against hand-written bytes, image-folder layouts, and the errors a user can cause."""
import gzip
import shutil
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from explorer.data import (FASHION_MNIST_CLASSES, FASHION_MNIST_FILES, DataError, channel_stats, find_fashion_mnist,
                           image_folder_classes, load_fashion_mnist, load_image_folder, prepare_images, read_idx,
                           write_idx)
from explorer.images import Preprocessing

from image_folders import write_image_folder

# An IDX file written out by hand: magic 00 00 08 03 (unsigned bytes, 3 dims), sizes 2, 2, 3 (big-endian), 12 values.
HAND_IDX = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(12))


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_matches_hand_written_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress(HAND_IDX) if name.endswith(".gz") else HAND_IDX)
    array = read_idx(path)
    assert array.dtype == np.uint8 and array.shape == (2, 2, 3)
    assert array[0, 0].tolist() == [0, 1, 2] and array[1, 1].tolist() == [9, 10, 11]  # row-major, last index fastest


def test_read_idx_labels_and_big_endian_sizes(tmp_path):
    # 1 dim of 258 = 0x00000102 values: a little-endian reader would read 0x02010000.
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 1, 2]) + bytes(i % 10 for i in range(258)))
    labels = read_idx(path)
    assert labels.shape == (258,) and labels[257] == 7


def test_write_idx_writes_exactly_the_hand_written_bytes(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert write_idx(tmp_path / "a", array).read_bytes() == HAND_IDX
    assert gzip.decompress(write_idx(tmp_path / "a.gz", array).read_bytes()) == HAND_IDX


@pytest.mark.parametrize("data, message", [
    (bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + struct.pack(">f", 1.0), "not an unsigned-byte IDX"),  # float32 IDX
    (bytes([1, 2, 8, 1, 0, 0, 0, 1, 5]), "not an unsigned-byte IDX"),  # bad magic
    (bytes([0, 0, 8, 3, 0, 0]), "truncated inside its header"),
    (bytes([0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 3]) + bytes(8), "holds 8 values but its header says 3x3"),
])
def test_read_idx_rejects_damaged_files(tmp_path, data, message):
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_read_idx_rejects_a_file_that_is_not_gzip(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(HAND_IDX)  # named .gz, but plain
    with pytest.raises(DataError, match="could not be read"):
        read_idx(path)


def _tiny_fashion(folder, n_train=12, n_test=6, size=28):
    rng = np.random.default_rng(1)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, size, size)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


def test_load_fashion_mnist_from_a_folder(tmp_path):
    dataset = load_fashion_mnist(_tiny_fashion(tmp_path))
    assert dataset.train.images.shape == (12, 1, 28, 28) and dataset.train.images.dtype == torch.uint8
    assert dataset.test.labels.tolist() == [0, 1, 2, 3, 4, 5]
    assert dataset.class_names == FASHION_MNIST_CLASSES and len(FASHION_MNIST_CLASSES) == 10
    raw = read_idx(tmp_path / "t10k-images-idx3-ubyte.gz")
    assert np.array_equal(dataset.test.images[:, 0].numpy(), raw)


def test_fashion_mnist_errors_name_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="No folder at .*nowhere"):
        find_fashion_mnist(tmp_path / "nowhere")
    _tiny_fashion(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="lacks t10k-images-idx3-ubyte.gz"):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_labels_must_match_images(tmp_path):
    _tiny_fashion(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(5))  # 6 images, 5 labels
    with pytest.raises(DataError, match="don't match"):
        load_fashion_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(6, 10))  # label 10: there are only 0-9
    with pytest.raises(DataError, match="10 classes"):
        load_fashion_mnist(tmp_path)


def test_the_debian_fashion_mnist_is_found_and_has_its_published_sizes():
    try:
        folder = find_fashion_mnist()
    except DataError:
        pytest.skip("dataset-fashion-mnist is not installed")
    assert all((folder / (f + ".gz")).is_file() or (folder / f).is_file() for f in FASHION_MNIST_FILES)
    labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10_000,) and np.bincount(labels).tolist() == [1000] * 10  # balanced, as published


# ---------------------------------------------------------------------------------------------------------------
# Image folders



def test_load_image_folder(tmp_path):
    root = write_image_folder(tmp_path / "colours")
    (root / "train" / "red" / "notes.txt").write_text("not an image, skipped")
    dataset = load_image_folder(root, image_size=16, channels=3)
    assert dataset.class_names == ["blue", "green", "red"]  # sorted folder names
    assert dataset.train.images.shape == (12, 3, 16, 16) and dataset.test.images.shape == (6, 3, 16, 16)
    assert dataset.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    means = dataset.train.images.float().mean(dim=(2, 3))  # (n, 3)
    assert (means.argmax(-1) == torch.tensor([2] * 4 + [1] * 4 + [0] * 4)).all()  # blue, green, red channel wins
    gray = load_image_folder(root, image_size=8, channels=1)
    assert gray.test.images.shape == (6, 1, 8, 8)


def test_load_image_folder_with_a_models_preprocessing(tmp_path):
    root = write_image_folder(tmp_path / "colours")
    preprocessing = Preprocessing(resize_size=24, crop_size=20)  # resize the shorter side to 24, crop 20 x 20
    dataset = load_image_folder(root, preprocessing=preprocessing)
    assert dataset.train.images.shape == (12, 3, 20, 20)
    first = Image.open(root / "train" / "blue" / "0.jpg").convert("RGB")
    expected = np.asarray(preprocessing.crop(first)[0]).transpose(2, 0, 1)
    assert np.array_equal(dataset.train.images[0].numpy(), expected)


def _empty(folder):
    for file in folder.rglob("*.jpg"):
        file.unlink()


@pytest.mark.parametrize("break_it, where, message", [
    (lambda root: None, "../missing", "No folder at .*missing; expected .*train/<class>/\\*.jpg"),
    (lambda root: shutil.rmtree(root / "test"), "", "has no test/ folder"),
    (lambda root: None, "train", "is the train/ folder itself: pass its parent"),
    (lambda root: [shutil.rmtree(root / "train" / name) for name in ("green", "red")], "", "at least two"),
    (lambda root: (root / "test" / "purple").mkdir(), "", "class folders \\['purple'\\]"),
    (lambda root: _empty(root / "test"), "", "holds no images"),
    (lambda root: (root / "train" / "red" / "0.jpg").write_bytes(b"not a jpeg"), "", "0.jpg: .*not an image"),
])
def test_wrong_image_folder_layouts_say_what_was_expected(tmp_path, break_it, where, message):
    root = write_image_folder(tmp_path / "colours")
    break_it(root)
    with pytest.raises(DataError, match=message):
        load_image_folder(root / where if where else root, image_size=16)


def test_image_folder_classes(tmp_path):
    root = write_image_folder(tmp_path / "colours")
    assert image_folder_classes(root) == ["blue", "green", "red"]


# ---------------------------------------------------------------------------------------------------------------
# Preparing a data set's own images for a model

def test_prepare_images_passes_images_of_the_right_shape_unchanged():
    images = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    preprocessing = Preprocessing(resize_size=28, crop_size=28, channels=1, mean=(0.286,), std=(0.353,), invert="auto")
    assert prepare_images(images, preprocessing) is images


def test_prepare_images_crops_other_sizes_and_never_inverts():
    images = torch.full((2, 1, 28, 28), 250, dtype=torch.uint8)  # a light image: "auto" would invert a photo like it
    images[:, :, 10:18, 10:18] = 0
    preprocessing = Preprocessing(resize_size=64, crop_size=56, channels=3, invert="auto")
    out = prepare_images(images, preprocessing)
    assert out.shape == (2, 3, 56, 56) and out.dtype == torch.uint8
    assert out[:, :, 0, 0].tolist() == [[250, 250, 250]] * 2  # the light border stays light: not inverted
    assert (out[:, 0] == out[:, 1]).all() and (out[:, 1] == out[:, 2]).all()  # gray copied into R, G and B
    expected = Preprocessing(resize_size=64, crop_size=56).crop(Image.fromarray(images[0, 0].numpy()))[0]
    assert np.array_equal(out[0].permute(1, 2, 0).numpy(), np.asarray(expected))


def test_channel_stats_by_hand():
    images = torch.tensor([[[[0, 255]], [[51, 51]]]], dtype=torch.uint8)  # (1, 2, 1, 2)
    mean, std = channel_stats(images)
    assert mean == pytest.approx((0.5, 0.2)) and std[1] == pytest.approx(0.0)
    assert std[0] == pytest.approx(np.std([0.0, 1.0], ddof=1))  # torch's unbiased std
