"""The figure layer's shared helpers: one figure's frame, mosaics of tiles, image axes, colour scales and pictures.

Pictures are put in the figures as pixels: a go.Image holds its uint8 pixels in `z`, and a heat map too large for hover
values is a go.Heatmap marked to be sent as a picture of its colours. Each such trace says in its `meta` what kind of
picture it is (`PICTURE`); how it travels (JPEG or PNG data URIs, palettes) is the app's business
(explorer.app.transport), so a figure shown as it is still draws the same.
"""
from __future__ import annotations

import functools
import math
import re
from typing import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import plotly.io as pio
from PIL import Image

ATTENTION_COLOURS = "Inferno"
SEQUENTIAL_COLOURS = "Viridis"
SIMILARITY_COLOURS = "RdBu_r"  # symmetric around 0: -1 blue, 0 white, +1 red

_TEMPLATE = pio.templates["plotly_white"]  # validated once, here
_MARGIN = dict(l=40, r=20, t=48, b=30)
_MARGIN_TWO_LINES = dict(l=40, r=20, t=72, b=30)  # a title wrapped with <br>
_TRANSPARENT = [[0.0, "rgba(0,0,0,0)"], [1.0, "rgba(0,0,0,0)"]]  # hover-only heat maps
_OUTLINE = "#00e5ff"  # selected / query patch
_LABEL_FONT = dict(size=11, color="#222")
_NUMBER_SHADOW = "0px 0px 2px black"
_MAX_HEATMAP_CELLS = 100_000  # cap on cells sent in one heat map (JSON stays well below 2 MB)
_MAX_OVERVIEW_CELLS = 80_000  # layers x heads x patches above this are pooled (ViT-L/16 is not, ViT-H/14 is)
_MAX_MATRIX_COLUMNS = 4096  # token matrices wider than this show one column in s
_MAX_MATRIX_SIDE = 320  # attention matrices above this many tokens are block-averaged
_DISPLAY_SIDE = 256  # images are drawn at most this many pixels on a side (per panel)
# Heat maps above this many cells are drawn as a picture of their colours, without hover values (HEATMAP below):
# ViT-B/16's T x D matrices are 151k cells, 1 MB each as numbers, so that a step of the page stays under the app's
# byte budget (explorer.app.transport.MAX_STEP_BYTES). Small models keep their hover values.
_MAX_HOVER_CELLS = 20_000

# What a picture is, in its trace's meta[PICTURE]: what explorer.app.transport encodes it by.
PICTURE = "picture"
PHOTO = "photo"  # a photograph, shown about as large as it is drawn
TILES = "photo tiles"  # small photographs that the browser enlarges: their detail shows
DRAWING = "drawing"  # a few flat colours (the embedding filters): lossless
HEATMAP = "heat map"  # a go.Heatmap sent as a picture of its colours (no hover values)
# ----------------------------------------------------------------------------------------------------------------
# helpers


TITLE_CHARACTERS = 64  # a title line longer than this is broken at spaces: Plotly never wraps, it clips
# A figure for a narrow screen (a renderer's narrow=True: a phone, explorer.app.screen) lays its panels one under
# another, each as wide as the screen allows, and its colour bars flat under the picture (upright, one takes a fifth of
# a phone's width).
PHONE_WIDTH = 330  # px: what a chart has to draw in on a 390-px-wide phone, the page's padding and its margins off
_FLAT_COLOURBAR = 64  # px of height under a narrow figure's picture for its colour bar


def wrap_title(title: str, width: int = TITLE_CHARACTERS) -> str:
    """`title` with each line over `width` visible characters broken with <br>: between its " · " parts where it has
    them, else at spaces (tags such as <sub> are not counted, and stay whole)."""
    def visible(text: str) -> int:
        return len(re.sub(r"<[^>]*>", "", text))

    def pack(pieces: list[str], joint: str) -> list[str]:
        lines, current = [], ""
        for piece in pieces:
            if current and visible(current) + len(joint) + visible(piece) > width:
                lines.append(current)
                current = piece
            else:
                current = current + joint + piece if current else piece
        return lines + [current]

    lines = []
    for line in title.split("<br>"):
        for part in pack(line.split(" · "), " · "):
            lines += pack(part.split(" "), " ") if visible(part) > width else [part]
    return "<br>".join(lines)


