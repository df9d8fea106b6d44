"""Figures of changing the model and comparing: the heads switchboard (every layer's heads as a picture to click),
what each head is worth for a class, and two images or two models on one figure (Fig. 7's mean attention distance,
two predictions side by side, two inputs side by side).

Layers l = 1..L top to bottom, heads shown 1-based left to right, as in the rest of the figures; (l, j) pairs given
here use j = 0..h-1 (the trace's head axis).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw
from plotly.subplots import make_subplots

from ..common import ranking
from .attention import _uniform_attention_distance
from .base import _TEMPLATE, _figure, wrap_title

LOW, HIGH = np.array([255, 255, 255], np.float32), np.array([8, 48, 107], np.float32)  # a head's map: white to navy
OFF = (230, 230, 230)  # a head switched off: its cell greyed
MARK = (220, 30, 30)  # and crossed
GAP = 3  # pixels between cells
COMPARE_COLOURS = ("#4c78a8", "#f58518")  # A, B


def head_grid_cell(heads: int, side: int = 504) -> int:
    """The side of one head's cell in the switchboard of `heads` heads a row, about `side` pixels wide (24 to 64)."""
    return int(np.clip(side // max(heads, 1) - GAP, 24, 64))


def head_switchboard(maps, off: Sequence[tuple[int, int]] = ()) -> np.ndarray:
    """Every head's attention map for one query, (L, h, rows, cols), as one picture of L rows and h columns of cells
    (each map scaled to its own maximum, white to navy); heads (l, j) in `off` greyed and crossed. uint8 (L c, h c, 3),
    c = cell side + GAP, so that pixel (x, y) belongs to layer y // c + 1, head x // c."""
    maps = np.asarray(maps, dtype=np.float32)  # (L, h, rows, cols)
    L, h, rows, cols = maps.shape
    cell = head_grid_cell(h)
    pitch = cell + GAP
    picture = np.full((L * pitch, h * pitch, 3), 255, np.uint8)
    peak = maps.reshape(L, h, -1).max(-1)[:, :, None, None]  # (L, h, 1, 1)
    scaled = maps / np.maximum(peak, 1e-12)  # (L, h, rows, cols) in [0, 1]
    for l in range(L):
        for j in range(h):
            colours = (LOW + scaled[l, j, :, :, None] * (HIGH - LOW)).astype(np.uint8)  # (rows, cols, 3)
            tile = np.asarray(Image.fromarray(colours).resize((cell, cell), Image.Resampling.NEAREST))
            if (l + 1, j) in set(map(tuple, off)):
                tile = np.full_like(tile, OFF)
            picture[l * pitch:l * pitch + cell, j * pitch:j * pitch + cell] = tile
    image = Image.fromarray(picture)
    draw = ImageDraw.Draw(image)
    for l, j in off:
        x0, y0 = j * pitch, (l - 1) * pitch
        box = [x0, y0, x0 + cell - 1, y0 + cell - 1]
        draw.rectangle(box, outline=MARK, width=2)
        draw.line(box, fill=MARK, width=2)
        draw.line([box[0], box[3], box[2], box[1]], fill=MARK, width=2)
    return np.asarray(image)


def head_at(x: float, y: float, layers: int, heads: int) -> tuple[int, int]:
    """The head (l, j) under pixel (x, y) of head_switchboard's picture (clamped to the grid)."""
    pitch = head_grid_cell(heads) + GAP
    return min(max(int(y) // pitch, 0), layers - 1) + 1, min(max(int(x) // pitch, 0), heads - 1)


def _importance_heatmap(values: np.ndarray, zmax: float, name: str, show_scale: bool) -> go.Heatmap:
    L, h = values.shape
    return go.Heatmap(z=values, x=np.arange(1, h + 1), y=np.arange(1, L + 1), zmin=-zmax, zmax=zmax, zmid=0,
                      colorscale="RdBu_r", showscale=show_scale, name=name,
                      colorbar=dict(title=dict(text="drop in p"), tickformat=".0%"),
                      hovertemplate=f"{name}<br>layer %{{y}} · head %{{x}}: %{{z:.2%}}<extra></extra>")


def head_importance(exact, estimate, class_name: str, agreement: tuple[float, float] | None = None) -> go.Figure:
    """What each head is worth for a class: the drop in its probability when head (l, j) alone is switched off,
    (L, h), beside its first-order estimate (attribution patching; None: the exact map alone), with how well the two
    agree over the heads (Pearson's r, Spearman's ρ). Red: the class needs the head; blue: it does better without."""
    exact = np.asarray(exact, dtype=np.float32)  # (L, h)
    L, h = exact.shape
    panels = [("switched off (exact)", exact)]
    if estimate is not None:
        panels.append(("first-order estimate", np.asarray(estimate, dtype=np.float32)))
    zmax = max(max(float(np.nanmax(np.abs(v))) for _, v in panels), 1e-6)
    figure = make_subplots(rows=1, cols=len(panels), subplot_titles=[name for name, _ in panels],
                           horizontal_spacing=0.08)
    for column, (name, values) in enumerate(panels, start=1):
        figure.add_trace(_importance_heatmap(values, zmax, name, column == 1), row=1, col=column)
        figure.update_xaxes(title_text="head", dtick=1 if h <= 16 else 2, row=1, col=column)
        figure.update_yaxes(title_text="layer" if column == 1 else None, autorange="reversed",
                            dtick=1 if L <= 16 else 2, row=1, col=column)
    top = np.unravel_index(int(np.nanargmax(exact)), exact.shape)
    title = (f"What each head is worth for {class_name}: the drop in p({class_name}) with that head alone off "
             f"(most: layer {top[0] + 1} head {top[1] + 1}, {exact[top]:.1%})")
    if agreement is not None:
        title += f" · estimate against exact: Pearson r = {agreement[0]:.2f}, Spearman ρ = {agreement[1]:.2f}"
    figure.update_layout(title=dict(text=wrap_title(title), x=0.01, xanchor="left", font=dict(size=14)),
                         height=int(np.clip(160 + 22 * L, 320, 760)), template=_TEMPLATE,
                         margin=dict(l=50, r=20, t=110, b=40))
    return figure


def attention_distance_pair(distances, labels: tuple[str, str], patch_sizes: tuple[int, int],
                            image_sizes: tuple[int, int]) -> go.Figure:
    """Fig. 7 right for two models (or two images) on one plot: each head's mean attention distance (pixels) against
    its layer, A and B in two colours, each with its uniform-attention line."""
    traces = []
    depth = 1
    for distance, label, colour, patch, size, shift in zip(distances, labels, COMPARE_COLOURS, patch_sizes,
                                                           image_sizes, (-0.12, 0.12)):
        distance = np.asarray(distance, dtype=np.float32)  # (L, h)
        L, h = distance.shape
        depth = max(depth, L)
        traces.append(go.Scatter(
            x=np.repeat(np.arange(1, L + 1), h) + shift, y=distance.ravel(), mode="markers", name=label,
            customdata=np.tile(np.arange(1, h + 1), L), marker=dict(size=7, color=colour, opacity=0.8),
            hovertemplate=f"{label}<br>layer %{{x:.0f}} · head %{{customdata}}: %{{y:.1f}} px<extra></extra>"))
        uniform = _uniform_attention_distance(int(size) // int(patch), int(patch))
        traces.append(go.Scatter(x=[0.5, L + 0.5], y=[uniform, uniform], mode="lines", showlegend=False,
                                 line=dict(color=colour, dash="dot", width=1),
                                 hovertemplate=f"{label}: uniform attention, {uniform:.1f} px<extra></extra>"))
    return _figure(traces, "Mean attention distance per head, A and B on one plot (Fig. 7 right)", 420,
                   xaxis=dict(range=[0.5, depth + 0.5], title=dict(text="network depth (layer)"),
                              dtick=max(1, depth // 12)),
                   yaxis=dict(title=dict(text="mean attention distance (pixels)"), rangemode="tozero"),
                   legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom"))


def predictions_pair(probabilities, class_names, labels: tuple[str, str], k: int = 5) -> go.Figure:
    """Two predictions side by side (two images, or two models with their own classes): each one's top k."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=list(labels), horizontal_spacing=0.25)
    for column, (p, names, colour) in enumerate(zip(probabilities, class_names, COMPARE_COLOURS), start=1):
        p = np.asarray(p, dtype=np.float32).reshape(-1)  # (K,)
        top = ranking(p, k)
        shown = [str(names[i]) if i < len(names) else str(i) for i in top]
        figure.add_trace(go.Bar(x=p[top], y=np.arange(top.size), orientation="h", marker_color=colour,
                                text=[f"{100 * v:.1f}%" for v in p[top]], textposition="outside", cliponaxis=False,
                                customdata=np.asarray(shown, dtype=object), showlegend=False,
                                hovertemplate="%{customdata}: %{x:.2%}<extra></extra>"), row=1, col=column)
        figure.update_xaxes(range=[0, 1.2], tickformat=".0%", row=1, col=column)
        figure.update_yaxes(tickvals=list(range(top.size)), ticktext=shown, autorange=False,
                            range=[top.size - 0.5, -0.5], automargin=True, row=1, col=column)
    figure.update_layout(title=dict(text="Prediction: A and B side by side", x=0.01, xanchor="left",
                                    font=dict(size=14)), height=int(np.clip(90 + 40 * k, 200, 600)),
                         template=_TEMPLATE, margin=dict(l=10, r=20, t=70, b=30))
    return figure


def side_by_side(first: np.ndarray, second: np.ndarray, height: int = 224, gap: int = 8) -> np.ndarray:
    """Two pictures (H, W, 3) in [0, 1] or uint8, each scaled to `height` pixels high, side by side on white: uint8."""
    scaled = []
    for picture in (first, second):
        picture = np.asarray(picture)
        if picture.dtype != np.uint8:
            picture = (np.clip(picture, 0, 1) * 255).round().astype(np.uint8)
        if picture.ndim == 2 or picture.shape[-1] == 1:
            picture = np.repeat(picture.reshape(picture.shape[0], picture.shape[1], 1), 3, axis=-1)
        image = Image.fromarray(picture)
        width = max(1, round(image.width * height / image.height))
        resample = Image.Resampling.NEAREST if image.height < 100 else Image.Resampling.BILINEAR
        scaled.append(np.asarray(image.resize((width, height), resample)))
    out = np.full((height, scaled[0].shape[1] + gap + scaled[1].shape[1], 3), 255, np.uint8)
    out[:, :scaled[0].shape[1]] = scaled[0]
    out[:, scaled[0].shape[1] + gap:] = scaled[1]
    return out
