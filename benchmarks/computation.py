"""What the model's own computations cost beside torchvision's forward of the same weights: our plain and traced
forwards, torchvision classifying an image file (for context), every function of explorer.analysis on a cached trace,
and the explanations of explorer.explain.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .models import Subject
from .timing import Recorder, Row, in_ms, measure, measure_interleaved


def bench_forward(subject: Subject, x, device: str, repeats: int, warmup: int, image_path: Path) -> list[Row]:
    """torchvision's forward (the reference every ratio divides by), ours plain and traced, taking turns; and
    torchvision classifying the image file (open + its own preprocessing + forward)."""
    import torch
    from PIL import Image

    from explorer.trace import trace

    ours, tv = subject.ours.to(device), subject.tv.to(device)
    x = x.to(device)
    mean, std = subject.preprocessing.mean, subject.preprocessing.std

    def tv_forward():
        with torch.no_grad():
            return tv(x)

    def plain():
        with torch.no_grad():
            return ours(x)

    def traced():
        return trace(ours, x, mean=mean, std=std, class_names=subject.class_names)

    def classify():
        with Image.open(image_path) as image:
            pixels = subject.tv_transform(image.convert("RGB")).unsqueeze(0).to(device)  # (1, C, H, W)
        with torch.no_grad():
            return tv(pixels).softmax(-1).topk(5)

    difference = float((tv_forward() - plain()).abs().max())
    times = measure_interleaved({"tv": tv_forward, "plain": plain, "traced": traced}, repeats, warmup, device)
    rows = [
        Row("forward.torchvision", "torchvision forward (the reference)", subject.name, device, "ms", in_ms(times["tv"])),
        Row("forward.plain", "our plain forward (same weights)", subject.name, device, "ms", in_ms(times["plain"]),
            note=f"max |logit difference| to torchvision {difference:.1e}"),
        Row("forward.traced", "our traced forward (explorer.trace)", subject.name, device, "ms", in_ms(times["traced"])),
        Row("forward.torchvision_classify", "torchvision: open file + its preprocessing + forward", subject.name,
            device, "ms", in_ms(measure(classify, repeats, warmup, device))),
    ]
    subject.ours, subject.tv = ours.cpu(), tv.cpu()
    return rows


def bench_analysis(record: Recorder, subject: Subject, entry) -> None:
    """Every public function of explorer.analysis, on the cached trace."""
    from explorer import analysis

    t = entry.trace
    model = subject.ours.to(record.device)
    L = t.depth
    weight = entry.projection_weight
    cases: dict[str, tuple[str, Callable]] = {
        "attention_rollout": ("attention rollout, heads fused layer by layer",
                              lambda: analysis.attention_rollout(analysis.fused_attentions(t).unsqueeze(1))),
        "rollout_map": ("rollout map (Fig. 6), mean fusion", lambda: analysis.rollout_map(t)),
        "rollout_map.max_discard": ("rollout map, max fusion, discard 0.9", lambda: analysis.rollout_map(t, "max", 0.9)),
        "query_attention": ("attention of the class token, layer L", lambda: analysis.query_attention(t, L, 0)),
        "query_attention_layers": ("attention of the class token, every layer",
                                   lambda: analysis.query_attention_layers(t, 0)),
        "fused_attentions": ("heads fused (max) for every layer", lambda: analysis.fused_attentions(t, "max")),
        "attention_matrix": ("attention matrix of layer L, mean over heads", lambda: analysis.attention_matrix(t, L)),
        "fused_attentions_and_distance": ("fused heads and mean distance, one pass over the layers",
                                          lambda: analysis.fused_attentions_and_distance(t, "mean", True)),
        "mean_attention_distance": ("mean attention distance (Fig. 7 right)", lambda: analysis.mean_attention_distance(t)),
        "position_similarity": ("position-embedding similarity (Fig. 7 centre)",
                                lambda: analysis.position_similarity(t["embed.position_embedding"], t.grid)),
        "embedding_filter_components": ("filter principal components (Fig. 7 left)",
                                        lambda: analysis.embedding_filter_components(weight, 28)),
        "logit_lens": ("logit lens", lambda: analysis.logit_lens(t, model, 5)),
        "token_norms": ("token norms", lambda: analysis.token_norms(t)),
        "layer_reductions": ("fused heads, distance, entropy and norms, one pass over the layers",
                             lambda: analysis.layer_reductions(t)),
    }
    for name, (label, fn) in cases.items():
        record.time(f"analysis.{name}", label, fn)
    bench_explain(record, model, entry)
    subject.ours = model.cpu()


def bench_explain(record: Recorder, model, entry) -> None:
    """explorer.explain on the traced image: relevance and Grad-CAM (one forward + one backward each), and deletion
    curves over every patch and at the app's resolution (batched shortened sequences). Slow rows run fewer times."""
    from explorer import analysis, explain

    x = entry.trace["input.pixels"].unsqueeze(0).to(record.device)  # (1, C, H, W)
    N = entry.config.num_patches
    order = explain.patch_order(analysis.rollout_map(entry.trace))  # (N,), any order costs the same
    steps = explain.default_steps(entry.config) or N
    record.time("explain.relevance", "relevance (Chefer et al.): one forward + one backward",
                lambda: explain.relevance(model, x))
    record.time("explain.grad_cam", "Grad-CAM, last block: one forward + one backward",
                lambda: explain.grad_cam(model, x))
    record.time("explain.deletion.steps20", f"deletion curve over all {N} patches in 20 steps (21 sequences, batched)",
                lambda: explain.deletion_curve(model, x, order, steps=min(20, N)), repeats=5)
    if steps < N:
        record.time("explain.deletion_app", f"deletion curve, {steps + 1} points (the app's faithfulness chart)",
                    lambda: explain.deletion_curve(model, x, order, steps=steps), repeats=5)
    record.time("explain.every_patch_deletion", f"deletion curve, one point per patch ({N + 1} sequences, batched)",
                lambda: explain.deletion_curve(model, x, order), repeats=3,
                note=f"holds {(N + 2) / 2:.0f} forwards' worth of tokens, whatever the batching")


MEASURED_ANALYSIS = {"attention_rollout", "rollout_map", "query_attention", "query_attention_layers", "fused_attentions",
                     "attention_matrix", "mean_attention_distance", "position_similarity", "fused_attentions_and_distance",
                     "embedding_filter_components", "logit_lens", "token_norms", "layer_reductions"}
# Timed as parts of the above (ranking inside the logit lens).
INSIDE_MEASURED = {"patch_index", "patch_position", "fuse_heads", "patch_distances", "ranking", "equally_likely",
                   "attention_entropy"}


def analysis_not_measured() -> list[str]:
    """Public functions of explorer.analysis that bench_analysis does not time (new ones, to be added)."""
    import inspect

    from explorer import analysis

    return sorted(name for name, obj in vars(analysis).items()
                  if inspect.isfunction(obj) and obj.__module__ == analysis.__name__ and not name.startswith("_")
                  and name not in MEASURED_ANALYSIS | INSIDE_MEASURED)

