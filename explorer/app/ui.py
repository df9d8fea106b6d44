"""The Gradio page, built by a factory from the view registry: `build_demo(server)` -> gr.Blocks.

Layout and event wiring only. The views, their options and their order come from explorer.app.views (`PAGE`),
the work from explorer.app.server (`Server`: models, traces, counters), the words from explorer.app.text.
The model runs once per (image, model, device); every control redraws from the cached trace, and only what reads it.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

# Before gradio is imported: no analytics, no version check, no telemetry.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from contextlib import nullcontext  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from itertools import groupby  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from gradio import processing_utils  # noqa: E402
from gradio.context import LocalContext  # noqa: E402

from . import interact, screen, transport, views  # noqa: E402
from .plot import PlotView, plotly_js  # noqa: E402
from .server import USER_ERRORS, Server  # noqa: E402
from .text import STEPS, model_card  # noqa: E402
from .views import CONTROLS, PAGE, Control, Options  # noqa: E402
from .zerogpu import model_duration, on_gpu  # noqa: E402
from ..weights import WeightsUnavailable  # noqa: E402

LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
NO_SELECTION = "Query: **the class token** (token 0)."
# The option inputs of every view event, in Options' field order: the selected patch (a State) then each control.
OPTION_NAMES = views.OPTION_NAMES
# Per-visitor state (gr.State: kept by the server per browser session, never sent to a client).
STATES = ("key", "source", "selected", "dropped", "step", "model_in_use")
# Outputs of an upload or a model change, before the views: the states, the header and the controls a model adapts.
HEADER_OUTPUTS = ("key", "source", "selected", "dropped", "model_in_use", "model", "card", "status", "runs", "picker",
                  "selection", *(name for name, c in CONTROLS.items() if c.adapt is not None))
# Launch and queue settings, shared with the tests: never a share link, uploads up to the settings' limit, only
# assets/ (and the plot views' plotly.js) served from disk; two requests at once, 32 waiting.
QUEUE = dict(default_concurrency_limit=2, max_size=32)
DELETE_CACHE = (1800, 3600)  # uploads: checked every 30 min, removed after an hour


def launch_options(server: Server) -> dict:
    settings = server.settings
    return dict(share=False, max_file_size=f"{settings.max_upload_mb}mb",
                allowed_paths=[str(settings.assets_dir), str(plotly_js())],
                ssr_mode=False, footer_links=["api"], **page_assets())


def page_assets() -> dict:
    """The page's own style and script for keyboard, screen-reader and phone use (a11y.css, a11y.js beside this
    module; docs/accessibility.md), as launch() takes them."""
    here = Path(__file__).parent
    # Gradio's default theme writes info text, a slider's range and a menu's text at #bbbbc2 on white (1.9:1):
    # the same theme with that text at 4.5:1 or more (WCAG AA).
    theme = gr.themes.Default().set(body_text_color_subdued="*neutral_600",
                                    body_text_color_subdued_dark="*neutral_300")
    # In <head> as it is: launch(css=) would scope every rule under `.gradio-container .contain`, out of reach of
    # the page's own padding.
    return dict(theme=theme, head=f"<style>{(here / 'a11y.css').read_text()}</style>"
                                  f"<script>{(here / 'a11y.js').read_text()}</script>")


class ImageUpload(gr.Image):
    """gr.Image that passes the uploaded file's path on unopened: explorer.images.open_image opens it and says in one
    sentence what is wrong with a broken file, a non-image or a decompression bomb (gr.Image would fail first)."""

    is_template = True  # the browser side is gr.Image's

    def preprocess(self, payload):
        if payload is None:
            return None
        if payload.path is None:  # a data: URL (pasted)
            return super().preprocess(payload)
        return str(payload.path)


def reads(view_names) -> tuple[str, ...]:
    """The options these views read (their `reads=`), in Options' field order: the inputs their events send. A view
    sees only what it declares (views.DeclaredOptions), so the others need not travel with the event; each input
    fewer is less for Gradio's page to gather and mark busy on every change."""
    wanted = {option for name in view_names for option in views.VIEWS[name].reads}
    return tuple(name for name in OPTION_NAMES if name in wanted)


