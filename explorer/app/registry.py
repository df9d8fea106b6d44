"""Every model the app offers, loaded lazily and kept a few at a time.

- `ModelSpec`: one entry of the menu (its label is also the model name of the /predict API).
- `ModelRegistry`: the menu, and `resolve(name)` (labels and short names), and `get(label)`: each model is loaded
  by one thread while the others wait, and a small LRU (explorer.memo.Memo) keeps the last few. The menu, in order:
    checkpoint   the project's checkpoints (.safetensors + .json) in $EXPLORER_CHECKPOINTS
    folder       the user's own models, one per subfolder of $EXPLORER_MODELS (timm's or transformers' save_pretrained)
    hub          the paper's fine-tuned checkpoints by Hugging Face Hub id (explorer.families.PAPER_CHECKPOINTS),
                 then a few of its descendants, "not the paper's" (FAMILY_CHECKPOINTS)
    pretrained   torchvision's ViTs with each weight variant
    untrained    Table 1 models at random init

Nothing here imports Gradio, timm or transformers: progress is reported through a plain callable
`progress(fraction, desc=...)`, a folder is listed from its config.json alone, and explorer.families reads a
transformers folder without transformers (timm is imported when a timm model is loaded).
"""
from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..config import CONFIGS, ViTConfig
from ..deferred import deferred
from ..families.catalogue import (BACKBONE_OUTPUT, FAMILY_CHECKPOINTS, NOT_THE_PAPERS, PAPER_CHECKPOINTS,
                                  FamilyCheckpoint, PaperCheckpoint)
from ..families.files import read_json as _read_json
from ..families.hub import hub_cache_dir, hub_folder_name
from ..families.hub import hub_offline as _hub_offline
from ..families.names import BACKBONE, classes_words, family_name, timm_family_name
from ..families.sources import load
from ..families.transformers import config_from_transformers, preprocessing_from_transformers
from ..memo import Memo
from ..weights import (
    PICKLE_SUFFIXES as _PICKLE_SUFFIXES,
    PRETRAINED,
    TORCHVISION_WEIGHTS,
    UNTRAINED,
    UNTRAINED_NOTE,
    ModelBundle,
    WeightsUnavailable,
    is_cached,
    offline,
    random_bundle,
    read_checkpoint_info,
    torchvision_weights,
)
from .memory import give_back
from .settings import DEFAULT_MAX_MODELS, default_checkpoint_dir, default_device, default_models_dir, on_space

# Imported when first used (explorer/deferred.py): the page is up before torch is loaded.
torch = deferred("torch")

Progress = Callable[..., object]

# A backbone's menu description ends so: it has features (step 4 shows them), no classes (DINOv2, CLIP's image tower).
BACKBONE = ", a backbone: features, no classes"
TABLE_1 = ("ViT-B/16", "ViT-B/32", "ViT-L/16", "ViT-L/32", "ViT-H/14")
JFT_NOTE = ("torchvision's weights are its own ImageNet-1k trainings and SWAG weights, "
            "not the paper's JFT-300M / ImageNet-21k checkpoints.")
# The default on a Hugging Face Space: the paper's own ViT-B/16 (ImageNet-21k -> ImageNet-1k, 224 px) as Google
# published it. Of the paper's B/16s it needs the least: huggingface_hub only (which Gradio installs; the folder is read
# without transformers, and timm is not a requirement), 224 px like torchvision's (T = 197), and the paper's own
# preprocessing (resize to 224 x 224, mean = std = 0.5, no crop) rather than timm's crop_pct 0.9.
PAPER_B16 = "google/vit-base-patch16-224"
# The paper's Table 1: size -> (the row's name, its parameter count as the paper gives it); L, D, MLP, h are CONFIGS'.
TABLE_1_ROWS = {"B": ("ViT-Base", "86M"), "L": ("ViT-Large", "307M"), "H": ("ViT-Huge", "632M")}

