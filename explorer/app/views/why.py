"""Step 5, why this class: relevance and Grad-CAM for a chosen class, the faithfulness of each map, the prediction
without the patches a visitor clicks out, and the input at a higher resolution (Sec. 3.2)."""
from __future__ import annotations

import numpy as np

from ...common import ranking
from ...config import ViTConfig
from ...deferred import deferred
from ..screen import narrow
from ..text import NEEDS_CLASSIFIER, explanation
from .declare import control, require_stages, view
from .eq1 import _position_similarity
from .eq2 import _fused, pooled_words
from .eq4 import output_moved, output_y
from .input import display_image, grid_words, picker_base, picker_scale

# Imported when first used (explorer/deferred.py): the page is up before torch (and plotly) are loaded.
torch = deferred("torch")
analysis = deferred("explorer.analysis")
explain = deferred("explorer.explain")
render = deferred("explorer.render")
picker = deferred("explorer.render.picker")
figures = deferred("explorer.render.features")


def target_class(entry, target) -> int:
    """The class to explain: the option's class index, or the top class (analysis.ranking) when it is empty."""
    K = entry.trace.probabilities.numel()
    value = str(target or "").strip()
    if value.isdigit() and int(value) < K:
        return int(value)
    return int(ranking(entry.trace.probabilities.numpy(), 1)[0])


def target_choices(entry) -> list[tuple[str, str]]:
    """(menu text, class index) for the class picker: the top 5 first, then every class in class order."""
    probabilities = entry.trace.probabilities.numpy()  # (K,)
    names = entry.class_names or [str(i) for i in range(probabilities.size)]
    top = [int(i) for i in ranking(probabilities, 5)]
    choices = [(f"top {rank}: {names[i]} ({probabilities[i]:.1%})", str(i)) for rank, i in enumerate(top, start=1)]
    return choices + [(f"{names[i]} ({probabilities[i]:.1%})", str(i)) for i in range(probabilities.size) if i not in top]


TOP_CLASS = ("the top class", "")  # the picker's first choice: whatever class the model ranks first


def _target_choices(entry, value):
    if not entry.config.has_classifier:  # a backbone: no class to pick
        return {"choices": [TOP_CLASS]}, ""
    choices = [TOP_CLASS] + target_choices(entry)
    return {"choices": choices}, str(value) if str(value) in {v for _, v in choices} else ""


def _class_name(entry, index: int) -> str:
    names = entry.class_names
    return names[index] if index < len(names) else str(index)


def _gradient_map(entry, method: str, target: int) -> np.ndarray:
    """relevance or grad_cam for `target`, (rows, cols): both come from one forward and one backward of the model
    (explain.gradient_maps), counted, once."""
    maps = entry.cached(("gradients", target), lambda: entry.run_model(
        "gradients", lambda model, x: explain.gradient_maps(model, x, target)))
    return maps[method]


def _faithfulness(entry, target: int, progress=False):
    """The deletion and insertion curves of each map for `target` (explain.faithfulness); `progress(done, total)` is
    told after each forward and may raise to stop (a visitor who moved on)."""
    def compute():
        maps = {
            "relevance": _gradient_map(entry, "relevance", target),
            "grad_cam": _gradient_map(entry, "grad_cam", target),
            "rollout": analysis.rollout_map(entry.trace, fused=_fused(entry, "mean")),
            "attention": analysis.last_layer_attention(entry.trace),
        }
        steps = explain.default_steps(entry.config)
        return entry.run_model("faithfulness", lambda model, x: explain.faithfulness(model, x, target, maps, steps,
                                                                                     progress=progress))
    return entry.cached(("faithfulness", target), compute)


# Views drawn after the rest of their step, with a progress bar (explorer.app.ui): the page first shows what they
# say while they are computed (view drawn by render_views), then what `draw_slow` returns.
SLOW_VIEWS = ("why.faithfulness",)


def draw_slow(entry, name: str, options, progress):
    """The slow view `name` computed now (`progress(done, total)` after each forward; it may raise to stop)."""
    if name != "why.faithfulness":
        raise ValueError(f"{name} is not one of the slow views {SLOW_VIEWS}.")
    if not entry.config.has_classifier:  # nothing to compute
        return _needs_classifier("Faithfulness of each map")
    require_stages(entry, [name])
    target = target_class(entry, options.target)
    return _faithfulness_figure(entry, target, _faithfulness(entry, target, progress))


def dropped_image(entry, dropped: tuple[int, ...]) -> np.ndarray:
    """The picker's image with the dropped patches blacked out and crossed: (H·s, W·s, 3) uint8."""
    base = picker_base(entry)
    if not dropped:
        return base
    config = entry.config
    return picker.crossed_out(base, dropped, config.patch_size * picker_scale(config), config.grid[1])