class PictureView(gr.Image):
    """gr.Image for pictures the app draws (the patch picker, image views), written the way each kind compresses
    (explorer.app.transport.picture_file: a drawing as a lossless PNG, a photograph as a JPEG)."""

    is_template = True  # the browser side is gr.Image's

    def postprocess(self, value):
        if isinstance(value, np.ndarray) and self.format == "png":
            data, suffix = transport.picture_file(value)
            value = processing_utils.save_bytes_to_cache(data, "image" + suffix, cache_dir=self.GRADIO_CACHE)
        return super().postprocess(value)


def _named_options(names, values) -> Options:
    """Options from the named option inputs, each converted to its field's type; an option not given, or an empty
    one for a number, keeps the default. Derived from Options, so a new control needs nothing here."""
    default = Options()
    changes = {}
    for name, raw in zip(names, values):
        kind = type(getattr(default, name))
        if name == "selected":
            changes[name] = None if raw is None else int(raw)
        elif raw is None or (raw == "" and kind is not str):
            continue
        else:
            changes[name] = tuple(sorted(int(i) for i in raw)) if kind is tuple else kind(raw)
    return Options(**changes)


class Handlers:
    """The event handlers, each a thin call into the server and the views. Inputs and outputs by name as in
    HEADER_OUTPUTS, views.all_views() and OPTION_NAMES. Each that may run a model is spaces.GPU-decorated where the
    package is importable (explorer.app.zerogpu): one asking (image, model, ...) for its model, one drawing from a
    trace (key, source, ...) (after the click's event data, if any) for the key's."""

    def __init__(self, server: Server):
        self.server = server
        self.demo = None  # the Blocks, once built (forget_replaced)
        self.default_model = server.registry.default_label()
        self.availability = server.registry.availability_note()
        tracing = lambda image, model, *rest, **kw: model_duration(server, model, "trace")  # noqa: E731
        self.analyse = on_gpu(self.analyse, tracing)
        self.choose_model = on_gpu(self.choose_model, tracing)
        self.predict = on_gpu(self.predict, lambda image, model, *rest, **kw: model_duration(server, model, "predict"))
        for name in ("select_patch", "select_class_token", "new_random_indices"):
            setattr(self, name, on_gpu(getattr(self, name), self._drawing))
        self.draw_slow = on_gpu(self.draw_slow, lambda key, *rest, **kw: model_duration(
            server, key[1] if isinstance(key, (list, tuple)) and len(key) == 3 else None, "curves"))
        self._slow_tokens: dict = {}  # session -> the token of its newest slow-view request (draw_slow)
        self._slow_lock = threading.Lock()

    def _drawing(self, *args, **kwargs) -> int:
        """The GPU seconds of an event that draws from the trace of its key (image sha256, model label, device)."""
        key = next((a for a in args[:2] if isinstance(a, (list, tuple)) and len(a) == 3), None)
        return model_duration(self.server, key[1] if key else None, "draw")

    def forget_replaced(self) -> None:
        """Drop what Gradio's session state keeps of components replaced in this visitor's page. An output given a
        gr.update becomes a new component instance with an id of its own; a plain value sent to it later is stored
        under that new id as well (gradio 6.31 blocks.py, postprocess_data), with the view's whole value, so each tab
        opened then each image analysed added every view once more: ~0.75 MB per image, kept for the session's life.
        Only ids the page does not have are dropped; the page's own entries (the last values) stay."""
        holder = getattr(self.demo, "state_holder", None)
        session = getattr(LocalContext.request.get(None), "session_hash", None)  # the event's, set by Gradio
        if holder is None or session is None or session not in holder:
            return
        state = holder.session_data[session]
        page = self.demo.default_config.blocks
        for key in [key for key in state.blocks_config.blocks if key not in page]:
            del state.blocks_config.blocks[key]
            state.config_values.pop(key, None)

    def runs_text(self) -> str:
        return f"model runs: {self.server.runs}"  # not stats(): that names the device, which imports torch

    def _entry(self, key, source):
        """The entry of this visitor's upload (the server traces it again if the cache dropped it), or None with a
        one-sentence warning."""
        if not key:  # nothing uploaded yet
            return None
        try:
            return self.server.entry(key, source)
        except USER_ERRORS as error:
            gr.Warning(str(error))
            return None

    def choose_model(self, image, model, step, model_in_use, *option_values, progress=gr.Progress(track_tqdm=True)):
        """A model chosen in the menu, by mouse or keyboard (the dropdown's `input`, see _control_triggers): analyse
        with it, unless it is the model in use already (the menu only lost focus)."""
        if model == model_in_use:
            return [gr.skip()] * (len(HEADER_OUTPUTS) + len(views.all_views()))
        # The class's analyse, not the instance's GPU-decorated one: this handler is decorated itself.
        return Handlers.analyse(self, image, model, step, model_in_use, *option_values, progress=progress)

    def analyse(self, image, model, step, model_in_use, *option_values, progress=gr.Progress(track_tqdm=True),
                status=""):
        """Upload or model change: run the model once (unless cached) and draw the visible step."""
        self.forget_replaced()
        # a new image: no patch selected, every patch back
        options = _named_options(OPTION_NAMES[1:], option_values[1:]).replace(dropped=())
        registry = self.server.registry
        try:
            spec = registry.resolve(model or self.default_model)
            if image is None:
                registry.get(spec.label, progress)  # load now, so a missing weight file is told at once
                # No image (none yet, removed, or refused before it reached us): no views of an earlier image stay
                # under a card that asks for one.
                header = {"key": None, "source": None, "selected": None, "dropped": (), "model_in_use": spec.label,
                          "model": spec.label, "card": model_card(spec=spec, availability=self.availability),
                          "status": status, "runs": self.runs_text(), "picker": None, "selection": NO_SELECTION}
                return [header.get(name, gr.skip()) for name in HEADER_OUTPUTS] + [None] * len(views.all_views())
            # The trace holds what the step shown reads; another step that reads more traces it again, once.
            stages = views.stages_of(views.step_views(int(step or 0)))
            entry = self.server.analyse(image, spec.label, progress, stages)
        except USER_ERRORS as error:
            message = str(error)
            gr.Warning(message)
            # Back to the model in use; if that is the one that failed (the default, at start), to one needing no
            # download.
            chosen = model or self.default_model
            working = model_in_use if model_in_use and model_in_use != chosen else registry.fallback_label()
            if isinstance(error, WeightsUnavailable) and working != chosen:
                return self.analyse(image, working, step, working, *option_values, progress=progress,
                                    status=f"⚠️ {message} Showing {working} instead." if model_in_use == chosen
                                    else f"⚠️ {message}")
            values = [gr.skip()] * (len(HEADER_OUTPUTS) + len(views.all_views()))
            values[HEADER_OUTPUTS.index("model")] = working
            values[HEADER_OUTPUTS.index("status")] = f"⚠️ {message}"
            return values
        config = entry.config
        header = {
            "key": entry.key, "source": (image, spec.label) if isinstance(image, str) else None, "selected": None,
            "dropped": (),
            "model_in_use": spec.label, "model": spec.label,
            "card": model_card(entry, availability=self.availability), "status": status, "runs": self.runs_text(),
            "picker": _picker(entry, None), "selection": views.selection_text(entry, None),
        }
        adapted = {}
        for name, control in CONTROLS.items():
            if control.adapt is not None:
                props, adapted[name] = control.adapt(entry, getattr(options, name))
                header[name] = gr.update(value=adapted[name], **props)
        options = options.replace(**adapted)
        visible = views.step_views(int(step or 0))
        drawn = dict(zip(visible, _render(entry, visible, options)))
        self.server.prefetch_untrained(entry)
        return [header[name] for name in HEADER_OUTPUTS] + [drawn.get(name, HIDDEN) for name in views.all_views()]

    def show_step(self, step: int):
        """A tab clicked: draw its views and show its controls, and take the other steps' views and controls off
        the page (STEP_TOGGLED): Gradio's page does work for every mounted component at each event (it copies each
        one's props whenever an event's status changes), so steps left mounted in hidden tabs made every later
        event slower (~100 ms once every tab had been opened; ViT-B/16's 1,000-class picker alone ~60 ms). A step
        is drawn again, from the cached trace, when its tab is opened. (Components one by one: a layout block as an
        output would have Gradio copy every component inside it at each status change.)"""
        names = views.step_views(step)
        options_read = reads(names)
        toggled = [gr.update(visible=_step_of(name) == step) for name in STEP_TOGGLED[step]]

        def handler(key, source, *option_values):
            self.forget_replaced()
            entry = self._entry(key, source)
            if entry is None:
                return [step] + [gr.update(visible=True)] * len(names) + toggled
            drawn = _render(entry, names, _named_options(options_read, option_values))
            return [step] + [_shown(value) for value in drawn] + toggled
        return on_gpu(handler, self._drawing)

    def redraw(self, names: list[str]):
        """A control changed: redraw the views that read it (views.affected)."""
        options_read = reads(names)

        def handler(key, source, *option_values):
            entry = self._entry(key, source)
            values = ([gr.skip()] * len(names) if entry is None
                      else _render(entry, names, _named_options(options_read, option_values)))
            return values[0] if len(values) == 1 else values  # Gradio takes one output's value bare
        return on_gpu(handler, self._drawing)

    def select_patch(self, evt: gr.SelectData, key, source, step, *option_values):
        """A click on the picker: evt.index is [x, y] in the picker image's pixels. (The event data comes first:
        Gradio passes it only to a parameter before *option_values.)"""
        entry = self._entry(key, source)
        if entry is None:
            return [gr.skip()] * (3 + len(SELECTED_VIEWS))
        x, y = evt.index[0], evt.index[1]
        return self._selected(entry, views.patch_at(entry.config, x, y), step, option_values)

    def select_class_token(self, key, source, step, *option_values):
        entry = self._entry(key, source)
        if entry is None:
            return [gr.skip()] * (3 + len(SELECTED_VIEWS))
        return self._selected(entry, None, step, option_values)

    def _selected(self, entry, selected, step, option_values):
        options = _named_options(SELECTED_READS, option_values).replace(selected=selected)
        visible = views.affected(int(step or 0), "selected")
        drawn = dict(zip(visible, _render(entry, visible, options)))
        return ([selected, _picker(entry, selected), views.selection_text(entry, selected)]
                + [drawn.get(name, HIDDEN) for name in SELECTED_VIEWS])

    def toggle_patch(self, option: str):
        """A click on a view whose clicks toggle patches in `option` (views.View.click): that patch goes out of (or
        back into) the option's tuple, and the visible views that read it are redrawn."""
        names = [name for step in range(len(STEPS)) for name in views.affected(step, option)]
        options_read = reads(names)

        def handler(evt: gr.SelectData, key, source, step, *option_values):
            entry = self._entry(key, source)
            if entry is None:
                return [gr.skip()] * (1 + len(names))
            options = _named_options(options_read, option_values)
            patch = views.patch_at(entry.config, evt.index[0], evt.index[1])
            options = options.replace(**{option: views.toggle_patch(getattr(options, option), patch,
                                                                    entry.config.num_patches)})
            return [getattr(options, option)] + self._visible(entry, names, step, options)
        return on_gpu(handler, self._drawing)

    def clear_patches(self, option: str):
        """Every patch back into the option's tuple."""
        names = [name for step in range(len(STEPS)) for name in views.affected(step, option)]
        options_read = reads(names)

        def handler(key, source, step, *option_values):
            entry = self._entry(key, source)
            if entry is None:
                return [gr.skip()] * (1 + len(names))
            options = _named_options(options_read, option_values).replace(**{option: ()})
            return [()] + self._visible(entry, names, step, options)
        return on_gpu(handler, self._drawing)

    def _visible(self, entry, names, step, options) -> list:
        """The named views drawn where they are on the visible step, emptied elsewhere (drawn when their tab opens)."""
        visible = [name for name in names if VIEWS_BY_STEP.get(name) == int(step or 0)]
        drawn = dict(zip(visible, _render(entry, visible, options)))
        return [drawn.get(name, HIDDEN) for name in names]

    def new_random_indices(self, key, source, *option_values):
        entry = self._entry(key, source)
        D = entry.config.hidden_dim if entry is not None else 768
        names = views.affected(1, "indices")
        options = _named_options(reads(names), option_values).replace(indices=views.random_indices(D))
        values = _render(entry, names, options) if entry is not None else [gr.skip()] * len(names)
        return [options.indices] + values

    def predict(self, image, model: str, k: int = 5) -> dict:
        """(image file, model name) -> {"model", "weights", "source", "trained", "top_k": [{"label", "probability"}],
        "notes"}."""
        if image is None:
            raise gr.Error("No image was given; send an image file (JPEG, PNG, WebP, GIF or BMP).")
        try:
            return self.server.predict(image, model or self.default_model, int(k or 5))
        except USER_ERRORS as error:
            raise gr.Error(str(error)) from None

    def stats(self) -> dict:
        """Server-side counters: model runs, trace-cache entries and bytes, hits and misses, models loaded."""
        return self.server.stats()

    def draw_slow(self, key, source, step, request: gr.Request = None, progress=gr.Progress(), *option_values):
        """After an event that showed the visible step's slow views as pending (views.SLOW_VIEWS): compute them,
        with a progress bar. A newer draw or cancel_slow of this visitor (a new image, model or class) stops it.
        (Gradio fills in `request` and `progress` only where they stand before *option_values.)"""
        names = [name for name in views.SLOW_VIEWS if VIEWS_BY_STEP[name] == int(step or 0)]
        entry = self._entry(key, source) if names else None
        if entry is None:
            return _outputs([gr.skip()] * len(views.SLOW_VIEWS))
        session = request.session_hash if request is not None else None
        token = self._new_slow_token(session)
        options = _named_options(reads(views.SLOW_VIEWS), option_values)

        def report(done: int, total: int) -> None:
            if self._slow_tokens.get(session) != token:
                raise _Superseded
            progress(done / total, desc=f"faithfulness curves: {done} of {total} forwards")
        try:
            with _screen():
                drawn = {name: transport.encode(views.draw_slow(entry, name, options, report)) for name in names}
        except _Superseded:
            return _outputs([gr.skip()] * len(views.SLOW_VIEWS))
        return _outputs([drawn.get(name, gr.skip()) for name in views.SLOW_VIEWS])

    def cancel_slow(self, request: gr.Request = None) -> None:
        """Stop this visitor's slow views being computed (at their next forward)."""
        self._new_slow_token(request.session_hash if request is not None else None)

    def _new_slow_token(self, session) -> int:
        with self._slow_lock:
            self._slow_tokens[session] = self._slow_tokens.get(session, 0) + 1
            return self._slow_tokens[session]


