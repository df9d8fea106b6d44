"""Step 4, Eq. 4: the output. A classifier's prediction (the top 5 as a chart and a table) and the logit lens; for
every model the patch features as Eq. 4 reads them (explorer.features: their principal components as colours, a
picked patch's similarity to every patch), which is what a backbone (no classifier) shows instead of classes."""
from __future__ import annotations

from ...common import equally_likely
from ...deferred import deferred
from ...weights import UNTRAINED_NOTE
from ..cache import LENS_STAGES
from ..screen import narrow
from ..text import explanation
from .declare import view
from .input import display_image

# Imported when first used (explorer/deferred.py): the page is up before torch (and plotly) are loaded.
render = deferred("explorer.render")
figures = deferred("explorer.render.features")
features = deferred("explorer.features")

FEATURE_STAGES = ("head.tokens", "input.image")


def no_classes(entry) -> str:
    """What a backbone has instead of classes, in one sentence."""
    D = entry.trace.config.hidden_dim
    return f"No classes: this model is a backbone, and its output is y, {D} numbers (its features, shown below)."


def _top_table(entry, k: int = 5) -> str:
    """The chart's classes in the chart's order (analysis.ranking: ties in class order)."""
    if not entry.trace.config.has_classifier:
        y = entry.trace["head.y"]  # (D,)
        return f"**{no_classes(entry)}** Its length: \\|y\\| = {float(y.norm()):.3g}."
    probabilities = entry.trace.probabilities.numpy()  # (K,)
    rows = "\n".join(f"| {rank} | {name} | {p:.2%} |" for rank, (name, p) in enumerate(entry.trace.top_k(k), start=1))
    notes = []
    if equally_likely(probabilities):
        notes.append(f"All {probabilities.size} classes are equally likely (1/{probabilities.size} each): the head "
                     f"does not prefer any class, so the ranking is just class order.")
    if not entry.trained:
        notes.append(f"⚠️ {UNTRAINED_NOTE}")
    return f"| rank | class | probability |\n|---|---|---|\n{rows}" + "".join(f"\n\n{n}" for n in notes)


def picked_patch(entry, selected) -> int:
    """The patch whose similarity is shown: the one picked, else the centre of the grid."""
    rows, cols = entry.config.grid
    return int(selected) if selected is not None else (rows // 2) * cols + cols // 2


@view("eq4.text", 4, "markdown")
def _eq4_text(entry, options):
    return explanation(4, entry.config)


@view("eq4.top_k", 4, "plot", "Top-5 prediction", row="top-k", stages=("head.probabilities",))
def _eq4_top_k(entry, options):
    if not entry.config.has_classifier:
        return figures.note("Top-5 prediction: none", no_classes(entry))
    return render.top_k(entry.trace.probabilities.numpy(), entry.class_names, k=5)


@view("eq4.table", 4, "markdown", row="top-k", elem_id="top-k-table", stages=("head.probabilities",))
def _eq4_table(entry, options):
    return _top_table(entry)


@view("eq4.lens", 4, "plot", "Logit lens: the prediction layer by layer", stages=tuple(sorted(LENS_STAGES)))
def _eq4_lens(entry, options):
    lens = entry.logit_lens
    if not entry.config.has_classifier:
        return figures.note("Logit lens: none", "There is no logit lens: it reads the class token through the "
                                                "classifier after every layer, and a backbone has no classifier.")
    if lens is None:
        return figures.note("Logit lens: none", "There is no logit lens: it reads the class token after every layer, "
                                                "and this model has no class token.")
    pooled = "mean of the patch tokens" if entry.config.layout.pooling == "mean" else "class token"
    return render.logit_lens(lens.probabilities, entry.class_names, [int(i) for i in lens.top_indices[-1]],
                             pooled=pooled)


@view("eq4.pca", 4, "plot", "The patch features: principal components 1-3 as red, green, blue (DINOv2's figure)",
      row="features", stages=FEATURE_STAGES)
def _eq4_pca(entry, options):
    pca = entry.cached("feature pca", lambda: features.patch_feature_pca(entry.trace, k=3))
    return figures.feature_pca(display_image(entry), pca.components, pca.explained, narrow=narrow())


@view("eq4.similarity", 4, "plot", "A patch's cosine similarity to every patch (click a patch of the picture with the "
      "grid)", reads=("selected",), row="features", stages=FEATURE_STAGES)
def _eq4_similarity(entry, options):
    patch = picked_patch(entry, options.selected)
    similarity = entry.cached(("patch similarity", patch), lambda: features.patch_similarity(entry.trace, patch))
    return figures.patch_similarity(display_image(entry), similarity, patch, narrow=narrow())


def output_y(entry):
    """The entry's output y (Eq. 4's pooled features; a backbone's output): (D,) float32."""
    return entry.trace["head.y"].float().numpy()


def output_moved(y, y_changed, labels: tuple[str, str]):
    """A backbone's stand-in for a prediction that changed: how far its output moved from y to y_changed (both (D,)):
    cos(y, y') and |y' - y| / |y|. With `y_changed` None, labels[0] says what to do."""
    if y_changed is None:
        return figures.output_change(y, None, labels)
    cosine, relative = features.output_change(y, y_changed)
    return figures.output_change(y, y_changed, labels, cosine, relative)