def _dropper_alt(entry, dropped) -> str:
    """The dropper in words: its grid and the patches taken out."""
    out = ", ".join(str(i) for i in dropped)
    return f"{grid_words(entry.config)}; " + (f"patches taken out: {out}." if dropped else "no patch taken out.")


def toggle_patch(dropped, index: int, num_patches: int) -> tuple[int, ...]:
    """`dropped` with patch `index` taken out, or put back if it was out; never all N (the sequence keeps a patch)."""
    out = set(int(i) for i in (dropped or ()))
    out ^= {int(index)}
    if len(out) >= num_patches:
        out.discard(int(index))
    return tuple(sorted(out))


def _needs_classifier(title: str):
    """What a class-specific view of step 5 shows on a backbone: the one sentence that it needs a classifier."""
    return figures.note(f"{title}: needs a classifier", NEEDS_CLASSIFIER)


def _output(entry, logits) -> np.ndarray:
    """What a view compares of a model's output (1, K) or (1, D): the softmax (K,), or a backbone's y (D,)."""
    return (logits.softmax(-1) if entry.config.has_classifier else logits)[0].float().cpu().numpy()


def _dropped_probabilities(entry, dropped: tuple[int, ...]) -> np.ndarray:
    """Softmax of the model on the sequence without `dropped` (a counted run of the shortened sequence): (K,); a
    backbone's output y (D,)."""
    if not dropped:
        return entry.trace.probabilities.numpy() if entry.config.has_classifier else output_y(entry)
    def run(model, x):
        with torch.no_grad():
            return _output(entry, explain.drop_patches(model, x, dropped))  # (1, K) -> (K,)
    return entry.cached(("dropped", dropped), lambda: entry.run_model("dropped", run))


SCALES = (1.0, 1.5, 2.0)


def scaled_size(config: ViTConfig, scale: float) -> int:
    """The input side at `scale` times the model's own, a multiple of P (square models)."""
    P = config.patch_size
    return max(P, int(round(config.image_hw[0] * float(scale) / P)) * P)


def _scale_choices(entry, value):
    config = entry.config
    choices = []
    for scale in SCALES:
        side = scaled_size(config, scale)
        label = f"{side} × {side} ({side // config.patch_size}² patches)" + (", native" if scale == 1.0 else "")
        choices.append((label, scale))
    return {"choices": choices}, value if value in SCALES else 1.0


def _scaled_probabilities(entry, scale: float) -> np.ndarray:
    """Sec. 3.2: the image read at `scale` times the model's size (the same preprocessing, scaled), by the model with
    E_pos interpolated in 2-D (explain.at_resolution): softmax (K,), a backbone's y (D,). A counted model run."""
    if scale == 1.0:
        return entry.trace.probabilities.numpy() if entry.config.has_classifier else output_y(entry)

    def compute():
        side = scaled_size(entry.config, scale)
        x = entry.preprocessing.at_size(side)(entry.original)  # (1, C, side, side)

        def run(model, _):
            with torch.no_grad():
                return _output(entry, explain.at_resolution(model, side)(x.to(next(model.parameters()).device)))
        return entry.run_model("resolution", run)
    return entry.cached(("scaled", scale), compute)


@view("why.text", 5, "markdown", reads=("target",))
def _why_text(entry, options):
    if not entry.config.has_classifier:
        return explanation(5, entry.config)
    target = target_class(entry, options.target)
    return (explanation(5, entry.config) + f"\n\nExplaining **{_class_name(entry, target)}** (class {target}, "
            f"probability {entry.trace.probabilities[target]:.1%}).")


control("target", 5, "dropdown", "Class to explain (top 5 first; type to find any class)", adapt=_target_choices,
        props=dict(choices=[TOP_CLASS], value="", filterable=True))


@view("why.relevance", 5, "plot", "Relevance for the chosen class (Chefer et al. 2021)", reads=("target",), row="maps", stages=("input.image",))
def _why_relevance(entry, options):
    if not entry.config.has_classifier:
        return _needs_classifier("Relevance")
    target = target_class(entry, options.target)
    return render.rollout(display_image(entry), _gradient_map(entry, "relevance", target),
                          f"relevance for {_class_name(entry, target)}{pooled_words(entry.config.layout)}",
                          name="relevance", narrow=narrow())


