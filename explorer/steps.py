"""The page's five steps (Input, Eq. 1-4): their text with the live sizes of the model in use, and their views.

Every view is drawn from a cached `session.Entry` (one traced image) and a few options, never by running the model:
`render_outputs(entry, names, options)` returns the values of the named outputs, in order. `OUTPUTS[step]` lists the
outputs of each step and `DEPENDS` says which options each output reads, so a control change redraws only what
it affects. Figures come from explorer.render, numbers from explorer.analysis.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import analysis, render
from .config import ViTConfig

STEPS = ("0 · Input", "1 · Eq. 1 Patches", "2 · Eq. 2 Attention", "3 · Eq. 3 MLP", "4 · Eq. 4 Prediction")
HEAD_FUSIONS = analysis.HEAD_FUSIONS
PICKER_SIDE = 448  # the patch picker is drawn at least this many pixels wide
MAX_FEATURE_MAPS = 16


@dataclass(frozen=True)
class Options:
    """Everything a visitor can set. `selected` is a patch index i (0-based, row-major) or None for the class token."""

    selected: int | None = None
    indices: str = "0, 1, 2, 3, 4, 5, 6, 7"  # feature maps to show (Eq. 1)
    layer: int = 1  # l for the attention views (Eq. 2), 1-based
    head: str = "mean"  # "mean" or a head number 1..h, for the attention matrix
    fusion: str = "mean"  # rollout head fusion
    discard: float = 0.0  # rollout discard ratio
    ln_layer: int = 1  # l for the LayerNorm view (Eq. 3)
    ln_which: str = "LN before MSA (Eq. 2)"  # or "LN before MLP (Eq. 3)"

    def replace(self, **changes) -> "Options":
        return replace(self, **changes)

    @property
    def query(self) -> int:
        """The query token: 0 for the class token, i + 1 for patch i."""
        return 0 if self.selected is None else int(self.selected) + 1


LN_CHOICES = ("LN before MSA (Eq. 2)", "LN before MLP (Eq. 3)")

# The outputs of each step, in page order.
OUTPUTS: dict[int, tuple[str, ...]] = {
    0: ("input.text", "input.original", "input.seen", "input.normalised"),
    1: ("eq1.text", "eq1.grid", "eq1.sequence", "eq1.maps", "eq1.values", "eq1.embeddings", "eq1.tokens",
        "eq1.positions", "eq1.similarity", "eq1.tile", "eq1.filters", "eq1.z0"),
    2: ("eq2.text", "eq2.heads", "eq2.matrix", "eq2.overview", "eq2.rollout", "eq2.distance"),
    3: ("eq3.text", "eq3.norms", "eq3.updates", "eq3.layernorm"),
    4: ("eq4.text", "eq4.top_k", "eq4.table", "eq4.lens"),
}
ALL_OUTPUTS: tuple[str, ...] = tuple(name for step in sorted(OUTPUTS) for name in OUTPUTS[step])

# Which options each output reads; an output not listed depends on the entry only.
DEPENDS: dict[str, tuple[str, ...]] = {
    "eq1.grid": ("selected",),
    "eq1.sequence": ("selected",),
    "eq1.maps": ("indices",),
    "eq1.values": ("selected", "indices"),
    "eq1.similarity": ("selected",),
    "eq1.tile": ("selected",),
    "eq2.text": ("selected", "layer"),
    "eq2.heads": ("selected", "layer"),
    "eq2.matrix": ("layer", "head"),
    "eq2.overview": ("selected",),
    "eq2.rollout": ("fusion", "discard"),
    "eq3.layernorm": ("selected", "ln_layer", "ln_which"),
}


def affected(step: int, changed: str) -> list[str]:
    """The outputs of `step` that read option `changed`."""
    return [name for name in OUTPUTS[step] if changed in DEPENDS.get(name, ())]


# ---------------------------------------------------------------------------------------------------------------
# Sizes and text

def sizes(config: ViTConfig) -> dict[str, int]:
    """The paper's letters for this model."""
    H, W = config.image_hw
    rows, cols = config.grid
    return {
        "H": H, "W": W, "C": config.channels, "P": config.patch_size, "N": config.num_patches, "T": config.seq_len,
        "D": config.hidden_dim, "L": config.depth, "h": config.heads, "d": config.head_dim, "MLP": config.mlp_dim,
        "K": config.num_classes, "rows": rows, "cols": cols, "patch_dim": config.patch_dim,
    }


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def equation(step: int, config: ViTConfig) -> str:
    """The step's equation in LaTeX ($$...$$) with this model's sizes."""
    s = sizes(config)
    if step == 0:
        return (f"$$x \\in \\mathbb{{R}}^{{H \\times W \\times C}} = \\mathbb{{R}}^{{{s['H']} \\times {s['W']} \\times "
                f"{s['C']}}}, \\qquad \\hat x_c = \\frac{{x_c - \\mu_c}}{{\\sigma_c}}$$")
    if step == 1:
        return (f"$$z_0 = [\\,x_\\text{{class}};\\; x_p^1 E;\\; x_p^2 E;\\; \\dots;\\; x_p^{{{s['N']}}} E\\,] + E_{{pos}},"
                f"\\qquad E \\in \\mathbb{{R}}^{{(P^2 C) \\times D}} = \\mathbb{{R}}^{{{s['patch_dim']} \\times {s['D']}}},"
                f"\\quad E_{{pos}} \\in \\mathbb{{R}}^{{T \\times D}} = \\mathbb{{R}}^{{{s['T']} \\times {s['D']}}}$$")
    if step == 2:
        return (f"$$z'_\\ell = \\mathrm{{MSA}}(\\mathrm{{LN}}(z_{{\\ell-1}})) + z_{{\\ell-1}},\\quad \\ell = 1 \\dots {s['L']},"
                f"\\qquad A = \\mathrm{{softmax}}\\!\\left(\\frac{{q k^\\top}}{{\\sqrt{{D_h}}}}\\right) \\in "
                f"\\mathbb{{R}}^{{h \\times T \\times T}} = \\mathbb{{R}}^{{{s['h']} \\times {s['T']} \\times {s['T']}}},"
                f"\\quad D_h = D / h = {s['d']}$$")
    if step == 3:
        return (f"$$z_\\ell = \\mathrm{{MLP}}(\\mathrm{{LN}}(z'_\\ell)) + z'_\\ell,\\quad \\ell = 1 \\dots {s['L']},"
                f"\\qquad \\mathrm{{MLP}}: \\mathbb{{R}}^{{{s['D']}}} \\to \\mathbb{{R}}^{{{s['MLP']}}} "
                f"\\xrightarrow{{\\text{{GELU}}}} \\mathbb{{R}}^{{{s['D']}}},\\quad z_\\ell \\in \\mathbb{{R}}^{{{s['T']} \\times {s['D']}}}$$")
    if step == 4:
        return (f"$$y = \\mathrm{{LN}}(z_L^0) = \\mathrm{{LN}}(z_{{{s['L']}}}^0) \\in \\mathbb{{R}}^{{{s['D']}}},"
                f"\\qquad \\text{{logits}} = y\\,W_\\text{{head}} + b \\in \\mathbb{{R}}^{{K}} = \\mathbb{{R}}^{{{s['K']}}}$$")
    raise ValueError(f"There is no step {step}; steps are 0..4.")


