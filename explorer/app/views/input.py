"""Step 0, the input: the image as the model sees it (whole, and cut into patches), a stage's array, the patch picker a
visitor clicks on to choose the query, and the step's views."""
from __future__ import annotations

import numpy as np

from ...config import ViTConfig
from ...deferred import deferred
from ..text import explanation
from .declare import view

# Imported when first used (explorer/deferred.py): the page is up before torch (and plotly) are loaded.
analysis = deferred("explorer.analysis")
picker = deferred("explorer.render.picker")


PICKER_SIDE = 448  # the patch picker is drawn at least this many pixels wide


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def _rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, C) with C = 1 or 3 -> (H, W, 3) float32 in [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def display_image(entry) -> np.ndarray:
    """What the model sees, un-normalised, (H, W, 3) in [0, 1]."""
    return entry.cached("image", lambda: _rgb(entry.trace.image.numpy()))


def display_patches(entry) -> np.ndarray:
    """x_p^i as pictures: (N, P, P, 3) in [0, 1], row-major over the grid."""
    def compute():
        image = display_image(entry)  # (H, W, 3)
        P = entry.config.patch_size
        rows, cols = entry.config.grid
        patches = image.reshape(rows, P, cols, P, 3).transpose(0, 2, 1, 3, 4)  # (rows, cols, P, P, 3)
        return np.ascontiguousarray(patches.reshape(rows * cols, P, P, 3))  # (N, P, P, 3)
    return entry.cached("patches", compute)


def stage(entry, name: str) -> np.ndarray:
    """The trace's stage `name` as a float32 numpy array, kept per entry."""
    return entry.cached(("stage", name), lambda: entry.trace[name].float().numpy())


def picker_scale(config: ViTConfig) -> int:
    """Integer upscaling of the model's input in the picker, so small inputs (28 px) get clickable patches."""
    return max(1, int(np.ceil(PICKER_SIDE / max(config.image_hw))))


def picker_base(entry) -> np.ndarray:
    """The model's input enlarged s times with its patch grid, kept per entry: (H·s, W·s, 3) uint8."""
    scale = picker_scale(entry.config)
    patch_size = entry.config.patch_size
    return entry.cached(("picker", scale), lambda: picker.with_grid(display_image(entry), patch_size, scale))


def patch_picker(entry, selected: int | None = None) -> np.ndarray:
    """The model's input with the patch grid and the selected patch outlined: (H·s, W·s, 3) uint8."""
    base = picker_base(entry)
    if selected is None:
        return base
    config = entry.config
    return picker.outlined(base, int(selected), config.patch_size * picker_scale(config), config.grid[1])


def seen_image(entry) -> np.ndarray:
    """What the model sees (resized, cropped, before normalisation), enlarged like the picker but without the grid."""
    return entry.cached("seen", lambda: picker.enlarged(display_image(entry), picker_scale(entry.config)))


def patch_at(config: ViTConfig, x: float, y: float) -> int:
    """The patch index under pixel (x, y) of the picker image (clamped to the grid)."""
    side = config.patch_size * picker_scale(config)
    rows, cols = config.grid
    row = min(max(int(y // side), 0), rows - 1)
    col = min(max(int(x // side), 0), cols - 1)
    return analysis.patch_index(row, col, config.grid)


def grid_words(config: ViTConfig) -> str:
    """"Patch grid, R × C patches of P × P pixels": how an alt text names a patch picture. (explorer/app/a11y.js
    reads the grid's size from these words to move its keyboard cursor.)"""
    rows, cols = config.grid
    return f"Patch grid, {rows} × {cols} patches of {config.patch_size} × {config.patch_size} pixels"


def _token_query(config: ViTConfig) -> str:
    """The query when no patch is picked, in words: the class token for the paper's ViT, else the token chosen in step 2
    (TokenLayout.query_labels)."""
    layout = config.layout
    if layout.query_labels() == ("CLS",):
        return "the class token"
    return f"the token chosen in step 2 ({', '.join(layout.query_labels())}; {layout.default_query_label} unless changed)"


def picker_alt(entry, selected: int | None) -> str:
    """The patch picker in words: its grid and the selected patch."""
    if selected is None:
        return f"{grid_words(entry.config)}, no patch selected (the query is {_token_query(entry.config)})."
    row, col = analysis.patch_position(int(selected), entry.config.grid)
    return f"{grid_words(entry.config)}, patch {selected} selected (row {row}, column {col})."


def selection_text(entry, selected: int | None) -> str:
    if selected is None:
        if entry.config.layout.query_labels() == ("CLS",):
            return "Query: **the class token** (CLS, token 0). Click a patch to choose it instead."
        return f"Query: **{_token_query(entry.config)}**. Click a patch to choose it instead."
    row, col = analysis.patch_position(int(selected), entry.config.grid)
    token = entry.config.layout.patch_token(int(selected))
    return (f"Query: **patch {selected}** (row {row}, column {col}; token {token}). Click another patch, or unpick it "
            f"to query {_token_query(entry.config)}.")


def _normalisation_text(entry) -> str:
    pre = entry.preprocessing
    pixels = entry.trace["input.pixels"]  # (C, H, W)
    low = pixels.amin(dim=(1, 2)).tolist()
    high = pixels.amax(dim=(1, 2)).tolist()
    channels = ["R", "G", "B"] if len(low) == 3 else ["gray"]
    ranges = ", ".join(f"{name} {a:+.2f} … {b:+.2f}" for name, a, b in zip(channels, low, high))
    width, height = entry.original_size
    notes = "".join(f"\n- {note}" for note in entry.notes) or "\n- Nothing else was changed."
    return (f"**Preprocessing:** {pre.describe()}\n\n"
            f"Uploaded {width}×{height}; the model reads {entry.config.image_hw[0]}×{entry.config.image_hw[1]}. "
            f"After normalisation with μ = {_fmt(pre.mean)} and σ = {_fmt(pre.std)} the values run {ranges} "
            f"(a pixel equal to the mean becomes 0).\n\n**Notes:**{notes}")


@view("input.text", 0, "markdown")
def _input_text(entry, options):
    return explanation(0, entry.config, entry.preprocessing)


def _original_alt(entry, options) -> str:
    width, height = entry.original_size
    return f"Your image as uploaded, upright, {width} × {height} pixels."


def _seen_alt(entry, options) -> str:
    height, width = entry.config.image_hw
    colour = "grayscale" if entry.config.channels == 1 else "colour"
    return f"What the model sees: your image at {width} × {height} pixels, {colour}, before normalisation."


@view("input.original", 0, "image", "Your image (upright, RGB)", row="images", height=320, alt=_original_alt)
def _input_original(entry, options):
    return entry.original


@view("input.seen", 0, "image", "What the model sees (after its own preprocessing)", row="images", height=320,
      format="png", alt=_seen_alt, stages=("input.image",))
def _input_seen(entry, options):
    return seen_image(entry)


@view("input.normalised", 0, "markdown", stages=("input.pixels",))
def _input_normalised(entry, options):
    return _normalisation_text(entry)
