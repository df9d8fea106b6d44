"""Eq. 2's attention as figures: each head's map for one query, the attention matrix, every layer and head at once,
attention rollout (Fig. 6) and mean attention distance (Fig. 7 right)."""
from __future__ import annotations

import functools
import math

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from ..tokens import TokenLayout

from .base import (ATTENTION_COLOURS, SEQUENTIAL_COLOURS, _MAX_HOVER_CELLS, _MAX_MATRIX_SIDE,
                   _MAX_OVERVIEW_CELLS, _TRANSPARENT, _alpha_colourscale, _as_image, _dimmed, _display_size, _figure,
                   _heads_per_row, _heatmap_picture, _image_axes, _image_trace, _label_gap, _labels_trace,
                   _mosaic, _outlines, _pool_tiles, _resize, _robust_max, _tile_origins, _to_uint8)


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




def attention_heads(image, maps, query: int | None, title: str, *, zmax: float | None = None,
                    narrow: bool = False, query_name: str | None = None) -> go.Figure:
    """Eq. 2's softmax(q k^T / sqrt(d)) for one query, per head, over the dimmed image: one tile per head (`narrow`:
    two to a row).

    maps (h, gh, gw): attention of the query to every patch; query = patch index i (token i + 1), outlined, or None
    for a token that is not a patch; `query_name` names the query in the title ("REG2"; None: "patch i" or the class
    token). One colour range for all heads (0 .. 99.5th percentile, or `zmax`), so heads can be compared.
    """
    image = _as_image(image)  # (H, W, 3)
    maps = np.asarray(maps, dtype=np.float32)  # (h, gh, gw)
    h, gh, gw = maps.shape
    per_row = min(h, 2) if narrow else _heads_per_row(h)
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
    who = query_name or ("the class token" if query is None else f"patch {query}")
    return _figure(traces, f"{title} · query: {who}", height, fit=(z.shape[0] + gy) / z.shape[1] if narrow else None,
                   shapes=shapes,
                   meta=dict(kind="attention_heads", tile=[gh, gw], gap=[gy, gx], per_row=per_row),
                   **_image_axes((-0.5, z.shape[1] - 0.5), (-gy - 0.5, z.shape[0] - 0.5)))


def _prefix_names(layout: TokenLayout) -> list[str]:
    """"cls", "dist", "reg1".. for the prefix tokens."""
    return [label.lower() for label in layout.prefix_labels]


def _token_names(N: int, grid: tuple[int, int], layout: TokenLayout) -> list[str]:
    gw = grid[1]
    return _prefix_names(layout) + [f"patch {i} ({i // gw},{i % gw})" for i in range(N)]