class _Superseded(Exception):
    """A slow view's computation that a newer request of the same visitor replaced."""


def _outputs(values: list):
    return values[0] if len(values) == 1 else values  # Gradio takes one output's value bare


def _screen():
    """Draw for the width of this event's visitor's screen (explorer.app.screen: the page's cookie, which the event's
    request carries; none, a wide screen)."""
    request = LocalContext.request.get(None)
    return screen.at_width(screen.width_of(getattr(request, "cookies", None) if request is not None else None))


def _render(entry, names, options) -> list:
    """views.render_views, each image view's picture sent with its alt text (what it shows, in words), laid out for
    the visitor's screen."""
    with _screen():
        values = views.render_views(entry, names, options)
    return [gr.update(value=value, alt_text=views.alt_text(entry, name, options))
            if views.VIEWS[name].kind == "image" else value for name, value in zip(names, values)]


def _picker(entry, selected):
    """The patch picker's picture with its alt text."""
    return gr.update(value=views.patch_picker(entry, selected), alt_text=views.picker_alt(entry, selected))


def _shown(value):
    """A drawn view's value, its component made visible (an image's update keeps its alt text)."""
    if isinstance(value, dict) and value.get("__type__") == "update":
        return {**value, "visible": True}
    return gr.update(visible=True, value=value)