def explanation(step: int, config: ViTConfig, preprocessing=None) -> str:
    """The step's equation and two or three plain sentences, in Markdown."""
    s = sizes(config)
    if step == 0:
        pre = preprocessing
        resize = f"its shorter side is resized to {pre.resize_size} pixels and the central {pre.crop_size} × {pre.crop_size} square is kept" if pre else "it is resized and centre-cropped"
        gray = " It is turned into grayscale first, because this model has one input channel." if s["C"] == 1 else ""
        text = (f"The model takes an image of exactly {s['H']} × {s['W']} pixels with {s['C']} channel"
                f"{'s' if s['C'] > 1 else ''}: {resize}.{gray} Each channel is then shifted by the mean μ and divided by "
                f"the standard deviation σ of the images the model was trained on, so the numbers it reads are centred "
                f"near 0.")
    elif step == 1:
        text = (f"The image is cut into N = HW/P² = {s['H']}·{s['W']}/{s['P']}² = {s['N']} patches of "
                f"{s['P']}×{s['P']}×{s['C']} = {s['patch_dim']} values, read row by row ({s['rows']} rows × {s['cols']} "
                f"columns). Every flattened patch is multiplied by the same matrix E, which is a convolution with kernel "
                f"and stride {s['P']}: its {s['D']} output channels are the feature maps below. A learned class token is "
                f"put in front (T = N + 1 = {s['T']} rows) and a learned position embedding is added to every row.")
    elif step == 2:
        text = (f"In each of the L = {s['L']} layers, each of the h = {s['h']} heads scores every token against every "
                f"other (each row of A sums to 1) and mixes the tokens by those weights; the result is added back to "
                f"the stream. Click a patch of the image on the left to see where it looks, or pick the class token to "
                f"see what the prediction draws on. Attention rollout multiplies the layers' attention, with the "
                f"residual path added, to follow the class token back to the patches (Fig. 6).")
    elif step == 3:
        text = (f"The MLP works on each of the T = {s['T']} tokens on its own: {s['D']} → {s['MLP']} → {s['D']} with a "
                f"GELU in between, and its output is added to the stream. Before both the attention and the MLP, "
                f"LayerNorm rescales each token to mean 0 and variance 1 (then a learned scale and shift), which keeps "
                f"the sub-layers' inputs in range while the residual stream itself keeps growing.")
    elif step == 4:
        text = (f"Only the class token's final state $z_L^0$ is used: after one more LayerNorm it goes through a linear "
                f"head to K = {s['K']} scores, and softmax turns them into probabilities. The logit lens applies that "
                f"same LayerNorm and head to the class token after every layer, to see at which depth the prediction "
                f"forms.")
    else:
        raise ValueError(f"There is no step {step}; steps are 0..4.")
    return equation(step, config) + "\n\n" + text


