"""A plot view whose chart is updated in place: `PlotView`, a gr.HTML that draws a plotly figure with Plotly.js.

Why not gr.Plot: in gradio 6.31 a new figure value re-keys gr.Plot's component, so every update throws the chart away
and builds a new one (`Plotly.react` on the old chart, again on a new one, then `Plotly.Plots.resize`): 60–140 ms per
call per plot on a 2-core machine, which alone put every control change past "its server time + 300 ms" in the browser
(README, "In the browser"). Here each view keeps one chart for its lifetime, and a new figure is one `Plotly.react` on
it, which redraws only what changed (the heat map's colours, not the axes, the colour bar or the DOM around them).

The value is gr.Plot's own, `{"type": "plotly", "plot": figure JSON}`, so API clients and the tests read both alike.
Plotly.js is the copy that ships with the plotly Python package (the same version that wrote the JSON), served by
Gradio from its file route; nothing is fetched from the internet.
"""
from __future__ import annotations

import functools
import html
import importlib.util
from pathlib import Path
from typing import Any

import gradio as gr


@functools.cache  # Gradio makes a new PlotView for every gr.update of one
def plotly_js() -> Path:
    """plotly.min.js of the installed plotly package, found without importing plotly (start-up does not need it)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("The plotly package is not installed; pip install -r requirements.txt.")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


# The chart lives in `.vit-plot`; the template never mentions the value, so Gradio's re-render on a new value leaves
# the chart's DOM alone, and `watch` hands the new figure to Plotly.react. Layout as gr.Plot sets it (autosize,
# responsive, room for the title under the label), so the figures look the same as before.
CSS = (".vit-plot { width: 100%; } .vit-plot.vit-plot-empty { min-height: 48px; } .vit-plot-error { color: #b00; }"
       " .vit-csv { font-size: 13px; color: #1d4ed8; text-decoration: underline; background: none; border: 0;"
       " padding: 2px 0; cursor: pointer; } .vit-csv[hidden] { display: none; }")
# For screen readers (docs/accessibility.md): the chart is a named figure ("<label>: <its title>"), and a button
# under it downloads its numbers as CSV (every trace's x, y, z, text), built in the page from the figure's own data.
TEMPLATE = ('<div class="vit-plot" data-testid="plotly" role="figure" aria-label="{label}"></div>'
            '<button type="button" class="vit-csv" hidden>Download the numbers (CSV): {label}</button>')
ON_LOAD = r"""
const host = element.querySelector('.vit-plot');
const csvButton = element.querySelector('.vit-csv');
const name = host.getAttribute('aria-label') || 'chart';
let drawing = null, again = false;
const CLOUD_BUTTONS = ['sendChartToCloud', 'sendDataToCloud', 'editInChartStudio'];
let shown = null;  // what the chart shows: its data's JSON and each layout key's JSON
function figure() {
  const value = props.value;
  if (!value || !value.plot) return null;
  return typeof value.plot === 'string' ? JSON.parse(value.plot) : value.plot;
}
function draw() {
  const Plotly = window.Plotly;
  if (!Plotly) {
    host.textContent = 'The plotting library could not be loaded; reload the page.';
    host.classList.add('vit-plot-error');
    return null;
  }
  const fig = figure();
  if (!fig) {
    shown = null;
    if (csvButton) csvButton.hidden = true;
    Plotly.purge(host);
    host.classList.add('vit-plot-empty');
    return null;
  }
  host.classList.remove('vit-plot-empty');
  const layout = fig.layout || {};
  describe(layout);
  layout.autosize = true;
  layout.margin = layout.margin || {};
  layout.margin.autoexpand = true;
  fitTitle(layout);
  fitHeight(layout);
  // Tick labels may overflow the div (they never do here): Plotly's default, "hide past div", measures every tick
  // label's box on every draw, a forced layout each — a third of a redraw's time.
  for (const key of Object.keys(layout)) {
    if (/^[xy]axis\d*$/.test(key) && layout[key] && layout[key].ticklabeloverflow === undefined) {
      layout[key].ticklabeloverflow = 'allow';
    }
  }
  // Not Plotly's `responsive`: that adds a window listener per chart which is never removed, so every chart a tab
  // switch took off the page stayed alive (and was resized on every window resize); `resized` below instead.
  // Nothing leaves the page: no "Share chart" (an upload to Plotly's cloud), no link to it, no Plotly logo.
  const config = Object.assign({}, fig.config || {}, {responsive: false, showSendToCloud: false, showLink: false,
    showEditInChartStudio: false, displaylogo: false, modeBarButtonsToRemove: CLOUD_BUTTONS});
  const data = fig.data || [];
  const now = {data: JSON.stringify(data), layout: {}};
  for (const key of Object.keys(layout)) now.layout[key] = JSON.stringify(layout[key]);
  const before = shown;
  shown = now;
  if (before && before.data === now.data && host.data) {
    // The same traces (a patch click that moves an outline, a new title): only the layout keys that changed, by
    // Plotly.relayout — Plotly.react would redraw every trace (for ViT-B/16's patch grid, 196 number labels: ~100 ms).
    const update = {};
    for (const key of Object.keys(now.layout)) if (before.layout[key] !== now.layout[key]) update[key] = layout[key];
    for (const key of Object.keys(before.layout)) if (!(key in now.layout)) update[key] = null;
    return Object.keys(update).length ? Plotly.relayout(host, update) : null;
  }
  return Plotly.react(host, data, layout, config);
}
// Plotly never wraps a title: one wider than the chart is cut off. On a narrow chart (a phone's) its words are
// wrapped to the chart's width here, and the top margin makes room for the lines.
const NARROW = 480;
function fitTitle(layout) {
  if (!layout.title) return;
  if (host.clientWidth >= NARROW) { layout.margin.t = Math.max(100, layout.margin.t || 0); return; }
  const title = typeof layout.title === 'string' ? {text: layout.title} : Object.assign({}, layout.title);
  const size = (title.font && title.font.size) || 17;  // Plotly's default title size
  const perLine = Math.max(16, Math.floor((host.clientWidth || 700) / (size * 0.55)));
  const visible = text => text.replace(/<[^>]*>/g, '').length;
  const lines = [];
  // the title as written (layout.meta.title, where the server broke it for a wide chart), else as it is
  const text = (layout.meta && layout.meta.title) || title.text || '';
  for (const part of String(text).split(/<br\s*\/?>/i)) {
    let line = '';
    for (const word of part.split(' ')) {
      if (line && visible(line) + 1 + visible(word) > perLine) { lines.push(line); line = word; }
      else line = line ? line + ' ' + word : word;
    }
    lines.push(line);
  }
  title.text = lines.join('<br>');
  layout.title = title;
  // the room the wrapped lines take is added to the chart's height: the picture under them keeps its size
  const top = Math.max(100, layout.margin.t || 0, Math.ceil(40 + lines.length * size * 1.3));
  if (layout.height) layout.height += top - (layout.margin.t || 0);
  layout.margin.t = top;
}
// A figure drawn for a narrow screen says its plot's height over its width (layout.meta.fit, explorer.render): its
// height is made that of its plot at the chart's real width, so that the picture fills the width with no band above
// or below it.
function fitHeight(layout) {
  const fit = layout.meta && layout.meta.fit;
  if (!fit || !host.clientWidth) return;
  const m = layout.margin;
  layout.height = Math.round((m.t || 0) + (m.b || 0) + (host.clientWidth - (m.l || 0) - (m.r || 0)) * fit);
}
// The accessible name says what the chart shows now (its title), and the CSV button is offered while it shows one.
function describe(layout) {
  const title = layout.title && (typeof layout.title === 'string' ? layout.title : layout.title.text);
  const plain = title ? String(title).replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim() : '';
  host.setAttribute('aria-label', plain ? `${name}: ${plain}` : name);
  if (csvButton) csvButton.hidden = false;
}
function numbers(values) {  // plotly's typed arrays ({dtype, bdata, shape}) or plain lists, flattened
  if (values === undefined || values === null) return [];
  if (Array.isArray(values)) return values.flat(Infinity);
  if (values.bdata !== undefined && values.dtype) {
    const bytes = Uint8Array.from(atob(values.bdata), c => c.charCodeAt(0));
    const kinds = {f8: Float64Array, f4: Float32Array, i4: Int32Array, u4: Uint32Array, i2: Int16Array,
                   u2: Uint16Array, i1: Int8Array, u1: Uint8Array};
    return Array.from(new (kinds[values.dtype] || Float64Array)(bytes.buffer));
  }
  return [values];
}
function csv() {  // one row per value: trace, its name, the value's index, x, y, z, text
  const fig = figure();
  const rows = [['trace', 'name', 'index', 'x', 'y', 'z', 'text']];
  const quote = v => (v === undefined || v === null) ? '' : /[",\n]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v);
  (fig && fig.data || []).forEach((trace, t) => {
    const x = numbers(trace.x), y = numbers(trace.y), z = numbers(trace.z), text = numbers(trace.text);
    const n = Math.max(x.length, y.length, z.length);
    for (let i = 0; i < n; i++) rows.push([t, trace.name || trace.type || '', i, x[i], y[i], z[i], text[i]]);
  });
  return rows.map(row => row.map(quote).join(',')).join('\n');
}
if (csvButton) csvButton.addEventListener('click', () => {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(new Blob([csv()], {type: 'text/csv'}));
  link.download = name.replace(/[^\w.-]+/g, '_').slice(0, 60) + '.csv';
  document.body.appendChild(link);
  link.click();
  setTimeout(() => { URL.revokeObjectURL(link.href); link.remove(); }, 0);
});
// One draw at a time; values that arrive meanwhile are coalesced into one more draw of the newest.
function request() {
  if (!host.isConnected) return;  // a view taken off the page draws nothing
  if (drawing) { again = true; return; }
  drawing = Promise.resolve().then(draw).catch(error => console.error('plot view:', error)).finally(() => {
    drawing = null;
    if (again) { again = false; request(); }
  });
}
// The chart follows its box's width (Plotly's own `responsive` is off, see draw()).
let width = null;
const resized = new ResizeObserver(() => {
  const now = host.clientWidth;
  if (width !== null && now !== width) {
    // Not while hidden (a closed accordion, a hidden column): Plotly throws on a div that is not displayed.
    const resize = () => { if (host.data && host.offsetParent !== null) { window.Plotly.Plots.resize(host); request(); } };
    if (drawing) drawing.then(resize); else resize();  // after a draw that may have read the old width
  }
  width = now;
});
resized.observe(host);
// Charts of views that a tab switch took off the page are freed when the next view is put on it: Gradio keeps the
// detached elements (and this script's closure) alive, and with them each chart's data and SVG (~0.3 MB a chart).
// One still drawing (a picture's image loads asynchronously) is freed when its draw ends: purged in the middle,
// Plotly's last steps read the layout it took away (a TypeError on `_rangeSliderData`).
const live = window.__vitPlots = window.__vitPlots || new Map();
for (const [other, chart] of live) {
  if (!other.isConnected) {
    chart.observer.disconnect();
    live.delete(other);
    const free = () => { if (window.Plotly && !other.isConnected) window.Plotly.purge(other); };
    const pending = chart.drawing();
    if (pending) pending.then(free); else free();
  }
}
live.set(host, {observer: resized, drawing: () => drawing});
request();
watch('value', request);
"""


class PlotView(gr.HTML):
    """A plotly figure, drawn once and updated in place (see the module's docstring). Takes a plotly Figure (or None)
    as gr.Plot does and sends gr.Plot's value."""

    def __init__(self, value: Any = None, *, label: str | None = None, **kwargs):
        src = "gradio_api/file=" + str(plotly_js())  # relative: right under any mount path
        template = TEMPLATE.format(label=html.escape(label or "chart", quote=True))
        super().__init__(value, label=label, show_label=bool(label), container=True, html_template=template,
                         css_template=CSS, js_on_load=ON_LOAD, apply_default_css=False,
                         head=f'<script src="{src}"></script>', **kwargs)

    def postprocess(self, value: Any) -> dict | None:
        """A plotly Figure (or gr.Plot's value) -> {"type": "plotly", "plot": its JSON}, as gr.Plot sends it."""
        if value is None:
            return None
        if isinstance(value, dict) and value.get("type") == "plotly":
            return value
        return {"type": "plotly", "plot": value.to_json()}

    def preprocess(self, payload: Any) -> Any:
        return payload

    def api_info(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"type": {"type": "string", "const": "plotly"},
                                                 "plot": {"type": "string", "description": "the figure's JSON"}}}

    def example_payload(self) -> Any:
        return None

    def example_value(self) -> Any:
        return None
