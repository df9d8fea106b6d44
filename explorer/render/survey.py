"""This image against a data set (a survey by explorer.survey) as figures: attention distance and rollout."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .base import ATTENTION_COLOURS, SEQUENTIAL_COLOURS, _figure, _image_axes, _labels_trace, _note_figure
from .attention import _uniform_attention_distance


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


def rollout_survey(rollout_map, mean_map, images: int, *, narrow: bool = False) -> go.Figure:
    """This image's rollout map (Fig. 6, scaled to a maximum of 1) beside (`narrow`: above) the survey's average of
    such maps."""
    maps = [np.asarray(rollout_map, dtype=np.float32), np.asarray(mean_map, dtype=np.float32)]  # 2 x (gh, gw)
    gh, gw = maps[0].shape
    gap = max(1, gw // 6) if not narrow else max(2, gh // 5)  # narrow: room for the second map's label
    # map k's top-left cell: (0, k (gw + gap)) side by side, (k (gh + gap), 0) one above the other
    corners = [(k * (gh + gap), 0) if narrow else (0, k * (gw + gap)) for k in range(2)]
    z = np.full((2 * gh + gap, gw) if narrow else (gh, 2 * gw + gap), np.nan, dtype=np.float32)
    patch = np.full(z.shape, -1, dtype=np.int32)
    for (y, x), values in zip(corners, maps):
        z[y: y + gh, x: x + gw] = values
        patch[y: y + gh, x: x + gw] = np.arange(gh * gw).reshape(gh, gw)
    traces = [go.Heatmap(z=z, customdata=patch, colorscale=ATTENTION_COLOURS, zmin=0, zmax=1, hoverongaps=False,
                         colorbar=dict(title=dict(text="rollout / max", side="right"), thickness=10),
                         hovertemplate="patch %{customdata} · %{z:.3f}<extra></extra>"),
              _labels_trace([x + (gw - 1) / 2 for _, x in corners], [y - 0.8 for y, _ in corners],
                            ["this image", f"mean over {images:,} images"])]
    return _figure(traces, "Attention rollout: this image and the data set's average", 340,
                   fit=(z.shape[0] + 1) / z.shape[1] if narrow else None,
                   **_image_axes((-0.5, z.shape[1] - 0.5), (-1.5, z.shape[0] - 0.5)))


def no_survey(model: str, command: str) -> go.Figure:
    """Said where a model has no survey on disk."""
    return _note_figure("This image against the data set", f"No survey of {model} on disk: {command}")
