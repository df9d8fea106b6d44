"""The page's parts for changing the model and comparing, and their events (Gradio): the strip that says which heads
are off, a second image or model to compare with, the compare panel under the steps, head importance's button, and
patching activations from the second image into the first.

explorer.app.ui lays them out by calling `left_column`, `step_top` and `under_view` where they go, and wires them
with `wire` (after its own events); it hands in what it draws views with (`Drawing`), so this module does not import
it. The work is explorer.app.ablation's and explorer.app.views' (interventions, compare).

    heads off   a click on the switchboard (views.interventions, Eq. 2) switches a head off or on: the page's key becomes
                that of the image's entry with those heads off (explorer.app.ablation), and the visible step is
                redrawn from it; every other step draws from it when opened. The strip follows the key.
    compare     B is (the second image, else A's) under (the second model, else A's): an entry of the trace cache
                like A's. Each step's compare panel, at the top of its tab, shows that step's comparison, redrawn
                when A, B, the step or an option its figures read changes. Patching (B's activations into A's run)
                is in step 4's panel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gradio as gr

from . import ablation, views
from .plot import PlotView
from .server import USER_ERRORS
from .views import compare
from .views.interventions import IMPORTANCE, PATCH_TOKENS, SWITCHBOARD, importance_of, patch_positions, patch_stages, \
    patched_prediction
from .zerogpu import model_duration, on_gpu

ALL_HEADS_ON = "Every head is on."
SAME_MODEL = ("the same model as A", "")
STEP_LABELS = {"picture": "A and B as the models see them", "figure": {2: "Mean attention distance of A and B on one "
                                                                         "plot (Fig. 7 right)", 4: "Prediction: A and B"}}


def compare_outputs(step: int) -> list[str]:
    """The names of step `step`'s compare panel components: its column, its text, its slots (views.compare.SLOTS)."""
    return [f"compare_{step}", f"compare_{step}_text"] + [f"compare_{step}_{slot}" for slot in compare.SLOTS[step]]


@dataclass(frozen=True)
class Drawing:
    """What explorer.app.ui draws views with: `render(entry, names, options)` -> the values to send,
    `options(names, values)` -> views.Options, `reads(view_names)` -> the option names they read, in order,
    `hidden` what a view on a step not shown is sent, `picture` the component class of drawn pictures,
    `upload` the component class of uploads."""

    render: Callable
    options: Callable
    reads: Callable
    hidden: object
    picture: type
    upload: type


def strip_text(key) -> str:
    """The strip under the picker: which heads are off in the page's run (heads numbered from 1, as on the page)."""
    heads = ablation.heads_of(key)
    if not heads:
        return ALL_HEADS_ON
    return (f"**Heads off ({len(heads)}):** {ablation.describe(heads)}. Every step shows the model with "
            f"{'this head' if len(heads) == 1 else 'these heads'} off.")


def left_column(c: dict, server, drawing: Drawing) -> None:
    """Under the picker: the heads-off strip with its button, and the second image or model to compare with."""
    c["heads_strip"] = gr.Markdown(ALL_HEADS_ON, elem_id="heads-off")
    c["heads_all_on"] = gr.Button("Switch all heads on", size="sm", elem_id="heads-all-on", visible=False)
    c["compare"] = gr.State(None)  # (second image path or None, second model label or ""): B, or None
    with gr.Accordion("Compare: a second image or a second model (B)", open=False, elem_id="compare-inputs"):
        c["compare_image"] = drawing.upload(label="Second image B (empty: A's image)", type="filepath",
                                            image_mode=None, sources=["upload", "clipboard"], elem_id="compare-upload",
                                            height=160)
        c["compare_examples"] = gr.Examples(examples=[[str(p)] for p in server.settings.examples()],
                                            inputs=[c["compare_image"]], label="Examples for B", examples_per_page=6)
        c["compare_model"] = gr.Dropdown(choices=[SAME_MODEL] + server.registry.choices(), value="",
                                         label="Second model B", elem_id="compare-model")
        c["compare_stop"] = gr.Button("Stop comparing", size="sm", elem_id="compare-stop")


