"""python -m explorer.app.browser_bench: what a person waits for, measured in a real browser (headless Chromium).

explorer.app.bench times the app's handlers in-process. This one starts the real app (`python app.py` on a free port
of 127.0.0.1, offline, with the shipped checkpoint in the menu), opens it in Debian's headless Chromium through
Playwright, and for each model (the shipped one, the default offline; ViT-B/16 · random init, chosen in the model
menu on a fresh page) does what a visitor does:

    upload      the example photo set on the upload box -> step 0's views on screen
    tab N       each step's tab clicked, the first visit after the upload (steps 1..5)
    control     every control of explorer.app.views.CONTROLS changed to a value not seen before (slider: an arrow
                key; dropdown: an option clicked; radio: another choice clicked; text box: new text + Enter), on its
                own step; a click on a patch of the picker and "Query the class token", on each step whose views
                read the selected patch; a click on each view whose clicks take patches out (step 5's dropper)

and measures, for each action:

    painted     from the input event (pointerdown / keydown / the file input's change, as the page sees it) to the
                animation frame that follows the last change of a view the action's events output (the views, the
                patch picker, the selection text: DOM mutations inside them, an image loaded, a plot drawn; other
                elements, such as the inputs Gradio marks while an event runs, do not count), where a plot is drawn when
                the plot view's call of Plotly.react (or Plotly.relayout, when only the layout changed) has resolved
                (explorer.app.plot: the chart is updated in place): the page's Plotly functions are wrapped to see
                it; Plotly's own later relayouts at the same size are DOM mutations with nothing new on screen: they
                count for "settled_ms" in the JSON, not for painted),
                once every event the action started has completed,
                every plot and image on screen is drawn (the plot views load plotly.js on first use, after a pause)
                and nothing has changed for --quiet-ms (300 ms). A MutationObserver over the whole document and an
                image `load` listener, installed before the page's own scripts, record these times
    server      the handler's own time for the same event(s): Gradio's process_completed message carries it
                (output.duration: the function call, without Gradio's pre/postprocessing); the messages are read by
                wrapping window.fetch, which the Gradio client uses for its event stream (/gradio_api/queue/data)
    painted = to join + server + post+wire + render:
    to join     input -> the event sent (queue/join): the page's own work first (and the file upload, for an upload)
    post+wire   the event's round trip less the server time: queueing, Gradio's pre/postprocessing (figures to
                JSON, images to files), the transfer
    render      the arrival of the last process_completed message -> painted: the browser's share
    bytes       everything the server sent between the action and the end of the measurement, from the DevTools
                protocol (Network.dataReceived: encodedDataLength, or dataLength while Chrome reports the encoded
                size of an open stream late; plus what Network.loadingFinished reports beyond it: response headers).
                "data" is what the app sends for this action (the event stream, the files it serves such as
                images, the upload and join replies); "static" is the page's own code and fonts, fetched on first
                use (Plotly's and KaTeX's bundles) and cached afterwards

Targets: every control change painted <= its server time + 300 ms (median over --repeats); <= 1 MB (10^6 bytes) of
data per step (upload, tab, control) on ViT-B/16. Rows that miss list the outputs whose payloads are biggest (the
JSON of each output in the process_completed message, plus the files it points to), for making those views lighter.

    python -m explorer.app.browser_bench                      # the shipped model and ViT-B/16, 3 repeats per control
    python -m explorer.app.browser_bench --quick              # the shipped model, 1 repeat (the smoke test's settings)
    python -m explorer.app.browser_bench --model ViT-B/16 --repeats 5 --json bench-results/browser.json --markdown

Needs Debian's chromium (/usr/bin/chromium; never `playwright install`) and the playwright package. This is a
measurement, not a test: it exits 0 whether targets are met or missed, nonzero only when it could not run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import views
from .bench import (DEFAULT_CHECKPOINT, DEFAULT_IMAGE, ROOT, SHIPPED, _app_env, _http_ok, app_command, cpu_busy,
                    free_port, machine_info, machine_line, percentile, prepare_checkpoints, session_model)
from .text import STEPS
from .plot import plotly_js
from .ui import control_elem_id, view_elem_id

CHROMIUM = "/usr/bin/chromium"  # Debian's package; never `playwright install` (it downloads a browser)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DEFAULT_MODELS = (SHIPPED, "ViT-B/16")
CONTROL_SLACK_MS = 300.0  # a control change is painted within its server time + this
MAX_STEP_BYTES = 1_000_000  # data sent per step (upload, tab, control) ...
BYTES_TARGET_MODEL = "ViT-B/16"  # ... on this model
TARGETS = {"control": f"painted <= server + {CONTROL_SLACK_MS:.0f} ms",
           "bytes": f"<= {MAX_STEP_BYTES / 1e6:g} MB data per step on {BYTES_TARGET_MODEL}"}
UNDRAWN_WAIT_S = 20.0  # a view on screen still not drawn after this long without any change: reported, not awaited
PATCH_SPOTS = ((0.35, 0.65), (0.8, 0.2), (0.55, 0.45), (0.15, 0.85), (0.9, 0.9), (0.1, 0.1), (0.65, 0.3))

# Installed in the page before its own scripts (context.add_init_script). window.__bench: arm() before an action,
# settle(options) after it (a promise: every event the action started completed, then a quiet period).
PAGE_SCRIPT = r"""
(() => {
  if (window.__bench) return;
  const VIEWS = '[id^="view-"], #picker, #selection';
  const B = window.__bench = {lastMut: 0, paint: 0, paintFor: -1, armedAt: null, start: null, joins: [], joinsAt: 0,
                               pendingJoins: 0, events: {}, owners: {}, plots: [], images: [], lastAny: 0,
                               settled: 0, viewPaint: {}, reactLog: []};
  // Anything that changed, Plotly's own redraws included: the frame after the last one is "settled".
  const any = () => {
    const now = B.lastAny = performance.now();
    requestAnimationFrame(() => { if (B.lastAny === now) B.settled = performance.now(); });
  };
  // A plot is painted when the plot view's call of Plotly.react has drawn it (the frame after its promise resolves).
  // Plotly may lay a plot out again afterwards (a responsive resize): DOM mutations with nothing new on screen, so
  // mutations inside a plot count for "settled" only. Plotly arrives as window.Plotly (the plot views load it on
  // first use); its react and relayout (a layout-only update: the same traces) are wrapped in place, and the views
  // call window.Plotly.react / .relayout.
  const wrap = P => {
    if (!P || P.__benchWrapped || typeof P.react !== 'function') return;
    for (const name of ['react', 'relayout']) wrapOne(P, name);
    P.__benchWrapped = true;
  };
  const wrapOne = (P, name) => {
    const original = P[name];
    P[name] = function (gd, ...rest) {
      const called = performance.now();
      const result = original.call(this, gd, ...rest);
      const returned = performance.now();
      Promise.resolve(result).then(() => {
        const view = gd.closest && gd.closest(VIEWS);
        const where = view ? view.id : (gd.isConnected ? 'outside a view' : 'a detached plot');
        if (B.armedAt !== null) B.reactLog.push([where, called, returned, performance.now()]);
        touched([{target: gd}], true);
      });
      return result;
    };
  };
  let plotly = window.Plotly;
  wrap(plotly);
  Object.defineProperty(window, 'Plotly', {configurable: true, get: () => plotly, set: v => { plotly = v; wrap(v); }});
  // The last DOM mutation (or image load, or plot drawn) and the animation frame that follows it.
  const touched = (records, plotDrawn = false) => {
    any();
    if (!plotDrawn) {
      records = (records || []).filter(r => {
        const el = r.target && (r.target.nodeType === 1 ? r.target : r.target.parentElement);
        return !(el && el.closest && el.closest('.js-plotly-plot'));
      });
      if (!records.length) return;
    }
    const now = B.lastMut = performance.now();
    if (B.armedAt !== null) {  // where it happened: the nearest element with an id (a view, a control)
      for (const r of (records || []).slice(0, 40)) {
        const el = r.target && (r.target.nodeType === 1 ? r.target : r.target.parentElement);
        const owner = el && (el.closest(VIEWS) || el.closest('[id]'));
        B.owners[owner ? owner.id : (el ? el.tagName.toLowerCase() : '?')] = now;
      }
      // Per view (and picker, selection text): the frame after its last change. An action is painted when the
      // views its events output are; other elements (the inputs Gradio marks while an event runs, progress
      // trackers) change too, with nothing of the answer in them.
      const seen = new Set();
      for (const r of (records || [])) {
        const el = r.target && (r.target.nodeType === 1 ? r.target : r.target.parentElement);
        const view = el && el.closest && el.closest(VIEWS);
        if (view && !seen.has(view.id)) {
          seen.add(view.id);
          requestAnimationFrame(() => { B.viewPaint[view.id] = performance.now(); });
        }
      }
    }
    requestAnimationFrame(() => {
      if (B.paintFor !== B.lastMut) { B.paintFor = B.lastMut; B.paint = performance.now(); }
    });
  };
  new MutationObserver(touched).observe(document, {subtree: true, childList: true, attributes: true,
                                                   characterData: true});
  for (const type of ['load', 'error'])  // an image shown: its load, as a mutation of its element
    document.addEventListener(type, e => { if (e.target && e.target.tagName === 'IMG') touched([{target: e.target}]); },
                              true);
  // The action's start: the first input event the page sees after arm().
  for (const type of ['pointerdown', 'mousedown', 'keydown', 'input', 'change', 'click'])
    window.addEventListener(type, () => {
      if (B.armedAt !== null && B.start === null) B.start = performance.now();
    }, true);
  // Gradio's client reads its event stream with fetch: keep a copy of every message (time, size, and the
  // process_completed text, parsed after the measurement), and the event id of every queue/join.
  const message = (text, size) => {
    const now = performance.now();
    const head = text.slice(0, 300);
    const id = (/"event_id":\s*"([^"]+)"/.exec(head) || [])[1];
    const kind = (/"msg":\s*"(\w+)"/.exec(head) || [])[1];
    if (!id) return;
    const e = B.events[id] || (B.events[id] = {bytes: 0, messages: 0});
    e.bytes += size; e.messages += 1;
    if (kind === 'process_starts') e.started = now;
    if (kind === 'process_completed') { e.completed = now; e.text = text; }
  };
  const read = async stream => {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      let chunk;
      try { chunk = await reader.read(); } catch (err) { return; }
      if (chunk.done) return;
      buffer += chunk.value;
      let i;
      while ((i = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        if (line.startsWith('data:')) message(line.slice(5), line.length + 1);
      }
    }
  };
  const original = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : (input instanceof URL ? input.href : (input && input.url) || '');
    const join = url.includes('/queue/join');
    let body = init && init.body;
    if (join && !body && input instanceof Request) { try { body = await input.clone().text(); } catch (err) {} }
    const sent = performance.now();
    if (join) B.pendingJoins += 1;
    let response;
    try { response = await original(input, init); } catch (err) { if (join) B.pendingJoins -= 1; throw err; }
    if (join) {
      response.clone().json().then(j => {
        let fn = null;
        try { fn = JSON.parse(body).fn_index; } catch (err) {}
        B.joins.push({event_id: j.event_id, fn_index: fn, sent});
      }).catch(() => {}).finally(() => { B.pendingJoins -= 1; });
    }
    if (url.includes('/queue/data') && response.body) {
      const [mine, theirs] = response.body.tee();
      read(mine);
      return new Response(theirs, {status: response.status, statusText: response.statusText,
                                   headers: response.headers});
    }
    return response;
  };
  B.arm = () => { B.armedAt = performance.now(); B.start = null; B.paint = 0; B.settled = 0; B.joinsAt = B.joins.length;
                  B.owners = {}; B.viewPaint = {}; B.reactLog = []; return B.armedAt; };
  B.collect = reason => {
    const out = {reason, armedAt: B.armedAt, start: B.start, lastMut: B.lastMut, paint: B.paint,
                 settled: Math.max(B.settled, B.paint), viewPaint: B.viewPaint, reactLog: B.reactLog, events: [],
                 owners: Object.entries(B.owners)};
    for (const j of B.joins.slice(B.joinsAt)) {
      const e = B.events[j.event_id] || {};
      const r = {event_id: j.event_id, fn_index: j.fn_index, sent: j.sent, started: e.started ?? null,
                 completed: e.completed ?? null, stream_chars: e.bytes || 0, messages: e.messages || 0};
      if (e.text) {
        try {
          const m = JSON.parse(e.text);
          const o = m.output || {};
          r.success = m.success;
          r.duration = o.duration ?? null;
          if (!m.success) r.error = String(o.error || m.title || 'error').slice(0, 300);
          r.outputs = (o.data || []).map(d => {
            const s = JSON.stringify(d === undefined ? null : d);
            return {chars: s.length, urls: (s.match(/"url":"[^"]+"/g) || []).map(u => u.slice(7, -1))};
          });
        } catch (err) { r.error = 'unreadable process_completed message: ' + err; }
        e.text = null;
      }
      out.events.push(r);
    }
    return out;
  };
  // Views on screen that are not drawn yet: a plot without Plotly's SVG (the plot views load plotly.js on first use,
  // after a pause that a quiet period alone would take for the end), an image still loading.
  B.undrawn = () => {
    const out = [];
    for (const id of B.plots) {
      const el = document.getElementById(id);
      if (el && el.offsetParent !== null && !el.querySelector('.js-plotly-plot .main-svg')) out.push(id);
    }
    for (const id of B.images) {
      const el = document.getElementById(id);
      const img = el && el.offsetParent !== null && el.querySelector('img');
      if (img && !img.complete) out.push(id);
    }
    return out;
  };
  B.settle = ({quiet, timeout, minEvents, joinWait, undrawnWait}) => new Promise(resolve => {
    const begin = performance.now();
    const tick = () => {
      const now = performance.now();
      const joins = B.joins.slice(B.joinsAt);
      const events = joins.map(j => B.events[j.event_id]);
      const done = events.every(e => e && e.completed !== undefined);
      const lastDone = Math.max(0, ...events.map(e => (e && e.completed) || 0));
      const quietFor = now - Math.max(B.lastMut, B.lastAny, lastDone);
      const started = joins.length >= minEvents && B.pendingJoins === 0;
      const undrawn = started && done && quietFor >= quiet ? B.undrawn() : null;
      let reason = null;
      if (undrawn && !undrawn.length) reason = 'quiet';
      else if (undrawn && quietFor > undrawnWait) reason = 'undrawn';
      else if (joins.length < minEvents && B.pendingJoins === 0 && now - begin > joinWait) reason = 'no event';
      else if (now - begin > timeout) reason = 'timeout';
      if (reason) resolve(Object.assign(B.collect(reason), {undrawn: undrawn || []})); else setTimeout(tick, 20);
    };
    tick();
  });
})();
"""


# ---------------------------------------------------------------------------------------------------------------
# Rows

@dataclass
class Row:
    """One action of one model, over its repeats: times in ms, bytes in bytes (10^3 = 1 KB)."""

    id: str  # "upload", "tab.3", "control.layer", "control.select_patch.step2", "model"
    label: str
    kind: str  # "upload" | "tab" | "control" | "model"
    model: str
    painted: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    render: list[float] = field(default_factory=list)  # painted - arrival of the last process_completed
    to_join: list[float] = field(default_factory=list)  # input -> the event sent (queue/join)
    post_wire: list[float] = field(default_factory=list)  # event sent -> completed, less the server's time
    data_bytes: list[float] = field(default_factory=list)
    static_bytes: list[float] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # per repeat: events, outputs, requests
    target: str = ""
    status: str = ""  # "PASS" | "MISS" | "ERROR" | "" (no target)
    misses: list[str] = field(default_factory=list)
    error: str = ""

    @staticmethod
    def _median(values):
        return statistics.median(values) if values else None

    @property
    def painted_ms(self):
        return self._median(self.painted)

    @property
    def server_ms(self):
        return self._median(self.server)

    @property
    def excess_ms(self):  # the median of (painted - server) over the repeats
        return self._median([p - s for p, s in zip(self.painted, self.server)])

    @property
    def render_ms(self):
        return self._median(self.render)

    @property
    def bytes(self):
        return self._median(self.data_bytes)

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(painted_ms=self.painted_ms, server_ms=self.server_ms, excess_ms=self.excess_ms,
                   render_ms=self.render_ms, to_join_ms=self._median(self.to_join),
                   post_wire_ms=self._median(self.post_wire), bytes=self.bytes, static=self._median(self.static_bytes),
                   painted_p90=percentile(self.painted, 90) if self.painted else None, n=len(self.painted))
        return out


def judge(row: Row) -> Row:
    if row.error and not row.painted:
        row.status = "ERROR"
        return row
    targets = []
    if row.kind == "control":
        targets.append(TARGETS["control"])
        if row.excess_ms is not None and row.excess_ms > CONTROL_SLACK_MS:
            row.misses.append(f"painted {row.excess_ms:.0f} ms after the server's {row.server_ms:.0f} ms")
    if row.kind in ("upload", "tab", "control") and row.model.startswith(BYTES_TARGET_MODEL):
        targets.append(f"<= {MAX_STEP_BYTES / 1e6:g} MB")
        if row.bytes is not None and row.bytes > MAX_STEP_BYTES:
            row.misses.append(f"{row.bytes / 1e6:.2f} MB sent")
    row.target = "; ".join(targets)
    if targets:
        row.status = "MISS" if row.misses else "PASS"
    if row.error:
        row.status = "ERROR"
    return row


# ---------------------------------------------------------------------------------------------------------------
# The app and the page

class AppProcess:
    """`python app.py --host 127.0.0.1 --port <free>` with bench's environment (offline, our checkpoint folder)."""

    def __init__(self, checkpoint_dir: Path, temp: Path, timeout: float = 240.0):
        self.checkpoint_dir, self.temp, self.timeout = checkpoint_dir, temp, timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = temp / f"app-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.started_s: float | None = None

    def __enter__(self) -> "AppProcess":
        env = dict(_app_env(self.checkpoint_dir, self.temp), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        self._log = self.log_path.open("wb")
        began = time.perf_counter()
        self.process = subprocess.Popen(app_command(self.port), cwd=ROOT, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT)
        try:
            while not _http_ok(self.url):
                if self.process.poll() is not None:
                    raise RuntimeError(f"app.py exited with {self.process.returncode}:\n{self.log()}")
                if time.perf_counter() - began > self.timeout:
                    raise RuntimeError(f"app.py did not answer on {self.url} within {self.timeout:.0f} s:\n{self.log()}")
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        self.started_s = time.perf_counter() - began
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def config(self) -> dict:
        with urllib.request.urlopen(self.url + "config", timeout=30) as response:
            return json.loads(response.read())


class Names:
    """From the page's /config: each event's name (its api_name) and each output's name (a view's registry name,
    else the component's elem_id or type)."""

    def __init__(self, config: dict):
        view_ids = {view_elem_id(name): name for name in views.VIEWS}
        components, elem_ids = {}, {}
        for c in config.get("components", []):
            props = c.get("props", {})
            elem_id = props.get("elem_id")
            components[c["id"]] = view_ids.get(elem_id) or elem_id or props.get("label") or c.get("type", "?")
            elem_ids[c["id"]] = elem_id
        self.events, self.outputs, self.output_ids = {}, {}, {}
        for index, dependency in enumerate(config.get("dependencies", [])):
            key = dependency.get("id", index)
            self.events[key] = dependency.get("api_name") or f"fn {key}"
            self.outputs[key] = [components.get(i, str(i)) for i in dependency.get("outputs", [])]
            self.output_ids[key] = [elem_ids[i] for i in dependency.get("outputs", []) if elem_ids.get(i)]


class Network:
    """Bytes received per request, from the DevTools protocol, in arrival order (so an action's share is a slice).

    Chrome reports a chunk's encodedDataLength late for a response that stays open (Gradio's event stream: 0 with
    the chunk, the sum with a later one), so a request's count is the larger of its encoded and decoded bytes so far
    (they differ by the chunk framing: the app's responses are not compressed), and loadingFinished's total
    (headers included) when it ends. data: and blob: URLs are made in the page and not counted."""

    def __init__(self, cdp):
        self.urls: dict[str, str] = {}
        self.totals: dict[str, list[int]] = {}  # request id -> [decoded so far, encoded so far, counted]
        self.encodings: dict[str, str] = {}
        self.log: list[tuple[str, int]] = []  # (request id, bytes newly counted)
        cdp.on("Network.requestWillBeSent", lambda e: self.urls.__setitem__(e["requestId"], e["request"]["url"]))
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.dataReceived", lambda e: self._count(e["requestId"], e.get("dataLength") or 0,
                                                             e.get("encodedDataLength") or 0))
        cdp.on("Network.loadingFinished", lambda e: self._count(e["requestId"], 0, 0,
                                                                int(e.get("encodedDataLength") or 0)))
        cdp.send("Network.enable")

    def _response(self, event) -> None:
        headers = {k.lower(): v for k, v in event["response"].get("headers", {}).items()}
        if headers.get("content-encoding"):
            self.encodings[event["requestId"]] = headers["content-encoding"]

    def _count(self, request_id: str, decoded: int, encoded: int, finished: int = 0) -> None:
        if self.urls.get(request_id, "").startswith(("data:", "blob:")):
            return  # made in the page (Plotly draws heatmaps as data: URL images): nothing the server sent
        total = self.totals.setdefault(request_id, [0, 0, 0])
        total[0] += int(decoded)
        total[1] += int(encoded)
        known = max(total[1], finished) if request_id in self.encodings else max(total[0], total[1], finished)
        if known > total[2]:
            self.log.append((request_id, known - total[2]))
            total[2] = known

    def mark(self) -> int:
        return len(self.log)

    def since(self, mark: int) -> dict[str, int]:
        """URL -> bytes received since `mark`."""
        out: dict[str, int] = {}
        for request_id, size in self.log[mark:]:
            url = self.urls.get(request_id, "?")
            out[url] = out.get(url, 0) + size
        return out