# What an event sends for a view on a step that is not shown: nothing (its tab draws it from the cached trace when
# opened). Not gr.skip(): Gradio handles a skip or gr.update as a new component (a new instance, its config copied:
# ~2.4 ms per output against ~0.2 ms for None, measured), and the page would keep copying the old figure's JSON.
HIDDEN = None
# The views that read the selected patch, over all steps; only the visible step's are drawn.
SELECTED_VIEWS = [name for step in range(len(STEPS)) for name in views.affected(step, "selected")]
# The options a patch click sends (the patch itself comes from the click).
SELECTED_READS = tuple(name for name in reads(SELECTED_VIEWS) if name != "selected")
VIEWS_BY_STEP = {name: spec.step for name, spec in views.VIEWS.items()}
def _step_of(name: str) -> int:
    """The step a view or a control is on."""
    return VIEWS_BY_STEP[name] if name in VIEWS_BY_STEP else CONTROLS[name].step


# For each step, what its tab click shows or takes off the page besides its own views: every control (its own
# shown, the others hidden) and the other steps' views (Handlers.show_step).
STEP_TOGGLED = [list(CONTROLS) + [name for name in views.all_views() if VIEWS_BY_STEP[name] != step]
                for step in range(len(STEPS))]


def _elem_id(name: str) -> str:
    return name.replace(".", "-").replace("_", "-")