def model_card(entry=None, spec=None, availability: str = "") -> str:
    """Which model and weights are in use and where they come from, in Markdown."""
    lines = []
    if entry is not None:
        c = entry.config
        lines.append(f"**Model in use:** {entry.spec.label} — {entry.model_name}, weights *{entry.weights}*; "
                     f"source: {entry.source}. L = {c.depth}, D = {c.hidden_dim}, h = {c.heads}, P = {c.patch_size}, "
                     f"input {c.image_hw[0]}×{c.image_hw[1]}×{c.channels}.")
        kind = entry.spec.kind
    elif spec is not None:
        lines.append(f"**Model chosen:** {spec.label} ({spec.description}); upload an image or pick an example to run it.")
        kind = spec.kind
    else:
        kind = ""
    if kind == "random":
        lines.append("⚠️ **Random init — predictions are meaningless; shapes are real.**")
    if kind == "pretrained":
        lines.append("Note: torchvision's weights are ImageNet-1k / SWAG trainings, not the paper's JFT-300M or "
                     "ImageNet-21k checkpoints.")
    if kind == "checkpoint" and entry is not None and entry.config.channels == 1:
        pre = entry.preprocessing
        lines.append(f"This model was trained on Fashion-MNIST: photos are mapped to what it expects — {pre.describe()}")
    if availability:
        lines.append(availability)
    return "\n\n".join(lines)


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
# Step 1: Eq. 1

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
# Step 2: Eq. 2

def _layer(entry, layer) -> int:
    return min(max(int(layer), 1), entry.config.depth)


def _head_weights(entry, layer: int, head: str) -> tuple[np.ndarray, str]:
    attention = entry.trace.attention(layer)  # (h, T, T)
    if str(head).lower() == "mean":
        return attention.mean(dim=0).numpy(), f"layer {layer}, mean over the {attention.shape[0]} heads"
    index = min(max(int(head), 1), attention.shape[0])
    return attention[index - 1].numpy(), f"layer {layer}, head {index}"


def _overview(entry, query: int) -> np.ndarray:
    def compute():
        rows, cols = entry.config.grid
        maps = [entry.trace.attention(l)[:, query, 1:] for l in range(1, entry.config.depth + 1)]  # L x (h, N)
        return np.stack([m.numpy() for m in maps]).reshape(entry.config.depth, -1, rows, cols)  # (L, h, rows, cols)
    return entry.cached(("overview", query), compute)


