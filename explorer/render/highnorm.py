"""High-norm tokens (Darcet et al. 2023) as figures: every token's norm layer by layer with the outlier patches marked,
the last layer's outliers on the image, and where the class token's attention goes, layer by layer."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ..tokens import TokenLayout
from .base import (SEQUENTIAL_COLOURS, _MAX_HOVER_CELLS, _alpha_colourscale, _as_image, _dimmed,
                   _display_size, _figure, _heatmap_picture, _image_axes, _image_trace, _outlines, _resize, _to_uint8)

TOP_RATIO = 4.0  # the colour scale's top, in medians: twice the least outlier (explorer.highnorm: 2 x the median)
_MARK = "#ff2d95"  # outlier marks: apart from Viridis's yellow and the query's cyan
# where the query's attention goes (explorer.highnorm.MASSES) -> (line name, colour)
MASS_LINES = {"registers": ("to the registers", "#636efa"), "outliers": ("to the outlier patches", _MARK),
              "patches": ("to the other patches", "#00a86b"),
              "prefix": ("to itself and the other prefix tokens", "#777")}


def _relative(norms, layout: TokenLayout) -> np.ndarray:
    """||z_l|| of every token over the median patch token's of that layer: (L + 1, T) -> (L + 1, T)."""
    norms = np.asarray(norms, dtype=np.float64)  # (L + 1, T)
    median = np.median(layout.patches(norms, -1), axis=-1, keepdims=True)  # (L + 1, 1)
    return norms / np.maximum(median, 1e-12)


