"""explorer.app.transport: the pictures a figure marks travel in the format their kind compresses best (photographs as
JPEG, drawings as lossless PNG, heat maps as a palette PNG beside their colour bar), in place of the trace that held
them; everything else in the figure is left as it was."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from explorer import render
from explorer.app import transport
from explorer.render import base
from test_render import loaded_by


def payload(trace) -> tuple[str, Image.Image]:
    """The format and the picture of a go.Image's data URI."""
    header, data = trace.source.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return header[len("data:image/"):-len(";base64")], Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.mark.parametrize("kind, format, lossless", [(base.PHOTO, "jpeg", False), (base.TILES, "jpeg", False),
                                                    (base.DRAWING, "png", True)])
def test_each_kind_of_picture_travels_in_its_format(kind, format, lossless):
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint8)
    pixels = smooth if not lossless else rng.integers(0, 4, (48, 64, 3), dtype=np.uint8) * 60
    figure = base._figure([base._image_trace(pixels, 0, 0, 64, 48, kind=kind)], "a picture", 300)
    drawn = figure.data[0]
    assert drawn.source is None and np.array_equal(np.asarray(drawn.z), pixels)  # the figure holds pixels
    sent = transport.encode(figure).data[0]
    found, picture = payload(sent)
    assert found == format and sent.z is None and sent.meta is None
    assert (sent.x0, sent.dx, sent.y0, sent.dy, sent.hoverinfo) == (drawn.x0, drawn.dx, drawn.y0, drawn.dy, "skip")
    decoded = np.asarray(picture.convert("RGB")).astype(int)
    if lossless:
        assert np.array_equal(decoded, pixels)
    else:
        assert np.abs(decoded - pixels).mean() < 3


def test_every_kind_of_picture_the_figures_mark_has_an_encoding():
    marked = {base.PHOTO, base.TILES, base.DRAWING, base.HEATMAP}  # what the figure layer marks
    assert marked <= set(transport.ENCODINGS) | {transport.HEATMAP}
    assert set(transport.ENCODINGS) - marked == {"picker"}  # and the app's own image views (picture_file)
    assert transport.PICTURE == base.PICTURE


def test_small_tiles_keep_their_colour_detail():
    """Tiles the browser enlarges go without chroma subsampling: a one-pixel red dot stays red."""
    pixels = np.full((16, 16, 3), 255, dtype=np.uint8)
    pixels[7, 7] = (255, 0, 0)
    uris = {kind: transport.data_uri(pixels, kind) for kind in (base.PHOTO, base.TILES)}
    red = {kind: np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",")[1]))).convert("RGB"))[7, 7]
           for kind, uri in uris.items()}
    assert red[base.TILES][1] < 60 and red[base.TILES][0] > 200
    assert len(uris[base.PHOTO]) <= len(uris[base.TILES])


def test_a_heat_map_travels_as_a_palette_picture_beside_its_colour_bar():
    z = np.linspace(-1, 1, 300 * 200, dtype=np.float32).reshape(300, 200)
    z[5, 5] = np.nan  # a gap
    traces = base._heatmap_picture(z, base.SIMILARITY_COLOURS, -1.0, 1.0, dx=2, dy=3,
                                   hovertemplate="row %{y}<extra></extra>", colourbar_title="cos")
    labels = base._labels_trace([0], [0], ["label"])
    figure = base._figure(traces + [labels], "a heat map", 300, meta=dict(kind="test"))
    assert [t.type for t in figure.data] == ["heatmap", "scatter"]
    numbers = len(figure.to_json())
    sent = transport.encode(figure)
    assert [t.type for t in sent.data] == ["image", "scatter", "scatter"] and sent.data[2].text == ("label",)
    image, bar = sent.data[:2]
    format, picture = payload(image)
    assert format == "png" and picture.mode == "P"
    levels = np.asarray(picture)  # (rows, columns) colour levels
    assert levels.shape == z.shape and levels[5, 5] == transport.COLOUR_LEVELS  # NaN: the white gap colour
    assert levels[0, 0] == 0 and levels[-1, -1] == transport.COLOUR_LEVELS - 1
    assert (image.x0, image.dx, image.y0, image.dy) == (0, 2, 0, 3) and image.hovertemplate == "row %{y}<extra></extra>"
    assert bar.marker.showscale and (bar.marker.cmin, bar.marker.cmax) == (-1, 1)
    assert bar.marker.colorbar.title.text == "cos"
    assert sent.layout.meta == {"kind": "test", "levels": transport.COLOUR_LEVELS}
    assert len(sent.to_json()) < numbers / 5


def test_encoding_twice_changes_nothing_and_other_values_pass_through():
    rng = np.random.default_rng(1)
    figure = transport.encode(render.rollout(rng.random((32, 32, 3)), rng.random((4, 4)), "rollout"))
    once = figure.to_json()
    assert transport.encode(figure).to_json() == once
    json.loads(once)
    for value in ("markdown", None, np.zeros((2, 2, 3), dtype=np.uint8)):
        assert transport.encode(value) is value
    plain = render.top_k(np.array([0.5, 0.3, 0.2]), ["a", "b", "c"])  # no pictures: as it was
    assert transport.encode(plain) is plain and all(t.meta is None for t in plain.data)


def test_the_transport_module_loads_without_plotly_or_torch():
    assert loaded_by("explorer.app.transport", ("torch", "plotly", "gradio")) == []
