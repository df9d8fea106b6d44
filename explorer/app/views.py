"""The page's views, each declared once: its name, its step, the options it reads, how it is shown and how it is drawn.

    @view("eq2.rollout", step=2, kind="plot", label="Attention rollout (Fig. 6)", reads=("fusion", "discard"))
    def rollout(entry, options): ...

`VIEWS` (name -> View) and `PAGE` (views and controls in page order) are all that explorer.app.ui reads to lay out
the page, wire the events and choose what to redraw: a control's change redraws exactly the visible views that read
it (`affected`), and a view that reads no option is drawn once per entry and kept (`render_views`). A view sees only
the options it declares (`Options.only`): reading another raises, so a declaration cannot fall behind its code.

Every view is drawn from a cached Entry (one traced image) and the options, never by running the model. Numbers
come from explorer.analysis, figures from explorer.render, words from explorer.app.text. No Gradio here.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, fields, replace
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from ..common import HEAD_FUSIONS, equally_likely, ranking
from ..config import ViTConfig
from ..deferred import deferred
from ..weights import UNTRAINED_NOTE
from .text import STEPS, explanation

# Imported when first used (explorer/deferred.py): the page is up before torch is loaded.
torch = deferred("torch")
analysis = deferred("explorer.analysis")
explain = deferred("explorer.explain")
render = deferred("explorer.render")

LN_CHOICES = ("LN before MSA (Eq. 2)", "LN before MLP (Eq. 3)")
PICKER_SIDE = 448  # the patch picker is drawn at least this many pixels wide
MAX_FEATURE_MAPS = 16


@dataclass(frozen=True)
class Options:
    """Everything a visitor can set. `selected` is a patch index i (0-based, row-major) or None for the class token;
    the others are the controls declared below, under the same names."""

    selected: int | None = None
    indices: str = "0, 1, 2, 3, 4, 5, 6, 7"  # feature maps to show (Eq. 1)
    layer: int = 1  # l for the attention views (Eq. 2), 1-based
    head: str = "mean"  # "mean" or a head number 1..h, for the attention matrix
    fusion: str = "mean"  # rollout head fusion
    discard: float = 0.0  # rollout discard ratio
    ln_layer: int = 1  # l for the LayerNorm view (Eq. 3)
    ln_which: str = LN_CHOICES[0]  # or LN_CHOICES[1]
    target: str = ""  # the class to explain, as its index; "" for the top class
    dropped: tuple[int, ...] = ()  # patches taken out of the sequence (clicked), sorted
    scale: float = 1.0  # input size for Sec. 3.2, as a multiple of the model's own (1.0 = native)

    def replace(self, **changes) -> "Options":
        return replace(self, **changes)

    @property
    def query(self) -> int:
        """The query token: 0 for the class token, i + 1 for patch i."""
        return 0 if self.selected is None else int(self.selected) + 1

    def only(self, names: tuple[str, ...]) -> "DeclaredOptions":
        """These options as a view that declared `names` sees them: any other raises AttributeError."""
        return DeclaredOptions(self, frozenset(names))


OPTION_NAMES = tuple(f.name for f in fields(Options))
CLICKED = ("selected", "dropped")  # options set by clicks on images, not by a control


class DeclaredOptions:
    """Read access to the declared options only (and `query`, which is `selected`)."""

    def __init__(self, options: Options, names: frozenset[str]):
        self._options, self._names = options, names

    def __getattr__(self, name: str):
        declared = name in self._names or (name == "query" and "selected" in self._names)
        if not declared:
            raise AttributeError(f"A view read option {name!r} without declaring it in reads=; add it there.")
        return getattr(self._options, name)


# ---------------------------------------------------------------------------------------------------------------
# The registry

@dataclass(frozen=True)
class View:
    """One output of the page. `kind` is "markdown", "plot" or "image"; `row` groups neighbours side by side;
    `click` names the option a click on the view toggles a patch in (a tuple of patch indices); `props` go to the
    component as they are (height, elem_id, ...)."""

    name: str
    step: int
    kind: str
    label: str
    reads: tuple[str, ...]
    draw: Callable
    row: str | None = None
    click: str | None = None
    props: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Control:
    """One control of a step: it sets the option of the same name. `kind` is "slider", "dropdown", "radio" or
    "textbox"; `adapt(entry, value)` gives the props and value that fit a newly analysed image (a model's ranges, its
    classes)."""

    name: str
    step: int
    kind: str
    label: str
    props: dict = field(default_factory=dict)
    row: str | None = None
    adapt: Callable[[object, object], tuple[dict, object]] | None = None


VIEWS: dict[str, View] = {}
PAGE: list[View | Control] = []  # views and controls in page order
CONTROLS: dict[str, Control] = {}


def view(name: str, step: int, kind: str, label: str = "", reads: tuple[str, ...] = (), row: str | None = None,
         click: str | None = None, **props):
    """Declare the decorated function `draw(entry, options)` as the view `name` of `step`."""
    unknown = set(reads) - set(OPTION_NAMES)
    if unknown:
        raise ValueError(f"View {name} reads unknown options {sorted(unknown)}; options are {OPTION_NAMES}.")
    if click is not None and (click not in reads or kind != "image"):
        raise ValueError(f"View {name}: a click toggles patches in an option it reads, on an image.")

    def declare(draw: Callable) -> Callable:
        if name in VIEWS:
            raise ValueError(f"View {name} is declared twice.")
        VIEWS[name] = View(name, step, kind, label, tuple(reads), draw, row, click, props)
        PAGE.append(VIEWS[name])
        return draw
    return declare


def control(name: str, step: int, kind: str, label: str, row: str | None = None, adapt=None,
            props: dict | None = None) -> Control:
    """Declare the control that sets option `name`, placed here in its step's page order; `props` go to its
    component as they are."""
    if name not in OPTION_NAMES or name in CLICKED:
        raise ValueError(f"There is no option {name!r} for a control; options are {OPTION_NAMES[1:]}.")
    CONTROLS[name] = Control(name, step, kind, label, dict(props or {}), row, adapt)
    PAGE.append(CONTROLS[name])
    return CONTROLS[name]


def step_views(step: int) -> list[str]:
    """The names of the views of `step`, in page order."""
    return [v.name for v in VIEWS.values() if v.step == step]


def all_views() -> list[str]:
    return [name for step in range(len(STEPS)) for name in step_views(step)]


def affected(step: int, option: str) -> list[str]:
    """The views of `step` that read `option`: what a change of it redraws when that step is visible."""
    return [name for name in step_views(step) if option in VIEWS[name].reads]


def render_views(entry, names, options: Options) -> list:
    """The values of the named views, in order. A view that reads no option is drawn once per entry and kept."""
    values = []
    for name in names:
        spec = VIEWS[name]
        if spec.reads:
            values.append(spec.draw(entry, options.only(spec.reads)))
        else:
            values.append(entry.cached(("view", name), lambda spec=spec: spec.draw(entry, options.only(()))))
    return values


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


# ---------------------------------------------------------------------------------------------------------------
# Arrays from a trace

def _rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, C) with C = 1 or 3 -> (H, W, 3) float32 in [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def display_image(entry) -> np.ndarray:
    """What the model sees, un-normalised, (H, W, 3) in [0, 1]."""
    return entry.cached("image", lambda: _rgb(entry.trace.image.numpy()))


def display_patches(entry) -> np.ndarray:
    """x_p^i as pictures: (N, P, P, 3) in [0, 1], row-major over the grid."""
    def compute():
        image = display_image(entry)  # (H, W, 3)
        P = entry.config.patch_size
        rows, cols = entry.config.grid
        patches = image.reshape(rows, P, cols, P, 3).transpose(0, 2, 1, 3, 4)  # (rows, cols, P, P, 3)
        return np.ascontiguousarray(patches.reshape(rows * cols, P, P, 3))  # (N, P, P, 3)
    return entry.cached("patches", compute)


def _np(entry, stage: str) -> np.ndarray:
    return entry.cached(("stage", stage), lambda: entry.trace[stage].float().numpy())


def parse_indices(text: str, D: int, limit: int = MAX_FEATURE_MAPS) -> list[int]:
    """'0, 5, 10-12' -> [0, 5, 10, 11, 12], kept to 0..D-1, at most `limit`. Raises ValueError with one sentence."""
    out: list[int] = []
    for part in re.split(r"[,\s;]+", str(text or "").strip()):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"'{part}' is not a feature-map index; write numbers from 0 to {D - 1}, e.g. 0, 5, 10-12.")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        for i in range(low, min(high, low + limit) + 1):
            if i >= D:
                raise ValueError(f"Feature map {i} does not exist; this model has D = {D} maps, numbered 0 to {D - 1}.")
            if i not in out:
                out.append(i)
    if not out:
        raise ValueError(f"No feature-map index given; write numbers from 0 to {D - 1}, e.g. 0, 5, 10.")
    return out[:limit]


def random_indices(D: int, n: int = 8, seed: int | None = None) -> str:
    """n distinct random feature-map indices as text for the indices box."""
    chooser = random.Random(seed)
    return ", ".join(str(i) for i in sorted(chooser.sample(range(D), min(n, D))))


# ---------------------------------------------------------------------------------------------------------------
# The patch picker: the model's input with its grid, drawn as an image the visitor clicks on

def picker_scale(config: ViTConfig) -> int:
    """Integer upscaling of the model's input in the picker, so small inputs (28 px) get clickable patches."""
    return max(1, int(np.ceil(PICKER_SIDE / max(config.image_hw))))