def _figure(traces: Sequence, title: str, height: int, *, fit: float | None = None, **layout) -> go.Figure:
    """A Figure with the white template, a left-aligned title, compact margins and a fixed height. With `fit` (the
    plot's height over its width), for a narrow screen: as high as that plot drawn PHONE_WIDTH wide (layout.meta.fit,
    which the page fits to the chart's real width), its colour bars flat under the plot.

    Speed: the traces arrive as validated trace objects; the layout dict and the (validated-at-import) template are
    stored without a second validation pass, which costs 2-10 ms per figure (fig.update_layout is slower still).
    tests/test_render.py re-validates every figure with go.Figure(fig.to_dict()).
    """
    layout.setdefault("margin", _MARGIN)
    if wrap_title(title) != title:  # the page wraps the whole title again at a narrow chart's width (app/plot.py)
        layout["meta"] = {**layout.get("meta", {}), "title": title}
    title = wrap_title(title)
    extra_lines = title.count("<br>") - 1  # the margins above hold two lines
    if extra_lines > 0:
        layout["margin"] = {**layout["margin"], "t": layout["margin"].get("t", 48) + 18 * extra_lines}
    layout["title"] = dict(text=title, x=0.01, xanchor="left", font=dict(size=14))
    if fit is not None:
        margin = dict(layout["margin"])
        if all(axis.get("visible") is False for key, axis in layout.items() if re.fullmatch(r"[xy]axis\d*", key)):
            margin.update(l=10, r=10)  # no axis labels beside the picture
        if _lay_colourbars_flat(traces):
            margin["b"] = margin.get("b", 30) + _FLAT_COLOURBAR
        layout["margin"] = margin
        layout["meta"] = {**layout.get("meta", {}), "fit": float(fit)}
        height = margin.get("t", 48) + margin.get("b", 30) + PHONE_WIDTH * fit
    layout["height"] = int(round(height))
    layout["template"] = _TEMPLATE
    return go.Figure(data=list(traces), layout=layout, _validate=False)


def _lay_colourbars_flat(traces: Sequence) -> bool:
    """Each upright colour bar of `traces` laid flat under the plot (as wide as it), its title above it; whether any
    was."""
    flat = False
    for trace in traces:
        if "colorbar" not in trace or trace["showscale"] is False or trace.type not in ("heatmap", "contour"):
            continue
        if trace.colorbar.orientation == "h":  # placed by its figure
            continue
        flat = True
        title = trace.colorbar.title.text
        trace.colorbar.update(orientation="h", x=0, xanchor="left", y=-0.02, yanchor="top", len=1, thickness=10,
                              title=dict(text=title, side="top") if title else None)
    return flat


def _as_image(image) -> np.ndarray:
    """(H, W), (H, W, 1) or (H, W, 3) in [0, 1] -> (H, W, 3) float32."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"Expected an image (H, W, C) with C in 1, 3, but got shape {image.shape}.")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)  # (H, W, 1) -> (H, W, 3)
    return image[:, :, :3]


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (h, w, 3) -> uint8 (height, width, 3); area-averaging when shrinking, nearest when enlarging."""
    if rgb.shape[0] == height and rgb.shape[1] == width:
        return rgb
    shrinking = width < rgb.shape[1]
    pil = Image.fromarray(rgb).resize((width, height), Image.Resampling.BOX if shrinking else Image.Resampling.NEAREST)
    return np.asarray(pil)


def _image_trace(rgb: np.ndarray, left: float, top: float, width: float, height: float, kind: str = PHOTO) -> go.Image:
    """An uint8 image (h, w, 3) stretched over the rectangle [left, left + width] x [top, top + height], marked as a
    picture of `kind` (PHOTO, TILES or DRAWING)."""
    h, w = rgb.shape[:2]
    dx, dy = width / w, height / h
    return go.Image(z=np.ascontiguousarray(rgb), x0=left + dx / 2, y0=top + dy / 2, dx=dx, dy=dy, hoverinfo="skip",
                    meta={PICTURE: kind})


