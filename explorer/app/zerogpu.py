"""ZeroGPU: the functions Gradio calls that run a model, wrapped in `spaces.GPU` with a duration estimated from the
model and the analysis.

On a ZeroGPU Space (the `spaces` package, SPACES_ZERO_GPU=true) a GPU is lent only while a function decorated with
`spaces.GPU` runs, for at most the seconds it asks; a visitor whose remaining daily quota is below that is refused,
so the request is sized to the work: longer for a big model, longer still for one not loaded yet. The package must be
imported before torch (`import_spaces`, called first by app.py). Off ZeroGPU `spaces.GPU` returns the function as it
is, and without the package `on_gpu` does too: the app behaves the same everywhere else. See docs/hosting.md.
"""
from __future__ import annotations

import importlib.util
import math
import os
import sys

from ..config import CONFIGS

# Seconds a GPU is asked for, by analysis, before the model's share: an upload or model change traces and draws a
# step ("trace"); a control or tab redraws, tracing again where that worker has not kept the trace ("draw");
# /predict runs the forward alone ("predict"). Measured figures: docs/hosting.md.
BASE_SECONDS = {"trace": 10, "draw": 10, "predict": 5, "curves": 30}  # curves: step 5's faithfulness forwards
SECONDS_PER_GB_ON_GPU = 2  # the weights moved to the lent GPU
SECONDS_PER_GB_TO_LOAD = 20  # a model not loaded yet: read (or downloaded) inside the lent time
MIN_SECONDS, MAX_SECONDS = 5, 120


def import_spaces() -> bool:
    """Import `spaces` where a Space runs the app (SPACE_ID or SPACES_ZERO_GPU set) and the package is installed, so
    that it comes before torch as ZeroGPU requires; True when it was imported."""
    if not (os.environ.get("SPACE_ID", "").strip() or os.environ.get("SPACES_ZERO_GPU", "").strip()):
        return False
    if importlib.util.find_spec("spaces") is None:
        return False
    import spaces  # noqa: F401

    return True


def active() -> bool:
    """ZeroGPU mode: `spaces` imported with SPACES_ZERO_GPU set. CUDA is then stood in for on the main thread only
    (its torch modes are per thread), so the default model is moved to "cuda" there, before launch (main())."""
    config = sys.modules.get("spaces.config")
    return config is not None and bool(config.Config.zero_gpu)


def duration_seconds(config, loaded: bool, analysis: str) -> int:
    """The seconds of GPU to ask for one `analysis` ("trace", "draw", "predict", "curves") with a model of `config`, loaded in
    this process or not."""
    from .memory import FLOAT_BYTES, parameters

    gigabytes = FLOAT_BYTES * parameters(config) / 1e9
    seconds = BASE_SECONDS[analysis] + gigabytes * (SECONDS_PER_GB_ON_GPU + (0 if loaded else SECONDS_PER_GB_TO_LOAD))
    return int(min(MAX_SECONDS, max(MIN_SECONDS, math.ceil(seconds))))


def model_duration(server, label: str | None, analysis: str) -> int:
    """duration_seconds for the menu's model `label` (None: the default): its config where the menu knows it before
    loading, a paper checkpoint's Table 1 row at its resolution, else ViT-B/16's."""
    registry = server.registry
    try:
        spec = registry.resolve(label or registry.default_label())
    except Exception:  # an unknown name: the handler itself says so in one sentence, with the least time asked
        return MIN_SECONDS
    config = server.config_of(spec)
    if config is None:
        row = spec.paper.model if spec.paper else spec.preset
        config = CONFIGS.get(row, CONFIGS["ViT-B/16"])
        if spec.paper:
            config = config.replace(image_size=spec.paper.resolution)
    return duration_seconds(config, registry.loaded(spec.label), analysis)


def load_default(server) -> None:
    """Load the menu's default model now, on this thread (a failure is told by the first request, in one sentence)."""
    from .server import USER_ERRORS

    try:
        server.registry.get(server.registry.default_label())
    except USER_ERRORS:
        pass


def on_gpu(function, duration):
    """`function` decorated with spaces.GPU(duration=duration) where the `spaces` package is importable (off ZeroGPU
    that returns `function` itself), else `function`. `duration` takes the function's arguments."""
    if importlib.util.find_spec("spaces") is None:
        return function
    import spaces

    return spaces.GPU(function, duration=duration)
