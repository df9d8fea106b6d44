"""explorer.render: every figure the explorer shows, as pure functions (arrays, options) -> plotly Figure.

No model, no Gradio, no pyplot: numpy arrays (or anything np.asarray takes) in, a `plotly.graph_objects.Figure` out.
Letters as in the paper: H, W image size; P patch size; (gh, gw) patch grid; N = gh * gw patches; T = N + 1 tokens
(token 0 = class token, token i + 1 = patch i, row-major); D hidden size; h heads; L layers; K classes.
Patch indices i are 0-based and row-major (patch i sits at row i // gw, column i % gw); layers are 1-based as in
Eq. 2-3 (z_0 is the embedding output); heads are shown 1-based.

Queries: `query` / `selected` arguments are patch indices i (token i + 1); None means the class token (or nothing
selected). `layernorm_effect(token=)` takes a token index (0 = class token).

Speed: mosaics (many small maps) are composed with numpy into ONE array and sent as one Heatmap or Image trace,
pictures travel as JPEG (PNG for the tiny filter tiles) data URIs, hover texts come from `customdata` +
`hovertemplate`, and numeric arrays are sent as base64 typed arrays (plotly >= 6; Gradio's plotly.js decodes them).
Very large inputs (ViT-H/14 at 518) are subsampled or pooled, and the title says so.

Coordinates: in `patch_grid` and `rollout` pixel (x, y) covers [x, x + 1) x [y, y + 1) (x right, y down), so patch
(r, c) covers [c P, (c + 1) P) x [r P, (r + 1) P). In mosaics, cell or pixel (i, j) is centred on (j, i); each
mosaic figure's `layout.meta` records its geometry (tile size, gap, tiles per row) so that a caller can map a cell
back to its tile.
"""
from __future__ import annotations

import base64
import functools
import io
import math
from typing import Sequence

import numpy as np
import plotly.colors
import plotly.graph_objects as go
import plotly.io as pio

from .common import equally_likely, ranking
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
_DISPLAY_SIDE = 256  # images are sent at most this many pixels on a side (per panel)
# Heat maps above this many cells travel as a picture (one pixel per cell, _COLOUR_LEVELS colours of the scale, as a
# palette PNG) instead of numbers with hover values: ViT-B/16's T x D matrices are 151k cells, 1 MB each as numbers,
# ~130 KB as pictures, so that a step of the page stays under 1 MB (issue 15). Small models keep their hover values.
_MAX_HOVER_CELLS = 20_000
_COLOUR_LEVELS = 64


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _figure(traces: Sequence, title: str, height: int, **layout) -> go.Figure:
    """A Figure with the white template, a left-aligned title, compact margins and a fixed height.

    Speed: the traces arrive as validated trace objects; the layout dict and the (validated-at-import) template are
    stored without a second validation pass, which costs 2-10 ms per figure (fig.update_layout is slower still).
    tests/test_render.py re-validates every figure with go.Figure(fig.to_dict()).
    """
    layout.setdefault("margin", _MARGIN)
    layout["title"] = dict(text=title, x=0.01, xanchor="left", font=dict(size=14))
    layout["height"] = int(height)
    layout["template"] = _TEMPLATE
    return go.Figure(data=list(traces), layout=layout, _validate=False)


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


def _data_uri(rgb: np.ndarray, photo: bool, fine: bool = False) -> str:
    """uint8 (h, w, 3) -> 'data:image/...;base64,...' (what go.Image(source=) takes).

    Photographs travel as JPEG: ~15x faster to encode than PNG, and smaller; `fine` (quality 95, no chroma
    subsampling) for small tiles that the browser enlarges. The embedding filters travel as lossless PNG.
    """
    buffer = io.BytesIO()
    if photo:
        if fine:
            Image.fromarray(rgb).save(buffer, format="JPEG", quality=95, subsampling=0)
        else:
            Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
        kind = "jpeg"
    else:
        Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
        kind = "png"
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _colour_levels(z: np.ndarray, zmin: float, zmax: float, levels: int = _COLOUR_LEVELS) -> np.ndarray:
    """Values -> colour levels 0 .. levels - 1 (zmin -> 0, zmax -> levels - 1, clipped); NaN -> `levels` (a gap)."""
    scaled = (np.nan_to_num(z, nan=zmin) - zmin) / max(zmax - zmin, 1e-12) * (levels - 1)
    codes = np.clip(np.round(scaled), 0, levels - 1).astype(np.uint8)
    codes[np.isnan(z)] = levels
    return codes


@functools.lru_cache(maxsize=8)
def _palette(colourscale: str, levels: int = _COLOUR_LEVELS) -> tuple[int, ...]:
    """`levels` colours sampled evenly from a plotly colour scale, then white (for gaps), as PIL's flat palette
    (r, g, b, r, g, b, ...)."""
    samples = plotly.colors.sample_colorscale(colourscale, list(np.linspace(0.0, 1.0, levels)), colortype="tuple")
    colours = [tuple(int(round(v if v > 1 else v * 255)) for v in colour) for colour in samples]
    return tuple(channel for colour in colours + [(255, 255, 255)] for channel in colour)


def _heatmap_picture(z: np.ndarray, colourscale: str, zmin: float, zmax: float, x0: float = 0.0, dx: float = 1.0,
                     y0: float = 0.0, dy: float = 1.0, hovertemplate: str | None = None,
                     colourbar_title: str | None = None) -> list:
    """A heat map sent as a picture: one pixel per cell in _COLOUR_LEVELS colours of `colourscale` over [zmin, zmax]
    (a palette PNG: one byte per cell before compression), and an empty marker trace that carries the colour bar
    (titled `colourbar_title`).
    Cell (i, j) is centred on (x0 + j dx, y0 + i dy), as in a Heatmap with the same x0, dx, y0, dy."""
    codes = _colour_levels(np.asarray(z, dtype=np.float32), zmin, zmax)  # (rows, columns)
    picture = Image.fromarray(codes, mode="P")
    picture.putpalette(_palette(colourscale))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=6)
    source = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    image = go.Image(source=source, x0=x0, dx=dx, y0=y0, dy=dy,
                     **(dict(hovertemplate=hovertemplate) if hovertemplate else dict(hoverinfo="skip")))
    scale = go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                       marker=dict(colorscale=colourscale, cmin=zmin, cmax=zmax, color=[zmin], showscale=True,
                                   colorbar=dict(thickness=10, **(dict(title=dict(text=colourbar_title, side="right"))
                                                                  if colourbar_title else {}))))
    return [image, scale]


def _image_trace(rgb: np.ndarray, left: float, top: float, width: float, height: float,
                 photo: bool = True, fine: bool = False) -> go.Image:
    """An uint8 image (h, w, 3) stretched over the rectangle [left, left + width] x [top, top + height]."""
    h, w = rgb.shape[:2]
    dx, dy = width / w, height / h
    return go.Image(source=_data_uri(np.ascontiguousarray(rgb), photo, fine), x0=left + dx / 2, y0=top + dy / 2,
                    dx=dx, dy=dy, hoverinfo="skip")


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


# ----------------------------------------------------------------------------------------------------------------
# Eq. 1: patches, the patch sequence, the patch embedding


