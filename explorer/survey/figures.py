"""The survey's figures as PNG files, drawn with matplotlib's object-oriented API (Figure(...), no pyplot state).

attention_distance.png (Fig. 7 right), rollout.png (Fig. 6), position_similarity.png (Fig. 7 centre),
embedding_filters.png (Fig. 7 left), and where they apply head_importance.png, faithfulness.png, accuracy.png and
confusion.png.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _figure(width: float, height: float):
    """An empty matplotlib Figure (matplotlib is the `train` extra: imported only when a figure is drawn)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def distance_figure(survey: dict):
    """Fig. 7 right: one dot per head against depth, with the spread over the images (± 1 standard deviation)."""
    mad = survey["mean_attention_distance"]
    mean, std = np.array(mad["mean"]), np.array(mad["std"])  # (L, h)
    L, h = mean.shape
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    offsets = (np.arange(h) - (h - 1) / 2) * min(0.6 / h, 0.08)
    for head in range(h):
        ax.errorbar(np.arange(1, L + 1) + offsets[head], mean[:, head], yerr=std[:, head], fmt="o", ms=4,
                    capsize=2, elinewidth=0.8, label=f"head {head + 1}" if h <= 16 else None)
    if mad.get("uniform_attention") is not None:
        ax.axhline(mad["uniform_attention"], color="gray", ls="--", lw=1, label="attention spread evenly")
    ax.set(xlabel="network depth (layer)", ylabel="mean attention distance (pixels)", ylim=(0, None),
           title=f"Mean attention distance (Fig. 7 right)\n{mad['images']:,} images; bars: ± 1 std over the images")
    ax.set_xticks(range(1, L + 1))
    ax.grid(alpha=0.3)
    if h <= 16:
        ax.legend(fontsize=7, ncols=2 if h > 8 else 1, loc="lower right")
    elif mad.get("uniform_attention") is not None:
        ax.legend(fontsize=7, loc="lower right")
    return fig


def rollout_figure(survey: dict):
    rollout = survey["rollout"]
    fig = _figure(4.6, 4.0)
    ax = fig.add_subplot()
    im = ax.imshow(np.array(rollout["mean_map"]), cmap="inferno", vmin=0)
    ax.set(title=f"Mean attention rollout (Fig. 6), {rollout['images']:,} images", xlabel="patch column",
           ylabel="patch row")
    fig.colorbar(im, ax=ax, shrink=0.85, label="mean of each image's map (max 1)")
    return fig


