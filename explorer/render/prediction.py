"""Eq. 4's prediction as figures: the top-k classes and the logit lens (the prediction layer by layer)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from ..common import equally_likely, ranking
from .base import _figure


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


def logit_lens(probabilities, class_names: Sequence[str], top_indices: Sequence[int], *,
               pooled: str = "class token") -> go.Figure:
    """How the prediction forms: the `pooled` output (the class token; the mean of the patches) after layer l = 0..L
    sent through the final LN and head (Eq. 4)."""
    probabilities = np.asarray(probabilities, dtype=np.float32)  # (L + 1, K)
    L1 = probabilities.shape[0]
    layers = np.arange(L1)
    traces = [
        go.Scatter(x=layers, y=probabilities[:, int(i)], mode="lines+markers", name=str(class_names[int(i)]),
                   hovertemplate=f"{class_names[int(i)]} · after layer %{{x}}: %{{y:.2%}}<extra></extra>")
        for i in np.asarray(top_indices).reshape(-1)
    ]
    return _figure(traces, f"How the prediction forms: {pooled} after each layer → LN → head", 380,
                   xaxis=dict(title=dict(text="layer l (0 = z<sub>0</sub>)"), range=[-0.3, L1 - 0.7],
                              dtick=max(1, L1 // 12)),
                   yaxis=dict(title=dict(text="probability"), range=[0, 1.02], tickformat=".0%"),
                   legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"),
                   margin=dict(l=50, r=20, t=80, b=40))


