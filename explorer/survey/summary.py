"""survey.json's content: the per-image records reduced over the images, and what the weights alone show.

Over the images: the mean attention distance of every head and its spread (the sample standard deviation over the
images); the mean of the rollout maps; accuracy, per-class accuracy (recall) and the confusion matrix where labels are
known, else the predicted classes counted; what each head is worth for the top class (the drop in its probability when
the head alone is switched off) and the faithfulness areas, means with 95% confidence intervals; the high-norm tokens
(Darcet et al. 2023), per layer: the mean count of outlier patches, the share of images with one, and where the class
token's attention goes on average. From the weights
alone: the position-embedding similarity (Fig. 7 centre) and the principal components of the patch-embedding filters
(Fig. 7 left). The token norms ||z_l|| of each prefix token and of the patches (mean and largest), layer by layer, over
the images: any ViT's, of interest where registers or high-norm patches are (Darcet et al. 2023). A backbone (no classifier) has no accuracy, predicted classes, head importance or faithfulness: each
reads a class's probability; survey.json says so in its notes.
"""
from __future__ import annotations

import numpy as np

from ..analysis import embedding_filter_components, patch_distances, position_similarity
from ..families.names import family_name
from ..highnorm import MASSES, OUTLIER_RULE, query_words
from ..weights import ModelBundle
from .images import Images, plain
from .records import rounded
from .statistics import mean_and_interval

SURVEY_FORMAT = "vit-explorer-survey/1"
BACKBONE_NOTE = ("This model is a backbone without a classifier (its output is features, not classes): no accuracy, "
                 "predicted classes, head importance or faithfulness, which each read a class's probability; the "
                 "attention distances, rollout, token norms, position embeddings and filters are computed as for any ViT.")
FILTER_COMPONENTS = 28  # Fig. 7 left: "first 28 principal components"


class SurveyError(ValueError):
    """A command line that can't be run as given; the message says what to change."""


def summarise(records: list[dict], bundle: ModelBundle, images: Images, settings: dict) -> dict:
    """survey.json's content from the per-image records (sorted by index)."""
    model, config = bundle.model, bundle.model.config
    good = [r for r in records if "skipped" not in r]
    skipped = [{"index": r["index"], "name": r["name"], "reason": r["skipped"]} for r in records if "skipped" in r]
    if not good:
        raise SurveyError("No image of the survey could be read; see the skipped files in the work folder's shards.")
    distance = np.array([r["mean_distance"] for r in good], dtype=np.float64)  # (n, L, h)
    rollout = np.array([r["rollout"] for r in good], dtype=np.float64)  # (n, rows, cols)
    n = len(good)
    names = list(bundle.class_names)

    mad = {
        "unit": "pixels",
        "class_token": "dropped as query and key; each patch's weights renormalised over the patches",
        "images": n,
        "mean": rounded(distance.mean(axis=0), 9),  # (L, h)
        "std": rounded(distance.std(axis=0, ddof=1) if n > 1 else np.zeros(distance.shape[1:]), 9),  # (L, h)
        "layer_mean": rounded(distance.mean(axis=(0, 2)), 9),  # (L,): mean over images and heads
        # a head that spreads its attention evenly over the patches: the mean distance between two patches
        "uniform_attention": round(float(patch_distances(config.grid, config.patch_size).mean()), 9),
    }
    rollout_summary = {"head_fusion": "mean", "discard_ratio": 0.0, "images": n,
                       "scaling": "each image's map scaled to a maximum of 1, then averaged",
                       "mean_map": rounded(rollout.mean(axis=0), 9)}

    E_pos = model.position_embedding.detach().float().cpu()[0]  # (T, D)
    similarity = position_similarity(E_pos, config.grid, model.layout.position)  # (rows, cols, rows, cols)
    components, explained = embedding_filter_components(
        model.patch_embedding.projection.weight.detach().float().cpu(), FILTER_COMPONENTS)

    classifier = config.has_classifier
    predicted = None
    if classifier:
        counts = np.bincount(np.array([r["prediction"] for r in good]), minlength=len(names))
        predicted = {names[k]: int(counts[k]) for k in np.argsort(-counts, kind="stable") if counts[k]}

    return {
        "format": SURVEY_FORMAT,
        "model": {"name": bundle.name, "family": family_name(config, bundle.source), "weights": bundle.weights,
                  "source": bundle.source,
                  "trained": bundle.trained, "config": config.to_dict(), "parameters": model.num_parameters(),
                  "digest": settings["digest"], "class_names": names if len(names) <= 30 else None,
                  "classifier": classifier},
        "data": {"source": images.description, "order": images.order, "available": images.count,
                 "surveyed": len(records), "labelled": images.class_names is not None, "notes": images.notes},
        "settings": {"n": settings["n"], "faithfulness_images": settings["faithfulness_images"],
                     "faithfulness_steps": settings["faithfulness_steps"],
                     "head_importance": settings.get("head_importance", True)},
        "images": n,
        "skipped": skipped,
        "notes": [] if classifier else [BACKBONE_NOTE],
        "accuracy": _accuracy(good, names) if classifier and images.class_names is not None else None,
        "predicted_classes": predicted,
        "mean_attention_distance": mad,
        "rollout": rollout_summary,
        "position_similarity": {"grid": list(config.grid), "similarity": rounded(similarity, 8)},
        "embedding_filters": {"components": rounded(components, 8),
                              "explained_variance_ratio": rounded(explained, 10),
                              "shape": "(n, P, P, C), each min-max scaled to [0, 1]"},
        "token_norms": _token_norms(good, config),
        "faithfulness": _faithfulness(good, settings["faithfulness_steps"]),
        "head_importance": _head_importance(good),
        "high_norm_tokens": _high_norm(good, config),
    }


