"""Changing the model and watching, as views: on Eq. 2 the heads switchboard (click a head to switch it off) and the
prediction with the heads that are off; on step 5 what each head is worth for the chosen class (head_importance);
and the prediction of an image whose activations at one stage come from another image (patch_activations).

An entry with heads off is an entry like any other (explorer.app.ablation): these views read which heads are off from
its key, and the prediction with every head on from its trace's meta.
"""
from __future__ import annotations

import numpy as np

from ...deferred import deferred
from .. import ablation
from ...tokens import TokenLayout
from .declare import PAGE, VIEWS, View, view
from .eq1 import parse_indices
from .eq2 import QUERY_READS, query_maps
from .eq4 import output_moved, output_y
from .why import _class_name, target_class

# Imported when first used (explorer/deferred.py): the page is up before torch (and plotly) are loaded.
torch = deferred("torch")
analysis = deferred("explorer.analysis")
render = deferred("explorer.render")
figures = deferred("explorer.render.interventions")
interventions = deferred("explorer.interventions")

SWITCHBOARD = "eq2.switchboard"
IMPORTANCE = "why.head_importance"


def _after(name: str) -> None:
    """Move the view declared last to just after view `name` in page order (PAGE, and VIEWS's order with it: the
    page's outputs are listed in VIEWS's order)."""
    PAGE.insert(PAGE.index(VIEWS[name]) + 1, PAGE.pop())
    ordered = {item.name: item for item in PAGE if isinstance(item, View)}
    VIEWS.clear()
    VIEWS.update(ordered)


def heads_off(entry) -> tuple[tuple[int, int], ...]:
    """The heads (l, j) switched off in this entry's run (none for an image's own entry)."""
    return ablation.heads_of(entry.key)


def switchboard_alt(entry, options) -> str:
    """The switchboard in words: its grid (explorer/app/a11y.js reads "L × h heads" to move its keyboard cursor) and
    the heads that are off."""
    off = heads_off(entry)
    return (f"Head grid, {entry.config.depth} × {entry.config.heads} heads (rows: layers 1 to {entry.config.depth}, "
            f"columns: heads 1 to {entry.config.heads}); "
            + (f"switched off: {ablation.describe(off)}." if off else "every head on."))


@view(SWITCHBOARD, 2, "image", "Switch heads off: click a head (rows: layers ℓ = 1, 2, … top to bottom; columns: heads "
      "1, 2, …); click again to switch it on", reads=QUERY_READS, row="switchboard", format="png", height=420,
      alt=switchboard_alt)
def _switchboard(entry, options):
    return figures.head_switchboard(query_maps(entry, options), heads_off(entry))  # (L, h, rows, cols) -> picture


_after("eq2.overview")


@view("eq2.heads_off_prediction", 2, "plot", "The prediction with the heads switched off", row="switchboard")
def _heads_off_prediction(entry, options):
    off = heads_off(entry)
    if not entry.config.has_classifier:  # a backbone: how far its features moved
        if not off:
            return output_moved(output_y(entry), None,
                                ("every head on: click heads on the left to switch them off", ""))
        label = f"{len(off)} head{'s' if len(off) != 1 else ''} off"
        return output_moved(entry.trace.meta[ablation.OUTPUT_ALL_ON], output_y(entry), ("every head on", label))
    now = entry.trace.probabilities.numpy()  # (K,)
    if not off:
        return render.prediction_change(now, None, entry.class_names,
                                        ("every head on: click heads on the left to switch them off", ""))
    label = f"{len(off)} head{'s' if len(off) != 1 else ''} off"
    return render.prediction_change(np.asarray(entry.trace.meta[ablation.ALL_ON]), now, entry.class_names,
                                    ("every head on", label))


_after(SWITCHBOARD)


def importance_of(entry, target: int):
    """analysis.head_importance for `target` on this entry's input (its model, with its heads off if any), once: a
    counted model run."""
    return entry.cached(("head importance", target), lambda: entry.run_model(
        "head importance", lambda model, x: analysis.head_importance(model, x, target)))


def importance_figure(entry, target: int):
    """The map of analysis.head_importance's result: the exact drop beside its estimate, with how well they agree."""
    result = importance_of(entry, target)
    return figures.head_importance(result.exact, result.estimate, _class_name(entry, target),
                                   (float(result.pearson), float(result.spearman)))


@view(IMPORTANCE, 5, "plot", "What each head is worth for the chosen class: the drop in its probability with that head "
      "alone switched off", reads=("target",))
def _head_importance(entry, options):
    if not entry.config.has_classifier:
        return _note("What each head is worth: needs a classifier", "A head's worth is the drop in a class's "
                     "probability with it off, and this model is a backbone with no classes.")
    target = target_class(entry, options.target)
    if ("head importance", target) in entry.memo:
        return importance_figure(entry, target)
    config = entry.config
    return _note(
        f"What each head is worth for {_class_name(entry, target)}",
        f"Press “Compute what each head is worth” to switch each of the {config.depth * config.heads} heads off in "
        f"turn (about {config.depth * config.heads // 2} forward passes' worth of work).")


def _note(title: str, text: str):
    from ...render.base import _note_figure

    return _note_figure(title, text, 200)


PATCH_TOKENS = ("all tokens", "the selected patch", "the class token", "the patches listed")


def patch_stages(config) -> list[str]:
    """The stages whose tokens patching can copy (interventions.PATCHABLE_STAGES), in the trace's names: z_0, then
    each layer's, in the order the model computes them."""
    stages = interventions.PATCHABLE_STAGES
    return [stages[0]] + [stage.replace(".l.", f".{l}.") for l in range(1, config.depth + 1) for stage in stages[1:]]


def patch_positions(choice: str, selected: int | None, layout: TokenLayout, listed: str = "") -> list[int] | None:
    """The token positions a choice of PATCH_TOKENS copies (None: all): the picker's selected patch i (the class token
    when none is selected), the class token, or the patches listed ('3, 10-12'), each patch i as its token in the
    model's layout. A wrong list raises ValueError with one sentence."""
    if choice == PATCH_TOKENS[0]:
        return None
    if choice == PATCH_TOKENS[3]:
        N = layout.num_patches
        return [layout.patch_token(i) for i in parse_indices(listed, N, limit=N, noun="patch", total=f"N = {N} patches")]
    if choice == PATCH_TOKENS[1] and selected is not None:
        return [layout.patch_token(int(selected))]
    return [layout.require_query_token()]


def patched_prediction(entry, source, stage: str, positions):
    """The prediction of `entry`'s image where `stage`'s tokens at `positions` come from `source`'s run of the same
    model (analysis.patch_activations, a counted model run), beside its own and the source's."""
    if stage not in patch_stages(entry.config):
        stage = "embed.z0"
    other = source.trace["input.pixels"][None]  # (1, C, H, W)
    key = ("patched", source.key, stage, None if positions is None else tuple(positions))

    backbone = not entry.config.has_classifier

    def run(model, x):
        with torch.no_grad():
            output = analysis.patch_activations(model, x, other.to(x.device), stage, positions)  # (1, K) or y (1, D)
        return (output if backbone else output.softmax(-1))[0].float().cpu().numpy()  # (K,) or (D,)
    patched = entry.cached(key, lambda: entry.run_model("patching", run))
    where = "every token" if positions is None else ", ".join(entry.config.layout.label(p) for p in positions)
    if backbone:
        return output_moved(output_y(entry), patched, ("A as it is", f"A with {stage} at {where} from B"))
    return render.prediction_change(entry.trace.probabilities.numpy(), patched, entry.class_names,
                                    ("A as it is", f"A with {stage} at {where} from B"))