# Seeded construction (random_bundle, ViT(config) after manual_seed) uses torch's global RNG: one at a time, so that
# "seed 0" gives the same weights whichever other model is being built in another thread.
_SEEDED = threading.Lock()


class UnknownModel(ValueError):
    """A model name that is not in the menu; str(error) is one sentence that lists the choices."""


def no_progress(*args, **kwargs) -> None:
    return None


def untrained_label(preset: str) -> str:
    """The menu label of an untrained Table 1 model."""
    return f"{preset} · {UNTRAINED}"


def hub_label(checkpoint: PaperCheckpoint | FamilyCheckpoint) -> str:
    """A Hub checkpoint's menu label: its size name and Hub id ("ViT-B/16 · google/vit-base-patch16-224")."""
    return f"{checkpoint.model} · {checkpoint.hub_id}"


def table_1_row(name: str) -> str:
    """The paper's Table 1 row of a model name such as "ViT-B/16", in words ("" when it is not a Table 1 model)."""
    if name not in TABLE_1:
        return ""
    config = CONFIGS[name]
    row, params = TABLE_1_ROWS[name[len("ViT-")]]
    return (f"{row}: {config.depth} layers, hidden size D = {config.hidden_dim}, MLP size {config.mlp_dim}, "
            f"{config.heads} heads, {params} parameters; patches of {config.patch_size}×{config.patch_size}")