def view_elem_id(name: str) -> str:
    """A view's element id on the page: "view-<name>" (dots and underscores as dashes), unless the view sets its own.
    (The browser benchmark finds views by it.)"""
    return views.VIEWS[name].props.get("elem_id") or "view-" + _elem_id(name)


def control_elem_id(name: str) -> str:
    """A control's element id on the page."""
    return CONTROLS[name].props.get("elem_id") or _elem_id(name)


def _view_component(spec: views.View) -> gr.components.Component:
    props = {**spec.props, "elem_id": view_elem_id(spec.name)}
    if spec.kind == "markdown":
        return gr.Markdown(latex_delimiters=LATEX, **props)
    if spec.kind == "plot":
        return PlotView(label=spec.label, **props)
    if spec.kind == "image":
        return PictureView(label=spec.label, interactive=False, buttons=[], **props)
    raise ValueError(f"View {spec.name} has an unknown kind {spec.kind!r}.")


def _control_component(spec: Control) -> gr.components.Component:
    props = {"label": spec.label, **spec.props, "elem_id": control_elem_id(spec.name)}
    kinds = {"slider": gr.Slider, "dropdown": gr.Dropdown, "radio": gr.Radio, "textbox": gr.Textbox}
    if spec.kind not in kinds:
        raise ValueError(f"Control {spec.name} has an unknown kind {spec.kind!r}.")
    return kinds[spec.kind](**props)