def patch_grid(image, patch_size: int, selected: int | None = None, show_numbers: bool = True) -> go.Figure:
    """Eq. 1, first step: the image x in R^{H x W x C} cut into N = HW / P^2 patches x_p^i (row-major)."""
    image = _as_image(image)  # (H, W, 3)
    H, W = image.shape[:2]
    P = int(patch_size)
    gh, gw = H // P, W // P
    N = gh * gw
    display_h, display_w = _display_size(H, W, side=512)
    rgb = _resize(_to_uint8(image), display_w, display_h)  # (h', w', 3)
    traces = [_image_trace(rgb, 0, 0, W, H)]

    # hover: a transparent heat map with one cell per patch
    index = np.arange(N, dtype=np.int32).reshape(gh, gw)  # (gh, gw)
    rows, cols = np.divmod(index, gw)
    traces.append(go.Heatmap(
        z=index, customdata=np.stack([rows, cols], axis=-1).astype(np.int16),  # (gh, gw, 2)
        x0=P / 2, dx=P, y0=P / 2, dy=P, colorscale=_TRANSPARENT, showscale=False, zmin=0, zmax=max(N - 1, 1),
        hovertemplate="patch %{z} · row %{customdata[0]}, col %{customdata[1]}<extra></extra>", name="patches",
    ))

    # the grid: all lines in one trace, NaN between lines
    gap_v, gap_h = np.full(gw + 1, np.nan), np.full(gh + 1, np.nan)
    vertical_x = np.arange(gw + 1) * P
    horizontal_y = np.arange(gh + 1) * P
    xs = np.concatenate([np.stack([vertical_x, vertical_x, gap_v], 1).ravel(),
                         np.stack([np.zeros(gh + 1), np.full(gh + 1, gw * P), gap_h], 1).ravel()])
    ys = np.concatenate([np.stack([np.zeros(gw + 1), np.full(gw + 1, gh * P), gap_v], 1).ravel(),
                         np.stack([horizontal_y, horizontal_y, gap_h], 1).ravel()])
    traces.append(go.Scatter(x=xs.astype(np.float32), y=ys.astype(np.float32), mode="lines",
                             line=dict(color="rgba(255,255,255,0.85)", width=1), hoverinfo="skip", showlegend=False,
                             name="grid"))

    if show_numbers and N <= 400:
        size = int(np.clip(220 / max(gw, 1), 6, 12))
        traces.append(_labels_trace((cols.ravel() + 0.5) * P, (rows.ravel() + 0.5) * P, [str(i) for i in range(N)],
                                    position="middle center",
                                    font=dict(size=size, color="white", shadow=_NUMBER_SHADOW)))

    shapes = []
    if selected is not None:
        r, c = divmod(int(selected), gw)
        shapes.append(dict(type="rect", x0=c * P, x1=(c + 1) * P, y0=r * P, y1=(r + 1) * P,
                           line=dict(color=_OUTLINE, width=3)))
    # Two short lines: a one-line title was cut off at the half-page width this plot gets.
    title = f"N = {gh}·{gw} = {N} patches x<sub>p</sub><sup>i</sup> (Eq. 1)<br>{P}×{P} px each, from the {H}×{W} image"
    return _figure(traces, title, 480, shapes=shapes, showlegend=False, margin=_MARGIN_TWO_LINES,
                   meta=dict(kind="patch_grid", patch_size=P, grid=[gh, gw]),
                   **_image_axes((0, W), (0, H), visible=True))


