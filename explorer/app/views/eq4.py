"""Step 4, Eq. 4: the prediction (the top 5 as a chart and a table) and the logit lens."""
from __future__ import annotations

from ...common import equally_likely
from ...deferred import deferred
from ...weights import UNTRAINED_NOTE
from ..cache import LENS_STAGES
from ..text import explanation
from .declare import view

# Imported when first used (explorer/deferred.py): the page is up before torch (and plotly) are loaded.
render = deferred("explorer.render")


def _top_table(entry, k: int = 5) -> str:
    """The chart's classes in the chart's order (analysis.ranking: ties in class order)."""
    probabilities = entry.trace.probabilities.numpy()  # (K,)
    rows = "\n".join(f"| {rank} | {name} | {p:.2%} |" for rank, (name, p) in enumerate(entry.trace.top_k(k), start=1))
    notes = []
    if equally_likely(probabilities):
        notes.append(f"All {probabilities.size} classes are equally likely (1/{probabilities.size} each): the head "
                     f"does not prefer any class, so the ranking is just class order.")
    if not entry.trained:
        notes.append(f"⚠️ {UNTRAINED_NOTE}")
    return f"| rank | class | probability |\n|---|---|---|\n{rows}" + "".join(f"\n\n{n}" for n in notes)


@view("eq4.text", 4, "markdown")
def _eq4_text(entry, options):
    return explanation(4, entry.config)


@view("eq4.top_k", 4, "plot", "Top-5 prediction", row="top-k", stages=("head.probabilities",))
def _eq4_top_k(entry, options):
    return render.top_k(entry.trace.probabilities.numpy(), entry.class_names, k=5)


@view("eq4.table", 4, "markdown", row="top-k", elem_id="top-k-table", stages=("head.probabilities",))
def _eq4_table(entry, options):
    return _top_table(entry)


@view("eq4.lens", 4, "plot", "Logit lens: the prediction layer by layer", stages=tuple(sorted(LENS_STAGES)))
def _eq4_lens(entry, options):
    lens = entry.logit_lens
    pooled = "mean of the patch tokens" if entry.config.layout.pooling == "mean" else "class token"
    return render.logit_lens(lens.probabilities, entry.class_names, [int(i) for i in lens.top_indices[-1]],
                             pooled=pooled)
