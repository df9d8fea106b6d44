"""The paper's fine-tuned checkpoints as published on the Hugging Face Hub, as data (no network).

`PAPER_CHECKPOINTS` lists them with their data sets, resolution and their authors' preprocessing; the app's menu
offers them (explorer.app.registry) and a loaded one carries its row in bundle.meta["paper"] (`paper_entry`).

Each names the revision whose model.safetensors it loads. Three of Google's repositories keep only pickles
(pytorch_model.bin) on main; their safetensors exist only on the Hub bot's pull-request branches, so those entries
name that branch's commit. google/vit-large-patch16-384 has safetensors at no commit that could be named, so it is
not offered. `sha256` is the SHA-256 of that model.safetensors where it is known; where it is None, the first
download whose bytes match the Hub's own SHA-256 records it (explorer.families.hub), and later loads must match.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PaperCheckpoint:
    """A published fine-tuned ViT of Dosovitskiy et al. (or a later training of the same model), by Hub id."""

    hub_id: str
    library: str  # "transformers" | "timm"
    model: str  # the Table 1 row with its patch size, e.g. "ViT-B/16"
    resolution: int  # fine-tuning and inference image size (H = W)
    pretraining: str  # data set of pre-training
    finetuning: str  # data set of fine-tuning
    interpolation: str  # the checkpoint's own preprocessing
    crop_pct: float  # centre crop as a fraction of the resized side; 1.0: no crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    note: str = ""
    revision: str = "main"  # the commit (40 hex digits) whose model.safetensors is loaded; "main": its head
    sha256: str | None = None  # of that model.safetensors; None: recorded at the first verified download


_IN21K = "ImageNet-21k (14M images, 21,843 classes)"
_IN1K = "ImageNet-1k (ILSVRC-2012, 1.3M images, 1,000 classes)"
_HALF = (0.5, 0.5, 0.5)
_GOOGLE = ("Google's original JAX release, converted by Hugging Face; ViTImageProcessor resizes straight to the "
           "input size")
_TIMM_ORIG = "Google's original JAX release, converted by timm"
_AUGREG = "AugReg training (Steiner et al. 2021, 'How to train your ViT'), not the paper's own"

# Repositories whose main branch holds only pickles: the commit of the Hub bot's branch that adds model.safetensors
# (refs/pr/2 and refs/pr/1, "Adding `safetensors` variant of this model").
_BOT_PR = {"google/vit-large-patch16-224": "8041a8c7b0517e25d4cfa63f2e2e35b50b853386",
           "google/vit-large-patch32-384": "7cb790d8aa73dc7882e7190b95f2dbde837abe21"}
# Not offered: no commit of it holds model.safetensors that could be named (the bot's pull request is still open).
WITHOUT_SAFETENSORS = ("google/vit-large-patch16-384",)

PAPER_CHECKPOINTS: tuple[PaperCheckpoint, ...] = (
    PaperCheckpoint("google/vit-base-patch16-224", "transformers", "ViT-B/16", 224, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE),
    PaperCheckpoint("google/vit-base-patch16-384", "transformers", "ViT-B/16", 384, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE),
    PaperCheckpoint("google/vit-base-patch32-384", "transformers", "ViT-B/32", 384, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE),
    PaperCheckpoint("google/vit-large-patch16-224", "transformers", "ViT-L/16", 224, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE, revision=_BOT_PR["google/vit-large-patch16-224"]),
    PaperCheckpoint("google/vit-large-patch32-384", "transformers", "ViT-L/32", 384, _IN21K, _IN1K, "bilinear", 1.0,
                    _HALF, _HALF, _GOOGLE, revision=_BOT_PR["google/vit-large-patch32-384"]),
    PaperCheckpoint("timm/vit_base_patch16_224.orig_in21k_ft_in1k", "timm", "ViT-B/16", 224, _IN21K, _IN1K,
                    "bicubic", 0.9, _HALF, _HALF, _TIMM_ORIG),
    PaperCheckpoint("timm/vit_base_patch16_384.orig_in21k_ft_in1k", "timm", "ViT-B/16", 384, _IN21K, _IN1K,
                    "bicubic", 1.0, _HALF, _HALF, _TIMM_ORIG),
    PaperCheckpoint("timm/vit_large_patch32_384.orig_in21k_ft_in1k", "timm", "ViT-L/32", 384, _IN21K, _IN1K,
                    "bicubic", 1.0, _HALF, _HALF, _TIMM_ORIG),
    PaperCheckpoint("timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "timm", "ViT-B/16", 224, _IN21K, _IN1K,
                    "bicubic", 0.9, _HALF, _HALF, _AUGREG + "; fine-tuned again on ImageNet-1k by timm"),
    PaperCheckpoint("timm/vit_base_patch32_224.augreg_in21k_ft_in1k", "timm", "ViT-B/32", 224, _IN21K, _IN1K,
                    "bicubic", 0.9, _HALF, _HALF, _AUGREG),
    PaperCheckpoint("timm/vit_large_patch16_224.augreg_in21k_ft_in1k", "timm", "ViT-L/16", 224, _IN21K, _IN1K,
                    "bicubic", 0.9, _HALF, _HALF, _AUGREG),
)


def paper_checkpoint(hub_id: str | None) -> PaperCheckpoint | None:
    """The PAPER_CHECKPOINTS row of a Hub id, or None."""
    return next((c for c in PAPER_CHECKPOINTS if c.hub_id == hub_id), None)


def paper_entry(hub_id: str | None) -> dict | None:
    """The PAPER_CHECKPOINTS row of a Hub id as a plain dict (bundle.meta stays JSON-ready), or None."""
    entry = paper_checkpoint(hub_id)
    return None if entry is None else {**asdict(entry), "mean": list(entry.mean), "std": list(entry.std)}
