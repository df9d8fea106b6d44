"""Two images, or two models, side by side in every step: what the compare panel under the steps shows for A (the
page's entry) and B (a second entry of the trace cache), drawn from the two cached traces with the same options.

For each step: where one figure can show the difference, one figure of both (the two inputs as the models see them;
Fig. 7's mean attention distance of A and B on one plot; the two predictions side by side), and B's own version of
the step's key views (`TWINS`), drawn by the same view functions as A's. Nothing here runs a model or imports Gradio.
"""
from __future__ import annotations

from ...deferred import deferred
from .. import ablation
from .declare import OPTION_NAMES, VIEWS
from .eq2 import _fused_and_distance
from .eq4 import output_moved, output_y
from .input import seen_image

figures = deferred("explorer.render.interventions")
features = deferred("explorer.render.features")

# Step -> B's versions of these views of the step, drawn beside A's ("b1", "b2").
TWINS = {
    0: (),
    1: ("eq1.grid", "eq1.similarity"),
    2: ("eq2.heads", "eq2.rollout"),
    3: ("eq3.norms", "eq3.updates"),
    4: ("eq4.lens",),
    5: ("why.relevance",),
}
# Step -> the outputs of its compare panel besides its text: one picture or figure of both, then B's twins.
SLOTS = {step: (("picture",) if step == 0 else ("figure",) if step in (2, 4) else ())
         + tuple(f"b{i}" for i in range(1, len(twins) + 1)) for step, twins in TWINS.items()}
# The options the compare panel reads (in Options' order), and the controls among them (its redraw triggers).
READS = tuple(name for name in OPTION_NAMES if any(name in VIEWS[v].reads for twins in TWINS.values() for v in twins))
CONTROLS = tuple(name for name in READS if name not in ("selected", "dropped"))


def describe(entry) -> str:
    """An entry in words: its model and its input."""
    width, height = entry.original_size
    off = ablation.heads_of(entry.key)
    return f"{entry.spec.label}, on a {width} × {height} image" + (f", {len(off)} head{'s' if len(off) > 1 else ''} "
                                                                    f"off" if off else "")


def for_b(entry, options):
    """The options as B reads them: a selected patch B's grid does not have becomes B's token query (a token B lacks:
    its default, TokenLayout.query)."""
    selected = options.selected if "selected" in READS else None
    if selected is not None and int(selected) >= entry.config.num_patches:
        return options.replace(selected=None)
    return options


def _outputs_pair(a, b, labels: tuple[str, str]):
    """Step 4's figure of both: the two predictions side by side; for two backbones' outputs of one size, how far B's y
    is from A's; else, with a backbone among them, one sentence."""
    if a.config.has_classifier and b.config.has_classifier:
        return figures.predictions_pair([a.trace.probabilities.numpy(), b.trace.probabilities.numpy()],
                                        [a.class_names, b.class_names], labels)
    if not (a.config.has_classifier or b.config.has_classifier) and a.config.hidden_dim == b.config.hidden_dim:
        return output_moved(output_y(a), output_y(b), labels)
    which = "A" if not a.config.has_classifier else "B"
    return features.note("The two outputs", f"{which} is a backbone with no classes, so the two predictions can't "
                                            f"be set side by side; see each one's features in step 4.")


def compare_step(step: int, a, b, options, render_views) -> dict:
    """The compare panel's values for `step`: "text", then its SLOTS ("picture" or "figure": both on one; "b1",
    "b2": B's versions of the step's TWINS). `render_views(entry, names, options)` draws views as the page does."""
    same_model, same_image = a.spec.label == b.spec.label, ablation.base_key(a.key)[0] == ablation.base_key(b.key)[0]
    what = "the same image under two models" if same_image else (
        "two images under the same model" if same_model else "two images under two models")
    values = {"text": f"**Comparing {what}** (every control drives both). A: {describe(a)}. B: {describe(b)}."}
    labels = ("A: " + a.spec.label, "B: " + b.spec.label) if not same_model else ("A", "B")
    # The figures of both read no option: drawn once per (A, B) and kept in A's memo, as a view that reads none is.
    if step == 0:
        values["picture"] = a.cached(("compare", step, tuple(b.key)), lambda: figures.side_by_side(
            seen_image(a), seen_image(b)))
    elif step == 2:
        values["figure"] = a.cached(("compare", step, tuple(b.key)), lambda: figures.attention_distance_pair(
            [_fused_and_distance(a)[1], _fused_and_distance(b)[1]], labels,
            (a.config.patch_size, b.config.patch_size), (a.config.image_hw[0], b.config.image_hw[0])))
    elif step == 4:
        values["figure"] = a.cached(("compare", step, tuple(b.key)), lambda: _outputs_pair(a, b, labels))
    twins = TWINS.get(step, ())
    values.update(zip(("b1", "b2"), render_views(b, list(twins), for_b(b, options))))
    return values
