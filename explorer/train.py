"""python -m explorer.train: train a ViT from scratch, or a new head on a frozen pretrained ViT.

The recipe follows the paper's Table 3, adapted to small data: AdamW (beta1 0.9, beta2 0.999), weight decay, linear
warmup then cosine decay, gradient clipping at global norm 1; plus what small ViTs need on small data sets:
random-crop (shift) augmentation, horizontal flips for image folders (not for Fashion-MNIST, whose shoes all point
the same way), and label smoothing. Every choice is a flag and is written into the checkpoint's JSON side file.

    python -m explorer.train                                   # the shipped Fashion-MNIST model
    python -m explorer.train --data-dir pizza_steak_sushi --config ViT-Tiny-Test/8 --epochs 10
    python -m explorer.train --data-dir pizza_steak_sushi --finetune ViT-B/16   # frozen trunk, new head
    python -m explorer.evaluate checkpoints/vit_fashion_mnist.safetensors       # accuracy, confusion matrix

With --finetune the trunk is frozen, so its features of every image are computed once and only the new linear head
is trained on them (no augmentation in that mode: --crop-padding and --flip apply to training from scratch).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .config import CONFIGS, ViTConfig
from .data import (FASHION_MNIST_MEAN, FASHION_MNIST_STD, DataError, Dataset, channel_stats,
                   load_fashion_mnist, load_image_folder, prepare_images)
from .images import Preprocessing
from . import distributed
from .model import ViT
from .weights import (PRETRAINED, WeightsUnavailable, checkpoint_paths, get_weights, load_pretrained,
                      save_checkpoint)


class TrainingError(ValueError):
    """A command line that can't be run as given (not about the data); the message says what to change."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m explorer.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="folder of Fashion-MNIST's IDX files (default: the Debian package's)")
    p.add_argument("--data-dir", default=None, help="an image folder with train/<class>/*.jpg and test/<class>/*.jpg "
                   "(instead of Fashion-MNIST)")
    p.add_argument("--config", default="ViT-Fashion/4", choices=sorted(CONFIGS), help="model preset to train from scratch")
    p.add_argument("--image-size", type=int, default=None, help="override the preset's image size (image folders)")
    p.add_argument("--finetune", default=None, metavar="PRESET", choices=sorted(PRETRAINED),
                   help="instead: freeze this torchvision-pretrained ViT (e.g. ViT-B/16) and train a new head")
    p.add_argument("--weights", default="DEFAULT", help="torchvision weight variant for --finetune")
    p.add_argument("--epochs", type=int, default=33)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--betas", type=float, nargs=2, default=(0.9, 0.999))
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warmup, then cosine decay to 0")
    p.add_argument("--clip-norm", type=float, default=1.0, help="gradient clipping at this global norm")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--crop-padding", type=int, default=1, help="random crop after zero-padding by this many pixels")
    p.add_argument("--flip", type=float, default=None,
                   help="probability of a horizontal flip (default: 0 for Fashion-MNIST, whose shoes all point the same "
                        "way, so flips only add pictures its test set never shows; 0.5 for an image folder)")
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


@dataclasses.dataclass
class Augmentation:
    """The random choices of one batch: shifts (dx, dy) within the padding and which images are flipped."""

    padding: int
    dx: torch.Tensor | None = None  # (B,) in 0..2·padding
    dy: torch.Tensor | None = None  # (B,)
    flip: torch.Tensor | None = None  # (B,) bool

    def rows(self, rows) -> "Augmentation":
        """The choices of some of the batch's images (a slice or index tensor)."""
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Augmentation(self.padding, pick(self.dx), pick(self.dy), pick(self.flip))


def draw_augmentation(B: int, padding: int, flip: float, generator: torch.Generator) -> Augmentation:
    """The random choices for a batch of B images, drawn from `generator` in augment's order: dx, dy, then flips."""
    choices = Augmentation(padding)
    if padding > 0:
        choices.dx = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
        choices.dy = torch.randint(0, 2 * padding + 1, (B,), generator=generator)
    if flip > 0:
        choices.flip = torch.rand(B, generator=generator) < flip
    return choices


def apply_augmentation(images: torch.Tensor, choices: Augmentation) -> torch.Tensor:
    """Shift (crop of the zero-padded image) and flip a float batch (B, C, H, W) as `choices` say."""
    B, C, H, W = images.shape
    padding = choices.padding
    if choices.dx is not None and B:  # (a process's share of a small last batch may be empty)
        padded = F.pad(images, (padding,) * 4)  # (B, C, H + 2p, W + 2p)
        dx, dy = choices.dx, choices.dy
        images = torch.stack([padded[i, :, dy[i]:dy[i] + H, dx[i]:dx[i] + W] for i in range(B)])  # (B, C, H, W)
    if choices.flip is not None:
        images = torch.where(choices.flip.view(B, 1, 1, 1), images.flip(-1), images)
    return images


def augment(images: torch.Tensor, padding: int, flip: float, generator: torch.Generator) -> torch.Tensor:
    """Random shifts (crop of a zero-padded image) and horizontal flips of a float batch (B, C, H, W)."""
    return apply_augmentation(images, draw_augmentation(images.shape[0], padding, flip, generator))


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
    return int((predictions == labels).sum()) / len(labels), predictions  # exact: correct / n


def load_data(args, config: ViTConfig, preprocessing: Preprocessing | None = None) -> tuple[Dataset, Preprocessing, str]:
    """The data set, the preprocessing it is trained with, and its description for the JSON side file.

    `preprocessing` is a pretrained model's (--finetune): image-folder images are then cropped as it says.
    """
    if args.data_dir:
        if preprocessing is not None:
            return load_image_folder(args.data_dir, preprocessing=preprocessing), preprocessing, args.data_dir
        size = args.image_size or config.image_hw[0]
        _check_size(config, size, f"choose --image-size as a multiple of {config.patch_size}")
        dataset = load_image_folder(args.data_dir, size, config.channels)
        mean, std = channel_stats(dataset.train.images)  # over the training images, as for Fashion-MNIST below
        return dataset, Preprocessing(resize_size=size, crop_size=size, channels=config.channels, mean=mean, std=std), args.data_dir
    dataset = load_fashion_mnist(args.data)
    n_train, n_test = len(dataset.train.labels), len(dataset.test.labels)
    where = f"IDX files in {args.data}" if args.data else "Debian dataset-fashion-mnist"
    description = f"Fashion-MNIST ({where}, {n_train:,} train / {n_test:,} test)"
    if preprocessing is not None:  # light-on-dark training images: invert light-background uploads, as below
        return dataset, dataclasses.replace(preprocessing, invert="auto"), description
    size = dataset.train.images.shape[-1]  # 28; the images are used as they are, no resize
    preprocessing = Preprocessing(resize_size=size, crop_size=size, interpolation="bilinear", channels=1,
                                  mean=(FASHION_MNIST_MEAN,), std=(FASHION_MNIST_STD,), invert="auto")
    return dataset, preprocessing, description


def _check_size(config: ViTConfig, size: int, what_to_do: str) -> None:
    if size % config.patch_size:
        raise DataError(f"Image size {size} is not divisible by {config.name or 'the model'}'s patch size "
                        f"{config.patch_size}; {what_to_do}.")


def save_curves(history: list[dict], path: Path, train_label: str = "train (augmented)") -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 3.4), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss (label-smoothed)", title="Loss")
    ax_acc.plot(epochs, [h["train_accuracy"] for h in history], marker="o", label=train_label)
    ax_acc.plot(epochs, [h["test_accuracy"] for h in history], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.savefig(path, dpi=110)


def from_scratch(config: ViTConfig, dataset: Dataset, dropout: float, seed: int) -> ViT:
    """A freshly initialised ViT shaped for the data set: its image size, channels and number of classes."""
    height, width = dataset.train.images.shape[-2:]
    for side in (height, width):
        _check_size(config, side, f"choose a --config whose patch size divides {side} (ViT-Fashion/4 for "
                                  f"28x28 Fashion-MNIST)")
    config = config.replace(num_classes=len(dataset.class_names), dropout=dropout,
                            image_size=height if height == width else (height, width),
                            channels=dataset.train.images.shape[1])
    torch.manual_seed(seed)
    return ViT(config)


def new_head(bundle, class_names: list[str]) -> ViT:
    """A pretrained ViT, frozen, with a new linear head (D,) -> (K,) for `class_names`."""
    model = bundle.model
    for p in model.parameters():
        p.requires_grad_(False)
    model.head = torch.nn.Linear(model.head.in_features, len(class_names))  # trainable: a new module
    model.config = model.config.replace(num_classes=len(class_names), name=f"{bundle.name} + new head")
    return model


@torch.no_grad()
def frozen_features(model: ViT, images: torch.Tensor, preprocessing: Preprocessing, device="cpu",
                    batch_size: int = 64, desc: str = "features") -> torch.Tensor:
    """What the head sees: LN(z_L^0) (through pre_logits, if any) for uint8 images (n, C, H, W) -> (n, D)."""
    model.eval()
    features = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, leave=False, mininterval=2, file=sys.stdout):
        batch = prepare_images(images[start:start + batch_size], preprocessing)  # (B, C, crop, crop), a batch at a time
        z_L = model.encode(model.embed(normalise(batch, preprocessing).to(device)))  # (B, T, D)
        y = model.pool(z_L)  # (B, D), Eq. 4 before the head
        if model.pre_logits is not None:
            y = model.pre_logits(y)
        features.append(y.cpu())
    return torch.cat(features) if features else torch.zeros(0, model.head.in_features)


