"""python -m explorer.train: train a ViT from scratch, or a new head on a frozen pretrained ViT.

The recipe follows the paper's Table 3, adapted to small data: AdamW (beta1 0.9, beta2 0.999), weight decay, linear
warmup then cosine decay, gradient clipping at global norm 1; plus what small ViTs need on small data sets:
random-crop (shift) and horizontal-flip augmentation and label smoothing. Every choice is a flag and is written
into the checkpoint's JSON side file.

    python -m explorer.train                                   # the shipped Fashion-MNIST model
    python -m explorer.train --data-dir pizza_steak_sushi --config ViT-Tiny-Test/8 --epochs 10
    python -m explorer.train --data-dir pizza_steak_sushi --finetune ViT-B/16   # frozen trunk, new head
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .config import CONFIGS
from .data import (FASHION_MNIST_MEAN, FASHION_MNIST_STD, DataError, Dataset, channel_stats,
                   load_fashion_mnist, load_image_folder)
from .images import Preprocessing
from .model import ViT
from .weights import WeightsUnavailable, load_pretrained, save_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m explorer.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="folder of Fashion-MNIST's IDX files (default: the Debian package's)")
    p.add_argument("--data-dir", default=None, help="an image folder with train/<class>/*.jpg and test/<class>/*.jpg "
                   "(instead of Fashion-MNIST)")
    p.add_argument("--config", default="ViT-Fashion/4", choices=sorted(CONFIGS), help="model preset to train from scratch")
    p.add_argument("--image-size", type=int, default=None, help="override the preset's image size (image folders)")
    p.add_argument("--finetune", default=None, metavar="PRESET",
                   help="instead: freeze this torchvision-pretrained ViT (e.g. ViT-B/16) and train a new head")
    p.add_argument("--weights", default="DEFAULT", help="torchvision weight variant for --finetune")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999))
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warmup, then cosine decay to 0")
    p.add_argument("--clip-norm", type=float, default=1.0, help="gradient clipping at this global norm")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--crop-padding", type=int, default=2, help="random crop after zero-padding by this many pixels")
    p.add_argument("--flip", type=float, default=0.5, help="probability of a horizontal flip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images (quick runs)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="checkpoints/vit_fashion_mnist", help="output path stem (.safetensors/.json/.png)")
    return p.parse_args(argv)


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warmup to `peak` over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def augment(images: torch.Tensor, padding: int, flip: float, generator: torch.Generator) -> torch.Tensor:
    """Random shifts (crop of a zero-padded image) and horizontal flips of a float batch (B, C, H, W)."""
    B, C, H, W = images.shape
    if padding > 0:
        padded = F.pad(images, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
        dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
        dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
        images = torch.stack([padded[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W] for i in range(B)])  # (B, C, H, W)
    if flip > 0:
        mask = torch.rand(B, generator=generator) < flip
        images = torch.where(mask.view(B, 1, 1, 1), images.flip(-1), images)
    return images


def normalise(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """uint8 (B, C, H, W) -> normalised float."""
    mean = torch.tensor(preprocessing.mean).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


@torch.no_grad()
def accuracy(model, images: torch.Tensor, labels: torch.Tensor, preprocessing: Preprocessing,
             device="cpu", batch_size: int = 500) -> tuple[float, torch.Tensor]:
    """Top-1 accuracy and the predictions over a uint8 (n, C, H, W) set."""
    model.eval()
    predictions = []
    for start in range(0, len(images), batch_size):
        x = normalise(images[start:start + batch_size], preprocessing).to(device)
        predictions.append(model(x).argmax(-1).cpu())
    predictions = torch.cat(predictions)
    return float((predictions == labels).float().mean()), predictions


def load_data(args) -> tuple[Dataset, Preprocessing, str]:
    if args.data_dir:
        config = CONFIGS[args.config]
        size = args.image_size or config.image_hw[0]
        dataset = load_image_folder(args.data_dir, size, config.channels)
        mean, std = channel_stats(dataset.train.images)
        return dataset, Preprocessing(resize_size=size, crop_size=size, channels=config.channels, mean=mean, std=std), args.data_dir
    dataset = load_fashion_mnist(args.data)
    preprocessing = Preprocessing(resize_size=28, crop_size=28, interpolation="bilinear", channels=1,
                                  mean=(FASHION_MNIST_MEAN,), std=(FASHION_MNIST_STD,), invert="auto")
    return dataset, preprocessing, "Fashion-MNIST (Debian dataset-fashion-mnist, 60,000 train / 10,000 test)"


def save_curves(history: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss (label-smoothed)", title="Loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label="train (augmented)")
    ax_acc.plot(epochs, [h["test_accuracy"] for h in history], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)


def train_from_scratch(args, dataset: Dataset, preprocessing: Preprocessing):
    config = CONFIGS[args.config]
    size = args.image_size or config.image_hw[0]
    config = config.replace(num_classes=len(dataset.class_names), dropout=args.dropout,
                            image_size=size, channels=dataset.train.images.shape[1])
    torch.manual_seed(args.seed)
    model = ViT(config).to(args.device)
    trainable = [p for p in model.parameters()]
    return model, trainable, lambda images: normalise(images, preprocessing)


def train(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    dataset, preprocessing, data_description = load_data(args)
    train_images, train_labels = dataset.train.images, dataset.train.labels
    if args.limit:
        train_images, train_labels = train_images[:args.limit], train_labels[:args.limit]

    if args.finetune:
        bundle = load_pretrained(args.finetune, args.weights)
        model = bundle.model.to(args.device)
        for p in model.parameters():
            p.requires_grad_(False)
        head_in = model.head.in_features
        model.head = torch.nn.Linear(head_in, len(dataset.class_names)).to(args.device)  # the new head: (D,) -> (K,)
        model.config = model.config.replace(num_classes=len(dataset.class_names), name=f"{bundle.name} + new head")
        preprocessing = bundle.preprocessing
        dataset = _resize_for(dataset, preprocessing)
        train_images, train_labels = dataset.train.images, dataset.train.labels
        trainable = list(model.head.parameters())
    else:
        model, trainable, _ = train_from_scratch(args, dataset, preprocessing)

    optimizer = torch.optim.AdamW(trainable, lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup = int(args.warmup_epochs * steps_per_epoch)
    history, step, start = [], 0, time.time()
    print(f"Training {model.config.name or args.config}: {sum(p.numel() for p in trainable):,} trainable parameters, "
          f"{len(train_images):,} images, {args.epochs} epochs, {torch.get_num_threads()} threads", flush=True)
    for epoch in range(1, args.epochs + 1):
        model.train()
        if args.finetune:
            model.eval()  # frozen trunk: no dropout there
        order = torch.randperm(len(train_images), generator=generator)
        seen, correct, loss_sum, epoch_start = 0, 0, 0.0, time.time()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{args.epochs}", leave=False, mininterval=2, file=sys.stdout)
        for i in bar:
            batch = order[i * args.batch_size:(i + 1) * args.batch_size]
            x = normalise(train_images[batch], preprocessing)
            x = augment(x, args.crop_padding, args.flip, generator).to(args.device)
            y = train_labels[batch].to(args.device)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup, args.lr)
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, args.clip_norm)
            optimizer.step()
            step += 1
            seen += len(batch)
            correct += int((logits.argmax(-1) == y).sum())
            loss_sum += loss.item() * len(batch)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{seen / (time.time() - epoch_start):.0f}")
        images_per_s = seen / (time.time() - epoch_start)
        test_acc, _ = accuracy(model, dataset.test.images, dataset.test.labels, preprocessing, args.device)
        history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                        "test_accuracy": test_acc, "elapsed_s": round(time.time() - start, 1)})
        print(f"epoch {epoch:3d}/{args.epochs}  loss {loss_sum / seen:.4f}  train acc {correct / seen:.4f}  "
              f"test acc {test_acc:.4f}  {images_per_s:.0f} img/s  "
              f"elapsed {time.time() - start:.0f} s", flush=True)

    train_time = time.time() - start
    final_acc = history[-1]["test_accuracy"]
    model = model.cpu().eval()
    recipe = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}
    provenance = {
        "command": "python -m explorer.train " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "dataset": data_description,
        "test_accuracy": final_acc,
        "test_images": len(dataset.test.labels),
        "train_images": len(train_images),
        "train_time_s": round(train_time, 1),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "recipe": recipe,
        "history": history,
        "selection": "the final epoch (no model selection on the test set)",
    }
    weights_path, json_path = save_checkpoint(args.out, model, dataset.class_names, preprocessing, provenance)
    save_curves(history, json_path.with_name(json_path.stem + "_curves.png"))
    summary = {"checkpoint": str(weights_path), "test_accuracy": final_acc, "parameters": model.num_parameters(),
               "train_time_s": round(train_time, 1), "epochs": args.epochs}
    print("Summary: " + json.dumps(summary), flush=True)
    return summary


def _resize_for(dataset: Dataset, preprocessing: Preprocessing) -> Dataset:
    """Images of a folder data set re-cropped to a pretrained model's input size, kept as uint8."""
    import numpy as np
    from PIL import Image

    from .data import Split

    def convert(split: Split) -> Split:
        out = []
        for image in split.images:
            array = image.permute(1, 2, 0).numpy()
            pil = Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).convert("RGB")
            out.append(torch.from_numpy(np.asarray(preprocessing.crop(pil)[0]).copy()).permute(2, 0, 1))
        return Split(torch.stack(out), split.labels)

    return Dataset(dataset.name, convert(dataset.train), convert(dataset.test), dataset.class_names)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except (DataError, WeightsUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