def is_static(url: str) -> bool:
    """The page's own code, styles and fonts (not what the app sends for an action): Gradio's, and the plotly.js
    the plot views load on first use (explorer.app.plot)."""
    return "/gradio_api/" not in url or url.split("?")[0].endswith("/" + plotly_js().name)


class Page:
    """One browser page on the app, with the measuring script installed and the network watched."""

    def __init__(self, browser, url: str, names: Names, quiet_ms: float, timeout_s: float):
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, service_workers="block")
        self.context.add_init_script(PAGE_SCRIPT)
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.network = Network(self.context.new_cdp_session(self.page))
        self.names, self.quiet_ms, self.timeout_s = names, quiet_ms, timeout_s
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)[:300]))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_selector("#upload")
        plots = [view_elem_id(n) for n, v in views.VIEWS.items() if v.kind == "plot"]
        images = [view_elem_id(n) for n, v in views.VIEWS.items() if v.kind == "image"] + ["picker"]
        self.page.evaluate("([p, i]) => { window.__bench.plots = p; window.__bench.images = i; }", [plots, images])
        self.settle(min_events=0, quiet_ms=1500)  # the page's own load events

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()

    def settle(self, min_events: int = 1, quiet_ms: float | None = None) -> dict:
        """Wait until `min_events` events have started and every one has completed, then for a quiet page."""
        return self.page.evaluate("o => window.__bench.settle(o)", {
            "quiet": self.quiet_ms if quiet_ms is None else quiet_ms, "timeout": self.timeout_s * 1000,
            "minEvents": min_events, "joinWait": 10_000, "undrawnWait": UNDRAWN_WAIT_S * 1000})

    def measure(self, action, min_events: int = 1) -> dict:
        """Run action() and measure it: painted, server, render (ms), data and static bytes, and what was sent."""
        self.page.evaluate("window.__bench.arm()")
        mark = self.network.mark()
        action()
        result = self.settle(min_events)
        self.page.evaluate("0")  # let the DevTools events queued meanwhile reach our listeners
        received = self.network.since(mark)
        events = result["events"]
        sample = {"reason": result["reason"], "events": [], "requests": received}
        start = result["start"] if result["start"] is not None else result["armedAt"]
        if result["start"] is None:
            sample["note"] = "no input event seen: timed from arm()"
        # The elements (nearest id: a view, a control) changed last, and when (ms after the input).
        sample["last_changed"] = [[owner, round(t - start)] for owner, t in
                                  sorted(result["owners"], key=lambda o: -o[1])[:6]]
        for event in events:
            name = self.names.events.get(event["fn_index"], f"fn {event['fn_index']}")
            outputs = self.names.outputs.get(event["fn_index"], [])
            sizes = []
            for i, output in enumerate(event.get("outputs") or []):
                files = sum(received.get(u, 0) for u in output["urls"])
                sizes.append({"output": outputs[i] if i < len(outputs) else str(i), "json_chars": output["chars"],
                              "file_bytes": files})
            sample["events"].append({"event": name, "server_ms": _ms(event.get("duration")),
                                     "queued_to_completed_ms": _delta(event["completed"], event["sent"]),
                                     "input_to_join_ms": _delta(event["sent"], start), "success": event.get("success"),
                                     "error": event.get("error"), "stream_chars": event["stream_chars"],
                                     "outputs": sorted(sizes, key=lambda s: -(s["json_chars"] + s["file_bytes"]))})
        problems = []
        if result["reason"] != "quiet":
            problems.append({"no event": "the action started no event",
                             "timeout": f"not settled within {self.timeout_s:.0f} s",
                             "undrawn": f"not drawn {UNDRAWN_WAIT_S:.0f} s after the last change: "
                                        f"{', '.join(result['undrawn'])}"}.get(result["reason"], result["reason"]))
        problems += [f"{e['event']}: {e['error']}" for e in sample["events"] if e.get("error")]
        if events and any(e.get("duration") is None for e in events) and not problems:
            problems.append("an event completed without a duration")
        # Painted: the frame after the last change of a view that the action's events output (result["paint"], the
        # last change anywhere, where none of them changed).
        outputs = {i for event in events for i in self.names.output_ids.get(event["fn_index"], [])}
        drawn = [t for i, t in result["viewPaint"].items() if i in outputs and t > start]
        paint = max(drawn) if drawn else result["paint"]
        sample["views_painted"] = sorted(i for i in result["viewPaint"] if i in outputs)
        # Each Plotly.react Gradio called: (view, called, returned, resolved), ms from the action's start.
        sample["plotly_react"] = [[view, *(round(t - start, 1) for t in times)] for view, *times in result["reactLog"]]
        if paint <= start:
            problems.append("nothing was painted after the action")
        sample["error"] = "; ".join(problems)
        sample["painted_ms"] = paint - start
        sample["settled_ms"] = result["settled"] - start  # Plotly's later same-size relayouts included
        sample["server_ms"] = sum(_ms(e.get("duration")) or 0.0 for e in events)
        completed = [e["completed"] for e in events if e.get("completed") is not None]
        sent = [e["sent"] for e in events if e.get("sent") is not None]
        # painted = to_join (the browser, and the file upload, before the event is sent) + post_wire (queue, Gradio's
        # pre/postprocessing, transfer: the event's round trip less the handler's time) + server + render
        sample["to_join_ms"] = min(sent) - start if sent else None
        sample["post_wire_ms"] = (max(completed) - min(sent) - sample["server_ms"]) if sent and completed else None
        sample["render_ms"] = paint - max(completed) if completed else None
        sample["data_bytes"] = sum(v for u, v in received.items() if not is_static(u))
        sample["static_bytes"] = sum(v for u, v in received.items() if is_static(u))
        return sample