@view("why.grad_cam", 5, "plot", "Grad-CAM for the chosen class (last block)", reads=("target",), row="maps", stages=("input.image",))
def _why_grad_cam(entry, options):
    if not entry.config.has_classifier:
        return _needs_classifier("Grad-CAM")
    target = target_class(entry, options.target)
    cam = _gradient_map(entry, "grad_cam", target)  # (rows, cols), ReLU'd: zero where no token raises the score
    title = f"Grad-CAM for {_class_name(entry, target)}"
    if not np.any(cam > 0):
        title += ": zero everywhere (no token entering the last block raises this class's score)"
    return render.rollout(display_image(entry), cam, title, name="Grad-CAM", narrow=narrow())


@view("why.faithfulness", 5, "plot", "Faithfulness of each map: deletion and insertion curves", reads=("target",), stages=("blocks.*.attn.weights",))
def _why_faithfulness(entry, options):
    if not entry.config.has_classifier:
        return _needs_classifier("Faithfulness of each map")
    target = target_class(entry, options.target)
    if ("faithfulness", target) not in entry.memo:  # computed by draw_slow, after the maps are on the page
        return render.faithfulness_pending(_class_name(entry, target))
    return _faithfulness_figure(entry, target, _faithfulness(entry, target))


def _faithfulness_figure(entry, target: int, result):
    def as_tuples(curves):
        return {name: (c.fractions, c.probabilities, c.area) for name, c in curves.items()}
    return render.faithfulness(as_tuples(result.deletion), as_tuples(result.insertion), _class_name(entry, target),
                                narrow=narrow())


@view("why.dropper", 5, "image", "Click patches to take them out of the sequence (click again to put back)",
      reads=("dropped",), click="dropped", row="drop", format="png", height=360, alt=lambda entry, options:
      _dropper_alt(entry, options.dropped), stages=("input.image",))
def _why_dropper(entry, options):
    return dropped_image(entry, options.dropped)


@view("why.dropped", 5, "plot", "Prediction without the clicked patches", reads=("dropped",), row="drop")
def _why_dropped(entry, options):
    dropped = tuple(options.dropped)
    after = _dropped_probabilities(entry, dropped)
    if not entry.config.has_classifier:  # a backbone: how far its output moved
        if not dropped:
            return output_moved(output_y(entry), None, (
                "all patches: click patches in the picture next to this chart to take them out", ""))
        return output_moved(output_y(entry), after, (
            "all patches", f"without {len(dropped)} patch{'es' if len(dropped) != 1 else ''}"))
    if not dropped:
        return render.prediction_change(entry.trace.probabilities.numpy(), None, entry.class_names,
                                        ("all patches: click patches in the picture next to this chart to take them out", ""))
    label = f"without {len(dropped)} patch{'es' if len(dropped) != 1 else ''}"
    return render.prediction_change(entry.trace.probabilities.numpy(), after, entry.class_names, ("all patches", label))


control("scale", 5, "dropdown", "Input size (Sec. 3.2: E_pos interpolated in 2-D)", adapt=_scale_choices,
        props=dict(choices=[("native", 1.0)], value=1.0))


@view("why.positions", 5, "plot", "Position-embedding similarity at the model's own size", row="resolution", stages=("embed.position_embedding",))
def _why_positions(entry, options):
    return render.position_similarity(_position_similarity(entry))


@view("why.positions_scaled", 5, "plot", "The same, E_pos interpolated to the chosen size", reads=("scale",),
      row="resolution", stages=("embed.position_embedding",))
def _why_positions_scaled(entry, options):
    side = scaled_size(entry.config, options.scale)
    grid = (side // entry.config.patch_size,) * 2

    def compute():
        layout = entry.config.layout
        E = explain.interpolate_position_embedding(entry.trace["embed.position_embedding"][None], entry.config.grid,
                                                    grid, layout)[0]  # (1, T, D) -> (T', D)
        return analysis.position_similarity(E, grid, layout)
    return render.position_similarity(entry.cached(("scaled_similarity", side), compute))


@view("why.scaled_prediction", 5, "plot", "Prediction at the model's own size and at the chosen size", reads=("scale",))
def _why_scaled_prediction(entry, options):
    side = scaled_size(entry.config, options.scale)
    native = entry.config.image_hw[0]
    if not entry.config.has_classifier:  # a backbone: how far its output moved at the larger size
        return output_moved(output_y(entry), None if side == native else _scaled_probabilities(entry, options.scale), (
            f"{native} × {native}" + (", the model's own size: choose a larger one above" if side == native else ""),
            f"{side} × {side}"))
    if side == native:
        return render.prediction_change(entry.trace.probabilities.numpy(), None, entry.class_names,
                                        (f"{native} × {native}, the model's own size: choose a larger one above", ""))
    return render.prediction_change(entry.trace.probabilities.numpy(), _scaled_probabilities(entry, options.scale),
                                    entry.class_names, (f"{native} × {native}", f"{side} × {side}"))
