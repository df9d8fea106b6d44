"""The paper's fine-tuned checkpoints as published on the Hugging Face Hub, and a few well-known descendants, as data
(no network).

`PAPER_CHECKPOINTS` lists the paper's with their data sets, resolution and their authors' preprocessing; the app's
menu offers them (explorer.app.registry) and a loaded one carries its row in bundle.meta["paper"] (`paper_entry`).
`FAMILY_CHECKPOINTS` lists descendants of the paper's ViT (DeiT distilled, DINOv2 with registers, CLIP's image tower)
in timm's format: NOT the paper's checkpoints (other training, other data, other tokens), offered beside them where
timm is installed, loaded the same way (explorer.families.hub: safetensors only, at the revision named here).

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


NOT_THE_PAPERS = "not the paper's"  # said of every FAMILY_CHECKPOINTS entry, in the menu and on the model card
BACKBONE_OUTPUT = "no classifier: the pooled features (a backbone)"


@dataclass(frozen=True)
class FamilyCheckpoint:
    """A published checkpoint of one of the paper's descendants, by Hub id: not the paper's, offered to compare."""

    hub_id: str
    library: str  # "timm": the only library whose files of these the explorer reads by Hub id here
    family: str  # "DeiT distilled", "DINOv2 with 4 registers", "CLIP image tower"
    model: str  # its size and patch, "ViT-S/14" (S: D = 384, 12 layers; not a Table 1 row)
    resolution: int  # the input size it was trained for and is run at (H = W)
    trained: str  # how and on what it was trained, in a few words (the menu's)
    output: str  # "1,000 ImageNet-1k classes", or BACKBONE_OUTPUT
    interpolation: str  # the checkpoint's own preprocessing (timm's pretrained_cfg)
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    note: str  # what it is, in a sentence (the model card's)
    revision: str = "main"  # the commit (40 hex digits) whose model.safetensors is loaded; "main": its head
    sha256: str | None = None  # of that model.safetensors; None: recorded at the first verified download


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_OPENAI_MEAN, _OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
_DINOV2 = ("DINOv2 (Oquab et al. 2023): self-supervised on LVD-142M, 142M curated images without labels, then trained "
           "again with 4 register tokens (Darcet et al. 2023, 'Vision Transformers Need Registers'); layer scale, "
           "patches of 14, no classifier: its output is the class token's features")
_CLASSES_1K = "1,000 ImageNet-1k classes"

# Commits found on the Hub's pages (model.safetensors present at each). DeiT-B distilled's is not known here: "main",
# and the first verified download records its commit and SHA-256 (explorer.families.hub). timm's CLIP ViT-B/16 as
# OpenAI released it (timm/vit_base_patch16_clip_224.openai, a 512-d image projection for a head) keeps its weights
# only as pickles and as open_clip's own safetensors, so the CLIP entry is timm's fine-tune of that tower.
FAMILY_CHECKPOINTS: tuple[FamilyCheckpoint, ...] = (
    FamilyCheckpoint("timm/deit_base_distilled_patch16_224.fb_in1k", "timm", "DeiT distilled", "ViT-B/16", 224,
                     "ImageNet-1k only, distilled from a convnet teacher", _CLASSES_1K, "bicubic", 0.9,
                     _IMAGENET_MEAN, _IMAGENET_STD,
                     "DeiT (Touvron et al. 2021): trained on ImageNet-1k alone, with a distillation token read by a "
                     "second head that learned from a RegNetY-16GF teacher; the two heads' logits are averaged"),
    FamilyCheckpoint("timm/vit_small_patch14_reg4_dinov2.lvd142m", "timm", "DINOv2 with 4 registers", "ViT-S/14", 518,
                     "self-supervised on LVD-142M", BACKBONE_OUTPUT, "bicubic", 1.0, _IMAGENET_MEAN, _IMAGENET_STD,
                     _DINOV2, revision="07c9addcbc7d8ca698afe88784a057056aec490d"),
    FamilyCheckpoint("timm/vit_base_patch14_reg4_dinov2.lvd142m", "timm", "DINOv2 with 4 registers", "ViT-B/14", 518,
                     "self-supervised on LVD-142M", BACKBONE_OUTPUT, "bicubic", 1.0, _IMAGENET_MEAN, _IMAGENET_STD,
                     _DINOV2, revision="0ea2886789fa4e02eb26c1ed4c7080d25abcfb59"),
    FamilyCheckpoint("timm/vit_base_patch16_clip_224.openai_ft_in12k_in1k", "timm", "CLIP image tower", "ViT-B/16", 224,
                     "OpenAI's CLIP, fine-tuned on ImageNet-12k then 1k", _CLASSES_1K, "bicubic", 0.95, _OPENAI_MEAN,
                     _OPENAI_STD,
                     "the image tower of OpenAI's CLIP (Radford et al. 2021: contrastive pre-training on 400M "
                     "image-text pairs; a LayerNorm before the blocks), fine-tuned by timm on ImageNet-12k, then "
                     "ImageNet-1k, with a linear classifier in place of CLIP's image projection",
                     revision="da008874024281e68061c9653a44e850c2b73a28"),
)


def catalogue_entry(hub_id: str | None) -> PaperCheckpoint | FamilyCheckpoint | None:
    """The PAPER_CHECKPOINTS or FAMILY_CHECKPOINTS row of a Hub id (its revision and SHA-256 pin it), or None."""
    return paper_checkpoint(hub_id) or next((c for c in FAMILY_CHECKPOINTS if c.hub_id == hub_id), None)


def paper_checkpoint(hub_id: str | None) -> PaperCheckpoint | None:
    """The PAPER_CHECKPOINTS row of a Hub id, or None."""
    return next((c for c in PAPER_CHECKPOINTS if c.hub_id == hub_id), None)


def family_entry(hub_id: str | None) -> dict | None:
    """The FAMILY_CHECKPOINTS row of a Hub id as a plain dict (bundle.meta["family_checkpoint"]), or None."""
    entry = next((c for c in FAMILY_CHECKPOINTS if c.hub_id == hub_id), None)
    return None if entry is None else {**asdict(entry), "mean": list(entry.mean), "std": list(entry.std)}


def paper_entry(hub_id: str | None) -> dict | None:
    """The PAPER_CHECKPOINTS row of a Hub id as a plain dict (bundle.meta stays JSON-ready), or None."""
    entry = paper_checkpoint(hub_id)
    return None if entry is None else {**asdict(entry), "mean": list(entry.mean), "std": list(entry.std)}
