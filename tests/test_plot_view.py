"""The plot views' component (explorer.app.plot.PlotView): it sends what gr.Plot sends, and draws with the plotly.js
that ships with the plotly package. (That it draws, and updates its chart in place, is checked in the browser:
tests/test_browser.py.)"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import plotly  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from plotly.offline import get_plotlyjs_version  # noqa: E402

from explorer.app.plot import PlotView, plotly_js  # noqa: E402


def test_a_figure_is_sent_as_gr_plot_sends_it():
    figure = go.Figure(go.Heatmap(z=np.arange(12, dtype=np.float32).reshape(3, 4)), layout=dict(title="a 3 x 4"))
    sent = PlotView(label="x").postprocess(figure)
    reference = gr.Plot().postprocess(figure).model_dump()
    assert sent == {"type": reference["type"], "plot": reference["plot"]} and sent["type"] == "plotly"
    assert PlotView().postprocess(None) is None
    assert PlotView().postprocess(sent) is sent  # gr.Plot's value passes as it is


def test_the_script_is_the_plotly_packages_own_and_matches_its_version():
    script = plotly_js()
    assert script.is_file() and script.parent.parent.samefile(os.path.dirname(plotly.__file__))
    head = script.read_text(errors="replace")[:2000]
    assert f"plotly.js v{get_plotlyjs_version()}" in head, head[:200]


def test_the_page_loads_the_script_relative_to_the_page_and_draws_on_value_change():
    view = PlotView(label="attention")
    config = view.get_config()
    assert config["head"] == f'<script src="gradio_api/file={plotly_js()}"></script>'
    assert "${value}" not in config["html_template"]  # a new value never re-renders (and so never wipes) the chart
    assert "watch('value'" in config["js_on_load"] and "Plotly.react(host" in config["js_on_load"]
    assert config["show_label"] and config["label"] == "attention"
