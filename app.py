"""ViT Explorer: a Vision Transformer (Dosovitskiy et al. 2020), one equation at a time, on your own image.

Layout and event wiring only: the models and the trace cache live in explorer.session, every text and figure
in explorer.steps. The model runs once per (image, model, device); every control redraws from the cached trace.

    python app.py [--host 127.0.0.1] [--port 7860]   (env EXPLORER_HOST / GRADIO_SERVER_NAME, EXPLORER_PORT /
                                                      GRADIO_SERVER_PORT; a Hugging Face Space binds 0.0.0.0:7860)
"""
from __future__ import annotations

import argparse
import os

# Before gradio is imported: no analytics, no version check, no telemetry.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402

from explorer import steps  # noqa: E402
from explorer.images import ImageError  # noqa: E402
from explorer.session import JFT_NOTE, Session, configure_threads  # noqa: E402
from explorer.weights import WeightsUnavailable  # noqa: E402

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
THREADS = configure_threads()
SESSION = Session(os.environ.get("EXPLORER_CHECKPOINTS") or ROOT / "checkpoints")
DEFAULT_MODEL = SESSION.registry.default_label()
AVAILABILITY = SESSION.registry.availability_note()
MAX_UPLOAD_MB = 20  # launch(max_file_size=...): Gradio answers 413 above it; the upload box says so
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
EXAMPLES = sorted(p for p in ASSETS.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
# Photos first, then the Fashion-MNIST images that suit the shipped model.
EXAMPLES = [p for p in EXAMPLES if not p.name.startswith("fashion")] + [p for p in EXAMPLES if p.name.startswith("fashion")]


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


def _runs_text() -> str:
    return f"model runs: {SESSION.stats()['model_runs']}"


def _options(selected, indices, layer, head, fusion, discard, ln_layer, ln_which) -> steps.Options:
    return steps.Options(selected=None if selected is None else int(selected), indices=indices or "",
                         layer=int(layer or 1), head=str(head or "mean"), fusion=fusion or "mean",
                         discard=float(discard or 0.0), ln_layer=int(ln_layer or 1), ln_which=ln_which or steps.LN_CHOICES[0])


def _entry(key, source=None):
    """The cached analysis for `key`; when the trace cache has dropped it (many users at once), the upload in `source`
    ((path, model label), set by analyse) is traced again, transparently: that counts as a model run."""
    if not key:  # nothing uploaded yet
        return None
    try:
        return SESSION.entry(key)
    except KeyError as error:
        message = str(error).strip("'\"")
    if source and source[0] and Path(source[0]).is_file():
        try:
            return SESSION.entry(SESSION.analyse(source[0], source[1]))
        except (ImageError, WeightsUnavailable, ValueError, KeyError, OSError) as error:
            message = str(error).strip("'\"")
    gr.Warning(message)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Handlers (thin: each calls explorer.session / explorer.steps)

def analyse(image, model, step, model_in_use, *option_values, progress=gr.Progress(track_tqdm=True), status=""):
    """Upload or model change: run the model once (unless cached) and draw the visible step."""
    options = _options(None, *option_values[1:])
    skip_all = [gr.skip()] * (len(HEADER_OUTPUTS) + len(steps.ALL_OUTPUTS))
    spec = SESSION.registry.resolve(model or DEFAULT_MODEL)
    try:
        if image is None:
            SESSION.registry.get(spec.label, progress)  # load now, so a missing weight file is told at once
            card = steps.model_card(spec=spec, availability=AVAILABILITY)
            # No image (none yet, removed, or refused before it reached us): no views of an earlier image stay
            # under a card that asks for one.
            header = {"key": None, "source": None, "selected": None, "model_in_use": spec.label, "model": spec.label,
                      "card": card, "status": status, "runs": _runs_text(), "picker": None, "selection": NO_SELECTION}
            return [header.get(name, gr.skip()) for name in HEADER_OUTPUTS] + [None] * len(steps.ALL_OUTPUTS)
        key = SESSION.analyse(image, spec.label, progress)
    except (ImageError, WeightsUnavailable, ValueError) as error:
        message = str(error)
        gr.Warning(message)
        # Back to the model in use; if that is the one that failed (the default, at start), to one needing no download.
        working = model_in_use if model_in_use and model_in_use != spec.label else SESSION.registry.fallback_label()
        if isinstance(error, WeightsUnavailable) and working != spec.label:
            return analyse(image, working, step, working, *option_values, progress=progress,
                           status=f"⚠️ {message} Showing {working} instead." if model_in_use == spec.label else f"⚠️ {message}")
        values = list(skip_all)
        values[HEADER_OUTPUTS.index("model")] = working
        values[HEADER_OUTPUTS.index("status")] = f"⚠️ {message}"
        return values
    entry = SESSION.entry(key)
    config = entry.config
    header = {
        "key": key, "source": (image, spec.label) if isinstance(image, str) else None, "selected": None, "model_in_use": spec.label, "model": spec.label,
        "card": steps.model_card(entry, availability=AVAILABILITY), "status": status, "runs": _runs_text(),
        "picker": steps.patch_picker(entry, None), "selection": steps.selection_text(entry, None),
        "layer": gr.update(maximum=config.depth, value=min(options.layer, config.depth)),
        "head": gr.update(choices=["mean"] + [str(i) for i in range(1, config.heads + 1)],
                          value=options.head if options.head == "mean" or int(options.head) <= config.heads else "mean"),
        "ln_layer": gr.update(maximum=config.depth, value=min(options.ln_layer, config.depth)),
    }
    options = options.replace(layer=min(options.layer, config.depth), ln_layer=min(options.ln_layer, config.depth),
                              head=header["head"]["value"])
    visible = steps.OUTPUTS[int(step or 0)]
    drawn = dict(zip(visible, steps.render_outputs(entry, visible, options)))
    SESSION.prefetch_untrained(entry)
    return [header[name] for name in HEADER_OUTPUTS] + [drawn.get(name, None) for name in steps.ALL_OUTPUTS]


def show_step(step: int):
    def handler(key, source, *option_values):
        entry = _entry(key, source)
        if entry is None:
            return [step] + [gr.skip()] * len(steps.OUTPUTS[step])
        return [step] + steps.render_outputs(entry, steps.OUTPUTS[step], _options(*option_values))
    return handler


def redraw(step: int, names: list[str]):
    """A control of one step changed: redraw only the outputs that read it."""
    def handler(key, source, *option_values):
        entry = _entry(key, source)
        values = [gr.skip()] * len(names) if entry is None else steps.render_outputs(entry, names, _options(*option_values))
        return values[0] if len(values) == 1 else values  # Gradio takes one output's value bare
    return handler


# The outputs that read the selected patch, over all steps; only the visible step's are drawn.
SELECTED_OUTPUTS = [name for step in steps.OUTPUTS for name in steps.affected(step, "selected")]


def select_patch(key, source, step, selected, indices, layer, head, fusion, discard, ln_layer, ln_which, evt: gr.SelectData):
    """A click on the picker: evt.index is [x, y] in the picker image's pixels."""
    entry = _entry(key, source)
    if entry is None:
        return [gr.skip()] * (3 + len(SELECTED_OUTPUTS))
    x, y = evt.index[0], evt.index[1]
    option_values = (selected, indices, layer, head, fusion, discard, ln_layer, ln_which)
    return _selected(entry, steps.patch_at(entry.config, x, y), step, option_values)


def select_class_token(key, source, step, *option_values):
    entry = _entry(key, source)
    if entry is None:
        return [gr.skip()] * (3 + len(SELECTED_OUTPUTS))
    return _selected(entry, None, step, option_values)


def _selected(entry, selected, step, option_values):
    options = _options(selected, *option_values[1:])
    visible = set(steps.affected(int(step or 0), "selected"))
    drawn = dict(zip(visible, steps.render_outputs(entry, list(visible), options)))
    return ([selected, steps.patch_picker(entry, selected), steps.selection_text(entry, selected)]
            + [drawn[name] if name in visible else gr.skip() for name in SELECTED_OUTPUTS])


def new_random_indices(key, source, *option_values):
    entry = _entry(key, source)
    D = entry.config.hidden_dim if entry is not None else 768
    options = _options(*option_values).replace(indices=steps.random_indices(D))
    names = steps.affected(1, "indices")
    values = steps.render_outputs(entry, names, options) if entry is not None else [gr.skip()] * len(names)
    return [options.indices] + values


def predict(image, model: str, k: int = 5) -> dict:
    """(image file, model name) -> {"model", "weights", "source", "trained", "top_k": [{"label", "probability"}], "notes"}."""
    if image is None:
        raise gr.Error("No image was given; send an image file (JPEG, PNG, WebP, GIF or BMP).")
    try:
        return SESSION.predict(image, model or DEFAULT_MODEL, int(k or 5))
    except (ImageError, WeightsUnavailable, ValueError) as error:
        raise gr.Error(str(error)) from None


def stats() -> dict:
    """Server-side counters: model runs, trace-cache entries and bytes, hits and misses, models loaded."""
    return SESSION.stats()


# ---------------------------------------------------------------------------------------------------------------
# Layout

NO_SELECTION = "Query: **the class token** (token 0)."
HEADER_OUTPUTS = ["key", "source", "selected", "model_in_use", "model", "card", "status", "runs", "picker", "selection",
                  "layer", "head", "ln_layer"]

with gr.Blocks(title="ViT Explorer", delete_cache=(1800, 3600)) as demo:
    key = gr.State(None)  # (image sha256, model label, device): the trace itself stays in explorer.session
    source = gr.State(None)  # (upload path, model label): to trace again if the cache has dropped this trace
    selected = gr.State(None)  # the selected patch index, None for the class token
    step = gr.State(0)  # the visible step
    model_in_use = gr.State(DEFAULT_MODEL)

    gr.Markdown("# ViT Explorer\nA Vision Transformer ([Dosovitskiy et al. 2020, *An Image is Worth 16x16 Words*]"
                "(https://arxiv.org/abs/2010.11929)) on your own image, one equation at a time. The model runs once "
                "per image; every control below redraws from that one run.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            image = ImageUpload(label=f"Image (up to {MAX_UPLOAD_MB} MB): drop, paste or click to upload", type="filepath", image_mode=None,
                                sources=["upload", "clipboard"], elem_id="upload", height=280)
            examples = gr.Examples(examples=[[str(p)] for p in EXAMPLES], inputs=[image], label="Examples (photos: public "
                        "domain / CC0; Fashion-MNIST: MIT — see assets/README.md)", examples_per_page=12)
            model = gr.Dropdown(choices=SESSION.registry.choices(), value=DEFAULT_MODEL, label="Model",
                                info=JFT_NOTE, elem_id="model")
            status = gr.Markdown("", elem_id="status")
            picker = gr.Image(label="What the model sees, with its patch grid: click a patch", interactive=False,
                              format="png", elem_id="picker", height=360, buttons=[])
            selection = gr.Markdown(NO_SELECTION, elem_id="selection")
            class_token_button = gr.Button("Query the class token", size="sm")
            runs = gr.Markdown(_runs_text, elem_id="model-runs")  # a callable: fresh on every page load
        with gr.Column(scale=3):
            card = gr.Markdown(steps.model_card(spec=SESSION.registry.resolve(DEFAULT_MODEL), availability=AVAILABILITY),
                               elem_id="model-card")
            out: dict[str, gr.components.Component] = {}
            with gr.Tabs(selected=0, elem_id="steps") as tabs:
                with gr.Tab(steps.STEPS[0], id=0, elem_id="tab-0") as tab_0:
                    out["input.text"] = gr.Markdown(latex_delimiters=LATEX)
                    with gr.Row():
                        out["input.original"] = gr.Image(label="Your image (upright, RGB)", interactive=False,
                                                         height=320, buttons=[])
                        out["input.seen"] = gr.Image(label="What the model sees (resized, centre-cropped)",
                                                     interactive=False, format="png", height=320, buttons=[])
                    out["input.normalised"] = gr.Markdown(latex_delimiters=LATEX)
                with gr.Tab(steps.STEPS[1], id=1, elem_id="tab-1") as tab_1:
                    out["eq1.text"] = gr.Markdown(latex_delimiters=LATEX)
                    with gr.Row():
                        out["eq1.grid"] = gr.Plot(label="Patch grid (hover: index, row, column)")
                        out["eq1.sequence"] = gr.Plot(label="The patch sequence x_p^1 … x_p^N")
                    with gr.Row():
                        indices = gr.Textbox(value=steps.Options().indices, label="Feature maps to show (indices, "
                                             "ranges like 10-12; Enter to apply)", scale=4, elem_id="indices")
                        random_button = gr.Button("Random", scale=1, elem_id="random-indices")
                    out["eq1.maps"] = gr.Plot(label="Conv feature maps, one per chosen dimension of D; for a trained "
                                                      "model, the same maps of an untrained twin (same config, seed 0) below")
                    out["eq1.values"] = gr.Markdown(latex_delimiters=LATEX)
                    out["eq1.embeddings"] = gr.Plot(label="Patch embeddings x_p E (N × D)")
                    out["eq1.tokens"] = gr.Plot(label="Class token prepended (T × D)")
                    out["eq1.positions"] = gr.Plot(label="Position embeddings E_pos (T × D)")
                    with gr.Row():
                        out["eq1.similarity"] = gr.Plot(label="Position-embedding similarity (Fig. 7 centre)")
                        out["eq1.tile"] = gr.Plot(label="Similarity of the selected patch's position")
                    out["eq1.filters"] = gr.Plot(label="Principal components of E's filters (Fig. 7 left)")
                    out["eq1.z0"] = gr.Plot(label="z_0 (T × D)")
                with gr.Tab(steps.STEPS[2], id=2, elem_id="tab-2") as tab_2:
                    out["eq2.text"] = gr.Markdown(latex_delimiters=LATEX)
                    with gr.Row():
                        layer = gr.Slider(1, 12, value=1, step=1, label="Layer ℓ", elem_id="layer")
                        head = gr.Dropdown(choices=["mean"] + [str(i) for i in range(1, 13)], value="mean",
                                           label="Head for the attention matrix", elem_id="head")
                    out["eq2.heads"] = gr.Plot(label="Attention of the query to every patch, each head of layer ℓ")
                    out["eq2.matrix"] = gr.Plot(label="Attention matrix A (hover for values)")
                    out["eq2.overview"] = gr.Plot(label="All layers × heads, same query")
                    with gr.Row():
                        fusion = gr.Radio(list(steps.HEAD_FUSIONS), value="mean", label="Rollout head fusion",
                                          elem_id="fusion")
                        discard = gr.Slider(0.0, 0.95, value=0.0, step=0.05, label="Rollout discard ratio",
                                            elem_id="discard")
                    out["eq2.rollout"] = gr.Plot(label="Attention rollout (Fig. 6)")
                    out["eq2.distance"] = gr.Plot(label="Mean attention distance per head vs depth (Fig. 7 right; "
                                                        "rows renormalised after dropping the class token)")
                with gr.Tab(steps.STEPS[3], id=3, elem_id="tab-3") as tab_3:
                    out["eq3.text"] = gr.Markdown(latex_delimiters=LATEX)
                    out["eq3.norms"] = gr.Plot(label="Token norms ‖z_ℓ‖ over the image, layer by layer")
                    out["eq3.updates"] = gr.Plot(label="How z'_ℓ and z_ℓ change layer by layer")
                    with gr.Row():
                        ln_layer = gr.Slider(1, 12, value=1, step=1, label="Layer ℓ for LayerNorm", elem_id="ln-layer")
                        ln_which = gr.Radio(list(steps.LN_CHOICES), value=steps.LN_CHOICES[0], label="Which LayerNorm",
                                            elem_id="ln-which")
                    out["eq3.layernorm"] = gr.Plot(label="LayerNorm's effect on the selected token")
                with gr.Tab(steps.STEPS[4], id=4, elem_id="tab-4") as tab_4:
                    out["eq4.text"] = gr.Markdown(latex_delimiters=LATEX)
                    with gr.Row():
                        out["eq4.top_k"] = gr.Plot(label="Top-5 prediction")
                        out["eq4.table"] = gr.Markdown(elem_id="top-k-table")
                    out["eq4.lens"] = gr.Plot(label="Logit lens: the prediction layer by layer")

    # Hidden components of the /predict API.
    with gr.Row(visible=False):
        api_image = ImageUpload(type="filepath", image_mode=None, label="image")
        api_model = gr.Textbox(value=DEFAULT_MODEL, label="model")
        api_k = gr.Number(value=5, precision=0, label="k")
        api_result = gr.JSON(label="prediction")
        api_button = gr.Button("predict")

    # -- wiring ------------------------------------------------------------------------------------------------
    components = {"key": key, "source": source, "selected": selected, "model_in_use": model_in_use, "model": model, "card": card,
                  "status": status, "runs": runs, "picker": picker, "selection": selection, "layer": layer,
                  "head": head, "ln_layer": ln_layer}
    option_inputs = [selected, indices, layer, head, fusion, discard, ln_layer, ln_which]
    # An upload (file or paste), a model chosen, an example clicked. Not image.change: it fires twice when one image
    # replaces another.
    analyse_wiring = dict(inputs=[image, model, step, model_in_use] + option_inputs,
                          outputs=[components[n] for n in HEADER_OUTPUTS] + [out[n] for n in steps.ALL_OUTPUTS],
                          trigger_mode="always_last", show_progress_on=[card, picker])
    gr.on([image.upload, model.select], analyse, api_name="analyse", **analyse_wiring)
    examples.load_input_event.then(analyse, api_visibility="private", **analyse_wiring)
    for number, tab in enumerate([tab_0, tab_1, tab_2, tab_3, tab_4]):
        tab.select(show_step(number), inputs=[key, source] + option_inputs, outputs=[step] + [out[n] for n in steps.OUTPUTS[number]],
                   api_name=f"step_{number}", api_visibility="undocumented")
    selected_outputs = [selected, picker, selection] + [out[n] for n in SELECTED_OUTPUTS]
    picker.select(select_patch, inputs=[key, source, step] + option_inputs, outputs=selected_outputs,
                  api_visibility="private", show_progress="hidden")
    class_token_button.click(select_class_token, inputs=[key, source, step] + option_inputs, outputs=selected_outputs,
                             api_name="class_token", api_visibility="undocumented", show_progress="hidden")
    controls = [(1, "indices", [indices.submit, indices.blur]), (2, "layer", [layer.input]), (2, "head", [head.select]),
                (2, "fusion", [fusion.input]), (2, "discard", [discard.input]), (3, "ln_layer", [ln_layer.input]),
                (3, "ln_which", [ln_which.input])]
    for number, option, triggers in controls:
        names = steps.affected(number, option)
        gr.on(triggers, redraw(number, names), inputs=[key, source] + option_inputs, outputs=[out[n] for n in names],
              api_name=f"set_{option}", api_visibility="undocumented", trigger_mode="always_last", show_progress="hidden")
    random_button.click(new_random_indices, inputs=[key, source] + option_inputs,
                        outputs=[indices] + [out[n] for n in steps.affected(1, "indices")],
                        api_name="random_indices", api_visibility="undocumented", show_progress="hidden")
    api_button.click(predict, inputs=[api_image, api_model, api_k], outputs=[api_result], api_name="predict")
    gr.api(stats, api_name="stats")


# Launch settings, shared with the tests: never a share link, uploads up to 20 MB, only assets/ served from disk.
LAUNCH = dict(share=False, max_file_size=f"{MAX_UPLOAD_MB}mb", allowed_paths=[str(ASSETS)], ssr_mode=False, footer_links=["api"])
QUEUE = dict(default_concurrency_limit=2, max_size=32)


def default_address(env=None) -> tuple[str, int]:
    """(host, port) to bind when none is given on the command line. Host: EXPLORER_HOST, else GRADIO_SERVER_NAME, else
    0.0.0.0 on a Hugging Face Space (SPACE_ID set: it runs `python app.py` and expects 0.0.0.0:7860), else 127.0.0.1.
    Port: EXPLORER_PORT, else GRADIO_SERVER_PORT, else 7860."""
    env = os.environ if env is None else env
    host = (env.get("EXPLORER_HOST", "").strip() or env.get("GRADIO_SERVER_NAME", "").strip()
            or ("0.0.0.0" if env.get("SPACE_ID", "").strip() else "127.0.0.1"))
    port = env.get("EXPLORER_PORT", "").strip() or env.get("GRADIO_SERVER_PORT", "").strip() or "7860"
    return host, int(port)


def main(argv=None) -> None:
    host, port = default_address()
    parser = argparse.ArgumentParser(description="ViT Explorer (Gradio app).")
    parser.add_argument("--host", default=host, help=f"address to bind (default here: {host}; env EXPLORER_HOST, "
                        "GRADIO_SERVER_NAME; 0.0.0.0 on a Hugging Face Space, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=port,
                        help=f"port (default here: {port}; env EXPLORER_PORT, GRADIO_SERVER_PORT, else 7860)")
    args = parser.parse_args(argv)
    SESSION.warm_up(DEFAULT_MODEL)  # the page is up at once; the model loads meanwhile
    demo.queue(**QUEUE)
    demo.launch(server_name=args.host, server_port=args.port, **LAUNCH)


if __name__ == "__main__":
    main()
