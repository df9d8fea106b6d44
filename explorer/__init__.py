"""ViT Explorer: a from-scratch Vision Transformer (Dosovitskiy et al. 2020) that shows every stage.

The core (this package's modules) imports no Gradio: config, model, trace, analysis, weights, images, render, data,
train, evaluate, explain, survey and distributed (python -m explorer.survey, torchrun), families (timm and
transformers checkpoints; those libraries are imported only when used).
The web app lives in explorer.app and is imported only when asked for.
"""
from .config import CONFIGS, ViTConfig
from .families import PAPER_CHECKPOINTS, UnsupportedModel, from_timm, from_transformers, load
from .model import ViT
from .trace import Trace, trace
from .weights import (
    PRETRAINED,
    UNTRAINED,
    WeightsUnavailable,
    from_torchvision,
    load_checkpoint,
    load_pretrained,
    save_checkpoint,
)

__all__ = [
    "CONFIGS", "ViTConfig", "ViT", "Trace", "trace", "from_torchvision", "load_pretrained",
    "load_checkpoint", "save_checkpoint", "PRETRAINED", "UNTRAINED", "WeightsUnavailable",
    "from_timm", "from_transformers", "load", "UnsupportedModel", "PAPER_CHECKPOINTS",
]