def hub_cached(repo_id: str) -> bool:
    """Whether huggingface_hub's cache holds a snapshot of `repo_id` with config.json and safetensors weights."""
    snapshots = hub_cache_dir() / f"models--{hub_folder_name(repo_id)}" / "snapshots"
    return snapshots.is_dir() and any(
        (s / "config.json").is_file() and ((s / "model.safetensors").is_file()
                                           or (s / "model.safetensors.index.json").is_file())
        for s in snapshots.iterdir())


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the model menu. `label` is both the menu value and the model name of the /predict API."""

    label: str  # e.g. "ViT-B/16 · IMAGENET1K_V1"
    kind: str  # "pretrained" | "checkpoint" | "folder" | "hub" | "untrained"
    preset: str  # a CONFIGS name (or a checkpoint's config name; "" for a folder whose config is not read yet)
    variant: str = ""  # torchvision weight variant, for kind == "pretrained"
    path: str = ""  # checkpoint stem ("checkpoint"), folder ("folder") or Hub id ("hub")
    description: str = ""  # shown in the menu next to the label
    paper: PaperCheckpoint | FamilyCheckpoint | None = None  # what a "hub" entry is: data, resolution, size

    @property
    def menu_text(self) -> str:
        return f"{self.label} — {self.description}" if self.description else self.label


def _pretrained_specs() -> list[ModelSpec]:
    """torchvision's weights of each Table 1 model, described from weights.TORCHVISION_WEIGHTS (torchvision is not
    imported to build the menu)."""
    specs = []
    for preset in TABLE_1:
        for weights in TORCHVISION_WEIGHTS[preset]:
            what = "SWAG" if "SWAG" in weights.variant else "ImageNet-1k"
            text = f"torchvision, {what}, {weights.crop}px, acc@1 {weights.acc1:.1f}%"
            if weights.default:
                text += ", default"
            specs.append(ModelSpec(f"{preset} · {weights.variant}", "pretrained", preset, variant=weights.variant,
                                   description=text))
    return specs


def _checkpoint_specs(folder: Path) -> tuple[list[ModelSpec], list[str]]:
    specs, problems = [], []
    if not folder.is_dir():
        return specs, problems
    for json_path in sorted(folder.glob("*.json")):
        stem = json_path.with_suffix("")
        try:
            info = read_checkpoint_info(stem)
            config = ViTConfig.from_dict(info["config"])
        except (WeightsUnavailable, ValueError, KeyError, TypeError) as error:
            problems.append(f"{json_path.name} was skipped: {error}")
            continue
        if not stem.with_suffix(".safetensors").is_file():
            problems.append(f"{json_path.name} was skipped: {stem.name}.safetensors is missing.")
            continue
        provenance = info.get("provenance", {})
        dataset = provenance.get("dataset", "")
        accuracy = provenance.get("test_accuracy")
        text = "shipped checkpoint" + (f", {dataset.split(' (')[0]}" if dataset else "")
        if accuracy is not None:
            text += f", test accuracy {accuracy:.1%}"
        specs.append(ModelSpec(f"{config.name or stem.name} · {stem.name}", "checkpoint", config.name or stem.name,
                               path=str(stem), description=text))
    return specs, problems


def _short(dataset: str) -> str:
    return dataset.split(" (")[0]  # "ImageNet-21k (14M images, ...)" -> "ImageNet-21k"


def _hub_specs() -> list[ModelSpec]:
    """The paper's checkpoints, then the descendants' (FAMILY_CHECKPOINTS, "not the paper's"); timm's only where timm
    is installed (it is needed to read them, and not required)."""
    timm = importlib.util.find_spec("timm") is not None  # finds, does not import
    specs = []
    for c in PAPER_CHECKPOINTS:
        if c.library == "timm" and not timm:
            continue
        who = "AugReg retraining, not the paper's own" if c.note.startswith("AugReg") else "the paper's checkpoint"
        text = (f"{who}, pre-trained on {_short(c.pretraining)}, fine-tuned on {_short(c.finetuning)}, "
                f"{c.resolution}px, {c.library} weights")
        specs.append(ModelSpec(hub_label(c), "hub", c.model, path=c.hub_id, description=text, paper=c))
    for f in FAMILY_CHECKPOINTS:
        if f.library == "timm" and not timm:
            continue
        output = BACKBONE if f.output == BACKBONE_OUTPUT else f.output
        text = f"{f.family}, {NOT_THE_PAPERS}: {f.trained}, {f.resolution}px, {output}, {f.library} weights"
        specs.append(ModelSpec(hub_label(f), "hub", f.model, path=f.hub_id, description=text, paper=f))
    return specs


def _folder_specs(folder: Path | None, taken, hub_ids=(), left_out: dict | None = None
                  ) -> tuple[list[ModelSpec], list[str]]:
    """One entry per subfolder of `folder`, labelled by its name, from its config.json alone (no weights read, no
    timm or transformers imported); a subfolder that can't be read is skipped with a one-sentence problem. A subfolder
    named after a Hub checkpoint of the menu ("google--vit-base-patch16-224") is that entry's files: no entry of its
    own. `left_out` gets each skipped subfolder's name -> why, in a clause."""
    left_out = {} if left_out is None else left_out
    if folder is None:
        return [], []
    if not folder.is_dir():
        return [], [f"EXPLORER_MODELS is {folder}, which is not a folder; its models were skipped."]
    specs, problems = [], []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        stands_in = sub.name in {hub_folder_name(repo_id) for repo_id in hub_ids}
        if sub.name in taken and not stands_in:
            left_out[sub.name] = "another model of the menu has that name; rename the folder"
            problems.append(f"{sub.name} was skipped: {left_out[sub.name]}.")
            continue
        try:
            preset, text = _describe_folder(sub)
        except (WeightsUnavailable, ValueError, KeyError, TypeError, OSError) as error:
            problems.append(f"{sub.name} was skipped: {error}")
            why = str(error).rstrip(".")
            left_out[sub.name] = why[0].lower() + why[1:] if why.startswith(("The ", "A ", "An ")) else why
            continue
        if not stands_in:
            specs.append(ModelSpec(sub.name, "folder", preset, path=str(sub), description=text))
    return specs, problems