def _control_triggers(component, kind: str) -> list:
    """The events that mean "changed by the visitor" for each kind of control. A dropdown's is `input`, not `select`:
    Gradio 6 fires `select` only for a mouse choice, `input` for a mouse choice and for one made with the keyboard
    (arrows and Enter, or a filter typed and Enter; it also fires when the menu merely loses focus)."""
    triggers = {"slider": ("input",), "dropdown": ("input",), "radio": ("input",), "textbox": ("submit", "blur")}
    return [getattr(component, event) for event in triggers[kind]]


@dataclass
class App:
    """The built page: the Blocks, its components by name (views, controls, states, header), the handlers."""

    demo: gr.Blocks
    components: dict
    handlers: Handlers
    server: Server


def build_app(server: Server) -> App:
    """The whole page for `server`: layout from views.PAGE, events wired from the declarations."""
    handlers = Handlers(server)
    drawing = interact.Drawing(_render, _named_options, reads, HIDDEN, PictureView, ImageUpload)
    default_model = handlers.default_model
    settings = server.settings
    c: dict[str, gr.components.Component] = {}
    with gr.Blocks(title="ViT Explorer", delete_cache=DELETE_CACHE) as demo:
        c["key"] = gr.State(None)  # (image sha256, model label, device): the trace itself stays in the server
        c["source"] = gr.State(None)  # (upload path, model label): to trace again if the cache has dropped this trace
        c["selected"] = gr.State(None)  # the selected patch index, None for the class token
        c["dropped"] = gr.State(())  # the patches taken out of the sequence (step 5)
        c["step"] = gr.State(0)  # the visible step
        c["model_in_use"] = gr.State(default_model)

        gr.Markdown("# ViT Explorer\nA Vision Transformer ([Dosovitskiy et al. 2020, *An Image is Worth 16x16 Words*]"
                    "(https://arxiv.org/abs/2010.11929)) on your own image, one equation at a time. The model runs once "
                    "per image; every control below redraws from that one run.")
        with gr.Row(equal_height=False, elem_id="layout"):
            with gr.Column(scale=1, min_width=320):
                c["image"] = ImageUpload(label=f"Image (up to {settings.max_upload_mb} MB): drop, paste or click to "
                                         "upload", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                                         elem_id="upload", height=280)
                examples = gr.Examples(examples=[[str(p)] for p in settings.examples()], inputs=[c["image"]],
                                       label="Examples (photos: public domain / CC0; Fashion-MNIST: MIT — see "
                                       "assets/README.md)", examples_per_page=12)
                c["model"] = gr.Dropdown(choices=server.registry.choices(), value=default_model, label="Model",
                                         info=server.registry.menu_info(), elem_id="model")
                c["status"] = gr.Markdown("", elem_id="status")
                c["picker"] = PictureView(label="What the model sees, with its patch grid: click a patch",
                                       interactive=False, format="png", elem_id="picker", height=360, buttons=[])
                c["selection"] = gr.Markdown(NO_SELECTION, elem_id="selection")
                class_token_button = gr.Button("Query the class token", size="sm", elem_id="class-token")
                c["runs"] = gr.Markdown(handlers.runs_text, elem_id="model-runs")  # a callable: fresh on every load
                interact.left_column(c, server, drawing)  # the heads-off strip, the second image or model
            with gr.Column(scale=3):
                c["card"] = gr.Markdown(model_card(spec=server.registry.resolve(default_model),
                                                   availability=handlers.availability), elem_id="model-card")
                tabs = []
                clear_buttons = {}
                with gr.Tabs(selected=0, elem_id="steps"):
                    for number, title in enumerate(STEPS):
                        with gr.Tab(title, id=number, elem_id=f"tab-{number}") as tab:
                            tabs.append(tab)
                            interact.step_top(c, number, drawing)  # compared with B, when there is a B
                            items = [item for item in PAGE if item.step == number]
                            for row, group in groupby(items, key=lambda item: item.row):
                                group = list(group)
                                with (gr.Row() if row is not None and len(group) > 1 else nullcontext()):
                                    for item in group:
                                        if isinstance(item, Control):
                                            c[item.name] = _control_component(item)
                                            if item.name == "indices":
                                                random_button = gr.Button("Random", scale=1, elem_id="random-indices")
                                        else:
                                            c[item.name] = _view_component(item)
                                for item in group:
                                    interact.under_view(c, item.name)
                                for item in group:  # under a clickable view's row: the button that undoes clicks
                                    if isinstance(item, views.View) and item.click is not None:
                                        clear_buttons[item.name] = gr.Button(
                                            "Put every patch back", size="sm", elem_id=f"clear-{_elem_id(item.name)}")

        # Hidden components of the /predict API.
        with gr.Row(visible=False):
            api_image = ImageUpload(type="filepath", image_mode=None, label="image")
            api_model = gr.Textbox(value=default_model, label="model")
            api_k = gr.Number(value=5, precision=0, label="k")
            api_result = gr.JSON(label="prediction")
            api_button = gr.Button("predict")

        _wire(c, handlers, tabs, examples, class_token_button, random_button, clear_buttons)
        interact.wire(c, handlers, drawing)
        api_button.click(handlers.predict, inputs=[api_image, api_model, api_k], outputs=[api_result],
                         api_name="predict")
        gr.api(handlers.stats, api_name="stats")
    handlers.demo = demo
    return App(demo, c, handlers, server)


