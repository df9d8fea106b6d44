"""explorer.images on generated files: every PIL mode, EXIF orientation, animations, broken and hostile files; and
Preprocessing against torchvision's own transforms."""
import gc
import io
import re
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models import ViT_B_16_Weights, ViT_L_16_Weights

from explorer.images import ImageError, OpenedImage, Preprocessing, open_image


def assert_one_sentence(message: str) -> None:
    assert "\n" not in message and message.endswith("."), message
    assert not re.search(r"[.!?]\s+[A-Z]", message), f"more than one sentence: {message}"


def expect_image_error(source, *words: str) -> str:
    with pytest.raises(ImageError) as info:
        open_image(source)
    message = str(info.value)
    assert_one_sentence(message)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def save(image: Image.Image, path, format: str, **options):
    image.save(path, format, **options)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR declaring width x height RGB, a token IDAT and IEND: ~70 bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------------------------
# Every PIL mode -> RGB, checked pixel by pixel against a value computed here

W, H = 12, 8
RNG = np.random.default_rng(0)
GREY = RNG.integers(0, 256, (H, W), dtype=np.uint8)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
INDICES = (np.arange(H * W).reshape(H, W) % 3).astype(np.uint8)
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
LEFT = np.arange(W)[None, :] < W // 2  # (1, W): left half


def grey3(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(values)[:, :, None], 3, axis=2)


def palette_image(transparent_index=None) -> Image.Image:
    image = Image.fromarray(INDICES, "P")
    image.putpalette(PALETTE.flatten().tolist())
    if transparent_index is not None:
        image.info["transparency"] = transparent_index
    return image


def case_1():
    bits = (np.indices((H, W)).sum(0) % 2).astype(bool)
    return Image.fromarray(bits), "PNG", grey3(np.where(bits, 255, 0)), None


def case_L():
    return Image.fromarray(GREY, "L"), "PNG", grey3(GREY), None


def case_LA():
    alpha = np.where(LEFT, 0, 255).astype(np.uint8) * np.ones((H, 1), dtype=np.uint8)
    image = Image.fromarray(np.stack([np.full((H, W), 100, np.uint8), alpha], axis=2), "LA")
    return image, "PNG", grey3(np.where(LEFT, 255, 100) * np.ones((H, 1), int)), "transparent"


def case_P():
    return palette_image(), "PNG", PALETTE[INDICES], None


def case_P_transparency():
    expected = PALETTE[INDICES].copy()
    expected[INDICES == 1] = 255  # index 1 (green) is transparent: shown on white
    return palette_image(transparent_index=1), "PNG", expected, "transparent"


def case_RGBA():
    alpha = np.where(LEFT, 0, 255) * np.ones((H, 1), dtype=int)
    alpha[0] = 128
    image = Image.fromarray(np.dstack([RGB, alpha.astype(np.uint8)]), "RGBA")
    a = alpha[:, :, None] / 255.0
    return image, "PNG", RGB * a + 255 * (1 - a), "transparent"


def case_CMYK():
    # Pure inks only, so that any CMYK -> RGB formula agrees: C -> (0,255,255), M, Y, K -> black, none -> white.
    inks = np.array([[255, 0, 0, 0], [0, 255, 0, 0], [0, 0, 255, 0], [0, 0, 0, 255], [0, 0, 0, 0]], np.uint8)
    rgb = np.array([[0, 255, 255], [255, 0, 255], [255, 255, 0], [0, 0, 0], [255, 255, 255]])
    which = np.arange(H * W).reshape(H, W) % 5
    return Image.fromarray(inks[which], "CMYK"), "TIFF", rgb[which], "CMYK"


def case_I16():
    return Image.fromarray(GREY.astype(np.uint16) * 257), "PNG", grey3(GREY), "16-bit"  # v * 257 / 65535 * 255 = v


def case_I():
    image = Image.fromarray(GREY.astype(np.int32) * 257)  # 32-bit, within the 16-bit range: scaled by 65535
    assert image.mode == "I"
    return image, "TIFF", grey3(GREY), "high-depth"


