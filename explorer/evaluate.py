"""python -m explorer.evaluate CHECKPOINT: top-1 test accuracy, per-class accuracy and a confusion matrix.

The checkpoint (.safetensors + .json, nothing unpickled) is evaluated on a test set preprocessed exactly as its JSON
side file says, the way `python -m explorer.train` measured it:

- Fashion-MNIST (default; or --data FOLDER of its IDX files): the 10,000 test images. Images that already have the
  model's input shape (28x28 for the shipped model) are only normalised with the JSON's mean and std; others are
  resized and centre-cropped as the JSON says. Never inverted: the data set's images are light-on-dark already
  (the JSON's `invert: auto` is for photos uploaded to the app).
- an image folder (--data-dir ROOT): ROOT/test/<class>/*.jpg, cropped and normalised as the JSON says.

Without --data/--data-dir the data set the checkpoint was trained on is used, when its JSON names one that exists,
else Fashion-MNIST. The confusion matrix is written next to the checkpoint as <stem>_confusion.png (or --out), and
the last line printed is a one-line JSON summary.

    python -m explorer.evaluate checkpoints/vit_fashion_mnist.safetensors
    python -m explorer.evaluate runs/food.safetensors --data-dir pizza_steak_sushi --out food_confusion.png
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data import FASHION_MNIST_CLASSES, DataError, load_fashion_mnist, load_image_split, prepare_images
from .images import Preprocessing
from .train import normalise
from .weights import WeightsUnavailable, checkpoint_paths, load_checkpoint


@dataclass
class Evaluation:
    """The outcome of one evaluation; `confusion[i, j]` counts images of true class i predicted as class j."""

    checkpoint: str
    dataset: str
    class_names: list[str]
    labels: np.ndarray  # (n,) true classes
    predictions: np.ndarray  # (n,) predicted classes
    confusion: np.ndarray  # (K, K) int
    stated_accuracy: float | None  # the JSON's test_accuracy, as measured by explorer.train

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean()) if len(self.labels) else float("nan")

    @property
    def correct(self) -> int:
        return int((self.predictions == self.labels).sum())

    def per_class(self) -> dict[str, float | None]:
        """Accuracy (recall) of each class; None for a class with no test images."""
        totals = self.confusion.sum(axis=1)
        return {name: (float(self.confusion[k, k] / totals[k]) if totals[k] else None)
                for k, name in enumerate(self.class_names)}

    def summary(self, confusion_png: str | None = None) -> dict:
        return {
            "checkpoint": self.checkpoint,
            "dataset": self.dataset,
            "images": int(len(self.labels)),
            "correct": self.correct,
            "test_accuracy": round(self.accuracy, 6),
            "stated_test_accuracy": self.stated_accuracy,
            "per_class_accuracy": {k: (None if v is None else round(v, 6)) for k, v in self.per_class().items()},
            "confusion_png": confusion_png,
        }


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts: rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


@torch.no_grad()
def predict(model, images: torch.Tensor, preprocessing: Preprocessing, device="cpu", batch_size: int = 500) -> np.ndarray:
    """Top-1 classes of uint8 images (n, C, H, W), a batch at a time (batches of 500, as explorer.train measures)."""
    model.eval()
    predictions = []
    for start in range(0, len(images), batch_size):
        batch = prepare_images(images[start:start + batch_size], preprocessing)  # (B, C, crop, crop)
        predictions.append(model(normalise(batch, preprocessing).to(device)).argmax(-1).cpu())  # (B,)
    return torch.cat(predictions).numpy() if predictions else np.zeros(0, dtype=np.int64)


def evaluate(checkpoint: str | Path, data: str | Path | None = None, data_dir: str | Path | None = None,
             limit: int | None = None, device: str = "cpu", batch_size: int = 500) -> Evaluation:
    """Evaluate a checkpoint on Fashion-MNIST's test set (or `data`'s IDX files) or on data_dir/test/<class>/*."""
    if data and data_dir:
        raise DataError("Give either --data (Fashion-MNIST IDX files) or --data-dir (an image folder), not both.")
    bundle = load_checkpoint(_existing_checkpoint(checkpoint), device)
    provenance = bundle.meta.get("provenance", {})
    if not data and not data_dir:  # the data set it was trained on, when its JSON names one that is here
        recipe = provenance.get("recipe", {})
        if recipe.get("data_dir") and Path(recipe["data_dir"]).is_dir():
            data_dir = recipe["data_dir"]
        elif recipe.get("data") and Path(recipe["data"]).is_dir():
            data = recipe["data"]
    if data_dir:
        split = load_image_split(Path(data_dir) / "test", bundle.class_names, bundle.preprocessing)
        description = f"{Path(data_dir) / 'test'} (image folder)"
    else:
        if list(bundle.class_names) != FASHION_MNIST_CLASSES:
            raise DataError(f"The checkpoint's classes {bundle.class_names[:4]}... are not Fashion-MNIST's; "
                            f"pass --data-dir with the image folder it was trained on.")
        split = load_fashion_mnist(data).test
        description = f"Fashion-MNIST test set ({f'IDX files in {data}' if data else 'Debian dataset-fashion-mnist'})"
    images, labels = split.images, split.labels
    if limit:
        images, labels = images[:limit], labels[:limit]
        description += f", first {len(labels):,} images"
    predictions = predict(bundle.model, images, bundle.preprocessing, device, batch_size)
    labels = labels.numpy()
    return Evaluation(
        checkpoint=str(Path(checkpoint)), dataset=description, class_names=list(bundle.class_names),
        labels=labels, predictions=predictions,
        confusion=confusion_matrix(labels, predictions, len(bundle.class_names)),
        stated_accuracy=provenance.get("test_accuracy"),
    )


def _existing_checkpoint(checkpoint: str | Path) -> Path:
    path = Path(checkpoint)
    weights_path, json_path = checkpoint_paths(path)  # refuses pickle suffixes; keeps dotted stems whole
    if not (json_path.exists() or weights_path.exists()):
        raise WeightsUnavailable(f"No checkpoint at {checkpoint}: expected {weights_path} and {json_path}, "
                                 f"as written by python -m explorer.train.")
    return path  # load_checkpoint names any other problem (a pickle file, a missing half, a foreign JSON)


def confusion_figure(confusion: np.ndarray, class_names: list[str], title: str = ""):
    """A (K, K) confusion matrix as a Figure: colour is the share of each true class, the number is the count."""
    from matplotlib.figure import Figure

    K = len(class_names)
    totals = confusion.sum(axis=1, keepdims=True)
    shares = np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=float), where=totals > 0)  # rows sum to 1
    side = max(4.0, 0.55 * K + 2.5)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    if K <= 30:
        for i in range(K):
            for j in range(K):
                if confusion[i, j]:
                    ax.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xticks(range(K), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(K), class_names, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(im, ax=ax, shrink=0.8, label="share of the true class")
    return fig


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m explorer.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", help="a .safetensors checkpoint with its .json side file (or their common stem)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", default=None, help="folder of Fashion-MNIST's IDX files (default: the Debian package's)")
    source.add_argument("--data-dir", default=None, help="an image folder: evaluates on its test/<class>/*.jpg")
    p.add_argument("--limit", type=int, default=None, help="only the first N test images")
    p.add_argument("--out", default=None, help="confusion-matrix PNG (default: <checkpoint stem>_confusion.png)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = evaluate(args.checkpoint, args.data, args.data_dir, args.limit, args.device, args.batch_size)
    except (DataError, WeightsUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = Path(args.checkpoint)
    weights_path, _ = checkpoint_paths(path)
    out = Path(args.out) if args.out else weights_path.with_name(weights_path.name[: -len(".safetensors")] + "_confusion.png")
    stated = result.stated_accuracy
    print(f"Checkpoint: {path}" + (f" (its JSON states test accuracy {stated:.4f})" if stated is not None else ""))
    print(f"Data: {result.dataset}: {len(result.labels):,} images")
    print(f"Top-1 accuracy: {result.accuracy:.4f} ({result.correct:,} / {len(result.labels):,})")
    print("Per class:")
    totals = result.confusion.sum(axis=1)
    width = max(len(name) for name in result.class_names)
    for k, (name, acc) in enumerate(result.per_class().items()):
        print(f"  {name:<{width}}  " + (f"{acc:.4f}  ({result.confusion[k, k]:,} / {totals[k]:,})" if acc is not None
                                       else "no test images"))
    title = f"{weights_path.name[: -len('.safetensors')]}: top-1 {result.accuracy:.2%} on {len(result.labels):,} test images"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        confusion_figure(result.confusion, result.class_names, title).savefig(out, dpi=110)
    except OSError as error:
        print(f"error: could not write the confusion matrix to {out} ({error.strerror or error}); pass --out PATH.",
              file=sys.stderr)
        return 2
    print(f"Confusion matrix: {out}")
    print(json.dumps(result.summary(str(out))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