def _ms(seconds):
    return None if seconds is None else 1000.0 * seconds


def _delta(a, b):
    return None if a is None or b is None else a - b


# ---------------------------------------------------------------------------------------------------------------
# The actions

def click_in_image(page, selector: str, fx: float, fy: float):
    """Scroll the image into view and return a function that clicks the point (fx, fy) of the picture as drawn
    (object-fit: contain, centred, never enlarged)."""
    locator = page.locator(selector).first
    locator.scroll_into_view_if_needed()
    x, y, width, height, natural_w, natural_h = locator.evaluate(
        "e => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height, e.naturalWidth, "
        "e.naturalHeight]; }")
    scale = min(width / natural_w, height / natural_h, 1.0)
    shown_w, shown_h = natural_w * scale, natural_h * scale
    left, top = x + (width - shown_w) / 2, y + (height - shown_h) / 2
    return lambda: page.mouse.click(left + shown_w * fx, top + shown_h * fy)


class ControlDriver:
    """Changes a control of views.CONTROLS the way a person does, to a value it has not had (by its kind)."""

    def __init__(self, page):
        self.page = page
        self.used: dict[str, set] = {}

    def prepare(self, name: str, kind: str, repeat: int):
        """Do what comes before the change (open a menu, type text); return (the change, what to do after it)."""
        page, selector = self.page, "#" + control_elem_id(name)
        page.locator(selector).scroll_into_view_if_needed()
        if kind == "slider":
            box = page.locator(f"{selector} input[type=range]")
            value, low, high = (float(v) for v in box.evaluate("e => [e.value, e.min, e.max]"))
            box.focus()
            key = "ArrowRight" if value < high else "ArrowLeft"
            return (lambda: box.press(key)), None
        if kind == "textbox":
            box = page.locator(f"{selector} textarea, {selector} input").first
            box.fill(views.random_indices(64, seed=1000 + repeat) if name == "indices" else f"{repeat}")
            return (lambda: box.press("Enter")), box.blur  # leaving the box fires its blur event: settled, not timed
        if kind == "radio":
            labels = page.locator(f"{selector} label")
            checked = labels.evaluate_all("ls => ls.findIndex(l => l.querySelector('input').checked || "
                                          "l.classList.contains('selected'))")
            target = labels.nth((checked + 1) % labels.count())
            return target.click, None
        if kind == "dropdown":
            page.click(f"{selector} input")
            items = page.locator(f"{selector} li.item")
            items.first.wait_for()
            options = items.evaluate_all("es => es.map(e => [e.getAttribute('aria-label'), "
                                         "e.getAttribute('aria-selected')])")
            used = self.used.setdefault(name, set())
            fresh = [i for i in reversed(range(len(options))) if options[i][1] != "true" and options[i][0] not in used]
            others = [i for i in reversed(range(len(options))) if options[i][1] != "true"]
            index = (fresh or others)[0]  # from the end: for the class picker, classes outside the top 5
            used.add(options[index][0])
            return items.nth(index).click, None
        raise ValueError(f"explorer.app.browser_bench has no way to change a {kind!r} control ({name}).")