def case_I_wide():
    values = GREY.astype(np.int32) * 1000 - 50_000  # beyond 16 bits and negative: min-max scaled
    expected = (values - values.min()) / (values.max() - values.min()) * 255
    return Image.fromarray(values), "TIFF", grey3(expected), "high-depth"


def case_F():
    values = GREY.astype(np.float32) / 64.0 - 1.0  # floats in about [-1, 3]: min-max scaled
    expected = (values - values.min()) / (values.max() - values.min()) * 255
    return Image.fromarray(values, "F"), "TIFF", grey3(expected), "high-depth"


def case_RGB():
    return Image.fromarray(RGB, "RGB"), "PNG", RGB, None


MODE_CASES = {"1": case_1, "L": case_L, "LA": case_LA, "P": case_P, "P+transparency": case_P_transparency,
              "RGBA": case_RGBA, "CMYK": case_CMYK, "I;16": case_I16, "I": case_I, "I-wide": case_I_wide,
              "F": case_F, "RGB": case_RGB}


@pytest.mark.parametrize("case", MODE_CASES, ids=list(MODE_CASES))
def test_every_mode_becomes_the_right_rgb(tmp_path, case):
    image, format, expected, note_word = MODE_CASES[case]()
    path = save(image, tmp_path / f"image.{format.lower()}", format)
    with Image.open(path) as reopened:
        assert reopened.mode == image.mode  # the file really is in that mode
    opened = open_image(path)
    assert isinstance(opened, OpenedImage)
    assert opened.image.mode == "RGB" and opened.image.size == (W, H)
    assert opened.original_mode == image.mode and opened.original_size == (W, H)
    result = np.asarray(opened.image).astype(int)
    assert np.abs(result - np.rint(expected)).max() <= 1, case
    if note_word:
        assert any(note_word.lower() in n.lower() for n in opened.notes), opened.notes
    else:
        assert opened.notes == []
    for note in opened.notes:
        assert_one_sentence(note)


# ---------------------------------------------------------------------------------------------------------------
# EXIF orientation: the content tells which way is up

QUADRANTS = {(0, 0): (255, 0, 0), (0, 1): (0, 255, 0), (1, 0): (0, 0, 255), (1, 1): (255, 255, 255)}


def upright_image() -> np.ndarray:
    """48 wide x 32 high: red top-left, green top-right, blue bottom-left, white bottom-right."""
    array = np.zeros((32, 48, 3), np.uint8)
    for (row, col), colour in QUADRANTS.items():
        array[row * 16:(row + 1) * 16, col * 24:(col + 1) * 24] = colour
    return array


def assert_upright(image: Image.Image) -> None:
    assert image.size == (48, 32)
    array = np.asarray(image).astype(int)
    for (row, col), colour in QUADRANTS.items():
        centre = array[row * 16 + 8, col * 24 + 12]
        assert np.abs(centre - colour).max() < 40, ((row, col), centre)


# EXIF 6: "row 0 is the visual right side, column 0 the visual top": the camera stored the scene rotated 90 degrees
# counter-clockwise, and a viewer rotates it clockwise. EXIF 8 is the mirror case.
@pytest.mark.parametrize("orientation, stored_rotation", [(6, 1), (8, -1), (3, 2), (1, 0)])
def test_exif_orientation_gives_an_upright_image(tmp_path, orientation, stored_rotation):
    stored = np.ascontiguousarray(np.rot90(upright_image(), k=stored_rotation))  # k=1: counter-clockwise
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(Image.fromarray(stored), tmp_path / "photo.jpg", "JPEG", exif=exif.tobytes(), quality=95)
    opened = open_image(path)
    assert_upright(opened.image)
    noted = any("EXIF orientation" in n for n in opened.notes)
    assert noted == (orientation != 1)


# ---------------------------------------------------------------------------------------------------------------
# Animations, sources, file handles

