"""Step 2, Eq. 2: attention of the query in each head, the attention matrix, every layer and head, attention rollout
(Fig. 6), mean attention distance (Fig. 7 right), and this image against the survey of its model's data set."""
from __future__ import annotations

from ...common import HEAD_FUSIONS
from ...deferred import deferred
from ..screen import narrow
from ..text import explanation
from .declare import control, view
from .input import display_image

# Imported when first used (explorer/deferred.py): the page is up before torch (and plotly) are loaded.
analysis = deferred("explorer.analysis")
render = deferred("explorer.render")


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


QUERY_READS = ("selected", "query_label")  # what the query is: a picked patch, else the token chosen here


@view("eq2.text", 2, "markdown", reads=("layer",) + QUERY_READS)
def _eq2_text(entry, options):
    return (explanation(2, entry.config)
            + f"\n\nShowing layer ℓ = {_layer(entry, options.layer)}, query: {options.query_name(entry.config.layout)}.")


def query_choices(entry, value):
    """The tokens that can be the query when no patch is picked (TokenLayout.query_labels): CLS alone for the paper's
    ViT; DIST, REG1..REGk where the model has them; the mean of the patches for a mean-pooled model."""
    layout = entry.config.layout
    choices = list(layout.query_labels())
    return {"choices": choices}, value if value in choices else layout.default_query_label


control("query_label", 2, "radio", "Query when no patch is picked (a click on a patch overrides it)",
        adapt=query_choices, props=dict(choices=["CLS"], value="CLS"))


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


@view("eq2.heads", 2, "plot", "Attention of the query to every patch, each head of layer ℓ", reads=("layer",) + QUERY_READS, stages=("blocks.*.attn.weights",))
def _eq2_heads(entry, options):
    layer = _layer(entry, options.layer)
    layout = entry.config.layout
    maps = analysis.query_attention(entry.trace, layer, options.query_token(layout))  # (h, rows, cols)
    name = options.query_name(layout)
    return render.attention_heads(display_image(entry), maps, options.selected,
                                  f"layer {layer}: attention of {name} to every patch, per head", narrow=narrow(),
                                  query_name=name)


@view("eq2.matrix", 2, "plot", "Attention matrix A (hover for values)", reads=("layer", "head"), stages=("blocks.*.attn.weights",))
def _eq2_matrix(entry, options):
    layer = _layer(entry, options.layer)
    heads = entry.config.heads
    head = None if str(options.head).lower() == "mean" else min(max(int(options.head), 1), heads)
    what = f"layer {layer}, mean over the {heads} heads" if head is None else f"layer {layer}, head {head}"
    weights = analysis.attention_matrix(entry.trace, layer, head)  # (T, T)
    return render.attention_matrix(weights, entry.config.grid, f"attention matrix A ({what}): row = query, column = key",
                                   entry.config.layout)


def pooled_words(layout) -> str:
    """Where rollout and relevance start, in words, after a comma: the token the model pools
    (TokenLayout.pooled_query); nothing for the paper's class token."""
    if layout.pooling == "mean":
        return ", from the mean of the patch rows (the output is the mean of the patch tokens)"
    if layout.distillation is not None:
        return ", from CLS, which DeiT's first head reads (its second head reads DIST: choose DIST as the query above)"
    return ""


def query_maps(entry, options):
    """The query's attention to every patch in every layer and head, (L, h, rows, cols), kept per query."""
    query = options.query_token(entry.config.layout)
    return entry.cached(("overview", str(query)), lambda: analysis.query_attention_layers(entry.trace, query))


@view("eq2.overview", 2, "plot", "All layers × heads, same query", reads=QUERY_READS, stages=("blocks.*.attn.weights",))
def _eq2_overview(entry, options):
    return render.attention_overview(query_maps(entry, options), options.selected,
                                     query_name=options.query_name(entry.config.layout))  # (L, h, rows, cols)


control("fusion", 2, "radio", "Rollout head fusion", row="rollout", props=dict(choices=list(HEAD_FUSIONS), value="mean"))
control("discard", 2, "slider", "Rollout discard ratio", row="rollout",
        props=dict(minimum=0.0, maximum=0.95, step=0.05, value=0.0))


@view("eq2.rollout", 2, "plot", "Attention rollout (Fig. 6)", reads=("fusion", "discard"), stages=("blocks.*.attn.weights",))
def _eq2_rollout(entry, options):
    fusion = options.fusion if options.fusion in HEAD_FUSIONS else "mean"
    discard = float(min(max(options.discard, 0.0), 0.99))
    fused = _fused(entry, fusion)  # (L, T, T)
    rollout_map = entry.cached(("rollout", fusion, round(discard, 3)),
                               lambda: analysis.rollout_map(entry.trace, fusion, discard, fused=fused))
    return render.rollout(display_image(entry), rollout_map,
                          f"attention rollout (Fig. 6){pooled_words(entry.config.layout)}: head fusion {fusion}, "
                          f"discard ratio {discard:.2f}", narrow=narrow())


@view("eq2.distance", 2, "plot", "Mean attention distance per head vs depth (Fig. 7 right; rows renormalised after "
      "dropping the class token and any DIST, REG tokens)", stages=("blocks.*.attn.weights",))
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
    return f'python -m explorer.survey --model "{spec.label}" --out $EXPLORER_SURVEYS/my_survey'


@view("eq2.survey_distance", 2, "plot", "This image against the data set: each head's mean attention distance over "
      "the survey's mean ± sd", stages=("blocks.*.attn.weights",))
def _eq2_survey_distance(entry, options):
    survey = _survey(entry)
    if survey is None:
        return render.no_survey(entry.spec.label, _survey_command(entry))
    distance = _fused_and_distance(entry)[1]  # (L, h)
    survey_distance = survey["mean_attention_distance"]
    return render.attention_distance_survey(distance, survey_distance["mean"], survey_distance["std"],
                                            survey_distance["images"], entry.config.patch_size,
                                            entry.config.image_hw[0])


@view("eq2.survey_rollout", 2, "plot", "This image's attention rollout and the data set's average", stages=("blocks.*.attn.weights",))
def _eq2_survey_rollout(entry, options):
    survey = _survey(entry)
    if survey is None:
        return render.no_survey(entry.spec.label, _survey_command(entry))
    rollout = survey["rollout"]  # the survey's maps: mean fusion, nothing discarded, each scaled to a maximum of 1
    fusion, discard = rollout["head_fusion"], float(rollout["discard_ratio"])
    mine = entry.cached(("rollout", fusion, round(discard, 3)), lambda: analysis.rollout_map(
        entry.trace, fusion, discard, fused=_fused(entry, fusion)))
    return render.rollout_survey(mine, rollout["mean_map"], rollout["images"], narrow=narrow())