def _describe_folder(folder: Path) -> tuple[str, str]:
    """(config name or "", menu description) of a model folder; WeightsUnavailable, one sentence, if unreadable."""
    if not (folder / "config.json").is_file():
        ours = [p for p in sorted(folder.glob("*.json")) if p.with_suffix(".safetensors").is_file()]
        if len(ours) == 1:  # one of the project's checkpoints in a folder of its own
            config = ViTConfig.from_dict(read_checkpoint_info(ours[0])["config"])
            return config.name, (f"your checkpoint {config.name}, {config.image_hw[0]}px"
                                 + (f", {config.num_classes} classes" if config.has_classifier else BACKBONE))
        raise WeightsUnavailable("it has no config.json; a model folder holds config.json and model.safetensors, as "
                                 "timm's and transformers' save_pretrained write them.")
    hf_config = _read_json(folder / "config.json")
    if not ((folder / "model.safetensors").is_file() or (folder / "model.safetensors.index.json").is_file()):
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickles:
            raise WeightsUnavailable(f"its weights are only {pickles[0]}, a pickle file, which can run code when "
                                     f"loaded and is never unpickled; save them as model.safetensors.")
        raise WeightsUnavailable("it has no model.safetensors; put the weights file next to its config.json.")
    if "architecture" in hf_config:  # timm's save_pretrained
        if importlib.util.find_spec("timm") is None:
            raise WeightsUnavailable(f"it is a timm {hf_config['architecture']} checkpoint, and reading one needs the "
                                     f"timm package (pip install timm).")
        size = (hf_config.get("pretrained_cfg") or {}).get("input_size") or []
        classes = hf_config.get("num_classes")
        return "", (f"your timm {timm_family_name(hf_config)}" + (f", {size[-1]}px" if len(size) == 3 else "")
                    + (f", {classes_words(int(classes))}" if classes is not None else "")
                    + f" ({hf_config['architecture']})")
    if "model_type" in hf_config:  # transformers' save_pretrained; checked here as load() will, without transformers
        config = config_from_transformers(hf_config)
        processor = folder / "preprocessor_config.json"
        preprocessing_from_transformers(_read_json(processor) if processor.is_file() else None, config)
        return config.name, (f"your transformers {family_name(config, hf_config['model_type'])}, "
                             f"{config.image_hw[0]}px, {classes_words(config.num_classes)}")
    raise WeightsUnavailable("its config.json is neither timm's nor transformers' (it has no 'architecture' or "
                             "'model_type').")


def _random_specs() -> list[ModelSpec]:
    return [ModelSpec(untrained_label(preset), "untrained", preset, description=UNTRAINED_NOTE) for preset in TABLE_1]