def under_view(c: dict, name: str) -> None:
    """What goes under view `name` in its step: head importance's button."""
    if name == IMPORTANCE:
        c["importance_button"] = gr.Button("Compute what each head is worth", size="sm", elem_id="head-importance")


def step_top(c: dict, step: int, drawing: Drawing) -> None:
    """At the top of step `step`'s tab: its compare panel, hidden until there is a B (and patching, in step 4's)."""
    with gr.Column(visible=False, elem_id=f"compare-{step}", elem_classes=["compare-panel"]) as panel:
        c[f"compare_{step}"] = panel
        c[f"compare_{step}_text"] = gr.Markdown("", elem_id=f"compare-{step}-text")
        for slot in compare.SLOTS[step]:
            name, elem_id = f"compare_{step}_{slot}", f"compare-{step}-{slot}"
            if slot == "picture":
                c[name] = drawing.picture(label=STEP_LABELS["picture"], interactive=False, format="png",
                                          elem_id=elem_id, buttons=[], height=260)
            else:
                label = (STEP_LABELS["figure"][step] if slot == "figure"
                         else "B: " + views.VIEWS[compare.TWINS[step][int(slot[1:]) - 1]].label)
                c[name] = PlotView(label=label, elem_id=elem_id)
        if step == 4:
            patching(c)


def patching(c: dict) -> None:
    """Patching: a stage and the tokens to copy from B's run into A's, and A's prediction then."""
    with gr.Accordion("Patching: copy B's activations into A's run", open=False, elem_id="patching"):
        with gr.Row():
            c["patch_stage"] = gr.Dropdown(choices=["embed.z0"], value="embed.z0", label="Stage", elem_id="patch-stage",
                                           filterable=True)
            c["patch_tokens"] = gr.Radio(list(PATCH_TOKENS), value=PATCH_TOKENS[0], label="Tokens to copy (the "
                                         "selected patch: the picker's)", elem_id="patch-tokens")
            c["patch_list"] = gr.Textbox(value="0-3", label="The patches listed (numbers from 0, ranges like 10-12)",
                                         elem_id="patch-list", max_lines=1)
        c["patch_button"] = gr.Button("Patch and predict", size="sm", elem_id="patch-run")
        c["patch_result"] = PlotView(label="A's prediction with B's activations", elem_id="patch-result")