def run_model(browser, app: AppProcess, names: Names, name: str, args, checkpoint: Path, image: Path,
              notes: list[str]) -> list[Row]:
    """Every measurement for one model, on a fresh page (its own browser context: nothing cached)."""
    wanted = session_model(name, checkpoint)  # a menu label, or a checkpoint stem that its label contains
    rows: list[Row] = []
    page = Page(browser, app.url, names, args.quiet_ms, args.timeout)
    try:
        current = page.page.input_value("#model input")
        model = short_label(current)
        if wanted not in current:
            page.page.click("#model input")
            option = page.page.locator(f"#model li.item[aria-label*='{wanted}']").first
            option.wait_for()
            model = short_label(option.get_attribute("aria-label"))
            row = Row("model", "model chosen in the menu (loaded)", "model", model)
            _record(row, page.measure(option.click))
            rows.append(row)
        model = short_label(page.page.input_value("#model input") or model)
        print(f"- {model}: upload, tabs, controls ...", flush=True)

        def measure(row_id, label, kind, action, repeats=1, prepare=None):
            row = Row(row_id, label, kind, model)
            for repeat in range(repeats):
                try:
                    after = None
                    if prepare is not None:
                        action, after = prepare(repeat)
                    _record(row, page.measure(action))
                    if after is not None:
                        after()
                        page.settle()
                except Exception as error:  # a measurement, not a test: say so in the table and go on
                    row.error = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"
                    with contextlib.suppress(Exception):
                        page.page.keyboard.press("Escape")
                        page.settle(min_events=0)
                    break
            rows.append(row)
            _progress(row)
            return row

        measure("upload", f"upload {image.name} -> step 0", "upload",
                lambda: page.page.set_input_files("#upload input[type=file]", str(image)))
        for number in range(1, len(STEPS)):
            measure(f"tab.{number}", f"tab {STEPS[number]} (first visit)", "tab",
                    lambda n=number: page.page.click(f"#tab-{n}-button"))

        driver = ControlDriver(page.page)
        for number in range(1, len(STEPS)):
            page.page.click(f"#tab-{number}-button")  # back on this step: not timed
            page.settle()
            for control_name, control in views.CONTROLS.items():
                if control.step != number:
                    continue
                measure(f"control.{control_name}", f"{control_name} ({control.kind}), step {number}",
                        "control", None, args.repeats,
                        prepare=lambda r, n=control_name, k=control.kind: driver.prepare(n, k, r))
            if views.affected(number, "selected"):
                for repeat in range(args.repeats):  # a patch, then back to the class token
                    spot = PATCH_SPOTS[repeat % len(PATCH_SPOTS)]
                    _extend(rows, measure(f"control.select_patch.step{number}",
                                          f"picker: patch clicked, step {number}", "control", None,
                                          prepare=lambda r, s=spot: (click_in_image(page.page, "#picker img", *s), None)))
                    _extend(rows, measure(f"control.class_token.step{number}",
                                          f"'Query the class token', step {number}", "control",
                                          page.page.get_by_role("button", name="Query the class token").click))
            for view_name, spec in views.VIEWS.items():
                if spec.step != number or spec.click is None:
                    continue
                measure(f"control.click.{view_name}", f"{view_name}: patch clicked ({spec.click}), step {number}",
                        "control", None, args.repeats,
                        prepare=lambda r, v=view_name: (click_in_image(
                            page.page, f"#{view_elem_id(v)} img", *PATCH_SPOTS[r % len(PATCH_SPOTS)]), None))
        if page.errors:
            notes.append(f"{model}: uncaught errors in the page: {page.errors[:3]}")
    finally:
        page.close()
    return rows


