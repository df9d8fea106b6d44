"""ViT Explorer: a from-scratch Vision Transformer (Dosovitskiy et al. 2020) that shows every stage.

The core (this package's modules) imports no Gradio: config, model, trace, analysis, features (a backbone's patch
features), weights, images, render, data,
train, evaluate, explain, survey and distributed (python -m explorer.survey, torchrun), families (timm and
transformers checkpoints, those libraries imported only when used, and `explorer.load(name)`: the one resolver of
model names, from torchvision presets to Hugging Face Hub ids).
The web app lives in explorer.app and is imported only when asked for.

The names below are imported when first used (lazy_loader.attach): `import explorer` (and so `import explorer.app`)
does not import torch, which lets the app's page come up before torch has loaded (explorer/deferred.py).
"""
import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "config": ["CONFIGS", "ViTConfig"],
    "families": ["PAPER_CHECKPOINTS", "UnsupportedModel", "from_timm", "from_transformers", "load"],
    "model": ["ViT"],
    "trace": ["Trace", "trace"],
    "weights": ["PRETRAINED", "UNTRAINED", "WeightsUnavailable", "from_torchvision", "load_checkpoint",
                "load_pretrained", "save_checkpoint"],
})