def position_figure(survey: dict):
    """Fig. 7 centre: tile (r, c) is the cosine similarity of patch (r, c)'s position embedding with all others."""
    similarity = np.array(survey["position_similarity"]["similarity"])  # (rows, cols, rows, cols)
    rows, cols = similarity.shape[:2]
    mosaic = np.full((rows * (rows + 1) - 1, cols * (cols + 1) - 1), np.nan)  # one blank line between tiles
    for r in range(rows):
        for c in range(cols):
            mosaic[r * (rows + 1):r * (rows + 1) + rows, c * (cols + 1):c * (cols + 1) + cols] = similarity[r, c]
    fig = _figure(5.4, 4.8)
    ax = fig.add_subplot()
    im = ax.imshow(mosaic, cmap="viridis", vmin=-1, vmax=1, interpolation="nearest")
    step = max(1, rows // 7)
    ax.set_xticks([c * (cols + 1) + (cols - 1) / 2 for c in range(0, cols, step)], range(1, cols + 1, step))
    ax.set_yticks([r * (rows + 1) + (rows - 1) / 2 for r in range(0, rows, step)], range(1, rows + 1, step))
    ax.set(xlabel="input patch column", ylabel="input patch row", title="Position embedding similarity (Fig. 7 centre)")
    fig.colorbar(im, ax=ax, shrink=0.85, label="cosine similarity")
    return fig


def filters_figure(survey: dict):
    """Fig. 7 left: the first principal components of the patch-embedding filters, each P x P x C."""
    components = np.array(survey["embedding_filters"]["components"])  # (n, P, P, C)
    explained = survey["embedding_filters"]["explained_variance_ratio"]
    n = len(components)
    columns = min(7, n)
    lines = math.ceil(n / columns)
    fig = _figure(1.1 * columns + 0.4, 1.15 * lines + 0.7)
    axes = np.atleast_1d(fig.subplots(lines, columns, squeeze=False)).reshape(-1)
    for k, ax in enumerate(axes):
        ax.axis("off")
        if k < n:
            image = components[k]
            ax.imshow(image[:, :, 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"{k + 1}: {explained[k]:.1%}", fontsize=7)
    channels = "RGB" if components.shape[-1] == 3 else "grayscale"
    fig.suptitle(f"{channels} embedding filters: first {n} principal components (Fig. 7 left)", fontsize=9)
    return fig


def faithfulness_figure(survey: dict):
    faithful = survey["faithfulness"]
    methods = list(faithful["methods"])
    fig = _figure(8.0, 3.4)
    for ax, mode in zip(fig.subplots(1, 2), ("deletion", "insertion")):
        stats = [faithful["methods"][m][mode] for m in methods]
        means = [s["mean"] for s in stats]
        errors = np.array([[s["mean"] - s["ci95"][0], s["ci95"][1] - s["mean"]] if s["ci95"] else [0, 0]
                           for s in stats]).T
        ax.bar(range(len(methods)), means, yerr=errors, capsize=3, color="#4C72B0" if mode == "deletion" else "#DD8452")
        ax.set_xticks(range(len(methods)), methods, rotation=20)
        ax.set(ylim=(0, 1), ylabel="area under the curve",
               title=f"{mode} ({faithful['better'][mode]} is faithful), {faithful['images']} images")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Faithfulness of each explanation: mean and 95% CI (Student's t)", fontsize=9)
    return fig


def head_importance_figure(survey: dict):
    """What each head is worth for the top class: the mean drop in its probability as an L x h map, beside the half
    width of each mean's 95% interval on the same colour scale (a cell as bright there as in the map: not resolved)."""
    importance = survey["head_importance"]
    mean = np.array(importance["mean"])  # (L, h)
    L, h = mean.shape
    half = None if importance["ci95_high"] is None else (np.array(importance["ci95_high"]) - mean)  # (L, h)
    fig = _figure(2.2 + 2 * min(7.0, 0.5 * h + 1.2), 1.6 + min(6.0, 0.45 * L))
    axes = fig.subplots(1, 2 if half is not None else 1, squeeze=False)[0]
    limit = max(float(np.abs(mean).max()), 1e-12)
    panels = [(mean, "mean drop in p(top class)")] + ([(half, "± 95% interval (half width)")] if half is not None
                                                       else [])
    for ax, (values, title) in zip(axes, panels):
        im = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        if L * h <= 64:
            for l in range(L):
                for j in range(h):
                    ax.text(j, l, f"{values[l, j]:.3f}", ha="center", va="center", fontsize=6,
                            color="white" if abs(values[l, j]) > 0.6 * limit else "black")
        ax.set_xticks(range(h) if h <= 16 else range(0, h, 2))
        ax.set_yticks(range(L), range(1, L + 1))
        ax.set(xlabel="head j (0..h-1)", ylabel="layer l", title=title)
    fig.colorbar(im, ax=list(axes), shrink=0.85, label="probability")
    fig.suptitle(f"Head importance: the drop in the top class's probability when the head alone is switched off, "
                 f"{importance['images']:,} images", fontsize=9)
    return fig


def accuracy_figure(survey: dict):
    per_class = survey["accuracy"]["per_class"]
    names = list(per_class)
    fig = _figure(max(5.0, 0.45 * len(names) + 2), 3.6)
    ax = fig.add_subplot()
    ax.bar(range(len(names)), [per_class[n]["accuracy"] for n in names], color="#55A868")
    ax.axhline(survey["accuracy"]["accuracy"], color="black", lw=1, ls="--", label="all classes")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set(ylim=(0, 1), ylabel="accuracy (recall)",
           title=f"Per-class accuracy, {survey['accuracy']['images']:,} labelled images")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def write_figures(survey: dict, out: Path) -> dict[str, Path]:
    """Every figure that applies, as PNG in `out`: name -> path."""
    figures = {
        "attention_distance": distance_figure(survey),
        "rollout": rollout_figure(survey),
        "position_similarity": position_figure(survey),
        "embedding_filters": filters_figure(survey),
    }
    if survey.get("head_importance"):
        figures["head_importance"] = head_importance_figure(survey)
    if survey["faithfulness"]:
        figures["faithfulness"] = faithfulness_figure(survey)
    if survey["accuracy"]:
        figures["accuracy"] = accuracy_figure(survey)
        if "confusion" in survey["accuracy"]:
            from ..evaluate import confusion_figure

            figures["confusion"] = confusion_figure(
                np.array(survey["accuracy"]["confusion"]), survey["model"]["class_names"],
                f"Confusion, {survey['accuracy']['images']:,} labelled images")
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=90)
    return paths