def patch_picker(entry, selected: int | None = None) -> np.ndarray:
    """The model's input with the patch grid and the selected patch outlined: (H·s, W·s, 3) uint8."""
    config = entry.config
    scale = picker_scale(config)
    base = entry.cached(("picker", scale), lambda: _picker_base(display_image(entry), config, scale))
    if selected is None:
        return base
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    row, col = analysis.patch_position(int(selected), config.grid)
    side = config.patch_size * scale
    width = max(2, scale * config.patch_size // 8)
    draw.rectangle([col * side, row * side, (col + 1) * side - 1, (row + 1) * side - 1], outline=(255, 40, 40), width=width)
    return np.asarray(image)


def seen_image(entry) -> np.ndarray:
    """What the model sees (resized, cropped, before normalisation), enlarged like the picker but without the grid."""
    return entry.cached("seen", lambda: np.asarray(_enlarged(display_image(entry), entry.config)))


def _enlarged(image: np.ndarray, config: ViTConfig) -> Image.Image:
    scale = picker_scale(config)
    pil = Image.fromarray((image * 255).round().astype(np.uint8))
    resample = Image.Resampling.NEAREST if config.image_hw[0] < 100 else Image.Resampling.BILINEAR
    return pil.resize((pil.width * scale, pil.height * scale), resample)


def _picker_base(image: np.ndarray, config: ViTConfig, scale: int) -> np.ndarray:
    pil = _enlarged(image, config)
    draw = ImageDraw.Draw(pil)
    side = config.patch_size * scale
    rows, cols = config.grid
    for r in range(1, rows):
        draw.line([(0, r * side), (pil.width, r * side)], fill=(255, 255, 255), width=1)
    for c in range(1, cols):
        draw.line([(c * side, 0), (c * side, pil.height)], fill=(255, 255, 255), width=1)
    return np.asarray(pil)


def patch_at(config: ViTConfig, x: float, y: float) -> int:
    """The patch index under pixel (x, y) of the picker image (clamped to the grid)."""
    side = config.patch_size * picker_scale(config)
    rows, cols = config.grid
    row = min(max(int(y // side), 0), rows - 1)
    col = min(max(int(x // side), 0), cols - 1)
    return analysis.patch_index(row, col, config.grid)


def selection_text(entry, selected: int | None) -> str:
    if selected is None:
        return "Query: **the class token** (token 0). Click a patch to choose it instead."
    row, col = analysis.patch_position(int(selected), entry.config.grid)
    return f"Query: **patch {selected}** (row {row}, column {col}; token {int(selected) + 1}). Click another patch, or go back to the class token."


# ---------------------------------------------------------------------------------------------------------------
# Step 0: input

def _normalisation_text(entry) -> str:
    pre = entry.preprocessing
    pixels = entry.trace["input.pixels"]  # (C, H, W)
    low = pixels.amin(dim=(1, 2)).tolist()
    high = pixels.amax(dim=(1, 2)).tolist()
    channels = ["R", "G", "B"] if len(low) == 3 else ["gray"]
    ranges = ", ".join(f"{name} {a:+.2f} … {b:+.2f}" for name, a, b in zip(channels, low, high))
    width, height = entry.original_size
    notes = "".join(f"\n- {note}" for note in entry.notes) or "\n- Nothing else was changed."
    return (f"**Preprocessing:** {pre.describe()}\n\n"
            f"Uploaded {width}×{height}; the model reads {entry.config.image_hw[0]}×{entry.config.image_hw[1]}. "
            f"After normalisation with μ = {_fmt(pre.mean)} and σ = {_fmt(pre.std)} the values run {ranges} "
            f"(a pixel equal to the mean becomes 0).\n\n**Notes:**{notes}")


# ---------------------------------------------------------------------------------------------------------------
# Step 1 helpers

def _selected_values(entry, options: Options) -> str:
    try:
        indices = parse_indices(options.indices, entry.config.hidden_dim)
    except ValueError as error:
        return f"⚠️ {error}"
    if options.selected is None:
        return "Click a patch to read its value in each chosen feature map (its row of the N × D matrix $x_p E$)."
    embeddings = _np(entry, "embed.patch_embeddings")  # (N, D)
    row = embeddings[int(options.selected)]
    cells = " | ".join(f"{row[i]:+.3f}" for i in indices)
    head = " | ".join(str(i) for i in indices)
    rule = " | ".join("---" for _ in indices)
    return (f"Patch {options.selected}'s values $x_p^{{{int(options.selected) + 1}}} E$ in the chosen maps:\n\n"
            f"| map | {head} |\n|---| {rule} |\n| value | {cells} |")


def _position_similarity(entry) -> np.ndarray:
    return entry.cached("position_similarity", lambda: analysis.position_similarity(
        entry.trace["embed.position_embedding"], entry.config.grid), per_model=True)


def _filter_components(entry):
    def compute():
        components, explained = analysis.embedding_filter_components(entry.projection_weight, n=28)
        if components.shape[-1] == 1:
            components = np.repeat(components, 3, axis=-1)
        return components, explained
    return entry.cached("filter_components", compute, per_model=True)


# ---------------------------------------------------------------------------------------------------------------
# Step 2 and 3 helpers

def _layer(entry, layer) -> int:
    return min(max(int(layer), 1), entry.config.depth)


def _fused_and_distance(entry):
    """Heads fused by their mean for every layer (L, T, T) and the mean attention distance (L, h), from one pass over
    the layers' attention (computed on demand from the trace's q and k)."""
    return entry.cached("fused_and_distance", lambda: analysis.fused_attentions_and_distance(entry.trace, "mean", True))


def _fused(entry, fusion: str):
    """fuse(A_l) for every layer, (L, T, T), kept per fusion."""
    if fusion == "mean":
        return _fused_and_distance(entry)[0]
    return entry.cached(("fused", fusion), lambda: analysis.fused_attentions(entry.trace, fusion))


def _query_name(options) -> str:
    return "the class token" if options.selected is None else f"patch {options.selected}"


def layernorm_pair(entry, layer: int, which: str) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) one LayerNorm of layer l, each (T, D): LN(z_{l-1}) in Eq. 2, or LN(z'_l) in Eq. 3."""
    layer = min(max(int(layer), 1), entry.config.depth)
    if which == LN_CHOICES[1]:
        return _np(entry, f"blocks.{layer}.z_mid"), _np(entry, f"blocks.{layer}.ln_2")
    before = "embed.z0" if layer == 1 else f"blocks.{layer - 1}.z"
    return _np(entry, before), _np(entry, f"blocks.{layer}.ln_1")


def _token_names(config: ViTConfig) -> list[str]:
    return ["class"] + [f"patch {i}" for i in range(config.num_patches)]


def _top_table(entry, k: int = 5) -> str:
    """The chart's classes in the chart's order (analysis.ranking: ties in class order)."""
    probabilities = entry.trace.probabilities.numpy()  # (K,)
    rows = "\n".join(f"| {rank} | {name} | {p:.2%} |" for rank, (name, p) in enumerate(entry.trace.top_k(k), start=1))
    notes = []
    if equally_likely(probabilities):
        notes.append(f"All {probabilities.size} classes are equally likely (1/{probabilities.size} each): the head "
                     f"does not prefer any class, so the ranking above is just class order.")
    if not entry.trained:
        notes.append(f"⚠️ {UNTRAINED_NOTE}")
    return f"| rank | class | probability |\n|---|---|---|\n{rows}" + "".join(f"\n\n{n}" for n in notes)


# ---------------------------------------------------------------------------------------------------------------
# The views and controls, in page order

# Step 0: the input
@view("input.text", 0, "markdown")
def _input_text(entry, options):
    return explanation(0, entry.config, entry.preprocessing)


@view("input.original", 0, "image", "Your image (upright, RGB)", row="images", height=320)
def _input_original(entry, options):
    return entry.original


@view("input.seen", 0, "image", "What the model sees (resized, centre-cropped)", row="images", height=320, format="png")
def _input_seen(entry, options):
    return seen_image(entry)


@view("input.normalised", 0, "markdown")
def _input_normalised(entry, options):
    return _normalisation_text(entry)


# Step 1: Eq. 1
@view("eq1.text", 1, "markdown")
def _eq1_text(entry, options):
    return explanation(1, entry.config)


@view("eq1.grid", 1, "plot", "Patch grid (hover: index, row, column)", reads=("selected",), row="patches")
def _eq1_grid(entry, options):
    config = entry.config
    return render.patch_grid(display_image(entry), config.patch_size, selected=options.selected,
                             show_numbers=config.num_patches <= 256)


@view("eq1.sequence", 1, "plot", "The patch sequence x_p^1 … x_p^N", reads=("selected",), row="patches")
def _eq1_sequence(entry, options):
    return render.patch_sequence(display_patches(entry), selected=options.selected)


control("indices", 1, "textbox", "Feature maps to show (indices, ranges like 10-12; Enter to apply)", row="indices",
        props=dict(value=Options().indices, scale=4))


@view("eq1.maps", 1, "plot", "Conv feature maps, one per chosen dimension of D; for a trained model, the same maps of "
      "an untrained twin (same config, seed 0) below", reads=("indices",))
def _eq1_maps(entry, options):
    config = entry.config
    try:
        indices = parse_indices(options.indices, config.hidden_dim)
    except ValueError:
        indices = list(range(min(8, config.hidden_dim)))
    untrained = entry.untrained() if entry.untrained is not None else None
    return render.feature_maps(_np(entry, "embed.feature_maps"), indices, untrained=untrained)


@view("eq1.values", 1, "markdown", reads=("selected", "indices"))
def _eq1_values(entry, options):
    return _selected_values(entry, options)


@view("eq1.embeddings", 1, "plot", "Patch embeddings x_p E (N × D)")
def _eq1_embeddings(entry, options):
    config = entry.config
    return render.token_matrix(_np(entry, "embed.patch_embeddings"),
                               f"patch embeddings x_p^i E: N × D = {config.num_patches} × {config.hidden_dim}")


@view("eq1.tokens", 1, "plot", "Class token prepended (T × D)")
def _eq1_tokens(entry, options):
    config = entry.config
    return render.token_matrix(_np(entry, "embed.sequence"),
                               f"class token prepended: T × D = {config.seq_len} × {config.hidden_dim}",
                               row_names=_token_names(config))


@view("eq1.positions", 1, "plot", "Position embeddings E_pos (T × D)")
def _eq1_positions(entry, options):
    config = entry.config
    return render.token_matrix(_np(entry, "embed.position_embedding"),
                               f"position embeddings E_pos: T × D = {config.seq_len} × {config.hidden_dim}",
                               row_names=_token_names(config))


@view("eq1.similarity", 1, "plot", "Position-embedding similarity (Fig. 7 centre)", reads=("selected",), row="similarity")
def _eq1_similarity(entry, options):
    return render.position_similarity(_position_similarity(entry), selected=options.selected)


@view("eq1.tile", 1, "plot", "Similarity of the selected patch's position", reads=("selected",), row="similarity")
def _eq1_tile(entry, options):
    return render.position_similarity_tile(_position_similarity(entry), 0 if options.selected is None else options.selected)


@view("eq1.filters", 1, "plot", "Principal components of E's filters (Fig. 7 left)")
def _eq1_filters(entry, options):
    return render.filter_components(*_filter_components(entry))


@view("eq1.z0", 1, "plot", "z_0 (T × D)")
def _eq1_z0(entry, options):
    config = entry.config
    return render.token_matrix(_np(entry, "embed.z0"), f"z_0 = sequence + E_pos: T × D = {config.seq_len} × {config.hidden_dim}",
                               row_names=_token_names(config))


# Step 2: Eq. 2
@view("eq2.text", 2, "markdown", reads=("selected", "layer"))
def _eq2_text(entry, options):
    return (explanation(2, entry.config)
            + f"\n\nShowing layer ℓ = {_layer(entry, options.layer)}, query {_query_name(options)}.")


def _depth_range(entry, value):
    depth = entry.config.depth
    return {"maximum": depth}, min(max(int(value or 1), 1), depth)


def _head_choices(entry, value):
    choices = ["mean"] + [str(i) for i in range(1, entry.config.heads + 1)]
    return {"choices": choices}, value if str(value) in choices else "mean"


control("layer", 2, "slider", "Layer ℓ", row="layer-head", adapt=_depth_range,
        props=dict(minimum=1, maximum=12, step=1, value=1))
control("head", 2, "dropdown", "Head for the attention matrix", row="layer-head", adapt=_head_choices,
        props=dict(choices=["mean"] + [str(i) for i in range(1, 13)], value="mean"))


@view("eq2.heads", 2, "plot", "Attention of the query to every patch, each head of layer ℓ", reads=("selected", "layer"))
def _eq2_heads(entry, options):
    layer = _layer(entry, options.layer)
    maps = analysis.query_attention(entry.trace, layer, options.query)  # (h, rows, cols)
    return render.attention_heads(display_image(entry), maps, options.selected,
                                  f"layer {layer}: attention of {_query_name(options)} to every patch, per head")


@view("eq2.matrix", 2, "plot", "Attention matrix A (hover for values)", reads=("layer", "head"))
def _eq2_matrix(entry, options):
    layer = _layer(entry, options.layer)
    heads = entry.config.heads
    head = None if str(options.head).lower() == "mean" else min(max(int(options.head), 1), heads)
    what = f"layer {layer}, mean over the {heads} heads" if head is None else f"layer {layer}, head {head}"
    weights = analysis.attention_matrix(entry.trace, layer, head)  # (T, T)
    return render.attention_matrix(weights, entry.config.grid, f"attention matrix A ({what}): row = query, column = key")


@view("eq2.overview", 2, "plot", "All layers × heads, same query", reads=("selected",))
def _eq2_overview(entry, options):
    maps = entry.cached(("overview", options.query), lambda: analysis.query_attention_layers(entry.trace, options.query))
    return render.attention_overview(maps, options.selected)  # (L, h, rows, cols)


control("fusion", 2, "radio", "Rollout head fusion", row="rollout", props=dict(choices=list(HEAD_FUSIONS), value="mean"))
control("discard", 2, "slider", "Rollout discard ratio", row="rollout",
        props=dict(minimum=0.0, maximum=0.95, step=0.05, value=0.0))


@view("eq2.rollout", 2, "plot", "Attention rollout (Fig. 6)", reads=("fusion", "discard"))
def _eq2_rollout(entry, options):
    fusion = options.fusion if options.fusion in HEAD_FUSIONS else "mean"
    discard = float(min(max(options.discard, 0.0), 0.99))
    fused = _fused(entry, fusion)  # (L, T, T)
    rollout_map = entry.cached(("rollout", fusion, round(discard, 3)),
                               lambda: analysis.rollout_map(entry.trace, fusion, discard, fused=fused))
    return render.rollout(display_image(entry), rollout_map,
                          f"attention rollout (Fig. 6): head fusion {fusion}, discard ratio {discard:.2f}")


@view("eq2.distance", 2, "plot", "Mean attention distance per head vs depth (Fig. 7 right; rows renormalised after "
      "dropping the class token)")
def _eq2_distance(entry, options):
    distance = _fused_and_distance(entry)[1]  # (L, h)
    return render.mean_attention_distance(distance, entry.config.patch_size, entry.config.image_hw[0])


def _survey(entry):
    """The survey of this model's weights (explorer.survey), or None."""
    return entry.survey() if entry.survey is not None else None


def _survey_command(entry) -> str:
    spec = entry.spec
    if spec.kind == "checkpoint":
        return f"python -m explorer.survey --model {spec.path} --out {spec.path}_survey"
    return f'python -m explorer.survey --model "{spec.label}" --out $EXPLORER_SURVEYS/<name>'


@view("eq2.survey_distance", 2, "plot", "This image against the data set: each head's mean attention distance over "
      "the survey's mean ± sd")
def _eq2_survey_distance(entry, options):
    survey = _survey(entry)
    if survey is None:
        return render.no_survey(entry.spec.label, _survey_command(entry))
    distance = _fused_and_distance(entry)[1]  # (L, h)
    survey_distance = survey["mean_attention_distance"]
    return render.attention_distance_survey(distance, survey_distance["mean"], survey_distance["std"],
                                            survey_distance["images"], entry.config.patch_size,
                                            entry.config.image_hw[0])


@view("eq2.survey_rollout", 2, "plot", "This image's attention rollout beside the data set's average")
def _eq2_survey_rollout(entry, options):
    survey = _survey(entry)
    if survey is None:
        return render.no_survey(entry.spec.label, _survey_command(entry))
    rollout = survey["rollout"]  # the survey's maps: mean fusion, nothing discarded, each scaled to a maximum of 1
    fusion, discard = rollout["head_fusion"], float(rollout["discard_ratio"])
    mine = entry.cached(("rollout", fusion, round(discard, 3)), lambda: analysis.rollout_map(
        entry.trace, fusion, discard, fused=_fused(entry, fusion)))
    return render.rollout_survey(mine, rollout["mean_map"], rollout["images"])


# Step 3: Eq. 3
@view("eq3.text", 3, "markdown")
def _eq3_text(entry, options):
    return explanation(3, entry.config)


@view("eq3.norms", 3, "plot", "Token norms ‖z_ℓ‖ over the image, layer by layer")
def _eq3_norms(entry, options):
    norms = entry.cached("token_norms", lambda: analysis.token_norms(entry.trace))
    return render.token_norms(norms["z"], entry.config.grid)


@view("eq3.updates", 3, "plot", "How z'_ℓ and z_ℓ change layer by layer")
def _eq3_updates(entry, options):
    z, z_mid = entry.cached("stream", lambda: (entry.trace.residual_stream().numpy(), entry.trace.residual_mid().numpy()))
    return render.residual_updates(z, z_mid)


control("ln_layer", 3, "slider", "Layer ℓ for LayerNorm", row="layernorm", adapt=_depth_range,
        props=dict(minimum=1, maximum=12, step=1, value=1))
control("ln_which", 3, "radio", "Which LayerNorm", row="layernorm", props=dict(choices=list(LN_CHOICES), value=LN_CHOICES[0]))


@view("eq3.layernorm", 3, "plot", "LayerNorm's effect on the selected token", reads=("selected", "ln_layer", "ln_which"))
def _eq3_layernorm(entry, options):
    return render.layernorm_effect(*layernorm_pair(entry, options.ln_layer, options.ln_which), options.query)


# Step 4: Eq. 4
@view("eq4.text", 4, "markdown")
def _eq4_text(entry, options):
    return explanation(4, entry.config)


@view("eq4.top_k", 4, "plot", "Top-5 prediction", row="top-k")
def _eq4_top_k(entry, options):
    return render.top_k(entry.trace.probabilities.numpy(), entry.class_names, k=5)


@view("eq4.table", 4, "markdown", row="top-k", elem_id="top-k-table")
def _eq4_table(entry, options):
    return _top_table(entry)


@view("eq4.lens", 4, "plot", "Logit lens: the prediction layer by layer")
def _eq4_lens(entry, options):
    lens = entry.logit_lens
    return render.logit_lens(lens.probabilities, entry.class_names, [int(i) for i in lens.top_indices[-1]])


# Step 5: why this class (explanations beyond attention, token dropping, Sec. 3.2)

def target_class(entry, target) -> int:
    """The class to explain: the option's class index, or the top class (analysis.ranking) when it is empty."""
    K = entry.trace.probabilities.numel()
    value = str(target or "").strip()
    if value.isdigit() and int(value) < K:
        return int(value)
    return int(ranking(entry.trace.probabilities.numpy(), 1)[0])


def target_choices(entry) -> list[tuple[str, str]]:
    """(menu text, class index) for the class picker: the top 5 first, then every class in class order."""
    probabilities = entry.trace.probabilities.numpy()  # (K,)
    names = entry.class_names or [str(i) for i in range(probabilities.size)]
    top = [int(i) for i in ranking(probabilities, 5)]
    choices = [(f"top {rank}: {names[i]} ({probabilities[i]:.1%})", str(i)) for rank, i in enumerate(top, start=1)]
    return choices + [(f"{names[i]} ({probabilities[i]:.1%})", str(i)) for i in range(probabilities.size) if i not in top]


TOP_CLASS = ("the top class", "")  # the picker's first choice: whatever class the model ranks first


def _target_choices(entry, value):
    choices = [TOP_CLASS] + target_choices(entry)
    return {"choices": choices}, str(value) if str(value) in {v for _, v in choices} else ""


def _class_name(entry, index: int) -> str:
    names = entry.class_names
    return names[index] if index < len(names) else str(index)


def _gradient_map(entry, method: str, target: int) -> np.ndarray:
    """relevance or grad_cam for `target`, (rows, cols): one forward and one backward of the model, counted, once."""
    method_of = getattr(explain, method)
    return entry.cached((method, target), lambda: entry.run_model(method, lambda model, x: method_of(model, x, target)))


def _faithfulness(entry, target: int):
    def compute():
        grid = entry.config.grid
        maps = {
            "relevance": _gradient_map(entry, "relevance", target),
            "grad_cam": _gradient_map(entry, "grad_cam", target),
            "rollout": analysis.rollout_map(entry.trace, fused=_fused(entry, "mean")),
            "attention": analysis.query_attention(entry.trace, entry.config.depth, 0).mean(axis=0).reshape(grid),
        }
        steps = explain.default_steps(entry.config)
        return entry.run_model("faithfulness", lambda model, x: explain.faithfulness(model, x, target, maps, steps))
    return entry.cached(("faithfulness", target), compute)


def dropped_image(entry, dropped: tuple[int, ...]) -> np.ndarray:
    """The picker's image with the dropped patches blacked out and crossed: (H·s, W·s, 3) uint8."""
    config = entry.config
    scale = picker_scale(config)
    base = entry.cached(("picker", scale), lambda: _picker_base(display_image(entry), config, scale))
    if not dropped:
        return base
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    side = config.patch_size * scale
    for index in dropped:
        row, col = analysis.patch_position(int(index), config.grid)
        box = [col * side, row * side, (col + 1) * side - 1, (row + 1) * side - 1]
        draw.rectangle(box, fill=(24, 24, 24), outline=(255, 40, 40), width=max(1, side // 16))
        draw.line(box, fill=(255, 40, 40), width=max(1, side // 16))
        draw.line([box[0], box[3], box[2], box[1]], fill=(255, 40, 40), width=max(1, side // 16))
    return np.asarray(image)


def toggle_patch(dropped, index: int, num_patches: int) -> tuple[int, ...]:
    """`dropped` with patch `index` taken out, or put back if it was out; never all N (the sequence keeps a patch)."""
    out = set(int(i) for i in (dropped or ()))
    out ^= {int(index)}
    if len(out) >= num_patches:
        out.discard(int(index))
    return tuple(sorted(out))


def _dropped_probabilities(entry, dropped: tuple[int, ...]) -> np.ndarray:
    """Softmax of the model on the sequence without `dropped` (a counted run of the shortened sequence): (K,)."""
    if not dropped:
        return entry.trace.probabilities.numpy()
    def run(model, x):
        with torch.no_grad():
            return explain.drop_patches(model, x, dropped).softmax(-1)[0].float().cpu().numpy()  # (1, K) -> (K,)
    return entry.cached(("dropped", dropped), lambda: entry.run_model("dropped", run))


SCALES = (1.0, 1.5, 2.0)


def scaled_size(config: ViTConfig, scale: float) -> int:
    """The input side at `scale` times the model's own, a multiple of P (square models)."""
    P = config.patch_size
    return max(P, int(round(config.image_hw[0] * float(scale) / P)) * P)


def _scale_choices(entry, value):
    config = entry.config
    choices = []
    for scale in SCALES:
        side = scaled_size(config, scale)
        label = f"{side} × {side} ({side // config.patch_size}² patches)" + (", native" if scale == 1.0 else "")
        choices.append((label, scale))
    return {"choices": choices}, value if value in SCALES else 1.0


def _scaled_probabilities(entry, scale: float) -> np.ndarray:
    """Sec. 3.2: the image read at `scale` times the model's size (the same preprocessing, scaled), by the model with
    E_pos interpolated in 2-D (explain.at_resolution): softmax (K,). A counted model run."""
    if scale == 1.0:
        return entry.trace.probabilities.numpy()

    def compute():
        side = scaled_size(entry.config, scale)
        pre = entry.preprocessing
        changes = dict(crop_size=side, resize_size=int(round(pre.resize_size * side / pre.crop_size)))
        if getattr(pre, "resize_to", None) is not None:
            changes["resize_to"] = (side, side)
        x = replace(pre, **changes)(entry.original)  # (1, C, side, side)

        def run(model, _):
            with torch.no_grad():
                return explain.at_resolution(model, side)(x.to(next(model.parameters()).device)).softmax(-1)[0]
        return entry.run_model("resolution", run).float().cpu().numpy()
    return entry.cached(("scaled", scale), compute)


@view("why.text", 5, "markdown", reads=("target",))
def _why_text(entry, options):
    target = target_class(entry, options.target)
    return (explanation(5, entry.config) + f"\n\nExplaining **{_class_name(entry, target)}** (class {target}, "
            f"probability {entry.trace.probabilities[target]:.1%}).")


control("target", 5, "dropdown", "Class to explain (top 5 first; type to find any class)", adapt=_target_choices,
        props=dict(choices=[TOP_CLASS], value="", filterable=True))


@view("why.relevance", 5, "plot", "Relevance for the chosen class (Chefer et al. 2021)", reads=("target",), row="maps")
def _why_relevance(entry, options):
    target = target_class(entry, options.target)
    return render.rollout(display_image(entry), _gradient_map(entry, "relevance", target),
                          f"relevance for {_class_name(entry, target)}", name="relevance")


@view("why.grad_cam", 5, "plot", "Grad-CAM for the chosen class (last block)", reads=("target",), row="maps")
def _why_grad_cam(entry, options):
    target = target_class(entry, options.target)
    cam = _gradient_map(entry, "grad_cam", target)  # (rows, cols), ReLU'd: zero where no token raises the score
    title = f"Grad-CAM for {_class_name(entry, target)}"
    if not np.any(cam > 0):
        title += ": zero everywhere (no token entering the last block raises this class's score)"
    return render.rollout(display_image(entry), cam, title, name="Grad-CAM")


@view("why.faithfulness", 5, "plot", "Faithfulness of each map: deletion and insertion curves", reads=("target",))
def _why_faithfulness(entry, options):
    target = target_class(entry, options.target)
    result = _faithfulness(entry, target)
    def as_tuples(curves):
        return {name: (c.fractions, c.probabilities, c.area) for name, c in curves.items()}
    return render.faithfulness(as_tuples(result.deletion), as_tuples(result.insertion), _class_name(entry, target))


@view("why.dropper", 5, "image", "Click patches to take them out of the sequence (click again to put back)",
      reads=("dropped",), click="dropped", row="drop", format="png", height=360)
def _why_dropper(entry, options):
    return dropped_image(entry, options.dropped)


@view("why.dropped", 5, "plot", "Prediction without the clicked patches", reads=("dropped",), row="drop")
def _why_dropped(entry, options):
    dropped = tuple(options.dropped)
    after = _dropped_probabilities(entry, dropped)
    if not dropped:
        return render.prediction_change(entry.trace.probabilities.numpy(), None, entry.class_names,
                                        ("all patches: click patches on the left to take them out", ""))
    label = f"without {len(dropped)} patch{'es' if len(dropped) != 1 else ''}"
    return render.prediction_change(entry.trace.probabilities.numpy(), after, entry.class_names, ("all patches", label))


control("scale", 5, "dropdown", "Input size (Sec. 3.2: E_pos interpolated in 2-D)", adapt=_scale_choices,
        props=dict(choices=[("native", 1.0)], value=1.0))


@view("why.positions", 5, "plot", "Position-embedding similarity at the model's own size", row="resolution")
def _why_positions(entry, options):
    return render.position_similarity(_position_similarity(entry))


@view("why.positions_scaled", 5, "plot", "The same, E_pos interpolated to the chosen size", reads=("scale",),
      row="resolution")
def _why_positions_scaled(entry, options):
    side = scaled_size(entry.config, options.scale)
    grid = (side // entry.config.patch_size,) * 2

    def compute():
        E = explain.interpolate_position_embedding(entry.trace["embed.position_embedding"][None], entry.config.grid,
                                                    grid)[0]  # (1, T, D) -> (T', D)
        return analysis.position_similarity(E, grid)
    return render.position_similarity(entry.cached(("scaled_similarity", side), compute))


@view("why.scaled_prediction", 5, "plot", "Prediction at the model's own size and at the chosen size", reads=("scale",))
def _why_scaled_prediction(entry, options):
    side = scaled_size(entry.config, options.scale)
    native = entry.config.image_hw[0]
    if side == native:
        return render.prediction_change(entry.trace.probabilities.numpy(), None, entry.class_names,
                                        (f"{native} × {native}, the model's own size: choose a larger one above", ""))
    return render.prediction_change(entry.trace.probabilities.numpy(), _scaled_probabilities(entry, options.scale),
                                    entry.class_names, (f"{native} × {native}", f"{side} × {side}"))
