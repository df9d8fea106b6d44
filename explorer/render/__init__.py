"""explorer.render: every figure the explorer shows, as pure functions (arrays, options) -> plotly Figure.

No model, no Gradio, no torch, no pyplot: numpy arrays (or anything np.asarray takes) in, a
`plotly.graph_objects.Figure` out. Letters as in the paper: H, W image size; P patch size; (gh, gw) patch grid;
N = gh * gw patches; T = N + 1 tokens (token 0 = class token, token i + 1 = patch i, row-major); D hidden size; h heads;
L layers; K classes. Patch indices i are 0-based and row-major (patch i sits at row i // gw, column i % gw); layers are
1-based as in Eq. 2-3 (z_0 is the embedding output); heads are shown 1-based.

    eq1.py         Eq. 1 and Fig. 7 left/centre: patches, the sequence, feature maps, token matrices, E_pos similarity
    attention.py   Eq. 2: heads, the attention matrix, every layer and head, rollout (Fig. 6), distance (Fig. 7 right)
    residual.py    Eq. 2-3: token norms, each block's update, LayerNorm
    highnorm.py    high-norm tokens (Darcet et al. 2023): norms with outliers, the class token's attention shares
    prediction.py  Eq. 4: the top-k classes, the logit lens
    explain.py     faithfulness curves, one prediction against another
    features.py    a backbone's output: the patch features' principal components as RGB, a patch's similarity to all
    survey.py      this image against a data set (explorer.survey)
    picker.py      the patch picker: the input with its grid, a selected patch, dropped patches (numpy pictures)
    base.py        what they share: the figure's frame, mosaics, image axes, colour scales, pictures

Queries: `query` / `selected` arguments are patch indices i (token i + 1), outlined; None means a token that is not a
patch (or nothing selected), which `query_name=` names by its label ("CLS", "REG2", "mean of the patches"; default:
the class token). `layernorm_effect(token=)` takes a token index (0 = class token), `name=` its label.

Speed: mosaics (many small maps) are composed with numpy into ONE array and sent as one Heatmap or Image trace, hover
texts come from `customdata` + `hovertemplate`, and numeric arrays are sent as base64 typed arrays (plotly >= 6).
Pictures are pixels marked with what they are (base.PICTURE); the app encodes them for the browser
(explorer.app.transport). Very large inputs (ViT-H/14 at 518) are subsampled or pooled, and the title says so.

Coordinates: in `patch_grid` and `rollout` pixel (x, y) covers [x, x + 1) x [y, y + 1) (x right, y down), so patch
(r, c) covers [c P, (c + 1) P) x [r P, (r + 1) P). In mosaics, cell or pixel (i, j) is centred on (j, i); each
mosaic figure's `layout.meta` records its geometry (tile size, gap, tiles per row) so that a caller can map a cell
back to its tile.
"""
from __future__ import annotations

from .attention import attention_heads, attention_matrix, attention_overview, mean_attention_distance, rollout
from .base import ATTENTION_COLOURS, SEQUENTIAL_COLOURS, SIMILARITY_COLOURS
from .eq1 import (feature_maps, filter_components, patch_grid, patch_sequence, position_similarity,
                  position_similarity_tile, token_matrix)
from .highnorm import attention_masses, outliers_on_image, token_norm_layers
from .explain import FAITHFULNESS_COLOURS, faithfulness, faithfulness_pending, prediction_change
from .prediction import logit_lens, top_k
from .residual import layernorm_effect, residual_updates, token_norms
from .survey import attention_distance_survey, no_survey, rollout_survey