def token_norm_layers(norms, outliers, layout: TokenLayout, rule: str, *, narrow: bool = False) -> go.Figure:
    """Layers x tokens: ||z_l|| of every token (prefix tokens by label, then the patches) over the layer's median patch
    norm, z_0 at the top; each outlier patch (`outliers` (L + 1, N)) circled."""
    norms = np.asarray(norms, dtype=np.float32)  # (L + 1, T)
    outliers = np.asarray(outliers, dtype=bool)  # (L + 1, N)
    L1, T = norms.shape
    relative = _relative(norms, layout).astype(np.float32)  # (L + 1, T)
    colour_title = f"‖z‖ / median patch (≥ {TOP_RATIO:g}: top colour)"
    hover = relative.size <= _MAX_HOVER_CELLS  # else (ViT-H/14 at 518) a picture of the colours, hover on the marks
    # the x axis: a category per token ("CLS", "REG1", .., "patch 0", ..), or the token index under a picture
    xs = layout.labels() if hover else list(range(T))
    if not hover:
        traces = _heatmap_picture(relative, SEQUENTIAL_COLOURS, 0.0, TOP_RATIO, colourbar_title=colour_title)
    else:
        traces = [go.Heatmap(z=relative, x=xs, customdata=norms, colorscale=SEQUENTIAL_COLOURS, zmin=0,
                             zmax=TOP_RATIO, colorbar=dict(title=dict(text=colour_title, side="right"), thickness=10),
                             hovertemplate="z<sub>%{y}</sub> · %{x}: ‖z‖ = %{customdata:.2f} "
                                           "(%{z:.2f} × the median patch)<extra></extra>")]
    layer, patch = np.nonzero(outliers)  # (marks,)
    tokens = [layout.patch_token(int(i)) for i in patch]
    traces.append(go.Scatter(  # on a phone the rule is too long for the legend: it is in the step's text
        x=[xs[t] for t in tokens], y=layer, mode="markers", name="outlier patch" if narrow else f"outlier patch: {rule}",
        showlegend=True, marker=dict(symbol="circle-open", size=9, color=_MARK, line=dict(width=2)),
        customdata=norms[layer, tokens] if tokens else None,
        hovertemplate="z<sub>%{y}</sub> · token %{x}: outlier, ‖z‖ = %{customdata:.2f}<extra></extra>"))
    step = max(1, int(np.ceil((T - layout.num_prefix) / (6 if narrow else 10))))
    # patch 0 is left unlabelled after prefix tokens: its number would run into theirs
    patch_ticks = list(layout.patch_tokens())[step if layout.num_prefix else 0::step]
    ticks, texts = _prefix_ticks(layout, T, narrow), [layout.label(t).removeprefix("patch ") for t in patch_ticks]
    ticks, texts = [t for t, _ in ticks] + patch_ticks, [text for _, text in ticks] + texts
    prefix = ", ".join(layout.prefix_labels) or "none"
    height, margin = min(900, (260 if narrow else 200) + 22 * L1), dict(l=50, r=20, t=60, b=130 if narrow else 100)
    below_axis = 56 / (height - margin["t"] - margin["b"])  # the legend under the tick labels and the axis title
    return _figure(
        traces, f"Token norms ‖z<sub>l</sub>‖ layer by layer, outlier patches circled ({int(outliers[-1].sum())} in "
                f"the last layer)", height,
        xaxis=dict(title=dict(text=f"token (prefix: {prefix}; then patches by index)"), showgrid=False,
                   zeroline=False, range=[-0.5, T - 0.5], ticktext=texts, tickvals=[xs[t] for t in ticks],
                   tickangle=0),
        yaxis=dict(title=dict(text="z<sub>l</sub>"), autorange="reversed", dtick=max(1, L1 // 12), showgrid=False,
                   zeroline=False),
        legend=dict(orientation="h", x=0, y=-below_axis, yanchor="top"), margin=margin,
        meta=dict(kind="token_norm_layers"))


def _prefix_ticks(layout: TokenLayout, T: int, narrow: bool) -> list[tuple[int, str]]:
    """(token, tick text) for the prefix tokens: each by its label (registers as R1..Rk) where the axis has room for
    them, else one tick "CLS..REG4" in their middle."""
    labels = layout.prefix_labels
    if not labels:
        return []
    if T <= (16 if narrow else 40):
        return [(t, label.replace("REG", "R")) for t, label in enumerate(labels)]
    text = labels[0] if len(labels) == 1 else f"{labels[0]}..{labels[-1]}"
    return [((len(labels) - 1) // 2, text)]


def outliers_on_image(image, patch_norms, outliers, title: str, *, narrow: bool = False) -> go.Figure:
    """The input (dimmed) under one layer's patch norms (patch_norms (gh, gw)) over their median, each outlier patch
    (`outliers` (gh, gw)) outlined."""
    image = _as_image(image)  # (H, W, 3)
    patch_norms = np.asarray(patch_norms, dtype=np.float64)  # (gh, gw)
    ratio = (patch_norms / max(float(np.median(patch_norms)), 1e-12)).astype(np.float32)  # (gh, gw)
    marked = np.asarray(outliers, dtype=bool)  # (gh, gw)
    gh, gw = ratio.shape
    h, w = _display_size(*image.shape[:2])
    shown = _dimmed(_resize(_to_uint8(image), w, h).astype(np.float32) / 255.0)  # (h, w, 3)
    patch = np.arange(gh * gw, dtype=np.int32).reshape(gh, gw)
    traces = [
        _image_trace(_to_uint8(shown), -0.5, -0.5, gw, gh),  # the image over the grid's cells
        go.Heatmap(z=ratio, customdata=patch, colorscale=_alpha_colourscale(SEQUENTIAL_COLOURS, 0.1, 0.85),
                   zmin=0, zmax=TOP_RATIO,
                   colorbar=dict(title=dict(text="‖z‖ / median", side="right"), thickness=10),
                   hovertemplate="patch %{customdata}: ‖z‖ = %{z:.2f} × the median patch<extra></extra>"),
    ]
    rows, cols = np.nonzero(marked)
    shapes = [_outlines(cols - 0.5, rows - 0.5, 1, 1, colour=_MARK, line_width=3)] if rows.size else []
    return _figure(traces, title, 380, fit=gh / gw if narrow else None, shapes=shapes,
                   meta=dict(kind="outliers_on_image", outliers=(rows * gw + cols).tolist()),
                   **_image_axes((-0.5, gw - 0.5), (-0.5, gh - 0.5)))


def attention_masses(masses: dict, query: str, registers: int, *, narrow: bool = False) -> go.Figure:
    """Per layer l = 1..L, the query's attention (mean over heads) to the registers, to the outlier patches of the
    stream it reads, to the other patches and to the prefix tokens that are not registers: one line each, `masses`
    {kind: (L,)} as explorer.highnorm computes them (a model without registers: no register line)."""
    L = len(next(iter(masses.values())))
    layers = np.arange(1, L + 1)
    traces = []
    for kind, (name, colour) in MASS_LINES.items():
        if kind == "registers" and not registers:
            continue
        traces.append(go.Scatter(x=layers, y=np.asarray(masses[kind], dtype=np.float64), mode="lines+markers",
                                 name=name, line=dict(color=colour),
                                 hovertemplate=f"layer %{{x}}: {name} %{{y:.3f}}<extra></extra>"))
    # the legend under the plot: above it, its lines run into a title of two lines in a half-width chart
    return _figure(traces, f"Where the attention of {query} goes, layer by layer (mean over heads)",
                   500 if narrow else 460,
                   legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"), margin=dict(l=50, r=10, t=80, b=140),
                   xaxis=dict(title=dict(text="layer l"), dtick=max(1, L // 12), range=[0.7, L + 0.3]),
                   yaxis=dict(title=dict(text="share of the attention row"), range=[0, 1.02]))
