"""Explanations beyond attention as figures: faithfulness curves (deletion, insertion) and one prediction against
another (fewer patches, another resolution)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from ..common import ranking
from .base import _figure, _note_figure, wrap_title
from .prediction import top_k


FAITHFULNESS_COLOURS = {"relevance": "#d62728", "grad_cam": "#ff7f0e", "rollout": "#1f77b4", "attention": "#2ca02c",
                        "random": "#7f7f7f"}


def faithfulness(deletion, insertion, target_name: str, *, narrow: bool = False) -> go.Figure:
    """Deletion and insertion curves (Petsiuk et al. 2018), side by side (`narrow`: one above the other, each as
    wide as a phone): the target's probability as patches leave
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
    probability = dict(range=[0, 1.02], title=dict(text="probability"))
    if narrow:  # deletion above insertion, the legend under both
        return _figure(traces, f"Which map to trust: p({target_name}) as patches leave (top) or enter (bottom) the "
                       f"sequence, most relevant first", 860,
                       xaxis=dict(domain=[0, 1], anchor="y", title=dict(text="patches removed"), **axis),
                       xaxis2=dict(domain=[0, 1], anchor="y2", title=dict(text="patches present"), **axis),
                       yaxis=dict(domain=[0.6, 1], anchor="x", **probability),
                       yaxis2=dict(domain=[0, 0.4], anchor="x2", **probability),
                       legend=dict(orientation="h", x=0, y=-0.12, yanchor="top", font=dict(size=11)),
                       margin=dict(l=50, r=10, t=40, b=200))
    return _figure(traces, f"Which map to trust: p({target_name}) as patches leave (left) or enter (right) the "
                   f"sequence, most relevant first", 400,
                   xaxis=dict(domain=[0, 0.47], title=dict(text="patches removed"), **axis),
                   xaxis2=dict(domain=[0.53, 1], title=dict(text="patches present"), **axis),
                   yaxis=dict(anchor="x", **probability),
                   yaxis2=dict(range=[0, 1.02], anchor="x2"),
                   legend=dict(orientation="h", x=0, y=-0.2, yanchor="top", font=dict(size=11)),
                   margin=dict(l=50, r=20, t=40, b=110))


def faithfulness_pending(target_name: str) -> go.Figure:
    """What the faithfulness view shows while its curves are computed (they follow, with a progress bar)."""
    return _note_figure(f"Which map to trust: p({target_name}) as patches leave or enter the sequence",
                        "Computing the deletion and insertion curves: they appear here when done.", 400)


def prediction_change(before, after, class_names: Sequence[str], labels: tuple[str, str], k: int = 5) -> go.Figure:
    """Two predictions of the same image side by side (all patches and fewer; two resolutions): the top-k classes of
    either, ranked by `after` (ties in class order), each with both probabilities. With `after` None, `before`
    alone, titled by labels[0]."""
    before = np.asarray(before, dtype=np.float32).reshape(-1)  # (K,)
    if after is None:
        figure = top_k(before, class_names, k)
        title = f"Prediction, {labels[0]}"
        figure.layout.title.text = wrap_title(title)
        figure.layout.meta = {**(figure.layout.meta or {}), "title": title}  # as _figure keeps it (base.py)
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