def attention_matrix(weights, grid: tuple[int, int], title: str, layout: TokenLayout = TokenLayout()) -> go.Figure:
    """Eq. 2's attention matrix A = softmax(q k^T / sqrt(d)) (T x T): queries are rows, keys are columns.

    Above _MAX_MATRIX_SIDE tokens the patch tokens are averaged in blocks of f consecutive (row-major) patches
    (the prefix tokens, `layout`'s, are kept), so that the figure stays responsive for ViT-H/14 (T = 1370).
    """
    weights = np.asarray(weights, dtype=np.float32)  # (T, T)
    grid = (int(grid[0]), int(grid[1]))
    N, prefix = grid[0] * grid[1], layout.num_prefix
    factor = max(1, math.ceil(N / (_MAX_MATRIX_SIDE - prefix)))
    if factor == 1:
        z = weights
        names = _token_names(N, grid, layout)
    else:
        groups = math.ceil(N / factor)
        bounds = np.arange(0, groups * factor, factor)  # first patch of each block
        # mean over blocks: sums via np.add.reduceat, divided by the block sizes
        sizes = np.diff(np.append(bounds, N)).astype(np.float32)
        queries_prefix, queries_patches = layout.prefix(weights), layout.patches(weights)  # (prefix, T), (N, T)
        prefix_row = np.add.reduceat(layout.patches(queries_prefix, -1), bounds, axis=1) / sizes  # (prefix, groups)
        prefix_col = np.add.reduceat(layout.prefix(queries_patches, -1), bounds, axis=0) / sizes[:, None]
        body = np.add.reduceat(np.add.reduceat(layout.patches(queries_patches, -1), bounds, axis=0), bounds, axis=1)
        body /= sizes[:, None] * sizes[None, :]
        z = np.block([[layout.prefix(queries_prefix, -1), prefix_row], [prefix_col, body]]).astype(np.float32)
        last = np.append(bounds[1:], N) - 1
        names = _prefix_names(layout) + [f"patches {a}–{b}" for a, b in zip(bounds, last)]
        title = f"{title} (patches averaged in blocks of {factor})"
    top_value = _robust_max(z)
    traces = [go.Heatmap(
        z=z, x=names, y=names, colorscale=ATTENTION_COLOURS, zmin=0, zmax=top_value,
        colorbar=dict(title=dict(text="weight", side="right"), thickness=10),
        hovertemplate="query %{y} → key %{x}: %{z:.4f}<extra></extra>",
    )]
    # ticks: the class token and the first patch of every few grid rows
    step = max(1, math.ceil(grid[0] / 7))
    tick_names, tick_text = _prefix_names(layout), _prefix_names(layout)
    for r in range(step, grid[0], step):
        first = r * grid[1]
        position = prefix + first // factor
        if position < len(names):
            tick_names.append(names[position])
            tick_text.append(f"row {r}")
    axis = dict(type="category", showgrid=False, tickmode="array", tickvals=tick_names, ticktext=tick_text,
                tickangle=0)
    return _figure(traces, title, 560, meta=dict(kind="attention_matrix", block=factor),
                   xaxis=dict(title=dict(text="key token"), constrain="domain", **axis),
                   yaxis=dict(title=dict(text="query token"), autorange="reversed", scaleanchor="x", scaleratio=1,
                              constrain="domain", **axis))