class Interactions:
    """The handlers of this module's events, over explorer.app.ui's Handlers (`base`: its server, its `_entry`)."""

    def __init__(self, base, drawing: Drawing):
        self.base = base
        self.server = base.server
        self.drawing = drawing
        self.all_views = views.all_views()
        drawing_seconds = lambda key, *rest, **kw: model_duration(  # noqa: E731
            self.server, key[1] if isinstance(key, (list, tuple)) and len(key) == 3 else None, "trace")
        self.heads_clicked = on_gpu(self.heads_clicked, lambda evt, key, *rest, **kw: drawing_seconds(key))
        self.all_heads_on = on_gpu(self.all_heads_on, drawing_seconds)
        self.importance = on_gpu(self.importance, lambda key, *rest, **kw: model_duration(
            self.server, key[1] if isinstance(key, (list, tuple)) and len(key) == 3 else None, "curves"))
        self.compare_panel = on_gpu(self.compare_panel, drawing_seconds)
        self.patch = on_gpu(self.patch, drawing_seconds)

    # -- heads off ------------------------------------------------------------------------------------------------
    def _with_heads(self, key, source, heads, step, option_values) -> list:
        """The key of the image's entry with `heads` off, and every view (the visible step's drawn)."""
        entry = self.base._entry(key, source)
        if entry is None:
            return [gr.skip()] * (1 + len(self.all_views))
        try:
            entry = ablation.ablated_entry(self.server, entry, heads, source)
        except USER_ERRORS as error:
            gr.Warning(str(error))
            return [gr.skip()] * (1 + len(self.all_views))
        options = self.drawing.options(views.OPTION_NAMES, option_values)
        visible = views.step_views(int(step or 0))
        drawn = dict(zip(visible, self.drawing.render(entry, visible, options)))
        return [entry.key] + [drawn.get(name, self.drawing.hidden) for name in self.all_views]

    def heads_clicked(self, evt: gr.SelectData, key, source, step, *option_values):
        """A click (or Enter) on the switchboard: that head off, or on again."""
        if not key:
            return [gr.skip()] * (1 + len(self.all_views))
        entry = self.base._entry(key, source)
        if entry is None:
            return [gr.skip()] * (1 + len(self.all_views))
        config = entry.config
        head = views.interventions.figures.head_at(evt.index[0], evt.index[1], config.depth, config.heads)
        heads = ablation.toggled(ablation.heads_of(key), head)
        return self._with_heads(key, source, heads, step, option_values)

    def all_heads_on(self, key, source, step, *option_values):
        return self._with_heads(key, source, (), step, option_values)

    def strip(self, key):
        return strip_text(key), gr.update(visible=bool(ablation.heads_of(key)))

    # -- what each head is worth ----------------------------------------------------------------------------------
    def importance(self, key, source, target, progress=gr.Progress()):
        """The button under the map: switch each head off in turn (a counted run), then draw the map."""
        entry = self.base._entry(key, source)
        if entry is None:
            return gr.skip()
        if entry.config.has_classifier:  # a backbone's map says in one sentence that it needs one
            progress(0.1, desc="Switching each head off in turn…")
            importance_of(entry, views.target_class(entry, target))
        return self.drawing.render(entry, [IMPORTANCE], self.drawing.options(("target",), (target,)))[0]

    # -- compare ----------------------------------------------------------------------------------------------------
    def set_compare(self, image, model, source):
        """B from the second image and model chosen (None when neither is: no comparison, every panel hidden)."""
        if image is None and not model:
            return [None] + [gr.update(visible=False)] * len(compare.SLOTS)
        return [(image, model or "")] + [gr.skip()] * len(compare.SLOTS)

    def stop_compare(self):
        """No B: the second image and model emptied, every panel hidden."""
        return [None, None, ""] + [gr.update(visible=False)] * len(compare.SLOTS)

    def _entry_b(self, compare_spec, source):
        """B's entry: (the second image, else A's upload) under (the second model, else A's); None without B."""
        if not compare_spec:
            return None
        image, model = compare_spec
        image = image or (source[0] if source else None)
        model = model or (source[1] if source else None)
        if image is None or model is None:
            gr.Warning("Upload image A first; B compares with it.")
            return None
        try:
            return self.server.analyse(image, model)
        except USER_ERRORS as error:
            gr.Warning(str(error))
            return None

    def compare_panel(self, key, source, compare_spec, step, *option_values):
        """The visible step's compare panel, the others' hidden (drawn when their tab opens); all hidden without B."""
        step = int(step or 0)
        outputs = sum(len(compare_outputs(number)) for number in range(len(compare.SLOTS))) + 1
        if not compare_spec:  # nothing to compare (the panels were hidden when B was let go): the page stays as it is
            return [gr.skip()] * outputs
        a = self.base._entry(key, source) if key else None
        b = self._entry_b(compare_spec, source) if a is not None else None
        values = []
        for number in range(len(compare.SLOTS)):
            names = compare_outputs(number)
            if a is None or b is None or number != step:
                values += [gr.update(visible=False)] + [gr.skip()] * (len(names) - 1)
                continue
            drawn = compare.compare_step(step, a, b, self.drawing.options(compare.READS, option_values),
                                         self.drawing.render)
            values += [gr.update(visible=True), drawn["text"]] + [
                gr.update(value=drawn[slot], alt_text=f"A and B side by side as the models see them: "
                          f"{compare.describe(a)}; {compare.describe(b)}.") if slot == "picture" else drawn[slot]
                for slot in compare.SLOTS[number]]
        stages = patch_stages(a.config) if a is not None else None
        return values + [gr.update(choices=stages) if stages else gr.skip()]

    # -- patching ---------------------------------------------------------------------------------------------------
    def patch(self, key, source, compare_spec, selected, stage, tokens, listed=""):
        a = self.base._entry(key, source) if key else None
        if a is None:
            return gr.skip()
        spec = compare_spec or ()
        image = (spec[0] if spec else None) or None
        if image is None:
            gr.Warning("Choose a second image B to copy activations from.")
            return gr.skip()
        try:
            b = self.server.analyse(image, a.spec.label)  # B's image through A's model
        except USER_ERRORS as error:
            gr.Warning(str(error))
            return gr.skip()
        try:
            positions = patch_positions(tokens, selected, a.config.layout, listed)
        except ValueError as error:
            gr.Warning(str(error))
            return gr.skip()
        return patched_prediction(a, b, stage, positions)


