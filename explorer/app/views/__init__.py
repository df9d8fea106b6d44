"""The page's views, each declared once: its name, its step, the options it reads, how it is shown and how it is drawn.

    declare.py   the options, the registry (view(), control(), VIEWS, PAGE) and what a change redraws
    input.py     step 0: the input as the model sees it, its patches, the patch picker
    eq1.py       step 1, Eq. 1          eq2.py   step 2, Eq. 2 (and the survey)       eq3.py   step 3, Eq. 3
    eq4.py       step 4, Eq. 4          why.py   step 5, why this class
    interventions.py   heads switched off (step 2), what each head is worth (step 5), patching
    highnorm.py        step 3: high-norm tokens (Darcet et al. 2023), the class token's attention to registers

Importing this package imports every step's module, in page order, so that their declarations fill the registry.
Every view is drawn from a cached Entry (one traced image) and the options, never by running the model. Numbers
come from explorer.analysis, figures from explorer.render, words from explorer.app.text. No Gradio here.
"""
from __future__ import annotations

from ...common import HEAD_FUSIONS
from ..text import STEPS
from . import input, eq1, eq2, eq3, eq4, why, interventions, highnorm  # noqa: F401  (in page order: each declares its step's views)
from .declare import (CLICKED, CONTROLS, LN_CHOICES, OPTION_NAMES, PAGE, VIEWS, Control, DeclaredOptions, Options,
                      all_stages, require_stages, stages_of,
                      View, affected, all_views, alt_text, control, render_views, step_views, view)
from .eq1 import MAX_FEATURE_MAPS, parse_indices, random_indices
from .eq3 import layernorm_pair
from .input import PICKER_SIDE, display_image, display_patches, patch_at, patch_picker, picker_alt, picker_scale, \
    seen_image, selection_text, stage
from .why import SCALES, SLOW_VIEWS, TOP_CLASS, draw_slow, dropped_image, scaled_size, target_choices, target_class, \
    toggle_patch