def short_label(label: str) -> str:
    """A menu label without its description ("ViT-Fashion/4 · vit_fashion_mnist — shipped checkpoint, ...")."""
    return label.split(" — ")[0].strip()


def _extend(rows: list[Row], row: Row) -> None:
    """Repeats of one action measured one at a time (interleaved with another): fold them into the first row."""
    first = next(r for r in rows if r.id == row.id and r.model == row.model)
    if first is not row:
        rows.remove(row)
        for name in ("painted", "server", "render", "to_join", "post_wire", "data_bytes", "static_bytes", "samples"):
            getattr(first, name).extend(getattr(row, name))
        first.error = first.error or row.error


def _record(row: Row, sample: dict) -> None:
    row.samples.append(sample)
    if sample["error"]:
        row.error = sample["error"]
        return
    row.painted.append(sample["painted_ms"])
    row.server.append(sample["server_ms"])
    for name in ("render", "to_join", "post_wire"):
        if sample[f"{name}_ms"] is not None:
            getattr(row, name).append(sample[f"{name}_ms"])
    row.data_bytes.append(sample["data_bytes"])
    row.static_bytes.append(sample["static_bytes"])


def _progress(row: Row) -> None:
    if row.error and not row.painted:
        print(f"  {row.id}: ERROR {row.error}", flush=True)
    elif row.painted:
        print(f"  {row.id}: painted {row.painted[-1]:.0f} ms, server {row.server[-1]:.0f} ms, "
              f"{row.data_bytes[-1] / 1e3:.0f} KB", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Output

COLUMNS = ("model", "measurement", "painted ms", "server ms", "painted-server", "to join", "post+wire", "render",
           "data KB", "static KB", "n", "result")
NUMERIC = set(range(2, 11))


def _num(value, digits: int = 0) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _result(row: Row) -> str:
    if row.status != "MISS":
        return row.status
    short = []
    if row.excess_ms is not None and row.kind == "control" and row.excess_ms > CONTROL_SLACK_MS:
        short.append(f"+{row.excess_ms:.0f} ms")
    if row.bytes is not None and row.bytes > MAX_STEP_BYTES and row.model.startswith(BYTES_TARGET_MODEL):
        short.append(f"{row.bytes / 1e6:.2f} MB")
    return "MISS: " + ", ".join(short)


def table_rows(rows: list[Row]) -> list[list[str]]:
    def median(values):
        return statistics.median(values) if values else None

    return [[r.model, r.label, _num(r.painted_ms), _num(r.server_ms), _num(r.excess_ms), _num(median(r.to_join)),
             _num(median(r.post_wire)), _num(r.render_ms), _num(None if r.bytes is None else r.bytes / 1e3, 1),
             _num(None if not r.static_bytes else median(r.static_bytes) / 1e3, 1), str(len(r.painted)), _result(r)]
            for r in rows]


def format_table(rows: list[Row]) -> str:
    body = table_rows(rows)
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(COLUMNS)]
    right = NUMERIC

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths])] + [line(b) for b in body])