def attention_overview(maps, query: int | None, *, query_name: str | None = None) -> go.Figure:
    """Eq. 2's attention of one query in every layer l (rows) and head (columns), in one mosaic.

    maps (L, h, gh, gw); query = patch index i (token i + 1), None = a token that is not a patch; `query_name` names
    the query in the title (None: "patch i" or the class token). Tiles are average-pooled when
    L h N would exceed _MAX_OVERVIEW_CELLS cells. Gaps between tiles hold NaN (customdata 0 there: base64 of -1
    is '////', which plotly's to_json escapes to 24 characters). Above _MAX_HOVER_CELLS cells (ViT-B/16 and up) the
    mosaic is drawn as a picture (HEATMAP), with a hover that names each tile's layer and head (462 KB -> ~40 KB for B/16,
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
    who = query_name or ("the class token" if query is None else f"patch {query}")
    height = int(np.clip(90 + L * 44, 300, 1400))
    return _figure(
        traces, f"Attention in every layer and head{block} · query: {who}", height, shapes=shapes,
        meta=dict(kind="attention_overview", tile=[th, tw], gap=[gap, gap], per_row=h, pool=factor, picture=picture,
                  **(dict(zmin=0.0, zmax=float(top_value)) if picture else {})),
        xaxis=dict(range=[-0.5, z.shape[1] - 0.5], side="top", title=dict(text="head"),
                   tickvals=[j * (tw + gap) + (tw - 1) / 2 for j in range(0, h, head_every)],
                   ticktext=[str(j + 1) for j in range(0, h, head_every)], **common),
        yaxis=dict(range=[z.shape[0] - 0.5, -0.5], title=dict(text="layer"), scaleanchor="x", scaleratio=1,
                   tickvals=[l * (th + gap) + (th - 1) / 2 for l in range(0, L, layer_every)],
                   ticktext=[str(l + 1) for l in range(0, L, layer_every)], **common),
        margin=dict(l=50, r=20, t=80, b=20),
    )


def rollout(image, rollout_map, title: str, name: str = "rollout", *, narrow: bool = False) -> go.Figure:
    """Fig. 6 (App. D.8): the input, the input multiplied by the attention-rollout map, and the map itself, side by
    side (`narrow`: one under another). Any other map over the patch grid (relevance, Grad-CAM) is drawn the same way
    under its `name`."""
    image = _as_image(image)  # (H, W, 3)
    rollout_map = np.asarray(rollout_map, dtype=np.float32)  # (gh, gw)
    gh, gw = rollout_map.shape
    H, W = image.shape[:2]
    h, w = _display_size(H, W)
    shown = _resize(_to_uint8(image), w, h).astype(np.float32) / 255.0  # (h, w, 3)
    peak = float(rollout_map.max()) if rollout_map.size else 1.0
    mask = rollout_map / peak if peak > 0 else rollout_map
    mask_up = np.asarray(Image.fromarray(mask, mode="F").resize((w, h), Image.Resampling.BILINEAR))  # (h, w)
    if narrow:  # one column: panel k's top-left corner at (0, k (h + gap)), room for its label above it
        gap = max(3, round(0.1 * w))
        panels = np.full((3 * h + 2 * gap, w, 3), 1.0, dtype=np.float32)  # (3 h + 2 gap, w, 3)
        corners = [(0, k * (h + gap)) for k in range(3)]
    else:  # one row: panel k's top-left corner at (k (w + gap), 0)
        gap = max(4, w // 20)
        panels = np.full((h, 3 * w + 2 * gap, 3), 1.0, dtype=np.float32)  # (h, 3 w + 2 gap, 3)
        corners = [(k * (w + gap), 0) for k in range(3)]
    for (x, y), panel in zip(corners, (shown, shown * np.clip(mask_up, 0, 1)[:, :, None], _dimmed(shown))):
        panels[y: y + h, x: x + w] = panel
    traces = [_image_trace(_to_uint8(panels), 0, 0, panels.shape[1], panels.shape[0])]
    patch = np.arange(gh * gw, dtype=np.int16).reshape(gh, gw)
    cell_w, cell_h = w / gw, h / gh
    hover = f"patch %{{customdata}} · {name} / max %{{z:.3f}}<extra></extra>"
    (masked_x, masked_y), (map_x, map_y) = corners[1], corners[2]
    traces.append(go.Heatmap(  # hover over the masked image
        z=mask, customdata=patch, x0=masked_x + cell_w / 2, dx=cell_w, y0=masked_y + cell_h / 2, dy=cell_h,
        colorscale=_TRANSPARENT, showscale=False, zmin=0, zmax=1, hovertemplate=hover,
    ))
    traces.append(go.Heatmap(  # the map over the dimmed image
        z=mask, customdata=patch, x0=map_x + cell_w / 2, dx=cell_w, y0=map_y + cell_h / 2, dy=cell_h,
        colorscale=_alpha_colourscale(ATTENTION_COLOURS, 0.25, 0.9), zmin=0, zmax=1, hovertemplate=hover,
        colorbar=dict(title=dict(text=f"{name} / max", side="right"), thickness=10),
    ))
    traces.append(_labels_trace([x + w / 2 for x, _ in corners], [y for _, y in corners],
                                ["input", f"input × {name}", f"{name} map"]))
    above = max(2, round(0.06 * w)) if narrow else max(6, h // 10)  # room for the first label
    return _figure(traces, title, 360, fit=(panels.shape[0] + above) / w if narrow else None,
                   meta=dict(kind="rollout", panel=[h, w], gap=gap, stacked=narrow),
                   **_image_axes((0, panels.shape[1]), (-above, panels.shape[0])))