def test_animated_gif_uses_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    opened = open_image(path)
    assert np.all(np.asarray(opened.image) == (255, 0, 0))
    assert any("animated (3 frames)" in n and "first frame" in n for n in opened.notes), opened.notes


def test_files_are_closed_not_left_to_the_garbage_collector(tmp_path):
    # PIL keeps an animation's file open; dropping it unclosed gives a ResourceWarning (CPython closes it anyway).
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    gif = tmp_path / "animated.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    png = save(Image.fromarray(RGB), tmp_path / "still.png", "PNG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = [open_image(gif), open_image(png)]
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert kept[0].image.getpixel((0, 0)) == (255, 0, 0)
    assert np.array_equal(np.asarray(kept[1].image), RGB)


def test_sources_path_bytes_file_object_pil_and_arrays(tmp_path):
    path = save(Image.fromarray(RGB), tmp_path / "rgb.png", "PNG")
    data = path.read_bytes()
    pil = Image.fromarray(RGB)
    for source in (path, str(path), data, bytearray(data), io.BytesIO(data), pil, RGB):
        assert np.array_equal(np.asarray(open_image(source).image), RGB), type(source)
    assert pil.getpixel((0, 0)) == tuple(RGB[0, 0])  # a caller's PIL image is left usable
    # Arrays: floats in [0, 1] are scaled by 255, H x W x 1 is grey, any other range is min-max scaled.
    assert np.array_equal(np.asarray(open_image(GREY / 255.0).image), grey3(GREY))
    assert np.array_equal(np.asarray(open_image(GREY[:, :, None]).image), grey3(GREY))
    wide = GREY.astype(np.float64) * 4 - 300
    stretched = (GREY - GREY.min()) / (GREY.max() - GREY.min()) * 255.0
    assert np.abs(np.asarray(open_image(wide).image).astype(int) - np.rint(grey3(stretched))).max() <= 1
    assert np.array_equal(np.asarray(open_image(GREY.astype(np.int64)).image), grey3(GREY))  # ints kept as they are
    expect_image_error(np.zeros((4, 4, 2)), "not an image")


# ---------------------------------------------------------------------------------------------------------------
# Broken and hostile files: one sentence each, saying what to do

def test_missing_file(tmp_path):
    expect_image_error(tmp_path / "nothing.png", "No file")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("These are my notes, not a picture.\n")
    expect_image_error(path, "notes.png", "not an image", "upload a JPEG")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    expect_image_error(path, "empty.jpg", "empty")
    expect_image_error(b"", "uploaded file is empty")


@pytest.mark.parametrize("format", ["JPEG", "PNG"])
def test_truncated_file(tmp_path, format):
    noise = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format)
    path = tmp_path / f"cut.{format.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    message = expect_image_error(path, f"cut.{format.lower()}", "damaged or incomplete", "upload a complete file")
    assert message.startswith(f"The file cut.{format.lower()} is damaged"), message  # named like the other messages
    expect_image_error(path.read_bytes(), "the uploaded file is damaged or incomplete")


def test_svg_file(tmp_path):
    path = tmp_path / "drawing.svg"
    path.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
                    '<rect width="10" height="10" fill="red"/></svg>\n')
    expect_image_error(path, "drawing.svg", "SVG", "export it as PNG")
    expect_image_error(io.BytesIO(path.read_bytes()), "SVG")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(40_000, 40_000))  # declares 1.6 gigapixels in about 70 bytes
    assert path.stat().st_size < 200
    expect_image_error(path, "bomb.png", "too many pixels", "upload a smaller image")


def test_image_over_the_pixel_limit_is_refused(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(10_000, 10_000))  # 100 MP: under PIL's own bomb limit, over ours
    expect_image_error(path, "10000×10000", "megapixel", "scale it down")