def format_markdown(rows: list[Row], machine: dict | None = None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---:" if i in NUMERIC else "---" for i in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |" for b in table_rows(rows)]
    if machine:
        lines += ["", f"Measured on {machine_line(machine)}."]
    return "\n".join(lines)


def heavy_outputs(row: Row, top: int = 4) -> list[str]:
    """The biggest outputs of a row's last measured sample: the JSON in the event stream and the files it points to."""
    sample = next((s for s in reversed(row.samples) if not s.get("error")), None)
    if sample is None:
        return []
    sizes: dict[str, list[int]] = {}
    for event in sample["events"]:
        for output in event["outputs"]:
            json_chars, files = sizes.setdefault(output["output"], [0, 0])
            sizes[output["output"]] = [json_chars + output["json_chars"], files + output["file_bytes"]]
    ranked = sorted(sizes.items(), key=lambda kv: -sum(kv[1]))[:top]
    return [f"{name} {(j + f) / 1e3:.0f} KB" + (f" ({f / 1e3:.0f} KB of files)" if f else "") for name, (j, f) in ranked
            if j + f >= 1000]


def explain_misses(rows: list[Row]) -> list[str]:
    lines = []
    for row in rows:
        if row.status == "MISS":
            heavy = heavy_outputs(row)
            sample = next((s for s in reversed(row.samples) if not s.get("error")), {})
            last = ", ".join(f"{owner.removeprefix('view-')} {t} ms" for owner, t in sample.get("last_changed", [])[:3])
            lines.append(f"{row.model} / {row.id}: {'; '.join(row.misses)}"
                         + (f"; render {row.render_ms:.0f} ms after the last message" if row.render_ms else "")
                         + (f"; changed last: {last}" if last else "")
                         + (f". Biggest outputs: {', '.join(heavy)}" if heavy else ""))
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Main

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m explorer.app.browser_bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=None, metavar="NAME",
                   help=f"{SHIPPED!r} (the --checkpoint) or a preset (random weights); repeatable; default: "
                        f"{' and '.join(DEFAULT_MODELS)} (--quick: {SHIPPED})")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                   help="the shipped model's checkpoint stem (.safetensors + .json) (default: %(default)s)")
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="the uploaded image (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=None, help="changes per control (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help=f"{SHIPPED} only, one change per control (the smoke test)")
    p.add_argument("--quiet-ms", type=float, default=300.0,
                   help="an action is over when nothing has changed on the page for this long (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds one action may take (default: %(default)s)")
    p.add_argument("--json", type=Path, default=ROOT / "bench-results" / "browser_bench.json",
                   help="(default: %(default)s)")
    p.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = p.parse_args(argv)
    args.models = args.model or ([SHIPPED] if args.quick else list(DEFAULT_MODELS))
    args.repeats = max(1, args.repeats or (1 if args.quick else 3))
    return args