def _fused_attention(entry, fusion: str):
    """fuse(A_l) for every layer, kept as (L, 1, T, T): the heads fused once per entry and fusion."""
    def compute():
        layers = [analysis.fuse_heads(entry.trace.attention(l), fusion) for l in range(1, entry.config.depth + 1)]
        return torch.stack(layers).unsqueeze(1)  # L x (T, T) -> (L, 1, T, T)
    return entry.cached(("fused", fusion), compute)


def _rollout_map(entry, fusion: str, discard: float) -> np.ndarray:
    """analysis.rollout_map from the pre-fused attention: fusing one head by any rule leaves it unchanged."""
    rollout = analysis.attention_rollout(_fused_attention(entry, fusion), "mean", discard)  # (T, T)
    row = rollout[0, 1:]  # class token -> patches: (N,)
    return (row / row.max().clamp_min(1e-12)).reshape(entry.config.grid).numpy()  # (rows, cols), max 1


def _query_name(options: Options) -> str:
    return "the class token" if options.selected is None else f"patch {options.selected}"


# ---------------------------------------------------------------------------------------------------------------
# Step 3: Eq. 3

def layernorm_pair(entry, layer: int, which: str) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) one LayerNorm of layer l, each (T, D): LN(z_{l-1}) in Eq. 2, or LN(z'_l) in Eq. 3."""
    layer = min(max(int(layer), 1), entry.config.depth)
    if which == LN_CHOICES[1]:
        return _np(entry, f"blocks.{layer}.z_mid"), _np(entry, f"blocks.{layer}.ln_2")
    before = "embed.z0" if layer == 1 else f"blocks.{layer - 1}.z"
    return _np(entry, before), _np(entry, f"blocks.{layer}.ln_1")


def _stream(entry) -> tuple[np.ndarray, np.ndarray]:
    return entry.cached("stream", lambda: (entry.trace.residual_stream().numpy(), entry.trace.residual_mid().numpy()))


# ---------------------------------------------------------------------------------------------------------------
# Step 4: Eq. 4

def _top_table(entry, k: int = 5) -> str:
    """The chart's classes in the chart's order (render.ranking: ties in class order)."""
    probabilities = entry.trace.probabilities.numpy()  # (K,)
    names = entry.class_names or [str(i) for i in range(probabilities.size)]
    rows = "\n".join(f"| {rank} | {names[i]} | {probabilities[i]:.2%} |"
                     for rank, i in enumerate(render.ranking(probabilities, k).tolist(), start=1))
    notes = []
    if render.equally_likely(probabilities):
        notes.append(f"All {probabilities.size} classes are equally likely (1/{probabilities.size} each): the head "
                     f"does not prefer any class, so the ranking above is just class order.")
    if not entry.trained:
        notes.append("⚠️ Random init — these predictions are meaningless; the shapes are real.")
    return f"| rank | class | probability |\n|---|---|---|\n{rows}" + "".join(f"\n\n{n}" for n in notes)


# ---------------------------------------------------------------------------------------------------------------
# One output by name

def _draw(entry, name: str, options: Options):
    config = entry.config
    if name == "input.text":
        return explanation(0, config, entry.preprocessing)
    if name == "input.original":
        return entry.original
    if name == "input.seen":
        return seen_image(entry)
    if name == "input.normalised":
        return _normalisation_text(entry)

    if name == "eq1.text":
        return explanation(1, config)
    if name == "eq1.grid":
        return render.patch_grid(display_image(entry), config.patch_size, selected=options.selected,
                                 show_numbers=config.num_patches <= 256)
    if name == "eq1.sequence":
        return render.patch_sequence(display_patches(entry), selected=options.selected)
    if name == "eq1.maps":
        try:
            indices = parse_indices(options.indices, config.hidden_dim)
        except ValueError:
            indices = list(range(min(8, config.hidden_dim)))
        untrained = entry.untrained() if entry.untrained is not None else None
        return render.feature_maps(_np(entry, "embed.feature_maps"), indices, untrained=untrained)
    if name == "eq1.values":
        return _selected_values(entry, options)
    if name == "eq1.embeddings":
        return render.token_matrix(_np(entry, "embed.patch_embeddings"),
                                   f"patch embeddings x_p^i E: N × D = {config.num_patches} × {config.hidden_dim}")
    if name == "eq1.tokens":
        return render.token_matrix(_np(entry, "embed.sequence"),
                                   f"class token prepended: T × D = {config.seq_len} × {config.hidden_dim}",
                                   row_names=_token_names(config))
    if name == "eq1.positions":
        return render.token_matrix(_np(entry, "embed.position_embedding"),
                                   f"position embeddings E_pos: T × D = {config.seq_len} × {config.hidden_dim}",
                                   row_names=_token_names(config))
    if name == "eq1.similarity":
        return render.position_similarity(_position_similarity(entry), selected=options.selected)
    if name == "eq1.tile":
        return render.position_similarity_tile(_position_similarity(entry), 0 if options.selected is None else options.selected)
    if name == "eq1.filters":
        return render.filter_components(*_filter_components(entry))
    if name == "eq1.z0":
        return render.token_matrix(_np(entry, "embed.z0"), f"z_0 = sequence + E_pos: T × D = {config.seq_len} × {config.hidden_dim}",
                                   row_names=_token_names(config))

    if name == "eq2.text":
        return explanation(2, config) + f"\n\nShowing layer ℓ = {_layer(entry, options.layer)}, query {_query_name(options)}."
    if name == "eq2.heads":
        layer = _layer(entry, options.layer)
        maps = analysis.query_attention(entry.trace, layer, options.query)  # (h, rows, cols)
        return render.attention_heads(display_image(entry), maps, options.selected,
                                      f"layer {layer}: attention of {_query_name(options)} to every patch, per head")
    if name == "eq2.matrix":
        weights, what = _head_weights(entry, _layer(entry, options.layer), options.head)
        return render.attention_matrix(weights, config.grid, f"attention matrix A ({what}): row = query, column = key")
    if name == "eq2.overview":
        return render.attention_overview(_overview(entry, options.query), options.selected)
    if name == "eq2.rollout":
        fusion = options.fusion if options.fusion in HEAD_FUSIONS else "mean"
        discard = float(min(max(options.discard, 0.0), 0.99))
        rollout_map = entry.cached(("rollout", fusion, round(discard, 3)), lambda: _rollout_map(entry, fusion, discard))
        return render.rollout(display_image(entry), rollout_map,
                              f"attention rollout (Fig. 6): head fusion {fusion}, discard ratio {discard:.2f}")
    if name == "eq2.distance":
        distance = entry.cached("mean_attention_distance", lambda: analysis.mean_attention_distance(entry.trace, True))
        return render.mean_attention_distance(distance, config.patch_size, config.image_hw[0])

    if name == "eq3.text":
        return explanation(3, config)
    if name == "eq3.norms":
        norms = entry.cached("token_norms", lambda: analysis.token_norms(entry.trace))
        return render.token_norms(norms["z"], config.grid)
    if name == "eq3.updates":
        z, z_mid = _stream(entry)
        return render.residual_updates(z, z_mid)
    if name == "eq3.layernorm":
        return render.layernorm_effect(*layernorm_pair(entry, options.ln_layer, options.ln_which), options.query)

    if name == "eq4.text":
        return explanation(4, config)
    if name == "eq4.top_k":
        return render.top_k(entry.trace.probabilities.numpy(), entry.class_names, k=5)
    if name == "eq4.table":
        return _top_table(entry)
    if name == "eq4.lens":
        lens = entry.logit_lens
        return render.logit_lens(lens.probabilities, entry.class_names, [int(i) for i in lens.top_indices[-1]])
    raise KeyError(f"No output named {name!r}.")


def _token_names(config: ViTConfig) -> list[str]:
    return ["class"] + [f"patch {i}" for i in range(config.num_patches)]


def render_outputs(entry, names, options: Options) -> list:
    """The values of the named outputs, in order. Outputs that read no option are drawn once per entry."""
    values = []
    for name in names:
        reads = DEPENDS.get(name, ())
        if reads:
            values.append(_draw(entry, name, options))
        else:
            values.append(entry.cached(("output", name), lambda name=name: _draw(entry, name, options)))
    return values
