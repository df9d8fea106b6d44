"""The residual stream of Eq. 2-3 as figures: token norms layer by layer, what each block adds, LayerNorm's effect."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from ..tokens import TokenLayout
from .base import SEQUENTIAL_COLOURS, _figure, _label_gap, _labels_trace, _mosaic, _robust_max, _tile_origins


def token_norms(norms, grid: tuple[int, int], layout: TokenLayout = TokenLayout(), *, narrow: bool = False) -> go.Figure:
    """||z_l|| of every token for l = 0..L: patch tokens as maps over the grid, seven to a row (`narrow`: three), each
    prefix token (CLS, DIST, REG1..REGk) as a line named by its label; `layout` says which tokens precede the patches."""
    norms = np.asarray(norms, dtype=np.float32)  # (L + 1, T)
    L1, T = norms.shape
    gh, gw = int(grid[0]), int(grid[1])
    maps = layout.patches(norms, -1).reshape(L1, gh, gw)  # (L + 1, N) -> (L + 1, gh, gw)
    per_row = min(L1, 3 if narrow else 7)
    gy, gx = _label_gap(gh), max(1, round(0.1 * gw))
    z = _mosaic(maps, per_row, (gy, gx))
    layer = np.broadcast_to(np.arange(L1, dtype=np.int16)[:, None, None], maps.shape)
    patch = np.broadcast_to(np.arange(gh * gw, dtype=np.int16).reshape(1, gh, gw), maps.shape)
    customdata = _mosaic(np.stack([layer, patch], -1), per_row, (gy, gx), fill=np.int16(0))  # (.., .., 2)
    traces = [go.Heatmap(
        z=z, customdata=customdata, colorscale=SEQUENTIAL_COLOURS, zmin=0, zmax=_robust_max(maps),
        hoverongaps=False, colorbar=dict(title=dict(text="‖z‖", side="top"), thickness=10, orientation="h", len=1,
                                         x=0, xanchor="left", y=0.47, yanchor="top") if narrow  # under the maps
        else dict(title=dict(text="‖z‖", side="right"), thickness=10, len=0.6, y=1, yanchor="top"),
        hovertemplate="z<sub>%{customdata[0]}</sub> · patch %{customdata[1]}: ‖z‖ = %{z:.2f}<extra></extra>",
    )]
    top, left = _tile_origins(L1, per_row, (gh + gy, gw + gx))
    traces.append(_labels_trace(left + (gw - 1) / 2, top - 0.5, [f"z<sub>{l}</sub>" for l in range(L1)]))
    layers = np.arange(L1)
    for index, label in enumerate(layout.prefix_labels):
        name = "CLS (class token)" if label == "CLS" else label
        traces.append(go.Scatter(x=layers, y=layout.token(norms, index, -1), mode="lines+markers", name=name,
                                 xaxis="x2", yaxis="y2",
                                 hovertemplate=f"z<sub>%{{x}}</sub>: {name} ‖z‖ = %{{y:.2f}}<extra></extra>"))
    traces.append(go.Scatter(x=layers, y=layout.patches(norms, -1).mean(1), mode="lines+markers",
                             name="patch tokens (mean)",
                             xaxis="x2", yaxis="y2", line=dict(dash="dot"),
                             hovertemplate="z<sub>%{x}</sub>: mean patch ‖z‖ = %{y:.2f}<extra></extra>"))
    rows = math.ceil(L1 / per_row)
    common = dict(showgrid=False, zeroline=False, visible=False, constrain="domain")
    # the plot's parts, bottom to top: the class token's line, the legend, (narrow: the colour bar), the maps
    line, legend, maps = ((0.24, 0.30, 0.5) if narrow else (0.3, 0.36, 0.42))
    return _figure(
        traces, "Token norms ‖z<sub>l</sub>‖ through the residual stream (Eq. 2–3)", 360 + rows * 110,
        fit=2 * (z.shape[0] + gy) / z.shape[1] if narrow else None,  # narrow: the maps, the plot's top half
        meta=dict(kind="token_norms", tile=[gh, gw], gap=[gy, gx], per_row=per_row),
        xaxis=dict(range=[-0.5, z.shape[1] - 0.5], domain=[0, 1], **common),
        yaxis=dict(range=[z.shape[0] - 0.5, -gy - 0.5], scaleanchor="x", scaleratio=1, domain=[maps, 1], **common),
        xaxis2=dict(domain=[0, 1], anchor="y2", title=dict(text="layer l (z<sub>0</sub> = embedding output)"),
                    dtick=max(1, L1 // 12)),
        yaxis2=dict(domain=[0, line], anchor="x2", title=dict(text="‖z<sub>l</sub>‖"), rangemode="tozero"),
        legend=dict(orientation="h", x=0, y=legend, yanchor="bottom"),
    )


def _norms(x: np.ndarray) -> np.ndarray:
    """L2 norm over the last axis (einsum: several times faster than np.linalg.norm here)."""
    return np.sqrt(np.einsum("...d,...d->...", x, x))


def residual_updates(z, z_mid, *, narrow: bool = False) -> go.Figure:
    """Per layer: mean over tokens of ||z'_l - z_{l-1}|| (attention's update, Eq. 2), ||z_l - z'_l|| (MLP's, Eq. 3)
    and ||z_l||; the legend above the plot (`narrow`: under it, where its lines do not run into the title)."""
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
    legend, margin = ((dict(y=-0.22, yanchor="top"), dict(l=50, r=10, t=80, b=130)) if narrow
                      else (dict(y=1.02, yanchor="bottom"), dict(l=50, r=20, t=80, b=40)))
    return _figure(traces, "What each block adds to the residual stream (mean over tokens)", 480 if narrow else 380,
                   xaxis=dict(title=dict(text="layer l"), range=[-0.3, L + 0.3], dtick=max(1, L // 12)),
                   yaxis=dict(title=dict(text="L2 norm"), rangemode="tozero"),
                   legend=dict(orientation="h", x=0, **legend), margin=margin)


def layernorm_effect(before, after, token: int, *, narrow: bool = False, name: str | None = None) -> go.Figure:
    """LN in Eq. 2-3: one token's D values before and after LayerNorm (normalise, then scale by γ, shift by β), side
    by side (`narrow`: one above the other). `name` names the token in the title ("REG2 (token 2)"; None: the paper's
    numbering, token 0 the class token)."""
    before = np.asarray(before, dtype=np.float32)  # (T, D)
    after = np.asarray(after, dtype=np.float32)  # (T, D)
    x, y = before[int(token)], after[int(token)]  # (D,)
    traces = [
        go.Histogram(x=x, nbinsx=60, name="before LN", marker_color="#636efa", xaxis="x", yaxis="y",
                     hovertemplate="%{x}: %{y} values<extra>before</extra>"),
        go.Histogram(x=y, nbinsx=60, name="after LN", marker_color="#ef553b", xaxis="x2", yaxis="y2",
                     hovertemplate="%{x}: %{y} values<extra>after</extra>"),
    ]
    # each plot's place: (x domain, y domain); its caption at the top left of it
    (x1, y1), (x2, y2) = ((([0, 1], [0.6, 1]), ([0, 1], [0, 0.4])) if narrow
                          else (([0, 0.45], [0, 1]), ([0.55, 1], [0, 1])))
    annotations = [
        dict(text=f"{when} LN: mean {values.mean():.3g}, std {values.std():.3g}", x=xd[0], y=yd[1], xref="paper",
             yref="paper", xanchor="left", yanchor="bottom", showarrow=False)
        for when, values, xd, yd in (("before", x, x1, y1), ("after", y, x2, y2))]
    if name is None:
        name = "the class token" if int(token) == 0 else f"token {int(token)} (patch {int(token) - 1})"
    return _figure(traces, f"LayerNorm on {name}: {x.size} values", 560 if narrow else 320, annotations=annotations,
                   showlegend=False, bargap=0.05, margin=dict(l=40, r=20, t=70, b=40),
                   xaxis=dict(domain=x1, title=dict(text="value")),
                   yaxis=dict(domain=y1, title=dict(text="count")),
                   xaxis2=dict(domain=x2, anchor="y2", title=dict(text="value")),
                   yaxis2=dict(domain=y2, anchor="x2", **(dict(title=dict(text="count")) if narrow else {})))


