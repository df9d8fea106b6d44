"""The patch picker as pictures a visitor clicks on: the model's input enlarged with its patch grid, the selected patch
outlined, dropped patches blacked out and crossed. numpy and PIL only: uint8 (H s, W s, 3) arrays out."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

MARK = (255, 40, 40)  # the selected patch's outline, a dropped patch's cross
GRID = (255, 255, 255)
DROPPED = (24, 24, 24)


def enlarged(image, scale: int) -> np.ndarray:
    """(H, W, 3) in [0, 1] -> uint8 (H s, W s, 3): nearest neighbours for small inputs (28 px pixels stay crisp),
    bilinear for photographs."""
    pil = Image.fromarray((np.asarray(image) * 255).round().astype(np.uint8))
    resample = Image.Resampling.NEAREST if pil.height < 100 else Image.Resampling.BILINEAR
    return np.asarray(pil.resize((pil.width * scale, pil.height * scale), resample))


def with_grid(image, patch_size: int, scale: int) -> np.ndarray:
    """The input enlarged s times with white lines between its patches (P s pixels apart): uint8 (H s, W s, 3)."""
    pil = Image.fromarray(enlarged(image, scale))
    draw = ImageDraw.Draw(pil)
    side = patch_size * scale
    rows, columns = len(image) // patch_size, len(image[0]) // patch_size  # the patch grid (gh, gw)
    for r in range(1, rows):
        draw.line([(0, r * side), (pil.width, r * side)], fill=GRID, width=1)
    for c in range(1, columns):
        draw.line([(c * side, 0), (c * side, pil.height)], fill=GRID, width=1)
    return np.asarray(pil)


def _box(index: int, side: int, columns: int) -> list[int]:
    """Patch `index`'s pixels in a picture of `columns` patches of side x side to a row: [x0, y0, x1, y1]."""
    row, col = divmod(int(index), columns)
    return [col * side, row * side, (col + 1) * side - 1, (row + 1) * side - 1]


def outlined(picture: np.ndarray, index: int, side: int, columns: int) -> np.ndarray:
    """`picture` with patch `index` outlined in red (lines P s / 8 wide, at least 2)."""
    image = Image.fromarray(picture)
    ImageDraw.Draw(image).rectangle(_box(index, side, columns), outline=MARK, width=max(2, side // 8))
    return np.asarray(image)


def crossed_out(picture: np.ndarray, indices, side: int, columns: int) -> np.ndarray:
    """`picture` with each patch of `indices` blacked out, outlined and crossed in red."""
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    width = max(1, side // 16)
    for index in indices:
        box = _box(index, side, columns)
        draw.rectangle(box, fill=DROPPED, outline=MARK, width=width)
        draw.line(box, fill=MARK, width=width)
        draw.line([box[0], box[3], box[2], box[1]], fill=MARK, width=width)
    return np.asarray(image)
