"""Eq. 1 and Fig. 7 left/centre as figures: the patches, the patch sequence, the patch embedding's feature maps and
filters, token matrices, and the position embeddings' similarity."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from ..tokens import TokenLayout
from .base import (DRAWING, SIMILARITY_COLOURS, TILES, _MARGIN_TWO_LINES, _MAX_HEATMAP_CELLS,
                   _MAX_HOVER_CELLS, _MAX_MATRIX_COLUMNS, _NUMBER_SHADOW, _OUTLINE, _TRANSPARENT, _as_image,
                   _display_size, _figure, _grid_of, _heatmap_picture, _image_axes, _image_trace, _label_gap,
                   _labels_trace, _mosaic, _resize, _robust_max, _tile_origins, _to_uint8)



# What Eq. 1's hover says of each prefix token (a register: its label, "a learned register token").
_PREFIX_WORDS = {"CLS": "x<sub>class</sub> (the learned [class] token)",
                 "DIST": "x<sub>dist</sub> (DeiT's learned distillation token)"}

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
                   grid: tuple[int, int] | None = None, layout: TokenLayout = TokenLayout()) -> go.Figure:
    """Eq. 1: the sequence the Transformer reads, [x_class; x_p^1; ...; x_p^N] (the prefix tokens of `layout` in
    front), wrapped into rows."""
    patches = np.asarray(patches, dtype=np.float32)
    if patches.ndim == 3:
        patches = patches[..., None]
    N, P = patches.shape[0], patches.shape[1]
    if patches.shape[3] == 1:
        patches = np.repeat(patches, 3, axis=3)  # (N, P, P, 1) -> (N, P, P, 3)
    layout = TokenLayout(layout.prefix_labels, N)
    T, prefix = layout.T, layout.num_prefix
    per_row = int(per_row) if per_row else math.ceil(math.sqrt(2 * T))
    rows = math.ceil(T / per_row)
    gap = max(1, P // 8)
    pitch = P + gap
    grid = _grid_of(N, grid)

    slots = np.empty((T, P, P, 3), dtype=np.uint8)  # the prefix tokens (grey, outlined), then patch i
    prefix_slots = layout.prefix(slots, 0)  # a view: (prefix, P, P, 3)
    prefix_slots[:] = 215
    prefix_slots[:, [0, -1], :] = 90
    prefix_slots[:, :, [0, -1]] = 90
    layout.patches(slots, 0)[:] = _to_uint8(patches[:, :, :, :3])
    mosaic = _mosaic(slots, per_row, (gap, gap), fill=np.uint8(255))  # (rows pitch - gap, per_row pitch - gap, 3)
    # mosaic pixel (x, y) is centred on (x, y), as in plotly's own images
    traces = [_image_trace(mosaic, -0.5, -0.5, mosaic.shape[1], mosaic.shape[0], kind=TILES)]

    position = np.full(rows * per_row, np.nan, dtype=np.float32)
    position[:T] = np.arange(T)
    hover = [f"token {t} · {_PREFIX_WORDS.get(label, label + ', a learned register token')}"
             for t, label in enumerate(layout.prefix_labels)]
    for i in range(N):
        where = f" · row {i // grid[1]}, col {i % grid[1]}" if grid else ""
        hover.append(f"token {layout.patch_token(i)} · x<sub>p</sub><sup>{i + 1}</sup> = patch {i}{where}")
    hover += [""] * (rows * per_row - T)
    traces.append(go.Heatmap(
        z=position.reshape(rows, per_row), text=np.array(hover, dtype=object).reshape(rows, per_row).tolist(),
        x0=(pitch - 1) / 2, dx=pitch, y0=(pitch - 1) / 2, dy=pitch, colorscale=_TRANSPARENT, showscale=False,
        hoverongaps=False, hovertemplate="%{text}<extra></extra>", name="sequence",
    ))
    slot_rows, slot_cols = np.divmod(np.arange(prefix), per_row)  # the prefix tokens' slots
    traces.append(_labels_trace(slot_cols * pitch + (P - 1) / 2, slot_rows * pitch + (P - 1) / 2,
                                [label.lower() for label in layout.prefix_labels], position="middle center",
                                font=dict(size=10, color="#222")))
    shapes = []
    if selected is not None:
        slot_row, slot_col = divmod(layout.patch_token(int(selected)), per_row)  # patch i's token
        left, top = slot_col * pitch, slot_row * pitch
        shapes.append(dict(type="rect", x0=left - 0.5, x1=left + P - 0.5, y0=top - 0.5, y1=top + P - 0.5,
                           line=dict(color=_OUTLINE, width=3)))
    height = int(np.clip(90 + rows * 560 / max(per_row, 1), 200, 620))
    words = {"CLS": "x<sub>class</sub>", "DIST": "x<sub>dist</sub>"}
    registers = layout.num_registers
    names = [words[label] for label in layout.prefix_labels if label in words] + (
        [f"x<sub>reg</sub><sup>1…{registers}</sup>"] if registers else [])
    counts = [str(n) for n in (prefix - registers, registers) if n]  # e.g. 1 + 4 (class token, registers)
    total = "N + 1" if counts == ["1"] else " + ".join(counts + ["N"])  # the paper's words for the paper's ViT
    title = (f"[{'; '.join(names + ['x<sub>p</sub><sup>1</sup>'])}; …; x<sub>p</sub><sup>{N}</sup>] (Eq. 1)<br>"
             f"T = {total} = {T} tokens")
    return _figure(traces, title, height, shapes=shapes, margin=_MARGIN_TWO_LINES, meta=dict(kind="patch_sequence", per_row=per_row, pitch=pitch),
                   **_image_axes((-0.5, mosaic.shape[1] - 0.5), (-0.5, mosaic.shape[0] - 0.5)))


def feature_maps(maps, indices: Sequence[int], untrained=None, *, narrow: bool = False) -> go.Figure:
    """Eq. 1's patch embedding E as a convolution: one (H/P x W/P) map per chosen embedding dimension d, eight to a
    row (`narrow`: four).

    Each map is scaled by its own max |value| (the colour is sign and relative size); hover shows the raw value.
    With `untrained`, a second group of rows shows the same dimensions of a randomly initialised model.
    """
    maps = np.asarray(maps, dtype=np.float32)  # (D, gh, gw)
    D, gh, gw = maps.shape
    indices = [int(d) for d in indices]
    if not indices:
        raise ValueError("feature_maps needs at least one embedding dimension index.")
    n = len(indices)
    per_row = min(n, 4 if narrow else 8)
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
    return _figure(traces, title, height, fit=(z.shape[0] + gy) / z.shape[1] if narrow else None,
                   meta=dict(kind="feature_maps", tile=[gh, gw], gap=[gy, gx],
                                                     per_row=per_row, group_rows=group_rows), **layout)


def token_matrix(matrix, title: str, row_names: Sequence[str] | None = None) -> go.Figure:
    """A (rows, D) matrix of token vectors (e.g. z_0 of Eq. 1, E_pos) as a heat map, colour symmetric around 0.

    Large matrices are subsampled, never averaged (the values shown are true entries): one column in s_c when
    there are more than _MAX_MATRIX_COLUMNS columns (e.g. the H·W pixels of each input channel), then one row in
    s_r so that at most 2 * _MAX_HEATMAP_CELLS cells are sent. Above _MAX_HOVER_CELLS cells (ViT-B/16's 197 x 768)
    the matrix is drawn as a picture of its colours (HEATMAP; hover: token and dimension; meta records
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
        meta.update(picture=True, zmin=-limit, zmax=limit)
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




def _similarity_stride(gh: int, gw: int) -> int:
    """Show every s-th tile so that the mosaic has at most _MAX_HEATMAP_CELLS cells."""
    stride = 1
    while math.ceil(gh / stride) * math.ceil(gw / stride) * gh * gw > _MAX_HEATMAP_CELLS:
        stride += 1
    return stride


def position_similarity(similarity, selected: int | None = None) -> go.Figure:
    """Fig. 7 centre: tile (r, c) = cosine similarity of the position embedding of patch (r, c) with every patch.

    Above _MAX_HOVER_CELLS cells (ViT-B/16's 196 tiles) the mosaic is drawn as a picture without hover values
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
                  picture=picture, **(dict(zmin=-1.0, zmax=1.0) if picture else {})),
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


def filter_components(components, explained, *, narrow: bool = False) -> go.Figure:
    """Fig. 7 left: the first principal components of the patch-embedding filters E, each a P x P x C image, seven to
    a row (`narrow`: four)."""
    components = np.asarray(components, dtype=np.float32)  # (n, P, P, C)
    explained = np.asarray(explained, dtype=np.float32).reshape(-1)  # (n,)
    if components.ndim == 3:
        components = components[..., None]
    n, P = components.shape[:2]
    what = "RGB embedding filters" if components.shape[3] == 3 else "Embedding filters (grayscale)"  # the paper's are RGB
    if components.shape[3] == 1:
        components = np.repeat(components, 3, axis=3)  # (n, P, P, 1) -> (n, P, P, 3)
    per_row = min(n, 4 if narrow else 7)
    rows = math.ceil(n / per_row)
    scale = max(1, 32 // P)  # enlarge tiny filters with nearest neighbours: crisp in any browser
    tiles = _to_uint8(components[..., :3]).repeat(scale, 1).repeat(scale, 2)  # (n, s P, s P, 3)
    S = P * scale
    gy, gx = max(2, S // 2), max(1, S // 6)
    mosaic = _mosaic(tiles, per_row, (gy, gx), fill=np.uint8(255))
    traces = [_image_trace(mosaic, -0.5, -0.5, mosaic.shape[1], mosaic.shape[0], kind=DRAWING)]
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
                   fit=(mosaic.shape[0] + gy) / mosaic.shape[1] if narrow else None,
                   meta=dict(kind="filter_components", tile=[S, S], gap=[gy, gx], per_row=per_row, scale=scale),
                   **_image_axes((-0.5, mosaic.shape[1] - 0.5), (-gy - 0.5, mosaic.shape[0] - 0.5)))