def wire(c: dict, base, drawing: Drawing) -> Interactions:
    """This module's events; `base` is explorer.app.ui's Handlers."""
    handlers = Interactions(base, drawing)
    option_inputs = [c[name] for name in views.OPTION_NAMES]
    view_outputs = [c[name] for name in views.all_views()]
    state = [c["key"], c["source"]]
    # Every click counts and sees the one before (the heads off are in the key): one at a time, in order.
    c[SWITCHBOARD].select(handlers.heads_clicked, inputs=state + [c["step"]] + option_inputs,
                          outputs=[c["key"]] + view_outputs, api_visibility="private", show_progress="hidden",
                          trigger_mode="multiple", concurrency_limit=1, concurrency_id="heads_off")
    c["heads_all_on"].click(handlers.all_heads_on, inputs=state + [c["step"]] + option_inputs,
                            outputs=[c["key"]] + view_outputs, api_name="all_heads_on", api_visibility="undocumented",
                            concurrency_limit=1, concurrency_id="heads_off")
    c["key"].change(handlers.strip, inputs=[c["key"]], outputs=[c["heads_strip"], c["heads_all_on"]],
                    api_visibility="private", show_progress="hidden", queue=False)
    if "importance_button" in c:
        c["importance_button"].click(handlers.importance, inputs=state + [c["target"]], outputs=[c[IMPORTANCE]],
                                     api_name="head_importance", api_visibility="undocumented")
    # B: chosen, stopped; the panel redrawn when A, B, the step or what its figures read changes.
    compare_inputs = [c["compare_image"], c["compare_model"], c["source"]]
    panels = [c[f"compare_{step}"] for step in range(len(compare.SLOTS))]
    gr.on([c["compare_image"].upload, c["compare_model"].input, c["compare_image"].clear],
          handlers.set_compare, inputs=compare_inputs, outputs=[c["compare"]] + panels, api_visibility="private",
          show_progress="hidden")
    c["compare_examples"].load_input_event.then(handlers.set_compare, inputs=compare_inputs,
                                                outputs=[c["compare"]] + panels, api_visibility="private",
                                                show_progress="hidden")
    c["compare_stop"].click(handlers.stop_compare, outputs=[c["compare"], c["compare_image"], c["compare_model"]]
                            + panels, api_visibility="private", show_progress="hidden")
    panel_outputs = [c[name] for step in range(len(compare.SLOTS)) for name in compare_outputs(step)] + [c["patch_stage"]]
    # Not the selected patch's change: an event on every pick, with or without B, kept the page from coming to rest
    # after a pick; B's views that read it follow it at the panel's next redraw.
    triggers = [c["compare"].change, c["key"].change, c["step"].change] + [c[name].change for name in compare.CONTROLS]
    gr.on(triggers, handlers.compare_panel, inputs=state + [c["compare"], c["step"]]
          + [c[name] for name in compare.READS], outputs=panel_outputs, api_name="compare",
          api_visibility="undocumented", trigger_mode="always_last", show_progress="hidden")
    c["patch_button"].click(handlers.patch, inputs=state + [c["compare"], c["selected"], c["patch_stage"],
                                                            c["patch_tokens"], c["patch_list"]],
                            outputs=[c["patch_result"]], api_name="patch", api_visibility="undocumented")
    return handlers
