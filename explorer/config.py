"""Model sizes as data: the paper's Table 1 plus small presets for the shipped model and for tests."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .tokens import POOLINGS, POSITION_COVERS, TokenLayout


@dataclass(frozen=True)
class ViTConfig:
    """Everything that fixes a ViT's shapes. Names follow Section 3.1 of the paper."""

    image_size: int | tuple[int, int] = 224  # H = W, or (H, W); each divisible by P
    patch_size: int = 16  # P: each patch is P x P pixels
    channels: int = 3  # C: 3 for RGB, 1 for grayscale
    hidden_dim: int = 768  # D: the latent vector size used through all layers
    depth: int = 12  # L: number of Transformer encoder layers (Eq. 2 + Eq. 3 each)
    heads: int = 12  # h: heads of multi-head self-attention; D must divide by h
    mlp_dim: int = 3072  # width of the MLP's hidden layer (Eq. 3)
    num_classes: int = 1000  # K: outputs of the classification head (Eq. 4); 0: none, a backbone
    representation_size: int | None = None  # hidden layer of the pre-training head; None = one linear layer
    dropout: float = 0.0  # after every dense layer except qkv, and after adding E_pos (Table 3 note)
    attention_dropout: float = 0.0  # on the attention weights
    layer_norm_eps: float = 1e-6  # as torchvision and timm
    name: str = ""
    # The paper's descendants (explorer.tokens): the defaults are the paper's ViT.
    class_token: bool = True  # x_class in front of the patches (Eq. 1)
    distillation_token: bool = False  # DeiT's x_dist, after x_class, read by a second head
    register_tokens: int = 0  # k registers (Darcet et al. 2023), after x_class (and x_dist), read by no head
    position_covers: str = "all"  # E_pos added to "all" T tokens, "class_and_patches", or "patches" only
    layer_scale: bool = False  # diag(gamma_1), diag(gamma_2) scale the MSA and MLP branches of Eq. 2, 3 (CaiT, DeiT III)
    pre_norm: bool = False  # a LayerNorm on z_0 before the first block (CLIP's ln_pre, timm's norm_pre)
    pooling: str = "class"  # "class": z_L^0 (Eq. 4); "mean" of the patch tokens; "class_and_distillation" (DeiT)
    fc_norm: bool = False  # with mean pooling: Eq. 4's LN after the mean (MAE's fc_norm) instead of on each token
    activation: str = "gelu"  # the MLP's: "gelu" (exact), or "quick_gelu" x * sigmoid(1.702 x) (OpenAI's CLIP)

    def __post_init__(self):
        height, width = self.image_hw
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"Image size {height}x{width} is not divisible by the patch size {self.patch_size}."
            )
        if self.hidden_dim % self.heads:
            raise ValueError(f"Hidden size D={self.hidden_dim} is not divisible by h={self.heads} heads.")
        if self.pooling not in POOLINGS or self.position_covers not in POSITION_COVERS:
            raise ValueError(f"pooling must be one of {POOLINGS} and position_covers one of {POSITION_COVERS}, not "
                             f"{self.pooling!r} and {self.position_covers!r}.")
        if self.activation not in ("gelu", "quick_gelu"):
            raise ValueError(f"activation must be 'gelu' or 'quick_gelu', not {self.activation!r}.")
        needs = {"class": self.class_token, "class_and_distillation": self.class_token and self.distillation_token,
                 "mean": True}[self.pooling] and (self.position_covers != "class_and_patches" or self.class_token)
        if not needs or self.register_tokens < 0 or (self.fc_norm and self.pooling != "mean"):
            raise ValueError(f"The token layout is inconsistent: pooling {self.pooling!r}, E_pos over "
                             f"{self.position_covers!r}, class token {self.class_token}, distillation token "
                             f"{self.distillation_token}, {self.register_tokens} registers, fc_norm {self.fc_norm}.")
        if self.representation_size is not None and (self.pooling != "class" or not self.num_classes):
            raise ValueError("A pre-logits layer (representation_size) needs class-token pooling and a classifier.")

    @property
    def image_hw(self) -> tuple[int, int]:
        size = self.image_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def grid(self) -> tuple[int, int]:
        """(H/P, W/P): rows and columns of the patch grid."""
        height, width = self.image_hw
        return height // self.patch_size, width // self.patch_size

    @property
    def num_patches(self) -> int:
        """N = HW / P^2."""
        rows, cols = self.grid
        return rows * cols

    @property
    def seq_len(self) -> int:
        """T = prefix + N tokens: N + 1 in the paper (the class token and N patches)."""
        return self.layout.T

    @property
    def layout(self) -> TokenLayout:
        """The token layout (explorer.tokens.TokenLayout): the one accessor of the sequence's tokens."""
        return TokenLayout.of(self)

    @property
    def has_classifier(self) -> bool:
        """False for a backbone (num_classes = 0): its forward returns the pooled features y, as the source's does."""
        return self.num_classes > 0

    @property
    def head_dim(self) -> int:
        """d = D / h."""
        return self.hidden_dim // self.heads

    @property
    def patch_dim(self) -> int:
        """P^2 * C: the length of one flattened patch x_p^i."""
        return self.patch_size * self.patch_size * self.channels

    def replace(self, **changes) -> "ViTConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as JSON-ready data; the descendants' fields only where they differ from the paper's, so that a
        paper ViT writes the JSON it wrote before they existed (and older code reads it)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in _DESCENDANT_FIELDS or getattr(self, f.name) != f.default}
        if isinstance(out["image_size"], tuple):
            out["image_size"] = list(out["image_size"])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "ViTConfig":
        data = dict(data)
        if isinstance(data.get("image_size"), list):
            data["image_size"] = tuple(data["image_size"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown config fields: {sorted(unknown)}")
        return cls(**data)


# The fields of the paper's descendants (explorer.tokens): their defaults are the paper's ViT.
_DESCENDANT_FIELDS = ("class_token", "distillation_token", "register_tokens", "position_covers", "layer_scale",
                      "pre_norm", "pooling", "fc_norm", "activation")

# Table 1 sizes: (L, D, MLP size, h).
_TABLE_1 = {
    "B": (12, 768, 3072, 12),
    "L": (24, 1024, 4096, 16),
    "H": (32, 1280, 5120, 16),
}


def _table_1(size: str, patch: int) -> ViTConfig:
    depth, hidden_dim, mlp_dim, heads = _TABLE_1[size]
    return ViTConfig(
        image_size=224, patch_size=patch, hidden_dim=hidden_dim, depth=depth,
        mlp_dim=mlp_dim, heads=heads, name=f"ViT-{size}/{patch}",
    )


CONFIGS: dict[str, ViTConfig] = {
    "ViT-B/16": _table_1("B", 16),
    "ViT-B/32": _table_1("B", 32),
    "ViT-L/16": _table_1("L", 16),
    "ViT-L/32": _table_1("L", 32),
    "ViT-H/14": _table_1("H", 14),
    # The shipped Fashion-MNIST model: 28x28 grayscale, 4x4 patches -> a 7x7 grid, under 1M parameters (456K),
    # sized to train in under an hour on this project's 2-core CPU: the shipped weights took 33 epochs in 48 minutes
    # on both cores (README, "The shipped model").
    "ViT-Fashion/4": ViTConfig(
        image_size=28, patch_size=4, channels=1, hidden_dim=96, depth=6, heads=4, mlp_dim=192,
        num_classes=10, name="ViT-Fashion/4",
    ),
    # The same with 7x7 patches (a 4x4 grid, 16 tokens): three times cheaper per image, so more epochs fit an hour.
    "ViT-Fashion/7": ViTConfig(
        image_size=28, patch_size=7, channels=1, hidden_dim=128, depth=6, heads=4, mlp_dim=256,
        num_classes=10, name="ViT-Fashion/7",
    ),
    # Tiny models for fast tests.
    "ViT-Tiny-Test/8": ViTConfig(
        image_size=32, patch_size=8, channels=3, hidden_dim=32, depth=2, heads=4, mlp_dim=64,
        num_classes=10, name="ViT-Tiny-Test/8",
    ),
}