def patch_sequence(patches, selected: int | None = None, per_row: int | None = None, *,
                   grid: tuple[int, int] | None = None) -> go.Figure:
    """Eq. 1: the sequence the Transformer reads, [x_class; x_p^1; ...; x_p^N], wrapped into rows."""
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim == 3:
        patches = patches[..., None]
    N, P = patches.shape[0], patches.shape[1]
    if patches.shape[3] == 1:
        patches = np.repeat(patches, 3, axis=3)  # (N, P, P, 1) -> (N, P, P, 3)
    T = N + 1
    per_row = int(per_row) if per_row else math.ceil(math.sqrt(2 * T))
    rows = math.ceil(T / per_row)
    gap = max(1, P // 8)
    pitch = P + gap
    grid = _grid_of(N, grid)

    slots = np.empty((T, P, P, 3), dtype=np.uint8)  # token 0 = [class], token i + 1 = patch i
    slots[0] = 215
    slots[0, [0, -1], :] = slots[0, :, [0, -1]] = 90
    slots[1:] = _to_uint8(patches[:, :, :, :3])
    mosaic = _mosaic(slots, per_row, (gap, gap), fill=np.uint8(255))  # (rows pitch - gap, per_row pitch - gap, 3)
    # JPEG (quality 95, no chroma subsampling): PNG of a ViT-H/14 sequence (1370 slots) takes > 50 ms to encode
    # mosaic pixel (x, y) is centred on (x, y), as in plotly's own images
    traces = [_image_trace(mosaic, -0.5, -0.5, mosaic.shape[1], mosaic.shape[0], photo=True, fine=True)]

    position = np.full(rows * per_row, np.nan, dtype=np.float32)
    position[:T] = np.arange(T)
    hover = ["token 0 · x<sub>class</sub> (the learned [class] token)"]
    for i in range(N):
        where = f" · row {i // grid[1]}, col {i % grid[1]}" if grid else ""
        hover.append(f"token {i + 1} · x<sub>p</sub><sup>{i + 1}</sup> = patch {i}{where}")
    hover += [""] * (rows * per_row - T)
    traces.append(go.Heatmap(
        z=position.reshape(rows, per_row), text=np.array(hover, dtype=object).reshape(rows, per_row).tolist(),
        x0=(pitch - 1) / 2, dx=pitch, y0=(pitch - 1) / 2, dy=pitch, colorscale=_TRANSPARENT, showscale=False,
        hoverongaps=False, hovertemplate="%{text}<extra></extra>", name="sequence",
    ))
    traces.append(_labels_trace([(P - 1) / 2], [(P - 1) / 2], ["cls"], position="middle center",
                                font=dict(size=10, color="#222")))
    shapes = []
    if selected is not None:
        slot_row, slot_col = divmod(int(selected) + 1, per_row)  # patch i is token i + 1
        left, top = slot_col * pitch, slot_row * pitch
        shapes.append(dict(type="rect", x0=left - 0.5, x1=left + P - 0.5, y0=top - 0.5, y1=top + P - 0.5,
                           line=dict(color=_OUTLINE, width=3)))
    height = int(np.clip(90 + rows * 560 / max(per_row, 1), 200, 620))
    title = (f"[x<sub>class</sub>; x<sub>p</sub><sup>1</sup>; …; x<sub>p</sub><sup>{N}</sup>] (Eq. 1)<br>"
             f"T = N + 1 = {T} tokens")
    return _figure(traces, title, height, shapes=shapes, margin=_MARGIN_TWO_LINES, meta=dict(kind="patch_sequence", per_row=per_row, pitch=pitch),
                   **_image_axes((-0.5, mosaic.shape[1] - 0.5), (-0.5, mosaic.shape[0] - 0.5)))


def feature_maps(maps, indices: Sequence[int], untrained=None) -> go.Figure:
    """Eq. 1's patch embedding E as a convolution: one (H/P x W/P) map per chosen embedding dimension d.

    Each map is scaled by its own max |value| (the colour is sign and relative size); hover shows the raw value.
    With `untrained`, a second group of rows shows the same dimensions of a randomly initialised model.
    """
    maps = np.asarray(maps, dtype=np.float32)  # (D, gh, gw)
    D, gh, gw = maps.shape
    indices = [int(d) for d in indices]
    if not indices:
        raise ValueError("feature_maps needs at least one embedding dimension index.")
    n = len(indices)
    per_row = min(n, 8)
    groups = [("trained", maps)] + ([("untrained", np.asarray(untrained, dtype=np.float32))] if untrained is not None
                                    else [])
    group_rows = math.ceil(n / per_row)
    tiles, custom = [], []
    patch = np.arange(gh * gw, dtype=np.float32).reshape(gh, gw)
    for _, source in groups:
        chosen = source[indices]  # (n, gh, gw)
        scale = np.abs(chosen).max(axis=(1, 2), keepdims=True)
        scale[scale == 0] = 1.0
        padded = np.full((group_rows * per_row, gh, gw), np.nan, dtype=np.float32)
        padded[:n] = chosen / scale
        tiles.append(padded)
        raw = np.full((group_rows * per_row, gh, gw, 3), np.nan, dtype=np.float32)
        raw[:n, :, :, 0] = chosen
        raw[:n, :, :, 1] = patch
        raw[:n, :, :, 2] = np.asarray(indices, dtype=np.float32)[:, None, None]
        custom.append(raw)
    tiles = np.concatenate(tiles)  # (groups * rows * per_row, gh, gw)
    gy, gx = _label_gap(gh), max(1, round(0.1 * gw))
    z = _mosaic(tiles, per_row, (gy, gx))
    customdata = _mosaic(np.concatenate(custom), per_row, (gy, gx))  # (rows', cols', 3)

    traces = [go.Heatmap(
        z=z, customdata=customdata, colorscale=SIMILARITY_COLOURS, zmin=-1, zmax=1, hoverongaps=False,
        colorbar=dict(title=dict(text="value / max|value|", side="right"), thickness=10),
        hovertemplate="d = %{customdata[2]:.0f} · patch %{customdata[1]:.0f}: %{customdata[0]:.4g}<extra></extra>",
    )]
    count = len(tiles)
    top, left = _tile_origins(count, per_row, (gh + gy, gw + gx))
    # "d = k" above each map of the first group; the groups are named once, as row labels on the left ("trained",
    # "untrained"). When a group wraps over several rows, a column holds several d: then every map is labelled.
    labels, keep = [], []
    for k in range(count):
        g, j = divmod(k, group_rows * per_row)
        if j < n and (g == 0 or group_rows > 1):
            keep.append(k)
            labels.append(f"d = {indices[j]}")
    keep = np.asarray(keep)
    traces.append(_labels_trace(left[keep] + (gw - 1) / 2, top[keep] - 0.5, labels))
    total_rows = len(groups) * group_rows
    height = int(np.clip(80 + total_rows * min(150, 900 / per_row), 220, 800))
    title = f"Patch-embedding feature maps ({D} maps of {gh}×{gw}; Eq. 1, E as a convolution)"
    layout = _image_axes((-0.5, z.shape[1] - 0.5), (-gy - 0.5, z.shape[0] - 0.5))
    if len(groups) == 2:
        centres = [(g * group_rows * (gh + gy)) + (group_rows * (gh + gy) - gy) / 2 - 0.5 for g in range(2)]
        layout["yaxis"].update(visible=True, showticklabels=True, tickvals=centres, ticks="",
                               ticktext=["trained", "untrained"], showline=False)
    return _figure(traces, title, height, meta=dict(kind="feature_maps", tile=[gh, gw], gap=[gy, gx],
                                                     per_row=per_row, group_rows=group_rows), **layout)


def token_matrix(matrix, title: str, row_names: Sequence[str] | None = None) -> go.Figure:
    """A (rows, D) matrix of token vectors (e.g. z_0 of Eq. 1, E_pos) as a heat map, colour symmetric around 0.

    Large matrices are subsampled, never averaged (the values shown are true entries): one column in s_c when
    there are more than _MAX_MATRIX_COLUMNS columns (e.g. the H·W pixels of each input channel), then one row in
    s_r so that at most 2 * _MAX_HEATMAP_CELLS cells are sent. Above _MAX_HOVER_CELLS cells (ViT-B/16's 197 x 768)
    the matrix is sent as a picture in _COLOUR_LEVELS colours (hover: token and dimension; meta records the levels and
    the colour range), not as numbers.
    """
    matrix = np.asarray(matrix, dtype=np.float32)  # (rows, D)
    rows, D = matrix.shape
    names = [str(name) for name in row_names] if row_names is not None else [f"row {i}" for i in range(rows)]
    if len(names) != rows:
        raise ValueError(f"Expected {rows} row names but got {len(names)}.")
    if len(set(names)) != rows:  # category axes merge equal names
        names = [f"{name} [{i}]" for i, name in enumerate(names)]
    column_stride = math.ceil(D / _MAX_MATRIX_COLUMNS)
    columns = math.ceil(D / column_stride)
    row_stride = max(1, math.ceil(rows * columns / (2 * _MAX_HEATMAP_CELLS)))
    shown = np.arange(0, rows, row_stride)
    z = matrix[::row_stride, ::column_stride]  # (rows / s_r, D / s_c)
    limit = _robust_max(np.abs(z))
    notes = ([f"one row in {row_stride}"] if row_stride > 1 else []) + (
        [f"one column in {column_stride}"] if column_stride > 1 else [])
    if notes:
        title = f"{title} ({', '.join(notes)} shown)"
    height = int(np.clip(120 + 4 * len(shown), 260, 640))
    meta = dict(kind="token_matrix", row_stride=row_stride, column_stride=column_stride)
    xaxis = dict(title=dict(text="dimension"), showgrid=False, zeroline=False)
    if z.size > _MAX_HOVER_CELLS:  # a picture, its rows named on the axis (the values: the selected-token panel)
        row_of = "token %{y}" if row_names is not None and names[0] == "cls" else "row %{y}"
        traces = _heatmap_picture(z, SIMILARITY_COLOURS, -limit, limit, dx=column_stride, dy=row_stride,
                                  hovertemplate=f"{row_of} · dim %{{x}}<extra></extra>")
        ticks = shown[::max(1, math.ceil(len(shown) / 12))]
        meta.update(picture=True, levels=_COLOUR_LEVELS, zmin=-limit, zmax=limit)
        return _figure(traces, title, height, meta=meta, xaxis=dict(range=[-0.5 * column_stride, D - 0.5], **xaxis),
                       # scaleanchor=False: the picture fills the plot, as the heat map did (an image trace
                       # otherwise keeps its pixels square: 768 x 197 would be a thin strip)
                       yaxis=dict(range=[rows - 0.5, -0.5], scaleanchor=False, showgrid=False, zeroline=False,
                                  tickmode="array",
                                  tickvals=ticks.tolist(), ticktext=[names[i] for i in ticks]))
    traces = [go.Heatmap(
        z=z, y=[names[i] for i in shown], x0=0, dx=column_stride, colorscale=SIMILARITY_COLOURS, zmid=0,
        zmin=-limit, zmax=limit, colorbar=dict(thickness=10),
        hovertemplate="%{y} · dim %{x}: %{z:.4g}<extra></extra>",
    )]
    return _figure(traces, title, height, meta=meta, xaxis=xaxis,
                   yaxis=dict(autorange="reversed", showgrid=False, type="category"))


# ----------------------------------------------------------------------------------------------------------------
# Fig. 7: embedding filters, position embedding similarity, mean attention distance


def _similarity_stride(gh: int, gw: int) -> int:
    """Show every s-th tile so that the mosaic has at most _MAX_HEATMAP_CELLS cells."""
    stride = 1
    while math.ceil(gh / stride) * math.ceil(gw / stride) * gh * gw > _MAX_HEATMAP_CELLS:
        stride += 1
    return stride


def position_similarity(similarity, selected: int | None = None) -> go.Figure:
    """Fig. 7 centre: tile (r, c) = cosine similarity of the position embedding of patch (r, c) with every patch.

    Above _MAX_HOVER_CELLS cells (ViT-B/16's 196 tiles) the mosaic is sent as a picture without hover values
    (position_similarity_tile gives the selected patch's tile with them)."""
    similarity = np.asarray(similarity, dtype=np.float32)  # (gh, gw, gh, gw)
    gh, gw = similarity.shape[:2]
    stride = _similarity_stride(gh, gw)
    shown_rows, shown_cols = np.arange(0, gh, stride), np.arange(0, gw, stride)
    R, C = len(shown_rows), len(shown_cols)
    tiles = similarity[shown_rows][:, shown_cols].reshape(R * C, gh, gw)  # (R C, gh, gw)
    gap = 1
    z = _mosaic(tiles, C, (gap, gap))  # (R (gh + 1) - 1, C (gw + 1) - 1)
    picture = z.size > _MAX_HOVER_CELLS  # ViT-B/16: 196 tiles of 14 x 14; the values: the selected patch's tile
    if picture:
        traces = _heatmap_picture(z, SIMILARITY_COLOURS, -1.0, 1.0, colourbar_title="cosine similarity")
    else:
        source = (shown_rows[:, None] * gw + shown_cols[None, :]).reshape(R * C)  # patch index of each tile
        custom = np.empty((R * C, gh, gw, 2), dtype=np.int16)
        custom[..., 0] = source[:, None, None]
        custom[..., 1] = np.arange(gh * gw).reshape(gh, gw)
        customdata = _mosaic(custom, C, (gap, gap), fill=np.int16(0))  # gaps: NaN in z, never hovered
        traces = [go.Heatmap(
            z=z, customdata=customdata, colorscale=SIMILARITY_COLOURS, zmin=-1, zmax=1, hoverongaps=False,
            colorbar=dict(title=dict(text="cosine similarity", side="right"), thickness=10),
            hovertemplate="E<sub>pos</sub> of patch %{customdata[0]} · patch %{customdata[1]}: "
                          "cos %{z:.3f}<extra></extra>",
        )]
    shapes = []
    if selected is not None:
        r, c = divmod(int(selected), gw)
        if r % stride == 0 and c % stride == 0:
            top, left = (r // stride) * (gh + gap), (c // stride) * (gw + gap)
            shapes.append(dict(type="rect", x0=left - 1, x1=left + gw, y0=top - 1, y1=top + gh,
                               line=dict(color="black", width=2)))
    tick_every = max(1, math.ceil(max(R, C) / 14))
    xt = np.arange(0, C, tick_every)
    yt = np.arange(0, R, tick_every)
    title = "Position embedding similarity (Fig. 7 centre)" + (f": every {stride}th patch" if stride > 1 else "")
    common = dict(showgrid=False, zeroline=False, ticks="", constrain="domain")
    return _figure(
        traces, title, 560, shapes=shapes,
        meta=dict(kind="position_similarity", tile=[gh, gw], gap=[gap, gap], per_row=C, stride=stride,
                  picture=picture, **(dict(levels=_COLOUR_LEVELS, zmin=-1.0, zmax=1.0) if picture else {})),
        xaxis=dict(range=[-0.5, z.shape[1] - 0.5], tickvals=(xt * (gw + gap) + (gw - 1) / 2).tolist(),
                   ticktext=[str(int(c)) for c in shown_cols[xt]], title=dict(text="input patch column"), **common),
        yaxis=dict(range=[z.shape[0] - 0.5, -0.5], tickvals=(yt * (gh + gap) + (gh - 1) / 2).tolist(),
                   ticktext=[str(int(r)) for r in shown_rows[yt]], title=dict(text="input patch row"),
                   scaleanchor="x", scaleratio=1, **common),
    )


def position_similarity_tile(similarity, index: int) -> go.Figure:
    """One tile of Fig. 7 centre, large: cos(E_pos[patch index], E_pos[patch j]) for every patch j."""
    similarity = np.asarray(similarity, dtype=np.float32)  # (gh, gw, gh, gw)
    gh, gw = similarity.shape[:2]
    r, c = divmod(int(index), gw)
    target = np.arange(gh * gw, dtype=np.int32).reshape(gh, gw)
    rows, cols = np.divmod(target, gw)
    traces = [go.Heatmap(
        z=similarity[r, c], customdata=np.stack([target, rows, cols], -1).astype(np.int16),
        colorscale=SIMILARITY_COLOURS, zmin=-1, zmax=1, colorbar=dict(thickness=10),
        hovertemplate="patch %{customdata[0]} (row %{customdata[1]}, col %{customdata[2]}): %{z:.3f}<extra></extra>",
    )]
    shapes = [dict(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5, line=dict(color="black", width=2))]
    common = dict(showgrid=False, zeroline=False, constrain="domain")
    return _figure(traces, f"Cosine similarity of E<sub>pos</sub> of patch {index} (row {r}, col {c}) with every patch",
                   440, shapes=shapes,
                   xaxis=dict(range=[-0.5, gw - 0.5], title=dict(text="input patch column"), **common),
                   yaxis=dict(range=[gh - 0.5, -0.5], title=dict(text="input patch row"), scaleanchor="x",
                              scaleratio=1, **common))


def filter_components(components, explained) -> go.Figure:
    """Fig. 7 left: the first principal components of the patch-embedding filters E, each a P x P x C image."""
    components = np.asarray(components, dtype=np.float32)  # (n, P, P, C)
    explained = np.asarray(explained, dtype=np.float32).reshape(-1)  # (n,)
    if components.ndim == 3:
        components = components[..., None]
    n, P = components.shape[:2]
    what = "RGB embedding filters" if components.shape[3] == 3 else "Embedding filters (grayscale)"  # the paper's are RGB
    if components.shape[3] == 1:
        components = np.repeat(components, 3, axis=3)  # (n, P, P, 1) -> (n, P, P, 3)
    per_row = min(n, 7)
    rows = math.ceil(n / per_row)
    scale = max(1, 32 // P)  # enlarge tiny filters with nearest neighbours: crisp in any browser
    tiles = _to_uint8(components[..., :3]).repeat(scale, 1).repeat(scale, 2)  # (n, s P, s P, 3)
    S = P * scale
    gy, gx = max(2, S // 2), max(1, S // 6)
    mosaic = _mosaic(tiles, per_row, (gy, gx), fill=np.uint8(255))
    traces = [_image_trace(mosaic, -0.5, -0.5, mosaic.shape[1], mosaic.shape[0], photo=False)]
    number = np.full(rows * per_row, np.nan, dtype=np.float32)
    number[:n] = np.arange(1, n + 1)
    percent = np.full(rows * per_row, np.nan, dtype=np.float32)
    percent[:n] = 100 * explained[:n]
    traces.append(go.Heatmap(
        z=number.reshape(rows, per_row), customdata=percent.reshape(rows, per_row),
        x0=(S - 1) / 2, dx=S + gx, y0=(S - 1) / 2, dy=S + gy, colorscale=_TRANSPARENT, showscale=False,
        hoverongaps=False, hovertemplate="principal component %{z}: %{customdata:.2f}% of the variance<extra></extra>",
    ))
    top, left = _tile_origins(n, per_row, (S + gy, S + gx))
    labels = [f"PC{k + 1} · {100 * explained[k]:.1f}%" for k in range(n)]
    traces.append(_labels_trace(left + (S - 1) / 2, top - 0.5, labels, font=dict(size=9, color="#222")))
    height = int(np.clip(70 + rows * 95, 180, 700))
    return _figure(traces, f"{what}: the first {n} principal components (Fig. 7 left)", height,
                   meta=dict(kind="filter_components", tile=[S, S], gap=[gy, gx], per_row=per_row, scale=scale),
                   **_image_axes((-0.5, mosaic.shape[1] - 0.5), (-gy - 0.5, mosaic.shape[0] - 0.5)))


def mean_attention_distance(distance, patch_size: int, image_size: int) -> go.Figure:
    """Fig. 7 right: mean attention distance (pixels) of every head against network depth (layer 1..L)."""
    distance = np.asarray(distance, dtype=np.float32)  # (L, h)
    L, h = distance.shape
    layer = np.repeat(np.arange(1, L + 1), h)  # (L h,)
    head = np.tile(np.arange(1, h + 1), L)  # (L h,)
    traces = [go.Scatter(
        x=layer, y=distance.ravel(), mode="markers", customdata=head, name="heads",
        marker=dict(size=8, color=head, colorscale=SEQUENTIAL_COLOURS, opacity=0.85, line=dict(width=0.5,
                                                                                              color="white")),
        hovertemplate="layer %{x} · head %{customdata}: %{y:.1f} px<extra></extra>",
    )]
    side = int(image_size) // int(patch_size)
    uniform = _uniform_attention_distance(side, int(patch_size))
    traces.append(go.Scatter(
        x=[0.5, L + 0.5], y=[uniform, uniform], mode="lines", line=dict(color="#888", dash="dot", width=1),
        name="uniform attention", hovertemplate=f"uniform attention over all patches: {uniform:.1f} px<extra></extra>",
    ))
    top = max(float(np.nanmax(distance)) if distance.size else 0.0, uniform) * 1.1
    return _figure(traces, "Mean attention distance per head (Fig. 7 right)", 400, showlegend=False,
                   xaxis=dict(range=[0.5, L + 0.5], title=dict(text="network depth (layer)"), dtick=max(1, L // 12)),
                   yaxis=dict(range=[0, top], title=dict(text="mean attention distance (pixels)")))


@functools.lru_cache(maxsize=16)
def _uniform_attention_distance(side: int, patch_size: int) -> float:
    """P times the mean distance between two patches of a side x side grid (App. D.7 with A uniform)."""
    # E||g_i - g_j|| over all pairs; the distribution of (dr, dc) factorises: count of each offset is side - |d|
    offsets = np.arange(-(side - 1), side)
    weight = (side - np.abs(offsets)).astype(np.float64)
    distance = np.sqrt(offsets[:, None] ** 2 + offsets[None, :] ** 2)
    return float(patch_size * (weight[:, None] * weight[None, :] * distance).sum() / (side ** 4))


# ----------------------------------------------------------------------------------------------------------------
# Eq. 2: attention


def attention_heads(image, maps, query: int | None, title: str, *, zmax: float | None = None) -> go.Figure:
    """Eq. 2's softmax(q k^T / sqrt(d)) for one query, per head, over the dimmed image: one tile per head.

    maps (h, gh, gw): attention of the query to every patch; query = patch index i (token i + 1), None = class token.
    One colour range for all heads (0 .. 99.5th percentile, or `zmax`), so heads can be compared.
    """
    image = _as_image(image)  # (H, W, 3)
    maps = np.asarray(maps, dtype=np.float32)  # (h, gh, gw)
    h, gh, gw = maps.shape
    per_row = _heads_per_row(h)
    rows = math.ceil(h / per_row)
    gy, gx = _label_gap(gh), max(1, round(0.08 * gw))
    z = _mosaic(maps, per_row, (gy, gx))  # (rows (gh + gy) - gy, per_row (gw + gx) - gx)

    head = np.broadcast_to(np.arange(1, h + 1, dtype=np.int16)[:, None, None], (h, gh, gw))
    patch = np.broadcast_to(np.arange(gh * gw, dtype=np.int16).reshape(1, gh, gw), (h, gh, gw))
    customdata = _mosaic(np.stack([head, patch], -1), per_row, (gy, gx), fill=np.int16(0))  # (.., .., 2)

    # the image under every tile, k pixels per patch
    H, W = image.shape[:2]
    P = max(1, min(H // gh, W // gw))
    k = int(np.clip(round(112 / max(gw, gh)), 1, P))
    background = _resize(_to_uint8(_dimmed(image[: gh * P, : gw * P])), gw * k, gh * k)  # (gh k, gw k, 3)
    backgrounds = _mosaic(np.broadcast_to(background, (h,) + background.shape), per_row, (gy * k, gx * k),
                          fill=np.uint8(255))
    traces = [_image_trace(backgrounds, -0.5, -0.5, z.shape[1], z.shape[0])]
    top_value = float(zmax) if zmax is not None else _robust_max(maps)
    traces.append(go.Heatmap(
        z=z, customdata=customdata, colorscale=_alpha_colourscale(ATTENTION_COLOURS), zmin=0, zmax=top_value,
        hoverongaps=False, colorbar=dict(title=dict(text="attention", side="right"), thickness=10),
        hovertemplate="head %{customdata[0]} · patch %{customdata[1]}: %{z:.4f}<extra></extra>",
    ))
    top, left = _tile_origins(h, per_row, (gh + gy, gw + gx))
    shapes = []
    if query is not None:
        qr, qc = divmod(int(query), gw)
        shapes.append(_outlines(left + qc - 0.5, top + qr - 0.5, 1, 1))
    traces.append(_labels_trace(left + (gw - 1) / 2, top - 0.5, [f"head {j + 1}" for j in range(h)]))
    height = int(np.clip(70 + rows * min(190, 1000 / per_row), 220, 900))
    who = "the class token" if query is None else f"patch {query}"
    return _figure(traces, f"{title} · query: {who}", height, shapes=shapes,
                   meta=dict(kind="attention_heads", tile=[gh, gw], gap=[gy, gx], per_row=per_row),
                   **_image_axes((-0.5, z.shape[1] - 0.5), (-gy - 0.5, z.shape[0] - 0.5)))


def _token_names(T: int, grid: tuple[int, int]) -> list[str]:
    gw = grid[1]
    return ["cls"] + [f"patch {i} ({i // gw},{i % gw})" for i in range(T - 1)]


def attention_matrix(weights, grid: tuple[int, int], title: str) -> go.Figure:
    """Eq. 2's attention matrix A = softmax(q k^T / sqrt(d)) (T x T): queries are rows, keys are columns.

    Above _MAX_MATRIX_SIDE tokens the patch tokens are averaged in blocks of f consecutive (row-major) patches
    (the class token is kept), so that the figure stays responsive for ViT-H/14 (T = 1370).
    """
    weights = np.asarray(weights, dtype=np.float32)  # (T, T)
    T = weights.shape[0]
    N = T - 1
    grid = (int(grid[0]), int(grid[1]))
    factor = max(1, math.ceil(N / (_MAX_MATRIX_SIDE - 1)))
    if factor == 1:
        z = weights
        names = _token_names(T, grid)
    else:
        groups = math.ceil(N / factor)
        bounds = np.arange(0, groups * factor, factor)  # first patch of each block
        # mean over blocks: sums via np.add.reduceat, divided by the block sizes
        sizes = np.diff(np.append(bounds, N)).astype(np.float32)
        cls_row = np.add.reduceat(weights[0, 1:], bounds) / sizes  # (groups,)
        cls_col = np.add.reduceat(weights[1:, 0], bounds) / sizes
        body = np.add.reduceat(np.add.reduceat(weights[1:, 1:], bounds, axis=0), bounds, axis=1)
        body /= sizes[:, None] * sizes[None, :]
        z = np.empty((groups + 1, groups + 1), dtype=np.float32)
        z[0, 0], z[0, 1:], z[1:, 0], z[1:, 1:] = weights[0, 0], cls_row, cls_col, body
        last = np.append(bounds[1:], N) - 1
        names = ["cls"] + [f"patches {a}–{b}" for a, b in zip(bounds, last)]
        title = f"{title} (patches averaged in blocks of {factor})"
    top_value = _robust_max(z)
    traces = [go.Heatmap(
        z=z, x=names, y=names, colorscale=ATTENTION_COLOURS, zmin=0, zmax=top_value,
        colorbar=dict(title=dict(text="weight", side="right"), thickness=10),
        hovertemplate="query %{y} → key %{x}: %{z:.4f}<extra></extra>",
    )]
    # ticks: the class token and the first patch of every few grid rows
    step = max(1, math.ceil(grid[0] / 7))
    tick_names, tick_text = ["cls"], ["cls"]
    for r in range(step, grid[0], step):
        first = r * grid[1]
        position = 1 + first // factor
        if position < len(names):
            tick_names.append(names[position])
            tick_text.append(f"row {r}")
    axis = dict(type="category", showgrid=False, tickmode="array", tickvals=tick_names, ticktext=tick_text,
                tickangle=0)
    return _figure(traces, title, 560, meta=dict(kind="attention_matrix", block=factor),
                   xaxis=dict(title=dict(text="key token"), constrain="domain", **axis),
                   yaxis=dict(title=dict(text="query token"), autorange="reversed", scaleanchor="x", scaleratio=1,
                              constrain="domain", **axis))


def attention_overview(maps, query: int | None) -> go.Figure:
    """Eq. 2's attention of one query in every layer l (rows) and head (columns), in one mosaic.

    maps (L, h, gh, gw); query = patch index i (token i + 1), None = class token. Tiles are average-pooled when
    L h N would exceed _MAX_OVERVIEW_CELLS cells. Gaps between tiles hold NaN (customdata 0 there: base64 of -1
    is '////', which plotly's to_json escapes to 24 characters). Above _MAX_HOVER_CELLS cells (ViT-B/16 and up) the
    mosaic is sent as a picture, with a hover that names each tile's layer and head (462 KB -> ~40 KB for B/16,
    redrawn on every patch click); the values of a layer's heads are in attention_heads, with hover values.
    """
    maps = np.asarray(maps, dtype=np.float32)  # (L, h, gh, gw)
    L, h, gh, gw = maps.shape
    factor = 1
    while L * h * math.ceil(gh / factor) * math.ceil(gw / factor) > _MAX_OVERVIEW_CELLS:
        factor += 1
    tiles = _pool_tiles(maps, factor)  # (L, h, gh', gw')
    th, tw = tiles.shape[2:]
    gap = 1
    z = _mosaic(tiles.reshape(L * h, th, tw), h, (gap, gap))  # (L (th + 1) - 1, h (tw + 1) - 1)
    top_value = _robust_max(tiles)  # the colour range of what is shown
    block = f" (pooled {factor}×{factor})" if factor > 1 else ""
    picture = z.size > _MAX_HOVER_CELLS  # ViT-B/16: 144 tiles of 14 x 14; the values: eq2.heads, layer by layer
    if picture:
        traces = _heatmap_picture(z, ATTENTION_COLOURS, 0.0, top_value, colourbar_title="attention")
        # hover: one transparent cell over each tile, naming its layer and head
        tile_index = np.arange(L * h).reshape(L, h)  # (L, h)
        traces.append(go.Heatmap(
            z=tile_index, customdata=np.stack([tile_index // h + 1, tile_index % h + 1], -1).astype(np.int16),
            x0=(tw - 1) / 2, dx=tw + gap, y0=(th - 1) / 2, dy=th + gap, colorscale=_TRANSPARENT, showscale=False,
            zmin=0, zmax=max(L * h - 1, 1), name="tiles",
            hovertemplate="layer %{customdata[0]} · head %{customdata[1]}" + block
                          + " (values: that layer's heads, above)<extra></extra>"))
    else:
        layer = np.broadcast_to(np.arange(1, L + 1, dtype=np.int16)[:, None, None, None], (L, h, th, tw))
        head = np.broadcast_to(np.arange(1, h + 1, dtype=np.int16)[None, :, None, None], (L, h, th, tw))
        rr, cc = np.meshgrid(np.arange(th) * factor, np.arange(tw) * factor, indexing="ij")
        patch = np.broadcast_to((rr * gw + cc).astype(np.int16), (L, h, th, tw))
        custom = np.stack([layer, head, patch], -1).reshape(L * h, th, tw, 3)
        customdata = _mosaic(custom, h, (gap, gap), fill=np.int16(0))  # gaps: NaN in z, never hovered
        traces = [go.Heatmap(
            z=z, customdata=customdata, colorscale=ATTENTION_COLOURS, zmin=0, zmax=top_value, hoverongaps=False,
            colorbar=dict(title=dict(text="attention", side="right"), thickness=10),
            hovertemplate="layer %{customdata[0]} · head %{customdata[1]} · patch %{customdata[2]}" + block
                          + ": %{z:.4f}<extra></extra>",
        )]
    shapes = []
    if query is not None:
        qr, qc = divmod(int(query), gw)
        top, left = _tile_origins(L * h, h, (th + gap, tw + gap))
        shapes.append(_outlines(left + qc // factor - 0.5, top + qr // factor - 0.5, 1, 1, line_width=1))
    head_every = max(1, math.ceil(h / 16))
    layer_every = max(1, math.ceil(L / 16))
    common = dict(showgrid=False, zeroline=False, ticks="", constrain="domain")
    who = "the class token" if query is None else f"patch {query}"
    height = int(np.clip(90 + L * 44, 300, 1400))
    return _figure(
        traces, f"Attention of {who} in every layer and head{block}", height, shapes=shapes,
        meta=dict(kind="attention_overview", tile=[th, tw], gap=[gap, gap], per_row=h, pool=factor, picture=picture,
                  **(dict(levels=_COLOUR_LEVELS, zmin=0.0, zmax=float(top_value)) if picture else {})),
        xaxis=dict(range=[-0.5, z.shape[1] - 0.5], side="top", title=dict(text="head"),
                   tickvals=[j * (tw + gap) + (tw - 1) / 2 for j in range(0, h, head_every)],
                   ticktext=[str(j + 1) for j in range(0, h, head_every)], **common),
        yaxis=dict(range=[z.shape[0] - 0.5, -0.5], title=dict(text="layer"), scaleanchor="x", scaleratio=1,
                   tickvals=[l * (th + gap) + (th - 1) / 2 for l in range(0, L, layer_every)],
                   ticktext=[str(l + 1) for l in range(0, L, layer_every)], **common),
        margin=dict(l=50, r=20, t=80, b=20),
    )


def rollout(image, rollout_map, title: str, name: str = "rollout") -> go.Figure:
    """Fig. 6 (App. D.8): the input, the input multiplied by the attention-rollout map, and the map itself. Any other
    map over the patch grid (relevance, Grad-CAM) is drawn the same way under its `name`."""
    image = _as_image(image)  # (H, W, 3)
    rollout_map = np.asarray(rollout_map, dtype=np.float32)  # (gh, gw)
    gh, gw = rollout_map.shape
    H, W = image.shape[:2]
    h, w = _display_size(H, W)
    shown = _resize(_to_uint8(image), w, h).astype(np.float32) / 255.0  # (h, w, 3)
    peak = float(rollout_map.max()) if rollout_map.size else 1.0
    mask = rollout_map / peak if peak > 0 else rollout_map
    mask_up = np.asarray(Image.fromarray(mask, mode="F").resize((w, h), Image.Resampling.BILINEAR))  # (h, w)
    gap = max(4, w // 20)
    panels = np.full((h, 3 * w + 2 * gap, 3), 1.0, dtype=np.float32)  # (h, 3 w + 2 gap, 3)
    panels[:, :w] = shown
    panels[:, w + gap: 2 * w + gap] = shown * np.clip(mask_up, 0, 1)[:, :, None]
    panels[:, 2 * (w + gap):] = _dimmed(shown)
    traces = [_image_trace(_to_uint8(panels), 0, 0, panels.shape[1], h)]
    patch = np.arange(gh * gw, dtype=np.int16).reshape(gh, gw)
    cell_w, cell_h = w / gw, h / gh
    hover = f"patch %{{customdata}} · {name} / max %{{z:.3f}}<extra></extra>"
    traces.append(go.Heatmap(  # hover over the masked image
        z=mask, customdata=patch, x0=w + gap + cell_w / 2, dx=cell_w, y0=cell_h / 2, dy=cell_h,
        colorscale=_TRANSPARENT, showscale=False, zmin=0, zmax=1, hovertemplate=hover,
    ))
    traces.append(go.Heatmap(  # the map over the dimmed image
        z=mask, customdata=patch, x0=2 * (w + gap) + cell_w / 2, dx=cell_w, y0=cell_h / 2, dy=cell_h,
        colorscale=_alpha_colourscale(ATTENTION_COLOURS, 0.25, 0.9), zmin=0, zmax=1, hovertemplate=hover,
        colorbar=dict(title=dict(text=f"{name} / max", side="right"), thickness=10),
    ))
    traces.append(_labels_trace([w / 2, w + gap + w / 2, 2 * (w + gap) + w / 2], [0, 0, 0],
                                ["input", f"input × {name}", f"{name} map"]))
    return _figure(traces, title, 360, meta=dict(kind="rollout", panel=[h, w], gap=gap),
                   **_image_axes((0, panels.shape[1]), (-max(6, h // 10), h)))


# ----------------------------------------------------------------------------------------------------------------
# The residual stream: norms, Eq. 2-3 updates, LayerNorm


def token_norms(norms, grid: tuple[int, int]) -> go.Figure:
    """||z_l|| of every token for l = 0..L: patch tokens as maps over the grid, the class token as a line."""
    norms = np.asarray(norms, dtype=np.float32)  # (L + 1, T)
    L1, T = norms.shape
    gh, gw = int(grid[0]), int(grid[1])
    maps = norms[:, 1:].reshape(L1, gh, gw)  # (L + 1, gh, gw)
    per_row = min(L1, 7)
    gy, gx = _label_gap(gh), max(1, round(0.1 * gw))
    z = _mosaic(maps, per_row, (gy, gx))
    layer = np.broadcast_to(np.arange(L1, dtype=np.int16)[:, None, None], maps.shape)
    patch = np.broadcast_to(np.arange(gh * gw, dtype=np.int16).reshape(1, gh, gw), maps.shape)
    customdata = _mosaic(np.stack([layer, patch], -1), per_row, (gy, gx), fill=np.int16(0))  # (.., .., 2)
    traces = [go.Heatmap(
        z=z, customdata=customdata, colorscale=SEQUENTIAL_COLOURS, zmin=0, zmax=_robust_max(maps),
        hoverongaps=False, colorbar=dict(title=dict(text="‖z‖", side="right"), thickness=10, len=0.6, y=1,
                                         yanchor="top"),
        hovertemplate="z<sub>%{customdata[0]}</sub> · patch %{customdata[1]}: ‖z‖ = %{z:.2f}<extra></extra>",
    )]
    top, left = _tile_origins(L1, per_row, (gh + gy, gw + gx))
    traces.append(_labels_trace(left + (gw - 1) / 2, top - 0.5, [f"z<sub>{l}</sub>" for l in range(L1)]))
    layers = np.arange(L1)
    traces.append(go.Scatter(x=layers, y=norms[:, 0], mode="lines+markers", name="class token", xaxis="x2",
                             yaxis="y2",
                             hovertemplate="z<sub>%{x}</sub>: class token ‖z‖ = %{y:.2f}<extra></extra>"))
    traces.append(go.Scatter(x=layers, y=norms[:, 1:].mean(1), mode="lines+markers", name="patch tokens (mean)",
                             xaxis="x2", yaxis="y2", line=dict(dash="dot"),
                             hovertemplate="z<sub>%{x}</sub>: mean patch ‖z‖ = %{y:.2f}<extra></extra>"))
    rows = math.ceil(L1 / per_row)
    common = dict(showgrid=False, zeroline=False, visible=False, constrain="domain")
    return _figure(
        traces, "Token norms ‖z<sub>l</sub>‖ through the residual stream (Eq. 2–3)", 360 + rows * 110,
        meta=dict(kind="token_norms", tile=[gh, gw], gap=[gy, gx], per_row=per_row),
        xaxis=dict(range=[-0.5, z.shape[1] - 0.5], domain=[0, 1], **common),
        yaxis=dict(range=[z.shape[0] - 0.5, -gy - 0.5], scaleanchor="x", scaleratio=1, domain=[0.42, 1], **common),
        xaxis2=dict(domain=[0, 1], anchor="y2", title=dict(text="layer l (z<sub>0</sub> = embedding output)"),
                    dtick=max(1, L1 // 12)),
        yaxis2=dict(domain=[0, 0.3], anchor="x2", title=dict(text="‖z<sub>l</sub>‖"), rangemode="tozero"),
        legend=dict(orientation="h", x=0, y=0.36, yanchor="bottom"),
    )


def _norms(x: np.ndarray) -> np.ndarray:
    """L2 norm over the last axis (einsum: several times faster than np.linalg.norm here)."""
    return np.sqrt(np.einsum("...d,...d->...", x, x))


def residual_updates(z, z_mid) -> go.Figure:
    """Per layer: mean over tokens of ||z'_l - z_{l-1}|| (attention's update, Eq. 2), ||z_l - z'_l|| (MLP's, Eq. 3)
    and ||z_l||."""
    z = np.asarray(z, dtype=np.float32)  # (L + 1, T, D)
    z_mid = np.asarray(z_mid, dtype=np.float32)  # (L, T, D)
    L = z_mid.shape[0]
    attention_update = np.empty(L, dtype=np.float64)
    mlp_update = np.empty(L, dtype=np.float64)
    update = np.empty(z.shape[1:], dtype=np.float32)  # (T, D), reused: no (L, T, D) temporaries
    for l in range(1, L + 1):
        np.subtract(z_mid[l - 1], z[l - 1], out=update)  # z'_l - z_{l-1}
        attention_update[l - 1] = _norms(update).mean()
        np.subtract(z[l], z_mid[l - 1], out=update)  # z_l - z'_l
        mlp_update[l - 1] = _norms(update).mean()
    stream = _norms(z).mean(-1)  # (L + 1, T) -> (L + 1,)
    layers = np.arange(1, L + 1)
    traces = [
        go.Scatter(x=layers, y=attention_update, mode="lines+markers",
                   name="‖z′<sub>l</sub> − z<sub>l−1</sub>‖ (MSA, Eq. 2)",
                   hovertemplate="layer %{x}: attention update %{y:.3f}<extra></extra>"),
        go.Scatter(x=layers, y=mlp_update, mode="lines+markers",
                   name="‖z<sub>l</sub> − z′<sub>l</sub>‖ (MLP, Eq. 3)",
                   hovertemplate="layer %{x}: MLP update %{y:.3f}<extra></extra>"),
        go.Scatter(x=np.arange(L + 1), y=stream, mode="lines+markers", name="‖z<sub>l</sub>‖",
                   line=dict(dash="dot"),
                   hovertemplate="z<sub>%{x}</sub>: ‖z‖ %{y:.3f}<extra></extra>"),
    ]
    return _figure(traces, "What each block adds to the residual stream (mean over tokens)", 380,
                   xaxis=dict(title=dict(text="layer l"), range=[-0.3, L + 0.3], dtick=max(1, L // 12)),
                   yaxis=dict(title=dict(text="L2 norm"), rangemode="tozero"),
                   legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
                   margin=dict(l=50, r=20, t=80, b=40))


def layernorm_effect(before, after, token: int) -> go.Figure:
    """LN in Eq. 2-3: one token's D values before and after LayerNorm (normalise, then scale by γ, shift by β)."""
    before = np.asarray(before, dtype=np.float32)  # (T, D)
    after = np.asarray(after, dtype=np.float32)  # (T, D)
    x, y = before[int(token)], after[int(token)]  # (D,)
    traces = [
        go.Histogram(x=x, nbinsx=60, name="before LN", marker_color="#636efa", xaxis="x", yaxis="y",
                     hovertemplate="%{x}: %{y} values<extra>before</extra>"),
        go.Histogram(x=y, nbinsx=60, name="after LN", marker_color="#ef553b", xaxis="x2", yaxis="y2",
                     hovertemplate="%{x}: %{y} values<extra>after</extra>"),
    ]
    annotations = [
        dict(text=f"before LN: mean {x.mean():.3g}, std {x.std():.3g}", x=0.0, y=1.0, xref="paper", yref="paper",
             xanchor="left", yanchor="bottom", showarrow=False),
        dict(text=f"after LN: mean {y.mean():.3g}, std {y.std():.3g}", x=0.55, y=1.0, xref="paper", yref="paper",
             xanchor="left", yanchor="bottom", showarrow=False),
    ]
    name = "the class token" if int(token) == 0 else f"token {int(token)} (patch {int(token) - 1})"
    return _figure(traces, f"LayerNorm on {name}: {x.size} values", 320, annotations=annotations, showlegend=False,
                   bargap=0.05, margin=dict(l=40, r=20, t=70, b=40),
                   xaxis=dict(domain=[0, 0.45], title=dict(text="value")),
                   yaxis=dict(title=dict(text="count")),
                   xaxis2=dict(domain=[0.55, 1], anchor="y2", title=dict(text="value")),
                   yaxis2=dict(anchor="x2"))


# ----------------------------------------------------------------------------------------------------------------
# Eq. 4: the prediction


def top_k(probabilities, class_names: Sequence[str], k: int = 5) -> go.Figure:
    """Eq. 4's head: the k most probable classes, top first (ties in class order)."""
    probabilities = np.asarray(probabilities, dtype=np.float32).reshape(-1)  # (K,)
    top = ranking(probabilities, k)  # (k,) descending
    k = top.size
    p = probabilities[top]
    names = [str(class_names[i]) for i in top]
    traces = [go.Bar(
        x=p, y=np.arange(k), orientation="h", text=[f"{100 * v:.1f}%" for v in p], textposition="outside",
        customdata=np.asarray(names, dtype=object), marker_color="#4c78a8", cliponaxis=False,
        hovertemplate="%{customdata}: %{x:.2%}<extra></extra>",
    )]
    title = f"Top-{k} prediction" + (": all classes equally likely" if equally_likely(probabilities) else "")
    return _figure(traces, title, int(np.clip(70 + 36 * k, 160, 600)),
                   margin=dict(l=10, r=20, t=40, b=30),
                   xaxis=dict(range=[0, 1.12], tickformat=".0%", showgrid=True),
                   yaxis=dict(tickvals=list(range(k)), ticktext=names, autorange=False, range=[k - 0.5, -0.5],
                              automargin=True))


def logit_lens(probabilities, class_names: Sequence[str], top_indices: Sequence[int]) -> go.Figure:
    """How the prediction forms: the class token after layer l = 0..L sent through the final LN and head (Eq. 4)."""
    probabilities = np.asarray(probabilities, dtype=np.float32)  # (L + 1, K)
    L1 = probabilities.shape[0]
    layers = np.arange(L1)
    traces = [
        go.Scatter(x=layers, y=probabilities[:, int(i)], mode="lines+markers", name=str(class_names[int(i)]),
                   hovertemplate=f"{class_names[int(i)]} · after layer %{{x}}: %{{y:.2%}}<extra></extra>")
        for i in np.asarray(top_indices).reshape(-1)
    ]
    return _figure(traces, "How the prediction forms: class token after each layer → LN → head", 380,
                   xaxis=dict(title=dict(text="layer l (0 = z<sub>0</sub>)"), range=[-0.3, L1 - 0.7],
                              dtick=max(1, L1 // 12)),
                   yaxis=dict(title=dict(text="probability"), range=[0, 1.02], tickformat=".0%"),
                   legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
                   margin=dict(l=50, r=20, t=80, b=40))


# ----------------------------------------------------------------------------------------------------------------
# Explanations: faithfulness, and a prediction against another


FAITHFULNESS_COLOURS = {"relevance": "#d62728", "grad_cam": "#ff7f0e", "rollout": "#1f77b4", "attention": "#2ca02c",
                        "random": "#7f7f7f"}


def faithfulness(deletion, insertion, target_name: str) -> go.Figure:
    """Deletion and insertion curves (Petsiuk et al. 2018), side by side: the target's probability as patches leave
    (enter) the sequence in each map's order, each method's two areas in the legend. `deletion` and `insertion`:
    method -> (fractions (S,), probabilities (S,), area). A faithful map falls fast on the left (small deletion area)
    and rises fast on the right (large insertion area)."""
    traces = []
    for column, (mode, curves) in enumerate((("deletion", deletion), ("insertion", insertion))):
        for method, (fractions, probabilities, area) in curves.items():
            fractions = np.asarray(fractions, dtype=np.float32)  # (S,)
            probabilities = np.asarray(probabilities, dtype=np.float32)  # (S,)
            areas = f"deletion {deletion[method][2]:.3f} ↓, insertion {insertion[method][2]:.3f} ↑"
            traces.append(go.Scatter(
                x=fractions, y=probabilities, mode="lines", xaxis=f"x{column + 1}", yaxis=f"y{column + 1}",
                name=f"{method}: {areas}", legendgroup=method, showlegend=column == 0,
                line=dict(color=FAITHFULNESS_COLOURS.get(method, "#444444"),
                          dash="dot" if method == "random" else "solid", width=2),
                hovertemplate=f"{method}, {mode}: %{{x:.0%}} of patches → p = %{{y:.3f}}<extra></extra>",
            ))
    axis = dict(range=[0, 1], tickformat=".0%", showgrid=True)
    return _figure(traces, f"Which map to trust: p({target_name}) as patches leave (left) or enter (right) the "
                   f"sequence, most relevant first", 400,
                   xaxis=dict(domain=[0, 0.47], title=dict(text="patches removed"), **axis),
                   xaxis2=dict(domain=[0.53, 1], title=dict(text="patches present"), **axis),
                   yaxis=dict(range=[0, 1.02], title=dict(text="probability"), anchor="x"),
                   yaxis2=dict(range=[0, 1.02], anchor="x2"),
                   legend=dict(orientation="h", x=0, y=-0.2, yanchor="top", font=dict(size=11)),
                   margin=dict(l=50, r=20, t=40, b=110))


def prediction_change(before, after, class_names: Sequence[str], labels: tuple[str, str], k: int = 5) -> go.Figure:
    """Two predictions of the same image side by side (all patches and fewer; two resolutions): the top-k classes of
    either, ranked by `after` (ties in class order), each with both probabilities. With `after` None, `before`
    alone, titled by labels[0]."""
    before = np.asarray(before, dtype=np.float32).reshape(-1)  # (K,)
    if after is None:
        figure = top_k(before, class_names, k)
        figure.layout.title.text = f"Prediction, {labels[0]}"
        return figure
    after = np.asarray(after, dtype=np.float32).reshape(-1)  # (K,)
    top = list(ranking(after, k)) + [i for i in ranking(before, k) if i not in set(ranking(after, k).tolist())]
    names = [str(class_names[i]) for i in top]
    y = np.arange(len(top))
    traces = [
        go.Bar(x=values[top], y=y, orientation="h", name=label, marker_color=colour,
               text=[f"{100 * v:.1f}%" for v in values[top]], textposition="outside", cliponaxis=False,
               customdata=np.asarray(names, dtype=object), hovertemplate=f"{label} · %{{customdata}}: %{{x:.2%}}<extra></extra>")
        for values, label, colour in ((before, labels[0], "#9ecae1"), (after, labels[1], "#4c78a8"))
    ]
    return _figure(traces, f"Prediction: {labels[0]} vs {labels[1]}", int(np.clip(90 + 44 * len(top), 200, 700)),
                   barmode="group", xaxis=dict(range=[0, 1.15], tickformat=".0%", showgrid=True),
                   yaxis=dict(tickvals=list(y), ticktext=names, autorange=False, range=[len(top) - 0.5, -0.5],
                              automargin=True),
                   legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom"), margin=dict(l=10, r=20, t=60, b=30))


# ----------------------------------------------------------------------------------------------------------------
# This image against a data set (a survey, explorer.survey)


def _note_figure(title: str, text: str, height: int = 160) -> go.Figure:
    """A figure that only says something (no data to draw)."""
    return _figure([go.Scatter(x=[0], y=[0], mode="text", text=[text], hoverinfo="skip", textfont=dict(size=13))],
                   title, height, showlegend=False, xaxis=dict(visible=False), yaxis=dict(visible=False))


def attention_distance_survey(distance, survey_mean, survey_std, images: int, patch_size: int,
                              image_size: int) -> go.Figure:
    """Fig. 7 right for one image over its data set: each head's mean attention distance in this image (dots)
    against the survey's mean over `images` images ± one standard deviation (grey bars), layer by layer."""
    distance = np.asarray(distance, dtype=np.float32)  # (L, h)
    mean = np.asarray(survey_mean, dtype=np.float32)  # (L, h)
    std = np.asarray(survey_std, dtype=np.float32)  # (L, h)
    L, h = distance.shape
    offsets = (np.arange(h) - (h - 1) / 2) * min(0.6 / max(h, 1), 0.08)  # heads side by side within a layer
    x = (np.arange(1, L + 1)[:, None] + offsets[None, :]).ravel()  # (L h,)
    head = np.tile(np.arange(1, h + 1), L)  # (L h,)
    traces = [
        go.Scatter(x=x, y=mean.ravel(), mode="markers", name=f"data set: mean ± sd over {images:,} images",
                   marker=dict(size=7, color="#bbbbbb", symbol="line-ew-open", line=dict(width=2, color="#999999")),
                   error_y=dict(type="data", array=std.ravel(), color="#cccccc", thickness=3, width=0),
                   customdata=np.stack([head, std.ravel()], axis=-1),
                   hovertemplate="layer %{x:.0f} · head %{customdata[0]}: data set %{y:.1f} ± %{customdata[1]:.1f} px"
                                 "<extra></extra>"),
        go.Scatter(x=x, y=distance.ravel(), mode="markers", name="this image", customdata=head,
                   marker=dict(size=8, color=head, colorscale=SEQUENTIAL_COLOURS, line=dict(width=0.5, color="white")),
                   hovertemplate="layer %{x:.0f} · head %{customdata}: this image %{y:.1f} px<extra></extra>"),
    ]
    uniform = _uniform_attention_distance(int(image_size) // int(patch_size), int(patch_size))
    top = max(float(np.nanmax(distance)), float(np.nanmax(mean + std)), uniform) * 1.1
    return _figure(traces, "This image against the data set: mean attention distance per head", 400,
                   xaxis=dict(range=[0.5, L + 0.5], title=dict(text="network depth (layer)"), dtick=max(1, L // 12)),
                   yaxis=dict(range=[0, top], title=dict(text="mean attention distance (pixels)")),
                   legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom"), margin=dict(l=50, r=20, t=70, b=40))


def rollout_survey(rollout_map, mean_map, images: int) -> go.Figure:
    """This image's rollout map (Fig. 6, scaled to a maximum of 1) beside the survey's average of such maps."""
    maps = [np.asarray(rollout_map, dtype=np.float32), np.asarray(mean_map, dtype=np.float32)]  # 2 x (gh, gw)
    gh, gw = maps[0].shape
    gap = max(1, gw // 6)
    z = np.full((gh, 2 * gw + gap), np.nan, dtype=np.float32)  # (gh, 2 gw + gap)
    z[:, :gw], z[:, gw + gap:] = maps[0], maps[1]
    patch = np.full(z.shape, -1, dtype=np.int32)
    patch[:, :gw] = patch[:, gw + gap:] = np.arange(gh * gw).reshape(gh, gw)
    traces = [go.Heatmap(z=z, customdata=patch, colorscale=ATTENTION_COLOURS, zmin=0, zmax=1, hoverongaps=False,
                         colorbar=dict(title=dict(text="rollout / max", side="right"), thickness=10),
                         hovertemplate="patch %{customdata} · %{z:.3f}<extra></extra>"),
              _labels_trace([(gw - 1) / 2, gw + gap + (gw - 1) / 2], [-0.8, -0.8],
                            ["this image", f"mean over {images:,} images"])]
    return _figure(traces, "Attention rollout: this image and the data set's average", 340,
                   **_image_axes((-0.5, z.shape[1] - 0.5), (-1.5, gh - 0.5)))


def no_survey(model: str, command: str) -> go.Figure:
    """Said where a model has no survey on disk."""
    return _note_figure("This image against the data set", f"No survey of {model} on disk: {command}")