def run(args) -> tuple[dict, list[Row]]:
    """Start the app and the browser, measure every model, stop both (always)."""
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    machine = machine_info()
    machine["chromium"] = CHROMIUM
    report: dict = {"machine": machine, "targets": TARGETS, "notes": [], "models": {},
                    "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                                 if k != "model"}}
    print(f"explorer.app.browser_bench on {machine_line(machine)}", flush=True)
    busy = cpu_busy(1.0)
    machine["cpu_busy_before_start"] = busy
    if busy is not None and busy > 0.15:
        report["notes"].append(f"Other processes kept {busy:.0%} of the CPUs busy just before the start: times are "
                               f"slower and noisier than on a quiet machine.")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="explorer-browser-bench-") as folder:
        temp = Path(folder)
        checkpoint_dir = prepare_checkpoints(args.models, args.checkpoint, temp / "checkpoints")
        survey = Path(str(args.checkpoint) + "_survey")  # the shipped checkpoint's survey: its views as shipped
        if SHIPPED in args.models and survey.is_dir():
            (checkpoint_dir / survey.name).symlink_to(survey.resolve())
        with AppProcess(checkpoint_dir, temp) as app, sync_playwright() as playwright:
            report["app_http_200_s"] = round(app.started_s, 2)
            print(f"app up on {app.url} in {app.started_s:.1f} s; Chromium ...", flush=True)
            names = Names(app.config())
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                machine["chromium_version"] = browser.version
                for name in args.models:
                    try:
                        model_rows = run_model(browser, app, names, name, args, args.checkpoint, args.image,
                                               report["notes"])
                    except Exception as error:  # the page broke for this model: report it, go on with the next
                        model_rows = [Row("model", "the page for this model", "model", name,
                                          error=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}")]
                        print(f"  ERROR {model_rows[0].error}", flush=True)
                    rows += model_rows
            finally:
                browser.close()
            report["app_log_tail"] = app.log()[-1500:]
    for row in rows:
        judge(row)
    report["rows"] = [r.to_dict() for r in rows]
    report["summary"] = {"pass": sum(r.status == "PASS" for r in rows), "miss": sum(r.status == "MISS" for r in rows),
                         "error": sum(r.status == "ERROR" for r in rows),
                         "misses": explain_misses(rows),
                         "errors": [f"{r.model} {r.id}: {r.error}" for r in rows if r.error],
                         "seconds": round(time.perf_counter() - started, 1)}
    return report, rows


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        print("explorer.app.browser_bench needs playwright: pip install playwright (never `playwright install`: it "
              f"uses Debian's chromium at {CHROMIUM}).", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).is_file():
        print(f"explorer.app.browser_bench needs a browser at {CHROMIUM}: apt-get install chromium.", file=sys.stderr)
        return 2
    if SHIPPED in args.models and not Path(str(args.checkpoint) + ".json").is_file():
        print(f"No checkpoint at {args.checkpoint}(.json/.safetensors): pass --checkpoint, or --model without "
              f"{SHIPPED!r}.", file=sys.stderr)
        return 2
    try:
        report, rows = run(args)
    except Exception as error:  # the app or the browser could not be started: nothing was measured
        print(f"explorer.app.browser_bench could not run: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print()
    print(format_table(rows))
    summary = report["summary"]
    print(f"\n{summary['pass']} PASS, {summary['miss']} MISS, {summary['error']} ERROR. Medians of up to "
          f"{args.repeats} changes per control; upload and tabs once per model. Targets: {TARGETS['control']} "
          f"(controls); {TARGETS['bytes']}.")
    for line in summary["misses"]:
        print(f"MISS {line}")
    for line in summary["errors"]:
        print(f"ERROR {line}")
    for line in report["notes"]:
        print(line)
    if args.markdown:
        print()
        print(format_markdown(rows, report["machine"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"\nWrote {args.json} ({summary['seconds']} s).")
    return 0


def console() -> None:
    """`python -m explorer.app.browser_bench`."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # as bench.console: skip a teardown where a native library thread may abort the process


if __name__ == "__main__":
    console()
