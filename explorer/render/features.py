"""A backbone's output as figures (explorer.features' arrays): the principal components of the patch features as colours
over the image (the DINOv2 paper's figure), one patch's cosine similarity to every patch, and how far the output y
moved when something changed."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .base import (_OUTLINE, _TRANSPARENT, SIMILARITY_COLOURS, _as_image, _dimmed, _display_size, _figure,
                   _image_axes, _image_trace, _labels_trace, _note_figure, _outlines, _resize, _to_uint8)


def _panels(pictures: list[np.ndarray], labels: list[str], narrow: bool) -> tuple[list, list, dict, float | None]:
    """Same-sized pictures (h, w, 3) in [0, 1] side by side (`narrow`: one under another), labelled above: (traces,
    top-left corners (x, y), image axes, fit)."""
    h, w = pictures[0].shape[:2]
    n = len(pictures)
    if narrow:
        gap = max(3, round(0.1 * w))
        canvas = np.full((n * h + (n - 1) * gap, w, 3), 1.0, dtype=np.float32)  # (n h + gaps, w, 3)
        corners = [(0, k * (h + gap)) for k in range(n)]
    else:
        gap = max(4, w // 20)
        canvas = np.full((h, n * w + (n - 1) * gap, 3), 1.0, dtype=np.float32)  # (h, n w + gaps, 3)
        corners = [(k * (w + gap), 0) for k in range(n)]
    for (x, y), picture in zip(corners, pictures):
        canvas[y: y + h, x: x + w] = picture
    above = max(2, round(0.06 * w)) if narrow else max(6, h // 10)  # room for the labels
    traces = [_image_trace(_to_uint8(canvas), 0, 0, canvas.shape[1], canvas.shape[0]),
              _labels_trace([x + w / 2 for x, _ in corners], [y for _, y in corners], labels)]
    fit = (canvas.shape[0] + above) / w if narrow else None
    return traces, corners, _image_axes((0, canvas.shape[1]), (-above, canvas.shape[0])), fit


def _over_grid(values: np.ndarray, corner: tuple[int, int], size: tuple[int, int], hover: str, **heatmap) -> go.Heatmap:
    """A heat map of `values` (gh, gw) over the picture at `corner` of `size` (h, w), patch numbers in its hover."""
    gh, gw = values.shape[:2]
    (x, y), (h, w) = corner, size
    patch = np.arange(gh * gw, dtype=np.int32).reshape(gh, gw)
    return go.Heatmap(z=np.asarray(values, dtype=np.float32), customdata=patch, x0=x + w / gw / 2, dx=w / gw,
                      y0=y + h / gh / 2, dy=h / gh, hovertemplate=hover, **heatmap)


def feature_pca(image, components, explained, *, narrow: bool = False) -> go.Figure:
    """The input, the first three principal components of its patch features as RGB (each scaled to [0, 1] over the
    patches; one colour per patch, enlarged to the image) and those colours over the input: (H, W, 3) image,
    components (gh, gw, 3), explained (3,) the share of the variance of each."""
    image = _as_image(image)  # (H, W, 3)
    components = np.clip(np.asarray(components, dtype=np.float32), 0, 1)  # (gh, gw, 3)
    h, w = _display_size(*image.shape[:2])
    shown = _resize(_to_uint8(image), w, h).astype(np.float32) / 255.0  # (h, w, 3)
    colours = _resize(_to_uint8(components), w, h).astype(np.float32) / 255.0  # (gh, gw, 3) -> (h, w, 3), nearest
    traces, corners, axes, fit = _panels([shown, colours, 0.45 * shown + 0.55 * colours],
                                         ["input", "components 1-3 as RGB", "over the input"], narrow)
    traces.append(_over_grid(np.zeros(components.shape[:2]), corners[1], (h, w), "patch %{customdata}<extra></extra>",
                             colorscale=_TRANSPARENT, showscale=False))  # hover only: the patch under the pointer
    shares = ", ".join(f"{share:.0%}" for share in np.asarray(explained, dtype=np.float64).reshape(-1))
    title = f"The patch features' principal components 1-3 as red, green, blue ({shares} of their variance)"
    return _figure(traces, title, 360, fit=fit, meta=dict(kind="feature_pca", panel=[h, w]), **axes)


def patch_similarity(image, similarity, selected: int, *, narrow: bool = False) -> go.Figure:
    """The input with patch `selected` outlined, and the cosine similarity of its features to every patch's (gh, gw),
    from -1 (blue) to 1 (red), over the input dimmed."""
    image = _as_image(image)  # (H, W, 3)
    similarity = np.asarray(similarity, dtype=np.float32)  # (gh, gw)
    gh, gw = similarity.shape
    h, w = _display_size(*image.shape[:2])
    shown = _resize(_to_uint8(image), w, h).astype(np.float32) / 255.0  # (h, w, 3)
    traces, corners, axes, fit = _panels([shown, _dimmed(shown)], ["input", "cosine similarity"], narrow)
    traces.append(_over_grid(similarity, corners[1], (h, w), "patch %{customdata} · cos %{z:.3f}<extra></extra>",
                             colorscale=SIMILARITY_COLOURS, zmin=-1, zmax=1, opacity=0.85,
                             colorbar=dict(title=dict(text="cos", side="right"), thickness=10)))
    row, column = divmod(int(selected), gw)
    cell_w, cell_h = w / gw, h / gh
    outlines = _outlines(np.array([x + column * cell_w for x, _ in corners]),
                         np.array([y + row * cell_h for _, y in corners]), cell_w, cell_h, _OUTLINE)
    title = f"Cosine similarity of patch {int(selected)}'s features to every patch's"
    return _figure(traces, title, 360, fit=fit, shapes=[outlines],
                   meta=dict(kind="patch_similarity", panel=[h, w], selected=int(selected)), **axes)


def output_change(y, y_changed, labels: tuple[str, str], cosine: float | None = None,
                  relative: float | None = None) -> go.Figure:
    """A backbone's output y (D,) before and after a change, one point per feature (on the diagonal: unchanged), titled
    with cos(y, y') and |y' - y| / |y|. With `y_changed` None, a note that says labels[0]."""
    if y_changed is None:
        return _note_figure("The output y: no change yet", labels[0])
    y = np.asarray(y, dtype=np.float32).reshape(-1)  # (D,)
    y_changed = np.asarray(y_changed, dtype=np.float32).reshape(-1)  # (D,)
    low = float(min(y.min(), y_changed.min()))
    high = float(max(y.max(), y_changed.max()))
    features = np.arange(y.size, dtype=np.int32)
    traces = [go.Scatter(x=[low, high], y=[low, high], mode="lines", line=dict(color="#bbbbbb", dash="dot"),
                         hoverinfo="skip", showlegend=False),
              go.Scatter(x=y, y=y_changed, customdata=features, mode="markers", marker=dict(size=5, color="#1f77b4"),
                         showlegend=False, hovertemplate=f"feature %{{customdata}}: %{{x:.3f}} ({labels[0]}) → "
                                                         f"%{{y:.3f}} ({labels[1]})<extra></extra>")]
    measured = cosine is not None and relative is not None
    title = (f"cos(y, y′) = {cosine:.3f}, |y′ − y| / |y| = {relative:.2f}: the output y, " if measured
             else "The output y, ") + f"{labels[0]} against {labels[1]}"
    return _figure(traces, title, 360, xaxis=dict(title=labels[0]), yaxis=dict(title=labels[1]),
                   meta=dict(kind="output_change", **(dict(cosine=cosine, relative=relative) if measured else {})))


def note(title: str, text: str) -> go.Figure:
    """A figure that only says something: what a view has nothing to draw for (a backbone's classes)."""
    return _note_figure(title, text, 200)
