"""Step 1, Eq. 1: the patches, the patch sequence, the patch embedding's feature maps and filters, the token matrices
and the position embeddings' similarity; the feature-map indices a visitor types."""
from __future__ import annotations

import random
import re

import numpy as np

from ...config import ViTConfig
from ...deferred import deferred
from ..screen import narrow
from ..text import explanation
from .declare import Options, control, view
from .input import display_image, display_patches, stage

# Imported when first used (explorer/deferred.py): the page is up before torch (and plotly) are loaded.
analysis = deferred("explorer.analysis")
render = deferred("explorer.render")


MAX_FEATURE_MAPS = 16


def parse_indices(text: str, D: int, limit: int = MAX_FEATURE_MAPS, noun: str = "feature map",
                  total: str | None = None) -> list[int]:
    """'0, 5, 10-12' -> [0, 5, 10, 11, 12], kept to 0..D-1, at most `limit`. Raises ValueError with one sentence naming
    what the numbers count (`noun`, `total`: D feature maps here; N patches for patching)."""
    total = total or f"D = {D} maps"
    index = noun.replace(" ", "-") + " index"
    out: list[int] = []
    for part in re.split(r"[,\s;]+", str(text or "").strip()):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"'{part}' is not a {index}; write numbers from 0 to {D - 1}, e.g. 0, 5, 10-12.")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        for i in range(low, min(high, low + limit) + 1):
            if i >= D:
                raise ValueError(f"{noun.capitalize()} {i} does not exist; this model has {total}, numbered 0 to {D - 1}.")
            if i not in out:
                out.append(i)
    if not out:
        raise ValueError(f"No {index} given; write numbers from 0 to {D - 1}, e.g. 0, 5, 10.")
    return out[:limit]


def random_indices(D: int, n: int = 8, seed: int | None = None) -> str:
    """n distinct random feature-map indices as text for the indices box."""
    chooser = random.Random(seed)
    return ", ".join(str(i) for i in sorted(chooser.sample(range(D), min(n, D))))


def _selected_values(entry, options: Options) -> str:
    try:
        indices = parse_indices(options.indices, entry.config.hidden_dim)
    except ValueError as error:
        return f"⚠️ {error}"
    if options.selected is None:
        return "Click a patch to read its value in each chosen feature map (its row of the N × D matrix $x_p E$)."
    embeddings = stage(entry, "embed.patch_embeddings")  # (N, D)
    row = embeddings[int(options.selected)]
    cells = " | ".join(f"{row[i]:+.3f}" for i in indices)
    head = " | ".join(str(i) for i in indices)
    rule = " | ".join("---" for _ in indices)
    return (f"Patch {options.selected}'s values $x_p^{{{int(options.selected) + 1}}} E$ in the chosen maps:\n\n"
            f"| map | {head} |\n|---| {rule} |\n| value | {cells} |")


def _position_similarity(entry) -> np.ndarray:
    return entry.cached("position_similarity", lambda: analysis.position_similarity(
        entry.trace["embed.position_embedding"], entry.config.grid, entry.config.layout), per_model=True)


def _filter_components(entry):
    def compute():
        # (n, P, P, C): a one-channel model's filters stay one channel, so the figure can say they are grayscale
        return analysis.embedding_filter_components(entry.projection_weight, n=28)
    return entry.cached("filter_components", compute, per_model=True)


def _token_names(config: ViTConfig) -> list[str]:
    """Each row's token by its label: CLS, DIST, REG1..REGk, then patch 0..N-1 (TokenLayout.labels)."""
    return config.layout.labels()


@view("eq1.text", 1, "markdown")
def _eq1_text(entry, options):
    return explanation(1, entry.config)


@view("eq1.grid", 1, "plot", "Patch grid (hover: index, row, column)", reads=("selected",), row="patches", stages=("input.image",))
def _eq1_grid(entry, options):
    config = entry.config
    return render.patch_grid(display_image(entry), config.patch_size, selected=options.selected,
                             show_numbers=config.num_patches <= 256)


@view("eq1.sequence", 1, "plot", "The patch sequence x_p^1 … x_p^N", reads=("selected",), row="patches", stages=("input.image",))
def _eq1_sequence(entry, options):
    return render.patch_sequence(display_patches(entry), selected=options.selected, layout=entry.config.layout)


control("indices", 1, "textbox", "Feature maps to show (indices, ranges like 10-12; Enter to apply)", row="indices",
        props=dict(value=Options().indices, scale=4))


@view("eq1.maps", 1, "plot", "Conv feature maps, one per chosen dimension of D; for a trained model, the same maps of "
      "an untrained twin (same config, seed 0) below", reads=("indices",), stages=("embed.feature_maps",))
def _eq1_maps(entry, options):
    config = entry.config
    try:
        indices = parse_indices(options.indices, config.hidden_dim)
    except ValueError:
        indices = list(range(min(8, config.hidden_dim)))
    untrained = entry.untrained() if entry.untrained is not None else None
    return render.feature_maps(stage(entry, "embed.feature_maps"), indices, untrained=untrained,
                               narrow=narrow())


@view("eq1.values", 1, "markdown", reads=("selected", "indices"), stages=("embed.patch_embeddings",))
def _eq1_values(entry, options):
    return _selected_values(entry, options)


@view("eq1.embeddings", 1, "plot", "Patch embeddings x_p E (N × D)", stages=("embed.patch_embeddings",))
def _eq1_embeddings(entry, options):
    config = entry.config
    return render.token_matrix(stage(entry, "embed.patch_embeddings"),
                               f"patch embeddings x_p^i E: N × D = {config.num_patches} × {config.hidden_dim}")


def _token_rows(entry, name: str, what: str):
    """The T × D stage `name` as a token matrix, its rows named by token."""
    config = entry.config
    return render.token_matrix(stage(entry, name), f"{what}: T × D = {config.seq_len} × {config.hidden_dim}",
                               row_names=_token_names(config))


@view("eq1.tokens", 1, "plot", "Class token prepended (T × D)", stages=("embed.sequence",))
def _eq1_tokens(entry, options):
    layout = entry.config.layout
    what = ("class token prepended" if layout.prefix_labels == ("CLS",) else
            f"{', '.join(layout.prefix_labels)} prepended" if layout.prefix_labels else "nothing prepended (no class token)")
    return _token_rows(entry, "embed.sequence", what)


@view("eq1.positions", 1, "plot", "Position embeddings E_pos (T × D)", stages=("embed.position_embedding",))
def _eq1_positions(entry, options):
    return _token_rows(entry, "embed.position_embedding", "position embeddings E_pos")


@view("eq1.similarity", 1, "plot", "Position-embedding similarity (Fig. 7 centre)", reads=("selected",), row="similarity", stages=("embed.position_embedding",))
def _eq1_similarity(entry, options):
    return render.position_similarity(_position_similarity(entry), selected=options.selected)


@view("eq1.tile", 1, "plot", "Similarity of the selected patch's position", reads=("selected",), row="similarity", stages=("embed.position_embedding",))
def _eq1_tile(entry, options):
    return render.position_similarity_tile(_position_similarity(entry), 0 if options.selected is None else options.selected)


@view("eq1.filters", 1, "plot", "Principal components of E's filters (Fig. 7 left)")
def _eq1_filters(entry, options):
    return render.filter_components(*_filter_components(entry), narrow=narrow())


@view("eq1.z0", 1, "plot", "z_0 (T × D)", stages=("embed.z0",))
def _eq1_z0(entry, options):
    return _token_rows(entry, "embed.z0", "z_0 = sequence + E_pos")
