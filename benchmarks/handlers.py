"""What a visitor's actions cost in the app's own handlers, in-process: an upload until step 0 is on screen, each
step's tab clicked the first time, every control changed to a value not seen before, and each view drawn on its own
(its drawing plus Gradio's postprocessing).
"""
from __future__ import annotations

import json
from pathlib import Path

from explorer.app import views
from explorer.app.text import STEPS

from .app_driver import AppDriver, default_state
from .models import Subject
from .timing import Recorder

MODEL_RUNNING_CONTROLS = ("target", "scale")  # their redraws run the model: timed 3 times, not --repeats


def bench_upload(record: Recorder, driver: AppDriver, subject: Subject, image: Path, row_id: str, label: str,
                 breakdown: bool = False) -> None:
    """Image file -> first step on screen: the app's `analyse` handler, with an empty trace cache each time.
    With `breakdown`, also its parts: the session alone (open, preprocess, trace, logit lens), the handler alone
    (that plus drawing step 0 and the picker); the rest of the full time is Gradio's postprocessing."""
    session = driver.session
    driver.state = default_state(driver, subject.session_model, str(image))
    record.time(row_id, label, lambda: driver.call("analyse"), before=session.cache.clear)
    if breakdown:
        model = driver.state["model"]
        record.time("breakdown.session_analyse", "  of which session.analyse: open, preprocess, trace, logit lens",
                    lambda: session.analyse(str(image), model), before=session.cache.clear)
        record.time("breakdown.analyse_handler", "  of which the app's handler: that + drawing step 0 and picker",
                    lambda: driver.call("analyse", postprocess=False), before=session.cache.clear)


def _control_value(option: str, config, i: int):
    """The i-th new value for a control (never the default, cycling through what the control offers)."""
    L, h, D = config.depth, config.heads, config.hidden_dim
    if option == "indices":
        return views.random_indices(D, seed=i)
    if option in ("layer", "ln_layer"):
        return 2 + i % (L - 1) if L > 1 else 1
    if option == "head":
        return str(1 + i % h)
    if option == "fusion":
        return ("max", "min")[i % 2]
    if option == "discard":
        return (0.5, 0.9, 0.25, 0.75)[i % 4]
    if option == "ln_which":
        return views.LN_CHOICES[1]
    if option == "target":
        return str((1 + i) % config.num_classes)  # never the same class twice in a row
    if option == "scale":
        return views.SCALES[1 + i % (len(views.SCALES) - 1)]
    if option == "query_label":  # the paper's ViT offers CLS alone: the same token, redrawn
        labels = config.layout.query_labels()
        return labels[(1 + i) % len(labels)]
    raise KeyError(f"benchmarks.handlers has no values for the control {option!r}; add them to _control_value.")


def _patch_click(config, i: int) -> tuple[float, float, int]:
    """A click (x, y) in the patch picker on the i-th of a spread of patches; returns (x, y, patch index)."""
    rows, cols = config.grid
    index = (7 + i * 37) % (rows * cols)  # hops across the grid
    side = config.patch_size * views.picker_scale(config)
    row, col = divmod(index, cols)
    return (col + 0.5) * side, (row + 0.5) * side, index


def bench_steps(record: Recorder, driver: AppDriver, subject: Subject, image: Path):
    """Tab clicks (each step drawn the first time), every control change per step, and each output on its own.
    Returns the cached entry."""
    import gradio as gr
    session = driver.session
    driver.state = default_state(driver, subject.session_model, str(image))
    session.cache.clear()
    driver.call("analyse")
    entry = session.entry(session.cache.keys()[-1])
    config = entry.config
    after_upload = dict(entry.memo)  # what the upload left memoised (step 0 is on screen)
    uploaded = dict(driver.state)  # the browser's state after the upload (key, source, ...)

    def before(memo: dict, **state):
        """Before each timed run: the memo and the browser state as they were (so every run is the same case)."""
        def restore():
            with entry.lock:
                entry.memo.clear()
                entry.memo.update(memo)
            driver.state.update(state)
        return restore

    for number in range(len(STEPS)):
        driver.state = dict(uploaded)
        event = f"step_{number}"
        record.time(f"step.{number}", f"tab click: step '{STEPS[number]}' drawn the first time",
                    lambda: driver.call(event), before=before(after_upload))
        before(after_upload)()
        driver.call(event)
        shown, on_step = dict(entry.memo), dict(driver.state)  # this step on screen with the default options

        for api_name in driver.event_names():  # every control whose outputs are on this step
            option = api_name[len("set_"):]
            if not api_name.startswith("set_") or not views.affected(number, option):
                continue
            counter = iter(range(10**9))

            def change(option=option, counter=counter, api_name=api_name):
                driver.state[option] = _control_value(option, config, next(counter))
                driver.call(api_name)

            record.time(f"control.{api_name}", f"{option} changed -> redraw (step {number})", change,
                        before=before(shown), repeats=3 if option in MODEL_RUNNING_CONTROLS else None)
            driver.state = dict(on_step)
        if "random_indices" in driver.events and views.affected(number, "indices"):
            record.time("control.random_indices", f"'Random' feature maps -> redraw (step {number})",
                        lambda: driver.call("random_indices"), before=before(shown, **on_step))
            driver.state = dict(on_step)
        if "select_patch" in driver.events and views.affected(number, "selected"):
            counter = iter(range(10**9))

            def click(counter=counter):
                x, y, _ = _patch_click(config, next(counter))
                driver.call("select_patch", event_data=gr.SelectData(None, {"index": [x, y], "value": None}))

            record.time(f"control.select_patch.step{number}", f"patch clicked -> redraw (step {number})", click,
                        before=before(shown, **on_step))
            if "class_token" in driver.events:  # back to the class token after a patch was clicked
                record.time(f"control.class_token.step{number}", f"class token chosen -> redraw (step {number})",
                            lambda: driver.call("class_token"),
                            before=before(shown, **dict(on_step, selected=_patch_click(config, 0)[2])))
            driver.state = dict(on_step)

    # The views of each step on their own: their drawing plus Gradio's postprocessing for that component.
    for number in range(len(STEPS)):
        for name in views.step_views(number):
            component = driver.app.components[name]

            def draw(name=name, component=component):
                value = views.render_views(entry, [name], views.Options())[0]
                payload = component.postprocess(value)
                json.dumps(payload.model_dump() if hasattr(payload, "model_dump") else payload, default=str)

            record.time(f"figure.{name}", f"step {number} output {name} (drawn + postprocessed)", draw,
                        before=before(after_upload))
    return entry