class ModelRegistry:
    """The model menu, and the loaded models (a small LRU; each model is loaded by one thread, others wait)."""

    def __init__(self, checkpoint_dir: str | os.PathLike | None = None, device: str | None = None,
                 max_models: int | None = None, models_dir: str | os.PathLike | None = None):
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir()
        self.models_dir = Path(models_dir) if models_dir else default_models_dir()
        self._device = device  # None: default_device(), asked when first needed (it imports torch)
        self.max_models = max_models or int(os.environ.get("EXPLORER_MAX_MODELS", "") or DEFAULT_MAX_MODELS)
        checkpoints, self.problems = _checkpoint_specs(self.checkpoint_dir)
        others = _hub_specs() + _pretrained_specs() + _random_specs()
        self.left_out: dict[str, str] = {}  # a subfolder of models_dir not in the menu -> why, in a clause
        folders, problems = _folder_specs(self.models_dir, {s.label for s in checkpoints + others},
                                          [s.path for s in others if s.kind == "hub"], self.left_out)
        self.problems += problems
        self.specs: dict[str, ModelSpec] = {s.label: s for s in checkpoints + folders + others}
        self._loaded = Memo(self.max_models, on_evict=give_back)  # label -> ModelBundle; a model let go is freed
        self._untrained = Memo(4)  # (label, config) -> the patch embedding of an untrained twin
        self._model_memos = Memo(8)  # label -> Memo of the views of its weights (small)
        self._lock = threading.Lock()  # guards `loads`
        self.loads = 0

    @property
    def device(self) -> str:
        if self._device is None:
            self._device = default_device()
        return self._device

    # -- the menu ---------------------------------------------------------------------------------------------
    def labels(self) -> list[str]:
        return list(self.specs)

    def choices(self) -> list[tuple[str, str]]:
        """(menu text, value) pairs for a dropdown."""
        return [(s.menu_text, s.label) for s in self.specs.values()]

    def checkpoints(self) -> list[ModelSpec]:
        return [s for s in self.specs.values() if s.kind == "checkpoint"]

    def resolve(self, name: str) -> ModelSpec:
        """A menu label, or a short name: a preset ("ViT-B/16" -> its default weights), a checkpoint's stem, a Hub id
        of the menu ("google/vit-base-patch16-224", also "hf-hub:..."), any case."""
        if name in self.specs:
            return self.specs[name]
        wanted = " ".join(str(name or "").split()).lower()
        for spec in self.specs.values():
            if wanted == spec.label.lower():
                return spec
        for spec in self.specs.values():
            if spec.kind == "checkpoint" and wanted in (Path(spec.path).name.lower(), spec.preset.lower()):
                return spec
            if spec.kind == "hub" and wanted.removeprefix("hf-hub:") == spec.path.lower():
                return spec
        if wanted in (p.lower() for p in PRETRAINED):
            preset = next(p for p in PRETRAINED if p.lower() == wanted)
            return self.specs[f"{preset} · {torchvision_weights(preset).variant}"]
        for folder, why in self.left_out.items():
            if wanted == folder.lower():
                raise UnknownModel(f"The model folder {folder} (in EXPLORER_MODELS) was left out of the menu: {why}.")
        raise UnknownModel(f"There is no model called {name!r}; choose one of: {', '.join(self.specs)}.")

    def menu_info(self) -> str:
        """The menu's note: torchvision's weights are not the paper's, and each model folder left out of the menu with
        why."""
        if not self.left_out:
            return JFT_NOTE
        return JFT_NOTE + " Left out of the menu: " + "; ".join(f"{name} ({why})" for name, why in
                                                              self.left_out.items()) + "."

    def default_label(self) -> str:
        """On a Hugging Face Space (downloads allowed), the paper's own ViT-B/16 (PAPER_B16); elsewhere a model that
        needs no download: torchvision's ViT-B/16 IMAGENET1K_V1 when its file is cached, else the shipped checkpoint.
        (Off a Space nothing is downloaded before a visitor asks; where the network fails, the page falls back to
        fallback_label with one sentence.)"""
        if on_space():
            return self.resolve(PAPER_B16).label
        b16 = self.specs["ViT-B/16 · IMAGENET1K_V1"]
        if is_cached(b16.preset, b16.variant):
            return b16.label
        return self.fallback_label()

    def fallback_label(self) -> str:
        """A model that needs no download: the shipped checkpoint (a Fashion-MNIST one first), else untrained B/16."""
        checkpoints = self.checkpoints()
        if checkpoints:
            fashion = [s for s in checkpoints if "fashion" in s.label.lower()]
            return (fashion or checkpoints)[0].label
        return self.specs[untrained_label("ViT-B/16")].label

    def availability_note(self) -> str:
        """One sentence on whether torchvision's pretrained weights and the paper's Hub checkpoints can be had here
        ("" when they can: on a Space, or when both are cached)."""
        if on_space():
            return ""
        clauses = []
        b16 = self.specs["ViT-B/16 · IMAGENET1K_V1"]
        if not is_cached(b16.preset, b16.variant):
            clauses.append("torchvision's pretrained weights can't be had here (EXPLORER_OFFLINE is set and none is "
                           "cached)" if offline() else "torchvision's pretrained weights are not cached yet: choosing "
                           "one downloads its file once (ViT-B/16: 330 MB)")
        hub = [s.path for s in self.specs.values() if s.kind == "hub" and isinstance(s.paper, PaperCheckpoint)]
        missing = [repo_id for repo_id in hub if not (hub_cached(repo_id) or self.hub_folder(repo_id))]
        if missing:
            flag = _hub_offline()
            where = f"the Hugging Face cache {hub_cache_dir()}"
            if flag and len(missing) == len(hub):
                clauses.append(f"the paper's checkpoints can't be had from the Hugging Face Hub ({flag} is set and "
                               f"none is in {where})")
            elif flag:
                clauses.append(f"of the paper's checkpoints only those in {where} (or in EXPLORER_MODELS) can be "
                               f"had ({flag} is set)")
            else:
                clauses.append("the paper's checkpoints download from the Hugging Face Hub on first use "
                               f"({PAPER_B16}: 346 MB)")
        if not clauses:
            return ""
        works = ["the shipped checkpoint"] if self.checkpoints() else []
        works += ["your own models"] if any(s.kind == "folder" for s in self.specs.values()) else []
        works.append("the untrained Table 1 models")
        together = ", ".join(works[:-1]) + (" and " if len(works) > 1 else "") + works[-1]
        return "; ".join(clauses) + f"; {together} work without them."

    def hub_folder(self, repo_id: str) -> Path | None:
        """$EXPLORER_MODELS/<owner>--<name> when it holds a config.json: a Hub checkpoint's files put there by hand."""
        folder = self.models_dir / hub_folder_name(repo_id) if self.models_dir else None
        return folder if folder is not None and (folder / "config.json").is_file() else None

    # -- loading -----------------------------------------------------------------------------------------------
    def loaded(self, label: str) -> bool:
        return label in self._loaded

    def get(self, label: str, progress: Progress = no_progress) -> ModelBundle:
        """The loaded bundle for `label` (loading it on first use). Raises WeightsUnavailable with one sentence."""
        spec = self.resolve(label)

        def load() -> ModelBundle:
            progress(0.05, desc=f"Loading {spec.label}…")
            bundle = self._load(spec)
            bundle.model.to(self.device).eval()
            with self._lock:
                self.loads += 1
            progress(1.0, desc=f"{spec.label} loaded")
            return bundle
        return self._loaded.get_or_compute(spec.label, load)

    def _load(self, spec: ModelSpec) -> ModelBundle:
        """Through the one resolver (explorer.load): a checkpoint's stem, a folder or a Hub id by its path, the others
        by their label ("ViT-B/16 · IMAGENET1K_V1", "ViT-B/16 · random init"). A Hub checkpoint's files put in
        $EXPLORER_MODELS/<owner>--<name> serve it; else huggingface_hub's cache, downloaded once where allowed."""
        if spec.kind == "untrained":
            with _SEEDED:
                return load(spec.label)
        return load(spec.path or spec.label, models_dir=self.models_dir)

    def model_memo(self, label: str) -> Memo:
        """A small memo shared by all entries of one model, for views that depend on its weights only."""
        return self._model_memos.get_or_compute(label, lambda: Memo(64))

    def untrained_patch_embedding(self, label: str, config: ViTConfig) -> torch.nn.Module:
        """The patch embedding E of an untrained model with the same config: the "random init" entry of the menu
        for a Table 1 preset (seed 0, so it matches that entry exactly), else ViT(config) from seed 0. Built once."""
        return self._untrained.get_or_compute((label, config), lambda: self._build_untrained(config))

    def _build_untrained(self, config: ViTConfig) -> torch.nn.Module:
        twin = self._loaded.get(untrained_label(config.name))
        if twin is not None and twin.model.config == config:
            embedding = twin.model.patch_embedding
        elif config.name in CONFIGS and CONFIGS[config.name] == config:
            with _SEEDED:
                embedding = random_bundle(config.name).model.patch_embedding
        else:
            with _SEEDED:
                from ..model import ViT

                torch.manual_seed(0)
                embedding = ViT(config).patch_embedding
        return embedding.to(self.device).eval()