def _heatmap_picture(z: np.ndarray, colourscale: str, zmin: float, zmax: float, x0: float = 0.0, dx: float = 1.0,
                     y0: float = 0.0, dy: float = 1.0, hovertemplate: str | None = None,
                     colourbar_title: str | None = None) -> list:
    """A heat map too large for hover values, marked to be sent as a picture of its colours over [zmin, zmax] (HEATMAP),
    with its colour bar (titled `colourbar_title`) and, instead of the values, `hovertemplate` (or no hover).
    Cell (i, j) is centred on (x0 + j dx, y0 + i dy)."""
    colourbar = dict(thickness=10, **(dict(title=dict(text=colourbar_title, side="right")) if colourbar_title else {}))
    return [go.Heatmap(z=np.asarray(z, dtype=np.float32), colorscale=colourscale, zmin=zmin, zmax=zmax, x0=x0, dx=dx,
                       y0=y0, dy=dy, colorbar=colourbar, meta={PICTURE: HEATMAP},
                       **(dict(hovertemplate=hovertemplate) if hovertemplate else dict(hoverinfo="skip")))]


def _display_size(height: int, width: int, side: int = _DISPLAY_SIDE) -> tuple[int, int]:
    """Shrink (height, width) to at most `side` on the longer side, keeping the aspect ratio."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _mosaic(tiles: np.ndarray, per_row: int, gap: tuple[int, int], fill=np.nan) -> np.ndarray:
    """Lay n tiles (n, th, tw, ...) out row by row, per_row to a row, `gap` = (rows, cols) of `fill` between them.

    -> (R th + (R - 1) gy, C tw + (C - 1) gx, ...) with R = ceil(n / per_row), C = per_row; tile k's top-left
    cell is at (k // C * (th + gy), k % C * (tw + gx)).
    """
    n, th, tw = tiles.shape[:3]
    rest = tiles.shape[3:]
    gy, gx = gap
    rows = math.ceil(n / per_row)
    padded = np.full((rows * per_row, th, tw) + rest, fill, dtype=tiles.dtype)
    padded[:n] = tiles
    canvas = np.full((rows, th + gy, per_row, tw + gx) + rest, fill, dtype=tiles.dtype)
    axes = (0, 2, 1, 3) + tuple(range(4, 4 + len(rest)))
    canvas[:, :th, :, :tw] = padded.reshape((rows, per_row, th, tw) + rest).transpose(axes)
    canvas = canvas.reshape((rows * (th + gy), per_row * (tw + gx)) + rest)
    return canvas[: rows * (th + gy) - gy, : per_row * (tw + gx) - gx]


def _tile_origins(n: int, per_row: int, pitch: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Top-left (y, x) of tiles 0..n-1 in a mosaic with the given (row, column) pitch."""
    k = np.arange(n)
    return (k // per_row) * pitch[0], (k % per_row) * pitch[1]


def _outlines(x0: np.ndarray, y0: np.ndarray, width: float, height: float, colour: str = _OUTLINE,
              line_width: float = 2.0) -> dict:
    """Outlines of many rectangles (from corner (x0, y0), width by height) as one layout shape: one SVG path of
    closed sub-paths. (As a NaN-separated Scatter trace, Plotly draws one path element per rectangle: ViT-B/16's
    overview outlines the query in 144 tiles, and its redraw in the page went from ~90 to ~65 ms without them.) A
    shape is laid out with the layout, so a figure whose traces stay the same is updated with Plotly.relayout
    (explorer.app.plot)."""
    x0 = np.atleast_1d(np.asarray(x0, dtype=np.float64))
    y0 = np.atleast_1d(np.asarray(y0, dtype=np.float64))
    path = " ".join(f"M{x:g},{y:g}H{x + width:g}V{y + height:g}H{x:g}Z" for x, y in zip(x0, y0))
    return dict(type="path", path=path, xref="x", yref="y", line=dict(color=colour, width=line_width),
                layer="above")


def _labels_trace(xs, ys, texts: list[str], position: str = "top center", font: dict | None = None) -> go.Scatter:
    return go.Scatter(x=np.asarray(xs, dtype=np.float32), y=np.asarray(ys, dtype=np.float32), text=texts,
                      mode="text", textposition=position, textfont=font or _LABEL_FONT, hoverinfo="skip",
                      showlegend=False)


def _image_axes(x_range, y_range, visible: bool = False) -> dict:
    """Axes for pictures: y down, square pixels, no grid."""
    common = dict(showgrid=False, zeroline=False, visible=visible, constrain="domain")
    return dict(
        xaxis=dict(range=list(x_range), **common),
        yaxis=dict(range=[y_range[1], y_range[0]], scaleanchor="x", scaleratio=1, **common),
    )


def _robust_max(values: np.ndarray, q: float = 99.5) -> float:
    """The q-th percentile of the finite values: a colour range that one extreme cell cannot wash out."""
    values = np.asarray(values).ravel()
    if values.size > 200_000:  # a strided sample estimates the percentile well enough, ~10x faster
        values = values[:: math.ceil(values.size / 200_000)]
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    top = float(np.percentile(finite, q)) if finite.size > 1000 else float(finite.max())
    return top if top > 0 else max(float(finite.max()), 1e-12)


def _label_gap(tile_height: int) -> int:
    """Rows of space above each mosaic tile for its label."""
    return max(1, round(0.25 * tile_height))


def _heads_per_row(heads: int) -> int:
    if heads <= 6:
        return heads
    for per_row in (6, 8, 4):
        if heads % per_row == 0:
            return per_row
    return 6


@functools.lru_cache(maxsize=8)
def _alpha_colourscale(name: str, alpha_low: float = 0.0, alpha_high: float = 0.85, steps: int = 11) -> list:
    """A colour scale whose opacity grows with the value: low attention lets the image show through."""
    positions = np.linspace(0.0, 1.0, steps)
    colours = plotly.colors.sample_colorscale(name, list(positions))
    scale = []
    for t, colour in zip(positions, colours):
        r, g, b = plotly.colors.unlabel_rgb(colour)
        alpha = alpha_low + (alpha_high - alpha_low) * t ** 0.7
        scale.append([float(t), f"rgba({int(r)},{int(g)},{int(b)},{alpha:.3f})"])
    return scale


def _dimmed(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) in [0, 1] -> a pale grey version, as a background for heat maps."""
    luminance = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
    return np.repeat((0.35 + 0.5 * luminance)[:, :, None], 3, axis=2)  # (H, W, 3)


def _grid_of(n: int, grid: tuple[int, int] | None) -> tuple[int, int] | None:
    if grid is not None:
        return int(grid[0]), int(grid[1])
    side = math.isqrt(n)
    return (side, side) if side * side == n else None


def _pool_tiles(tiles: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool the last two axes of (..., th, tw) by `factor` (edges padded by repetition)."""
    if factor <= 1:
        return tiles
    th, tw = tiles.shape[-2:]
    ph, pw = math.ceil(th / factor) * factor, math.ceil(tw / factor) * factor
    pad = [(0, 0)] * (tiles.ndim - 2) + [(0, ph - th), (0, pw - tw)]
    tiles = np.pad(tiles, pad, mode="edge")
    shape = tiles.shape[:-2] + (ph // factor, factor, pw // factor, factor)
    return tiles.reshape(shape).mean(axis=(-3, -1))


def _note_figure(title: str, text: str, height: int = 160) -> go.Figure:
    """A figure that only says something (no data to draw); long text is broken into lines (Plotly clips it)."""
    text = wrap_title(text, 56)
    height = max(height, 110 + 20 * (text.count("<br>") + 1))
    return _figure([go.Scatter(x=[0], y=[0], mode="text", text=[text], hoverinfo="skip", textfont=dict(size=13))],
                   title, height, showlegend=False, xaxis=dict(visible=False), yaxis=dict(visible=False))

