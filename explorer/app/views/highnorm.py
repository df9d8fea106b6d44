"""Step 3, high-norm tokens (Darcet et al. 2023): every token's norm layer by layer with the outlier patches marked,
the last layer's outliers on the image, and where the class token's attention goes: to the registers, to the outliers,
to the rest.

On step 3 (Eq. 3), beside the token norms of the residual stream, rather than on step 2: the outliers are a property
of z_l, the stream Eq. 3 writes, and the attention chart reads only one row of each layer's A (the class token's)."""
from __future__ import annotations

from ...deferred import deferred
from ..screen import narrow
from .declare import view
from .input import display_image

# Imported when first used (explorer/deferred.py): the page is up before torch (and plotly) are loaded.
highnorm = deferred("explorer.highnorm")
render = deferred("explorer.render")

STAGES = ("embed.z0", "blocks.*.z", "blocks.*.attn.weights")  # z_0..z_L, and one attention row per layer
PAPER = "[Darcet et al. 2023, *Vision Transformers Need Registers*](https://arxiv.org/abs/2309.16588)"


def high_norm_tokens(entry):
    """explorer.highnorm.high_norm_tokens of the entry's trace, computed once per entry."""
    return entry.cached("high_norm_tokens", lambda: highnorm.high_norm_tokens(entry.trace))


def _patches(indices: list[int]) -> str:
    shown = ", ".join(map(str, indices[:12]))
    return shown + (f" and {len(indices) - 12} more" if len(indices) > 12 else "")


def summary(entry) -> str:
    """What this model has (registers, a class token) and what was found, in plain sentences."""
    found, config = high_norm_tokens(entry), entry.config
    layout, L = config.layout, config.depth
    k = layout.num_registers
    words = [f"This model has {k} register tokens (REG1..REG{k}): the line “to the registers” is the class token's "
             f"attention to them." if k else
             "This model has no register tokens (as the paper's ViT): there are none to draw attention, so there is "
             "no register line."]
    if layout.index("CLS") is None:
        words.append("It has no class token (it pools the mean of the patch tokens), so the attention shown is the "
                     "mean of the patch tokens' rows.")
    first = found.first_layer()
    if first is None:
        words.append(f"In this image no patch token is an outlier in any layer (rule: {found.rule}).")
    else:
        last = found.outlier_patches(L)
        words.append(f"In this image, outlier patches appear from z<sub>{first}</sub> on (rule: {found.rule}); in "
                     f"z<sub>{L}</sub>, {len(last)} of {config.num_patches}"
                     + (f": patch {_patches(last)}." if last else "."))
    return " ".join(words)


@view("highnorm.text", 3, "markdown", stages=STAGES)
def _highnorm_text(entry, options):
    return ("**High-norm tokens** (" + PAPER + "). Large ViTs trained long (DINOv2, OpenCLIP, DeiT III) turn a few "
            "patch tokens where the image has little to say (plain background) into stores of global information: "
            "from the middle layers on, their norm ‖z<sub>l</sub>‖ is many times the other patches', and the class "
            "token's attention gathers on them. Given register tokens (extra tokens in front of the patches, read by "
            "no head), a model puts that information there instead, and the outliers go. Look for circled cells in "
            "the heat map, whether the outlined patches sit on background in the picture, and whether the class "
            "token's line “to the outlier patches” rises after they appear. " + summary(entry))


@view("highnorm.layers", 3, "plot", "High-norm tokens: every token's norm, layer by layer (Darcet et al. 2023)",
      stages=STAGES)
def _highnorm_layers(entry, options):
    found = high_norm_tokens(entry)
    return render.token_norm_layers(found.norms, found.outliers, entry.config.layout, found.rule, narrow=narrow())


@view("highnorm.image", 3, "plot", "High-norm tokens of the last layer on the image", row="highnorm", stages=STAGES)
def _highnorm_image(entry, options):
    found, config = high_norm_tokens(entry), entry.config
    L, grid = config.depth, config.grid
    last = found.outlier_patches(L)
    title = (f"z<sub>{L}</sub>: {len(last)} outlier patch{'es' if len(last) != 1 else ''} outlined" if last
             else f"z<sub>{L}</sub>: no outlier patch")
    patch_norms = config.layout.patches(found.norms[L], -1).reshape(grid)  # (T,) -> (rows, cols)
    return render.outliers_on_image(display_image(entry), patch_norms, found.outliers[L].reshape(grid),
                                    f"{title} (‖z‖ over the median patch)", narrow=narrow())


@view("highnorm.attention", 3, "plot", "Where the class token's attention goes: registers, outliers, the rest",
      row="highnorm", stages=STAGES)
def _highnorm_attention(entry, options):
    found = high_norm_tokens(entry)
    return render.attention_masses(found.attention, found.query, entry.config.layout.num_registers, narrow=narrow())
