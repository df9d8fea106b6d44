"""Hostile and broken image files, generated on the spot (nothing is downloaded or stored in git).

`make_all(folder)` writes every file and returns {name: HostileFile}. Each HostileFile says whether the app must
accept it (a result, perhaps with a note) or refuse it (one sentence), and what the message should mention.

The decompression bombs are real PNGs: valid headers, CRCs and a complete zlib stream of zero rows, written with
zlib in chunks so that neither the generator nor the file is large (40000 x 40000 pixels in about 200 KB).
"""
from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# Over app.py's launch(max_file_size="20mb").
OVER_LIMIT_BYTES = 21 * 1024 * 1024
# Every file make_all writes, in order (tests parametrise over these names at collection time).
NAMES = ("text_renamed.png", "truncated.jpg", "empty.png", "bomb_40000x40000.png", "bomb_10000x10000.png",
         "strip_20000x10.png", "one_pixel.png", "gray16.png", "cmyk.jpg", "palette_transparent.png", "animated.gif",
         "exif_rotated.jpg", "vector.svg", "over_limit.png")


@dataclass(frozen=True)
class HostileFile:
    name: str  # the file name (its suffix is what a browser and Gradio see)
    path: Path
    accepted: bool  # the app must give a result (True) or refuse it in one sentence (False)
    mentions: tuple[str, ...] = ()  # words the message must contain (case-insensitive), any one of each tuple item
    why: str = ""  # what the file is, for the report
    at_upload: bool = False  # refused by the upload limit itself (HTTP 413), before the app's code runs


# ---------------------------------------------------------------------------------------------------------------
# PNG by hand

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of `width` x `height` black pixels; the zlib stream is built row block by row block."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)  # filter byte 0 + packed bits
    compressor = zlib.compressobj(9)
    parts = []
    rows_per_block = max(1, (4 * 2**20) // len(row))
    block = row * rows_per_block
    done = 0
    while done < height:
        n = min(rows_per_block, height - done)
        parts.append(compressor.compress(block if n == rows_per_block else row * n))
        done += n
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, grayscale
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_with_padding(image: Image.Image, total_bytes: int) -> bytes:
    """A valid PNG of `image` with a private ancillary chunk ("prVt", ignored by decoders) that brings it to about
    `total_bytes`: a real image file that is simply too large to upload."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    data = buffer.getvalue()
    head, tail = data[:33], data[33:]  # signature (8) + IHDR chunk (25); private chunks may follow IHDR
    padding = os.urandom(max(0, total_bytes - len(data) - 12))
    return head + _chunk(b"prVt", padding) + tail


# ---------------------------------------------------------------------------------------------------------------
# The files

def _gradient(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     (x + y) * 255 // max(width + height - 2, 1)], -1).astype(np.uint8)  # (H, W, 3)


def exif_rotated_jpeg() -> bytes:
    """A 60 x 40 (landscape as stored) JPEG whose top third is white, with EXIF orientation 6 (rotate 90° clockwise
    to view): shown upright it is 40 x 60 (portrait) with its RIGHT third white."""
    stored = np.zeros((40, 60, 3), np.uint8)
    stored[:13] = 255
    image = Image.fromarray(stored)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def make_all(folder: str | os.PathLike) -> dict[str, HostileFile]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, HostileFile] = {}

    def add(name, data: bytes, accepted, mentions=(), why="", at_upload=False):
        path = folder / name
        path.write_bytes(data)
        files[name] = HostileFile(name, path, accepted, tuple(mentions), why, at_upload)

    def encoded(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    add("text_renamed.png", b"This is a plain text file, not a picture.\n" * 20, False,
        ("not an image",), "a text file renamed .png")
    good_jpeg = encoded(Image.fromarray(_gradient(256, 192)), "JPEG", quality=90)
    add("truncated.jpg", good_jpeg[: len(good_jpeg) // 2], False,
        ("damaged", "incomplete", "could not be read"), "the first half of a 256x192 JPEG")
    add("empty.png", b"", False, ("empty",), "a zero-byte file")
    add("bomb_40000x40000.png", png_bomb(40000, 40000), False,
        ("pixels", "megapixel"), "a valid 1-bit PNG declaring 40000 x 40000 pixels (1.6 gigapixels)")
    add("bomb_10000x10000.png", png_bomb(10000, 10000), False,
        ("megapixel",), "a valid 1-bit PNG of 100 megapixels: under Pillow's own bomb limit, over the app's")
    add("strip_20000x10.png", encoded(Image.fromarray(_gradient(20000, 10)), "PNG"), True,
        ("central part",), "a 20000 x 10 strip")
    add("one_pixel.png", encoded(Image.new("RGB", (1, 1), (200, 30, 30)), "PNG"), True,
        ("1×1", "scaled up"), "a 1 x 1 image")
    sixteen = (np.linspace(0, 65535, 48 * 64).reshape(48, 64)).astype(np.uint16)
    add("gray16.png", encoded(Image.fromarray(sixteen), "PNG"), True,
        ("16-bit",), "a 16-bit grayscale PNG (0 .. 65535)")
    add("cmyk.jpg", encoded(Image.fromarray(_gradient(64, 48)).convert("CMYK"), "JPEG", quality=90), True,
        ("CMYK",), "a CMYK JPEG")
    palette = Image.fromarray(_gradient(64, 64)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette_array = np.array(palette)
    add("palette_transparent.png", encoded(palette, "PNG", transparency=int(palette_array[0, 0])), True,
        ("transparent",), "a 16-colour palette PNG with one transparent colour")
    frames = [Image.new("RGB", (48, 48), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("animated.gif", gif.getvalue(), True, ("animated", "first frame"), "a 3-frame animated GIF")
    add("exif_rotated.jpg", exif_rotated_jpeg(), True, ("orientation", "upright"),
        "a 60 x 40 JPEG with EXIF orientation 6 (upright: 40 x 60, right third white)")
    svg = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
           b'<rect width="64" height="64" fill="red"/><script>alert(1)</script></svg>\n')
    add("vector.svg", svg, False, ("svg",), "an SVG (with a script element)")
    add("over_limit.png", png_with_padding(Image.fromarray(_gradient(64, 64)), OVER_LIMIT_BYTES), False,
        ("size", "large", "limit", "exceed"), "a valid 64 x 64 PNG padded to 21 MB (limit 20 MB)", at_upload=True)
    assert tuple(files) == NAMES
    return files


def good_image(folder: str | os.PathLike, name: str = "good.png", seed: int = 0) -> Path:
    """An ordinary 64 x 64 RGB PNG (the 'next request still works' check)."""
    rng = np.random.default_rng(seed)
    path = Path(folder) / name
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    return path


if __name__ == "__main__":  # python tests/hostile_files.py /tmp/hostile
    import sys

    for name, item in make_all(sys.argv[1] if len(sys.argv) > 1 else "hostile").items():
        print(f"{name:28s} {item.path.stat().st_size:>10d} bytes  {'accepted' if item.accepted else 'refused':9s} {item.why}")