def train(args, config: ViTConfig | None = None, argv: list[str] | None = None) -> dict:
    """Train as `args` say; `config` overrides --config (e.g. a tiny custom model). Returns the summary.

    Under torchrun with more than one process this is data-parallel training (DistributedDataParallel), as one process
    would train: every process draws the same data order and augmentation from the same seeded generator as the
    single-process run, takes its share of each global batch of --batch-size images (rows rank, rank + world, ...: the
    distributed sampler), and the gradients are averaged; only rank 0 writes the checkpoint. So the parameters after
    any step equal the single-process run's up to float rounding (tests/test_distributed.py), whatever the number of
    processes, as long as --dropout is 0 (the default): dropout masks come from each process's own generator.
    """
    processes = distributed.start(args.device) if distributed.launched()[1] > 1 else None
    try:
        summary = _train(args, config, argv, processes)
    except BaseException:
        if processes is not None:
            distributed.abandon(processes)
        raise
    if processes is not None:
        distributed.finish(processes)
    return summary


def _train(args, config: ViTConfig | None, argv: list[str] | None,
           processes: distributed.Processes | None) -> dict:
    """train() in this process; `processes` is None for a single process (the plain path, unchanged)."""
    device = args.device if processes is None else processes.device
    is_main = processes is None or processes.main  # the process that prints and writes
    say = print if is_main else (lambda *a, **k: None)
    if args.data and args.data_dir:
        raise TrainingError("Give either --data (Fashion-MNIST IDX files) or --data-dir (an image folder), not both.")
    if args.epochs < 1 or args.batch_size < 1:
        raise TrainingError(f"--epochs and --batch-size must be at least 1 (got {args.epochs} and {args.batch_size}).")
    _check_writable(Path(args.out))  # before training, not after an hour of it
    if args.flip is None:
        args.flip = 0.5 if args.data_dir else 0.0  # resolved here, so the JSON records the value used
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the same seed in every process: the same initial weights, order and augmentation
    generator = torch.Generator().manual_seed(args.seed)
    config = config or CONFIGS[args.config]

    if args.finetune:
        try:
            get_weights(args.finetune, args.weights)
        except ValueError as error:  # an unknown preset or weight variant; the message lists the choices
            raise WeightsUnavailable(str(error)) from None
        bundle = load_pretrained(args.finetune, args.weights)
        dataset, preprocessing, data_description = load_data(args, config, bundle.preprocessing)
        torch.manual_seed(args.seed)
        model = new_head(bundle, dataset.class_names).to(device)
        trainable = list(model.head.parameters())
    else:
        dataset, preprocessing, data_description = load_data(args, config)
        model = from_scratch(config, dataset, args.dropout, args.seed).to(device)
        trainable = list(model.parameters())
    train_images, train_labels = dataset.train.images, dataset.train.labels
    if args.limit:
        train_images, train_labels = train_images[:args.limit], train_labels[:args.limit]

    if args.finetune:
        # The trunk is frozen, so each image's features never change: compute them once, then train the head on them.
        # (No augmentation then: --crop-padding and --flip apply to training from scratch only.)
        say(f"Computing the frozen {bundle.name} trunk's features of {len(train_images) + len(dataset.test.labels):,} "
              f"images once", flush=True)
        train_inputs = frozen_features(model, train_images, preprocessing, device, desc="train features")
        test_inputs = frozen_features(model, dataset.test.images, preprocessing, device, desc="test features")
        step_model = model.head  # (B, D) -> (B, K)

        def batch_inputs(batch):
            return train_inputs[batch].to(device)

        def test_accuracy():
            return accuracy_of_logits(model.head, test_inputs, dataset.test.labels, device)
    else:
        step_model = model

        def batch_inputs(batch):
            x = normalise(train_images[batch], preprocessing)  # (B, C, H, W)
            return augment(x, args.crop_padding, args.flip, generator).to(device)

        def test_accuracy():
            return accuracy(model, dataset.test.images, dataset.test.labels, preprocessing, device)[0]

    if processes is not None:
        import warnings

        from torch.nn.parallel import DistributedDataParallel

        # The class token's gradient comes out of expand() with other strides than DDP's bucket: one copy of D floats
        # per step, not worth the warning printed by every process.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")

        step_model = DistributedDataParallel(step_model, device_ids=[device] if device.type == "cuda" else None,
                                             gradient_as_bucket_view=True)
        rows = slice(processes.rank, None, processes.world)  # this process's share of every global batch

        def shard_inputs(batch):
            """This process's rows of a global batch, augmented by the draws of the whole batch (as one process)."""
            mine = batch[rows]
            if args.finetune:
                return train_inputs[mine].to(device), train_labels[mine].to(device)
            choices = draw_augmentation(len(batch), args.crop_padding, args.flip, generator)  # every process draws all
            x = apply_augmentation(normalise(train_images[mine], preprocessing), choices.rows(rows))
            return x.to(device), train_labels[mine].to(device)

        def shared_test_accuracy():
            """Each process classifies its share of the test set; the counts are summed."""
            labels = dataset.test.labels[rows]
            correct = 0
            if len(labels):
                if args.finetune:
                    with torch.no_grad():
                        predictions = model.head.eval()(test_inputs[rows].to(device)).argmax(-1).cpu()
                else:
                    predictions = accuracy(model, dataset.test.images[rows], labels, preprocessing, device)[1]
                correct = int((predictions == labels).sum())
            return processes.all_reduce_sum([correct])[0] / len(dataset.test.labels)

    optimizer = torch.optim.AdamW(trainable, lr=args.lr, betas=tuple(args.betas), weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train_images) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup = int(args.warmup_epochs * steps_per_epoch)
    history, step, start = [], 0, time.time()
    say(f"Training {model.config.name or args.config}: {sum(p.numel() for p in trainable):,} trainable parameters, "
        f"{len(train_images):,} images, {args.epochs} epochs, {torch.get_num_threads()} threads"
        + (f" in each of {processes.world} processes ({processes.backend}), each global batch of {args.batch_size} "
           f"split across them" if processes is not None else ""), flush=True)
    for epoch in range(1, args.epochs + 1):
        step_model.train()
        order = torch.randperm(len(train_images), generator=generator)
        seen, correct, loss_sum, epoch_start = 0, 0, 0.0, time.time()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{args.epochs}", leave=False, mininterval=2,
                   file=sys.stdout, disable=not is_main)
        for i in bar:
            batch = order[i * args.batch_size:(i + 1) * args.batch_size]
            if processes is None:
                x = batch_inputs(batch)
                y = train_labels[batch].to(device)
            else:
                x, y = shard_inputs(batch)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total_steps, warmup, args.lr)
            logits = step_model(x)  # (B, K)
            if processes is None:
                loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing)
            else:
                # DDP averages the gradients over the processes; each process's loss summed over its rows and scaled
                # by world / (global batch) makes that average the gradient of the global batch's mean loss, however
                # unevenly the batch is split (the last one of an epoch may be smaller).
                loss = F.cross_entropy(logits, y, label_smoothing=args.label_smoothing, reduction="sum")
                loss = loss * (processes.world / len(batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, args.clip_norm)
            optimizer.step()
            step += 1
            seen += len(y)
            correct += int((logits.argmax(-1) == y).sum())
            loss_sum += loss.item() * (len(batch) if processes is None else len(batch) / processes.world)
            # refresh=False: the bar redraws at most every `mininterval` s, not on every step (a log file stays short)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                            img_s=f"{seen / (time.time() - epoch_start):.0f}", refresh=False)
        bar.close()
        images_per_s = seen / (time.time() - epoch_start)
        if processes is not None:  # the epoch's figures over every process
            seen, correct, loss_sum = processes.all_reduce_sum([seen, correct, loss_sum])
            seen, correct = int(seen), int(correct)
            images_per_s = seen / (time.time() - epoch_start)
        test_acc = test_accuracy() if processes is None else shared_test_accuracy()
        history.append({"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
                        "test_accuracy": test_acc, "elapsed_s": round(time.time() - start, 1)})
        say(f"epoch {epoch:3d}/{args.epochs}  loss {loss_sum / seen:.4f}  train acc {correct / seen:.4f}  "
            f"test acc {test_acc:.4f}  {images_per_s:.0f} img/s  "
            f"elapsed {time.time() - start:.0f} s", flush=True)

    train_time = time.time() - start
    final_acc = history[-1]["test_accuracy"]
    model = model.cpu().eval()
    recipe = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}
    argv = sys.argv[1:] if argv is None else list(argv)
    provenance = {
        "command": "python -m explorer.train " + " ".join(shlex.quote(a) for a in argv),
        "mode": (f"finetune: frozen {bundle.name} ({bundle.weights}) trunk, new linear head on its features "
                 f"(computed once, no augmentation)") if args.finetune else "from scratch",
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
    if processes is not None:
        provenance["processes"] = {"world": processes.world, "backend": processes.backend,
                                   "batch": f"each global batch of {args.batch_size} split across the processes"}
        provenance["command"] = (f"torchrun --nproc-per-node={processes.world} -m explorer.train "
                                 + " ".join(shlex.quote(a) for a in argv))
    if args.finetune:
        provenance["pretrained"] = {"name": bundle.name, "weights": bundle.weights, "source": bundle.source}
    weights_path, json_path = checkpoint_paths(args.out)
    curves_path = json_path.with_name(json_path.stem + "_curves.png")
    if is_main:  # one writer
        weights_path, json_path = save_checkpoint(args.out, model, dataset.class_names, preprocessing, provenance)
        save_curves(history, curves_path, "train (features, no augmentation)" if args.finetune else "train (augmented)")
    summary = {"checkpoint": str(weights_path), "test_accuracy": final_acc, "parameters": model.num_parameters(),
               "trainable_parameters": sum(p.numel() for p in trainable), "train_time_s": round(train_time, 1),
               "epochs": args.epochs, "curves": str(curves_path)}
    say("Summary: " + json.dumps(summary), flush=True)
    return summary


def _check_writable(out: Path) -> None:
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrainingError(f"Can't create the output folder {folder} ({error.strerror}); choose another --out.") from None
    if not os.access(folder, os.W_OK):
        raise TrainingError(f"Can't write to the output folder {folder}; choose another --out.")


@torch.no_grad()
def accuracy_of_logits(head, features: torch.Tensor, labels: torch.Tensor, device="cpu") -> float:
    """Top-1 accuracy of a head on precomputed features (n, D)."""
    head.eval()
    predictions = head(features.to(device)).argmax(-1).cpu()  # (n, D) -> (n,)
    return int((predictions == labels).sum()) / len(labels)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args, argv=argv)
    except (DataError, TrainingError, WeightsUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted: no checkpoint was written.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