def _high_norm(good: list[dict], config) -> dict | None:
    """Per layer, over the images: the mean count of outlier patches of z_0..z_L and the share of images with at least
    one (L + 1,); the query's attention shares of layers 1..L (explorer.highnorm.MASSES, each (L,)), their mean."""
    if not good or "high_norm" not in good[0]:
        return None
    counts = np.array([r["high_norm"]["outlier_count"] for r in good], dtype=np.float64)  # (n, L + 1)
    return {
        "images": len(good), "rule": OUTLIER_RULE, "query": query_words(config.layout),
        "registers": config.layout.num_registers,
        "outlier_count_mean": rounded(counts.mean(axis=0), 9),  # (L + 1,): z_0..z_L
        "images_with_outliers": rounded((counts > 0).mean(axis=0), 9),  # (L + 1,)
        "attention": {name: rounded(np.mean([r["high_norm"][name] for r in good], axis=0), 9)  # (L,)
                      for name in MASSES},
    }


def _token_norms(good: list[dict], config) -> dict | None:
    """||z_l|| for l = 0..L of each prefix token, the patches' mean and their largest: mean over the images, (L + 1,
    prefix + 2); None for shards written before the survey kept them."""
    if not all("token_norms" in r for r in good):
        return None
    norms = np.array([r["token_norms"] for r in good], dtype=np.float64)  # (n, L + 1, prefix + 2)
    return {"images": len(good), "layers": "z_0 (after E_pos) to z_L, before the final LayerNorm",
            "tokens": list(config.layout.prefix_labels) + ["patches: mean", "patches: largest"],
            "mean": rounded(norms.mean(axis=0), 6), "largest": rounded(norms.max(axis=0), 6)}


def _head_importance(good: list[dict]) -> dict | None:
    """Each head's drop in the top class's probability when switched off alone: mean over the images with its 95%
    interval, (L, h) each; and the agreement of attribution patching's estimate (Spearman over the heads)."""
    if not good or "head_importance" not in good[0]:
        return None
    drops = np.array([r["head_importance"] for r in good], dtype=np.float64)  # (n, L, h)
    n, L, h = drops.shape
    stats = [[mean_and_interval(drops[:, l, j]) for j in range(h)] for l in range(L)]

    def grid(pick) -> list | None:  # (L, h); None for one image, which has no spread
        return rounded([[pick(s) for s in row] for row in stats], 9) if n > 1 else None

    return {
        "images": n, "target": "each image's top class", "how": "zero: the head's output removed before U_msa",
        "measure": "p_top(model) - p_top(model with the head alone switched off)",
        "interval": "95% confidence interval of the mean, Student's t with n - 1 degrees of freedom",
        "mean": rounded(drops.mean(axis=0), 9),  # (L, h)
        "std": grid(lambda s: s["std"]),
        "ci95_low": grid(lambda s: s["ci95"][0]),
        "ci95_high": grid(lambda s: s["ci95"][1]),
        "layer_mean": rounded(drops.mean(axis=(0, 2)), 9),  # (L,)
        "estimate_spearman": mean_and_interval([r["head_importance_spearman"] for r in good]),
    }


def _accuracy(good: list[dict], names: list[str]) -> dict | None:
    """Accuracy over the labelled images, per class (recall), and the confusion matrix for up to 30 classes."""
    labelled = [r for r in good if r.get("label") is not None]
    if not labelled:
        return None
    plain_names = [plain(n) for n in names]
    correct = [plain_names[r["prediction"]] == plain_names[r["label"]] for r in labelled]  # by name: duplicates count
    per_class = {}
    for k in sorted({r["label"] for r in labelled}):
        hits = [c for r, c in zip(labelled, correct) if r["label"] == k]
        per_class[names[k]] = {"images": len(hits), "correct": int(sum(hits)), "accuracy": sum(hits) / len(hits)}
    accuracy = {"images": len(labelled), "correct": int(sum(correct)), "accuracy": sum(correct) / len(labelled),
                "per_class": per_class}
    if len(names) <= 30:
        confusion = np.zeros((len(names), len(names)), dtype=np.int64)
        np.add.at(confusion, ([r["label"] for r in labelled], [r["prediction"] for r in labelled]), 1)
        accuracy["confusion"] = confusion.tolist()  # rows: true class, columns: predicted
    return accuracy


def _faithfulness(good: list[dict], steps: int | None) -> dict | None:
    """Each explanation's deletion and insertion areas over the images that have them: mean and 95% interval."""
    curves = [r for r in good if "faithfulness" in r]
    if not curves:
        return None
    methods = list(curves[0]["faithfulness"])
    return {
        "images": len(curves), "steps": steps, "target": "the top class",
        "interval": "95% confidence interval of the mean, Student's t with n - 1 degrees of freedom",
        "better": {"deletion": "lower", "insertion": "higher"},
        "methods": {m: {mode: mean_and_interval([r["faithfulness"][m][j] for r in curves])
                        for j, mode in enumerate(("deletion", "insertion"))} for m in methods},
    }
