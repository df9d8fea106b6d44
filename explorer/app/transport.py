"""How the figures travel to the browser: `encode(figure)` turns the pictures a figure marks
(explorer.render.base.PICTURE) into data URIs, each in the format its kind compresses best, so that a step of the page
stays within MAX_STEP_BYTES.

    photo         JPEG, quality 90: ~15x faster to encode than PNG, and smaller
    photo tiles   JPEG, quality 95, no chroma subsampling: small tiles that the browser enlarges keep their detail
    drawing       PNG, lossless (zlib level 1: the same pixels, a fast encoder)
    heat map      a palette PNG of COLOUR_LEVELS colours of its scale, one pixel per cell, beside an empty marker trace
                  that carries its colour bar: ViT-B/16's T x D matrices, 1 MB each as numbers, travel in ~130 KB

The figure is changed in place (its other traces and its layout stay as they are) and returned; encoding it again
changes nothing. plotly is imported by the first call, not with this module (the page is built without it).
"""
from __future__ import annotations

import base64
import functools
import io

import numpy as np
from PIL import Image

MAX_STEP_BYTES = 1_000_000  # what one step of the page may send (explorer.render draws large maps as pictures for it)
COLOUR_LEVELS = 64  # colours of a heat map sent as a picture (and one more, white, for its gaps)
PICTURE = "picture"  # the trace's meta key that marks a picture: explorer.render.base.PICTURE
HEATMAP = "heat map"  # the kind of picture that is a go.Heatmap (explorer.render.base.HEATMAP)
ENCODINGS = {  # the other kinds (explorer.render.base): how PIL writes them
    "photo": ("JPEG", dict(quality=90)),
    "photo tiles": ("JPEG", dict(quality=95, subsampling=0)),
    "drawing": ("PNG", dict(compress_level=1)),
    "picker": ("JPEG", dict(quality=92, subsampling=0)),  # a photograph under the patch grid: the grid stays crisp
}


def encoded(rgb: np.ndarray, kind: str) -> bytes:
    """uint8 (h, w, 3) -> the bytes of an image file, in the format `kind` says (ENCODINGS)."""
    format, options = ENCODINGS[kind]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format=format, **options)
    return buffer.getvalue()


def data_uri(rgb: np.ndarray, kind: str) -> str:
    """uint8 (h, w, 3) -> 'data:image/...;base64,...' (what go.Image(source=) takes), encoded as `kind` says."""
    format = ENCODINGS[kind][0].lower()
    return f"data:image/{format};base64," + base64.b64encode(encoded(rgb, kind)).decode("ascii")


def picture_file(rgb: np.ndarray) -> tuple[bytes, str]:
    """A picture the app shows as an image (the patch picker, image views) -> (file bytes, suffix): a drawing (at most
    256 colours: a Fashion-MNIST picker, its grid, the outline) as a lossless PNG, a photograph as a JPEG
    (ViT-B/16's 448 x 448 picker, redrawn on every patch click: 228 KB and 24 ms as PNG, 75 KB and 2 ms as JPEG)."""
    drawing = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).getcolors(256) is not None
    kind = "drawing" if drawing else "picker"
    return encoded(rgb, kind), ".png" if drawing else ".jpg"


def colour_levels(z: np.ndarray, zmin: float, zmax: float, levels: int = COLOUR_LEVELS) -> np.ndarray:
    """Values -> colour levels 0 .. levels - 1 (zmin -> 0, zmax -> levels - 1, clipped); NaN -> `levels` (a gap)."""
    scaled = (np.nan_to_num(z, nan=zmin) - zmin) / max(zmax - zmin, 1e-12) * (levels - 1)
    codes = np.clip(np.round(scaled), 0, levels - 1).astype(np.uint8)
    codes[np.isnan(z)] = levels
    return codes


@functools.lru_cache(maxsize=8)
def palette(colourscale: tuple, levels: int = COLOUR_LEVELS) -> tuple[int, ...]:
    """`levels` colours sampled evenly from a plotly colour scale ((position, colour), ...), then white (for gaps), as
    PIL's flat palette (r, g, b, r, g, b, ...)."""
    import plotly.colors

    scale = [list(pair) for pair in colourscale]
    samples = plotly.colors.sample_colorscale(scale, list(np.linspace(0.0, 1.0, levels)), colortype="tuple")
    colours = [tuple(int(round(v if v > 1 else v * 255)) for v in colour) for colour in samples]
    return tuple(channel for colour in colours + [(255, 255, 255)] for channel in colour)


def _heatmap_as_picture(heatmap) -> list:
    """A go.Heatmap marked as a picture -> [the go.Image of its colours, an empty go.Scatter carrying its colour bar]."""
    import plotly.graph_objects as go

    zmin, zmax = float(heatmap.zmin), float(heatmap.zmax)
    picture = Image.fromarray(colour_levels(np.asarray(heatmap.z, dtype=np.float32), zmin, zmax), mode="P")
    picture.putpalette(palette(tuple(map(tuple, heatmap.colorscale))))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=6)
    source = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    hover = dict(hovertemplate=heatmap.hovertemplate) if heatmap.hovertemplate else dict(hoverinfo="skip")
    image = go.Image(source=source, x0=heatmap.x0, dx=heatmap.dx, y0=heatmap.y0, dy=heatmap.dy, **hover)
    scale = go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                       marker=dict(colorscale=heatmap.colorscale, cmin=heatmap.zmin, cmax=heatmap.zmax, color=[zmin],
                                   showscale=True, colorbar=heatmap.colorbar.to_plotly_json()))
    return [image, scale]


def _image_as_picture(image, kind: str) -> list:
    """A go.Image holding its pixels in z -> [the same go.Image with the pixels as a data URI]."""
    import plotly.graph_objects as go

    props = {key: value for key, value in image.to_plotly_json().items() if key not in ("z", "meta", "type")}
    return [go.Image(source=data_uri(np.asarray(image.z), kind), **props)]


def encode(figure):
    """`figure` (a plotly Figure, or any other value, returned as it is) with its marked pictures encoded, each trace
    replaced in its place."""
    if not hasattr(figure, "add_traces"):  # not a plotly Figure
        return figure
    replaced = {}  # trace index -> the traces sent instead
    for i, trace in enumerate(figure.data):
        kind = trace.meta.get(PICTURE) if isinstance(trace.meta, dict) else None
        if kind == HEATMAP:
            replaced[i] = _heatmap_as_picture(trace)
            figure.layout.meta = {**(figure.layout.meta or {}), "levels": COLOUR_LEVELS}
        elif kind is not None:
            replaced[i] = _image_as_picture(trace, kind)
    if replaced:
        count = len(figure.data)
        figure.add_traces([t for i in sorted(replaced) for t in replaced[i]])
        sent = iter(figure.data[count:])
        figure.data = [t for i, trace in enumerate(figure.data[:count])
                       for t in ([next(sent) for _ in replaced[i]] if i in replaced else [trace])]
    return figure