def test_long_strip_uses_its_central_part():
    # 20000 x 10: blue, with red in the central 40 columns. Only a central part reaches the crop, and it is red.
    array = np.zeros((10, 20000, 3), np.uint8)
    array[:, :, 2] = 255
    array[:, 9980:10020] = (255, 0, 0)
    opened = open_image(array)
    assert opened.image.size == (20000, 10)
    preprocessing = Preprocessing.from_torchvision(ViT_B_16_Weights.IMAGENET1K_V1.transforms())
    cropped, notes = preprocessing.crop(opened.image)
    assert cropped.size == (224, 224)
    assert np.abs(np.asarray(cropped).astype(int) - (255, 0, 0)).max() <= 2
    assert any("central part" in n for n in notes)
    assert preprocessing(opened.image).shape == (1, 3, 224, 224)


def test_one_pixel_image():
    opened = open_image(Image.new("RGB", (1, 1), (10, 200, 30)))
    assert opened.image.size == (1, 1)
    assert any("1×1" in n and "blur" in n for n in opened.notes)
    preprocessing = Preprocessing()
    x = preprocessing(opened.image)
    assert x.shape == (1, 3, 224, 224)
    expected = (torch.tensor([10, 200, 30]) / 255.0 - torch.tensor(preprocessing.mean)) / torch.tensor(preprocessing.std)
    assert torch.allclose(x[0, :, 112, 112], expected, atol=1e-5) and torch.allclose(x.std((2, 3)), torch.zeros(1, 3))


# ---------------------------------------------------------------------------------------------------------------
# Preprocessing against torchvision's transforms

@pytest.mark.parametrize("weights, recipe", [
    (ViT_B_16_Weights.IMAGENET1K_V1, (256, 224, "bilinear")),  # PAPER_NOTES: resize 256 bilinear, crop 224
    (ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1, (384, 384, "bicubic")),
    (ViT_L_16_Weights.IMAGENET1K_V1, (242, 224, "bilinear")),
], ids=["B16-V1", "B16-SWAG-E2E", "L16-V1"])
def test_preprocessing_equals_torchvision_transforms(weights, recipe):
    transforms = weights.transforms()
    preprocessing = Preprocessing.from_torchvision(transforms)
    assert (preprocessing.resize_size, preprocessing.crop_size, preprocessing.interpolation) == recipe
    assert preprocessing.mean == pytest.approx((0.485, 0.456, 0.406)) and preprocessing.std == pytest.approx((0.229, 0.224, 0.225))
    assert Preprocessing.from_dict(preprocessing.to_dict()) == preprocessing
    description = preprocessing.describe()
    assert_one_sentence(description[0].upper() + description[1:])
    assert str(recipe[0]) in description and recipe[2] in description
    # Odd sizes, landscape and portrait; 355 x 256 resizes to an odd margin (355 - 224) / 2 = 65.5, where
    # torchvision's round() (to 66) and a floor division (65) part ways.
    for size in ((300, 217), (217, 300), (355, 256), (256, 355), (387, 384)):
        pil = Image.fromarray(RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        ours = preprocessing(pil)
        theirs = transforms(pil).unsqueeze(0)
        assert ours.shape == theirs.shape == (1, 3, recipe[1], recipe[1])
        assert (ours - theirs).abs().max().item() < 1e-5, (weights, size)


def test_grayscale_preprocessing_and_auto_invert():
    preprocessing = Preprocessing(resize_size=28, crop_size=28, channels=1, mean=(0.5,), std=(0.5,), invert="auto")
    dark_on_light = np.full((56, 56, 3), 250, np.uint8)
    dark_on_light[20:36, 20:36] = 10
    cropped, notes = preprocessing.crop(Image.fromarray(dark_on_light))
    array = np.asarray(cropped)
    assert cropped.mode == "L" and cropped.size == (28, 28)
    assert array[0, 0] < 10 and array[14, 14] > 240  # inverted: light object on black
    assert any("inverted" in n for n in notes)
    x = preprocessing(Image.fromarray(dark_on_light))
    assert x.shape == (1, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    light_on_dark = 255 - dark_on_light
    assert preprocessing.crop(Image.fromarray(light_on_dark))[1] == []