def _wire(c: dict, handlers: Handlers, tabs: list, examples, class_token_button, random_button, clear_buttons) -> None:
    """Every event, derived from the declarations: an upload or model change, a tab, a control, a patch click."""
    option_inputs = [c[name] for name in OPTION_NAMES]

    def read_by(names):  # the option inputs of an event that draws these views
        return [c[name] for name in reads(names)]
    state = [c["key"], c["source"]]
    view_outputs = [c[name] for name in views.all_views()]
    # An upload (file or paste), a model chosen, an example clicked. Not image.change: it fires twice when one image
    # replaces another.
    analyse_wiring = dict(inputs=[c["image"], c["model"], c["step"], c["model_in_use"]] + option_inputs,
                          outputs=[c[n] for n in HEADER_OUTPUTS] + view_outputs,
                          trigger_mode="always_last", show_progress_on=[c["card"], c["picker"]])
    def then_slow(event, names):  # an event that shows slow views pending is followed by their drawing
        if set(names) & set(views.SLOW_VIEWS):
            event.then(handlers.draw_slow, inputs=state + [c["step"]] + read_by(views.SLOW_VIEWS),
                       outputs=[c[n] for n in views.SLOW_VIEWS], api_visibility="private")
    then_slow(gr.on([c["image"].upload], handlers.analyse, api_name="analyse", **analyse_wiring), views.all_views())
    then_slow(c["model"].input(handlers.choose_model, api_visibility="private", **analyse_wiring), views.all_views())
    then_slow(examples.load_input_event.then(handlers.analyse, api_visibility="private", **analyse_wiring),
              views.all_views())
    for number, tab in enumerate(tabs):
        then_slow(tab.select(handlers.show_step(number), inputs=state + read_by(views.step_views(number)),
                             outputs=[c["step"]] + [c[n] for n in views.step_views(number) + STEP_TOGGLED[number]],
                             api_name=f"step_{number}", api_visibility="undocumented"), views.step_views(number))
    selected_outputs = [c["selected"], c["picker"], c["selection"]] + [c[n] for n in SELECTED_VIEWS]
    selected_inputs = state + [c["step"]] + [c[name] for name in SELECTED_READS]
    c["picker"].select(handlers.select_patch, inputs=selected_inputs, outputs=selected_outputs,
                       api_visibility="private", show_progress="hidden")
    class_token_button.click(handlers.select_class_token, inputs=selected_inputs,
                             outputs=selected_outputs, api_name="class_token", api_visibility="undocumented",
                             show_progress="hidden")
    for name, control in CONTROLS.items():
        names = views.affected(control.step, name)
        then_slow(gr.on(_control_triggers(c[name], control.kind), handlers.redraw(names), inputs=state + read_by(names),
                        outputs=[c[n] for n in names], api_name=f"set_{name}", api_visibility="undocumented",
                        trigger_mode="always_last", show_progress="hidden"), names)
    for name, spec in views.VIEWS.items():  # images whose clicks take patches in and out of an option
        if spec.click is None:
            continue
        reading_names = [n for step in range(len(STEPS)) for n in views.affected(step, spec.click)]
        reading = [c[n] for n in reading_names]
        # Every click counts and each sees the one before (the tuple is server-side state): one at a time, in order.
        c[name].select(handlers.toggle_patch(spec.click), inputs=state + [c["step"]] + read_by(reading_names),
                       outputs=[c[spec.click]] + reading, api_visibility="private", show_progress="hidden",
                       trigger_mode="multiple", concurrency_limit=1, concurrency_id=f"toggle_{spec.click}")
        clear_buttons[name].click(handlers.clear_patches(spec.click), inputs=state + [c["step"]] + read_by(reading_names),
                                  outputs=[c[spec.click]] + reading, api_name=f"clear_{spec.click}",
                                  api_visibility="undocumented", show_progress="hidden")
    # A new image, model or class stops the slow views being computed for the old one, at once (not queued), at
    # their next forward: the old event then ends, sending nothing. (Not Gradio's `cancels`: it cannot stop a thread,
    # and its /cancel call fails (422) for events not running.)
    slow_triggers = [c["image"].upload, c["model"].select, examples.dataset.click] + [
        trigger for name, control in CONTROLS.items() if set(views.affected(control.step, name)) & set(views.SLOW_VIEWS)
        for trigger in _control_triggers(c[name], control.kind)]
    gr.on(slow_triggers, handlers.cancel_slow, queue=False, show_progress="hidden", api_visibility="private")
    random_button.click(handlers.new_random_indices, inputs=state + read_by(views.affected(1, "indices")),
                        outputs=[c["indices"]] + [c[n] for n in views.affected(1, "indices")],
                        api_name="random_indices", api_visibility="undocumented", show_progress="hidden")


def build_demo(server: Server) -> gr.Blocks:
    """The page for `server`, queued as the app serves it."""
    demo = build_app(server).demo
    demo.queue(**QUEUE)
    return demo
