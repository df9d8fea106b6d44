"""ViT Explorer: a from-scratch Vision Transformer (Dosovitskiy et al. 2020) that shows every stage."""
from .config import CONFIGS, ViTConfig
from .model import ViT
from .trace import Trace, trace
from .weights import (
    PRETRAINED,
    WeightsUnavailable,
    from_torchvision,
    load_checkpoint,
    load_pretrained,
    save_checkpoint,
)

__all__ = [
    "CONFIGS", "ViTConfig", "ViT", "Trace", "trace", "from_torchvision", "load_pretrained",
    "load_checkpoint", "save_checkpoint", "PRETRAINED", "WeightsUnavailable",
]
