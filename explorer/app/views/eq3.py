"""Step 3, Eq. 3: the residual stream (token norms, what each block adds) and LayerNorm's effect on a token."""
from __future__ import annotations

import numpy as np

from ...deferred import deferred
from ..screen import narrow
from ..text import explanation
from .declare import LN_CHOICES, control, view
from .eq2 import QUERY_READS, _depth_range, _layer
from .input import stage

# Imported when first used (explorer/deferred.py): the page is up before torch (and plotly) are loaded.
analysis = deferred("explorer.analysis")
render = deferred("explorer.render")


def layernorm_pair(entry, layer: int, which: str) -> tuple[np.ndarray, np.ndarray]:
    """(before, after) one LayerNorm of layer l, each (T, D): LN(z_{l-1}) in Eq. 2, or LN(z'_l) in Eq. 3."""
    layer = _layer(entry, layer)
    if which == LN_CHOICES[1]:
        return stage(entry, f"blocks.{layer}.z_mid"), stage(entry, f"blocks.{layer}.ln_2")
    before = "embed.z0" if layer == 1 else f"blocks.{layer - 1}.z"
    return stage(entry, before), stage(entry, f"blocks.{layer}.ln_1")


@view("eq3.text", 3, "markdown")
def _eq3_text(entry, options):
    return explanation(3, entry.config)


@view("eq3.norms", 3, "plot", "Token norms ‖z_ℓ‖ over the image, layer by layer", stages=("embed.z0", "blocks.*.z", "blocks.*.z_mid"))
def _eq3_norms(entry, options):
    norms = entry.cached("token_norms", lambda: analysis.token_norms(entry.trace))
    return render.token_norms(norms["z"], entry.config.grid, entry.config.layout, narrow=narrow())


@view("eq3.updates", 3, "plot", "How z'_ℓ and z_ℓ change layer by layer", stages=("embed.z0", "blocks.*.z", "blocks.*.z_mid"))
def _eq3_updates(entry, options):
    z, z_mid = entry.cached("stream", lambda: (entry.trace.residual_stream().numpy(), entry.trace.residual_mid().numpy()))
    return render.residual_updates(z, z_mid, narrow=narrow())


control("ln_layer", 3, "slider", "Layer ℓ for LayerNorm", row="layernorm", adapt=_depth_range,
        props=dict(minimum=1, maximum=12, step=1, value=1))
control("ln_which", 3, "radio", "Which LayerNorm", row="layernorm", props=dict(choices=list(LN_CHOICES), value=LN_CHOICES[0]))


@view("eq3.layernorm", 3, "plot", "LayerNorm's effect on the query (the picked patch, or the token chosen in step 2)",
      reads=QUERY_READS + ("ln_layer", "ln_which"), stages=("embed.z0", "blocks.*.z", "blocks.*.z_mid", "blocks.*.ln_1", "blocks.*.ln_2"))
def _eq3_layernorm(entry, options):
    layout = entry.config.layout
    before, after = layernorm_pair(entry, options.ln_layer, options.ln_which)  # (T, D) each
    query = options.query_token(layout)
    name = options.query_name(layout) + (" (each side averaged over the patch tokens)" if isinstance(query, range)
                                         else f" (token {query})")
    rows = layout.query_row(before, query)[None], layout.query_row(after, query)[None]  # (T, D) -> (1, D) each
    return render.layernorm_effect(*rows, 0, narrow=narrow(), name=name)
