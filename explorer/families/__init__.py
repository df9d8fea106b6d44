"""Other libraries' ViTs in, and the one resolver of model names: one module a job.

- engine.py       the one conversion engine: a key table (data) applied, every shape asserted, every key used
- configs.py      a converted model's config (Table 1 names, square sizes) and UnsupportedModel
- torchvision.py  torchvision's VisionTransformer: `from_torchvision`, its key table, its config from the shapes
- timm.py         timm's VisionTransformer: `from_timm`, its key table, what is refused, its preprocessing
- transformers.py transformers' ViTForImageClassification: `from_transformers`, its key table and preprocessing
- files.py        a model folder's config.json and model.safetensors (or shards), read safely; never a pickle
- hub.py          Hugging Face Hub downloads, with integrity checks of the cache
- catalogue.py    `PAPER_CHECKPOINTS`: the paper's fine-tuned checkpoints on the Hub, as data; `FAMILY_CHECKPOINTS`:
                  a few well-known descendants (DeiT, DINOv2, CLIP), not the paper's
- names.py        a model's family in words ("DINOv2 ViT-S/14 with 4 registers"), from its config
- sources.py      `load(name)`: a preset, a checkpoint, a folder or a Hub id -> ModelBundle (explorer.load)

explorer.weights keeps torchvision's weight files (download, cache, integrity). The names below are imported when
first used (lazy_loader.attach): importing one submodule (explorer.weights imports .torchvision) runs no other, and
timm, transformers and huggingface_hub are imported only inside the functions that need them.
"""
import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "catalogue": ["FAMILY_CHECKPOINTS", "PAPER_CHECKPOINTS", "FamilyCheckpoint", "PaperCheckpoint"],
    "configs": ["UnsupportedModel"],
    "engine": ["KeyTable", "convert"],
    "hub": ["hub_cache_dir"],
    "names": ["family_name"],
    "sources": ["load"],
    "torchvision": ["config_from_torchvision", "from_torchvision"],
    "timm": ["config_from_timm_model", "config_from_timm_state_dict", "from_timm", "preprocessing_from_timm"],
    "transformers": ["HF_VIT_DEFAULTS", "config_from_transformers", "from_transformers",
                     "preprocessing_from_transformers"],
})
