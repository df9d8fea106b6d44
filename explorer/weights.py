"""Weights in and out: torchvision's pretrained ViTs (download, cache, integrity) and the project's own checkpoints.

- `from_torchvision(model_or_state_dict)` (from explorer.families.torchvision): an explorer.ViT with exactly those
  weights, config inferred; its key table is data for the one conversion engine, as timm's and transformers' are.
- `load_pretrained("ViT-B/16", "IMAGENET1K_V1")`: through torchvision's weights API (URL, preprocessing, class
  names from its meta); the file is downloaded with progress and cached under $TORCH_HOME/hub/checkpoints.
  EXPLORER_OFFLINE=1 forbids any network access; EXPLORER_WEIGHTS_MIRROR=<base URL> fetches the same file name
  from another server (a local mirror, or a test server on 127.0.0.1). A cached file is checked before use (its zip
  records' CRC-32s, then torch.load(weights_only=True) into a torchvision ViT's keys); a damaged one is replaced by a
  fresh download where the network is allowed. A download lands under its final name only once complete and checked,
  and one file is downloaded once however many threads or processes ask for it at the same time (a filelock).
- `save_checkpoint` / `load_checkpoint`: `.safetensors` plus a JSON side file. Nothing is ever unpickled, except
  torchvision's own weight files, which are read with torch.load(weights_only=True).
"""
from __future__ import annotations

import glob
import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .config import CONFIGS, ViTConfig
from .common import reason
from .deferred import deferred
from .families.torchvision import config_from_torchvision, from_torchvision
from .images import Preprocessing

# Imported when first used (explorer/deferred.py): the app's menu reads this module without them. So are
# explorer.model (in the functions that build a ViT) and torchvision.
torch = deferred("torch")
safetensors_torch = deferred("safetensors.torch")
filelock = deferred("filelock")

CHECKPOINT_FORMAT = "vit-explorer/1"
# An untrained model, in one wording everywhere: its weights' name, and the sentence shown wherever it predicts.
UNTRAINED = "random init"
UNTRAINED_NOTE = "Random init: predictions are meaningless; shapes are real."
# File names whose contents are pickles, which can run code when loaded: refused wherever a user names a file.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class WeightsUnavailable(RuntimeError):
    """Weights that can't be had (offline, missing, refused); str(error) is one sentence that says what to do."""


@dataclass
class ModelBundle:
    """A model with everything needed to use it: preprocessing, class names, and where its weights came from."""

    model: ViT
    preprocessing: Preprocessing
    class_names: list[str]
    name: str  # e.g. "ViT-B/16"
    weights: str  # e.g. "IMAGENET1K_V1", UNTRAINED, or a checkpoint's name
    source: str  # where the weights came from, in words
    meta: dict = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.weights != UNTRAINED


# ---------------------------------------------------------------------------------------------------------------
# torchvision's pretrained weights

# Our preset name -> (torchvision builder, weights enum name).
PRETRAINED: dict[str, tuple[str, str]] = {
    "ViT-B/16": ("vit_b_16", "ViT_B_16_Weights"),
    "ViT-B/32": ("vit_b_32", "ViT_B_32_Weights"),
    "ViT-L/16": ("vit_l_16", "ViT_L_16_Weights"),
    "ViT-L/32": ("vit_l_32", "ViT_L_32_Weights"),
    "ViT-H/14": ("vit_h_14", "ViT_H_14_Weights"),
}


def offline() -> bool:
    """True when EXPLORER_OFFLINE is set (1/true/yes): nothing may touch the network."""
    return os.environ.get("EXPLORER_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def weights_enum(name: str):
    """torchvision's weights enum class for one of our preset names."""
    import torchvision.models as tvm

    if name not in PRETRAINED:
        raise ValueError(f"No torchvision weights for {name!r}; choose one of {sorted(PRETRAINED)}.")
    return getattr(tvm, PRETRAINED[name][1])


@dataclass(frozen=True)
class TorchvisionWeights:
    """What the model menu says of one of torchvision's weight files, known without importing torchvision (seconds
    at start-up). tests/test_weights.py checks every field against torchvision's own weights enums."""

    variant: str  # the enum member's name, e.g. "IMAGENET1K_V1"
    file: str  # the file name of its URL, which is also its name in the cache
    crop: int  # the input size of its preprocessing (the model's image_size)
    acc1: float  # ImageNet-1k top-1 accuracy, as torchvision's meta gives it
    default: bool = False  # the enum's DEFAULT


TORCHVISION_WEIGHTS: dict[str, tuple[TorchvisionWeights, ...]] = {
    "ViT-B/16": (TorchvisionWeights("IMAGENET1K_V1", "vit_b_16-c867db91.pth", 224, 81.072, default=True),
                 TorchvisionWeights("IMAGENET1K_SWAG_E2E_V1", "vit_b_16_swag-9ac1b537.pth", 384, 85.304),
                 TorchvisionWeights("IMAGENET1K_SWAG_LINEAR_V1", "vit_b_16_lc_swag-4e70ced5.pth", 224, 81.886)),
    "ViT-B/32": (TorchvisionWeights("IMAGENET1K_V1", "vit_b_32-d86f8d99.pth", 224, 75.912, default=True),),
    "ViT-L/16": (TorchvisionWeights("IMAGENET1K_V1", "vit_l_16-852ce7e3.pth", 224, 79.662, default=True),
                 TorchvisionWeights("IMAGENET1K_SWAG_E2E_V1", "vit_l_16_swag-4f3808c9.pth", 512, 88.064),
                 TorchvisionWeights("IMAGENET1K_SWAG_LINEAR_V1", "vit_l_16_lc_swag-4d563306.pth", 224, 85.146)),
    "ViT-L/32": (TorchvisionWeights("IMAGENET1K_V1", "vit_l_32-c7638314.pth", 224, 76.972, default=True),),
    "ViT-H/14": (TorchvisionWeights("IMAGENET1K_SWAG_E2E_V1", "vit_h_14_swag-80465313.pth", 518, 88.552, default=True),
                 TorchvisionWeights("IMAGENET1K_SWAG_LINEAR_V1", "vit_h_14_lc_swag-c1eb923e.pth", 224, 85.708)),
}


def weight_variants(name: str) -> list[str]:
    """The weight variants torchvision offers for a preset, e.g. ["IMAGENET1K_V1", "IMAGENET1K_SWAG_E2E_V1", ...]."""
    if name not in TORCHVISION_WEIGHTS:
        raise ValueError(f"No torchvision weights for {name!r}; choose one of {sorted(TORCHVISION_WEIGHTS)}.")
    return [w.variant for w in TORCHVISION_WEIGHTS[name]]


def torchvision_weights(name: str, variant: str = "DEFAULT") -> TorchvisionWeights:
    """TORCHVISION_WEIGHTS' entry of a preset's `variant` ("DEFAULT": the enum's default)."""
    variants = weight_variants(name)
    found = [w for w in TORCHVISION_WEIGHTS[name] if w.variant == variant or (variant == "DEFAULT" and w.default)]
    if not found:
        raise ValueError(f"{name} has no weights {variant!r}; choose one of {variants}.")
    return found[0]


def get_weights(name: str, variant: str = "DEFAULT"):
    """torchvision's weights enum member (imports torchvision)."""
    enum = weights_enum(name)
    try:
        return enum[variant] if variant != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ValueError(f"{name} has no weights {variant!r}; choose one of {weight_variants(name)}.") from None


def torch_hub_dir() -> Path:
    """torch.hub.get_dir() without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else
    ~/.cache/torch/hub (torch.hub's own rule; a torch.hub.set_dir() in this process wins once torch is imported).
    tests/test_weights.py checks it against torch.hub.get_dir() under each environment."""
    if "torch" in sys.modules:
        return Path(torch.hub.get_dir())
    home = os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache")), "torch"))
    return Path(os.path.expanduser(home)) / "hub"


def cache_path(weights) -> Path:
    """Where torchvision caches this weights file: $TORCH_HOME/hub/checkpoints/<file name>. `weights` is a
    torchvision enum member or a TorchvisionWeights entry."""
    file = weights.file if isinstance(weights, TorchvisionWeights) else os.path.basename(weights.url)
    return torch_hub_dir() / "checkpoints" / file


def is_cached(name: str, variant: str = "DEFAULT") -> bool:
    return cache_path(torchvision_weights(name, variant)).is_file()


def pretrained_state_dict(weights, progress: bool = True) -> dict[str, torch.Tensor]:
    """torchvision's state dict for `weights`, from the cache or downloaded (with a progress bar) into it.

    A cached file that fails its check (cut short, bytes changed, not a state dict) is deleted and downloaded again
    where the network is allowed; offline it is a one-sentence WeightsUnavailable that names it. One thread (and one
    process) at a time reads, repairs or downloads a given file: the others wait and then read what it left.
    """
    path = cache_path(weights)
    if not path.is_file() and offline():
        raise WeightsUnavailable(
            f"Offline (EXPLORER_OFFLINE is set) and {path.name} is not cached: put that file, from "
            f"{weights.url}, at {path}."
        )
    with _held(path):
        damage = None
        if path.is_file():
            try:
                return _read_torchvision_file(path)
            except _Damaged as error:
                damage = str(error)
            if offline():
                raise WeightsUnavailable(
                    f"The cached file {path} is damaged ({damage}) and EXPLORER_OFFLINE is set: delete it and put an "
                    f"intact copy of {weights.url} there, or unset EXPLORER_OFFLINE to have it downloaded afresh."
                )
            try:
                path.unlink()  # before the download: the disk need not hold the damaged file and the new one
            except OSError:
                pass  # a read-only cache: writing the download fails next, with its own sentence
        return _download_weights(weights, path, progress, damage)


_PARTIAL = ".explorer.partial"  # our downloads in progress; torch.hub's own are <name>.<hex>.partial, left alone


def _download_weights(weights, path: Path, progress: bool, damage: str | None) -> dict[str, torch.Tensor]:
    """Download `weights` into a temporary file beside `path`, check it, and only then give it its final name."""
    mirror = os.environ.get("EXPLORER_WEIGHTS_MIRROR", "").strip()
    url = mirror.rstrip("/") + "/" + path.name if mirror else weights.url
    # As torchvision (check_hash=True): the official file name ends with the first hex digits of its sha256.
    # A mirror may serve a re-exported file, so its hash is not checked; the CRC-32s and weights_only=True still apply.
    match = None if mirror else torch.hub.HASH_REGEX.search(path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}{_PARTIAL}")  # never read under any other name
    try:
        download_file(url, partial, hash_prefix=match.group(1) if match else None, progress=progress)
        state_dict = _read_torchvision_file(partial)
        os.replace(partial, path)  # atomic: the final name only ever holds a complete, checked file
        return state_dict
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError, _Damaged) as error:
        why = f"the file that arrived is damaged: {error}" if isinstance(error, _Damaged) else reason(error)
        if damage:
            raise WeightsUnavailable(
                f"The cached file {path} was damaged ({damage}), so it was deleted, and downloading it again from "
                f"{url} failed ({why}); with no network, put the file from {weights.url} there."
            ) from None
        raise WeightsUnavailable(
            f"Could not download {url} ({why}); with no network, put the file from {weights.url} at {path}."
        ) from None
    finally:
        partial.unlink(missing_ok=True)


class DownloadCut(OSError):
    """The server closed the connection before sending all the bytes it announced."""


def download_file(url: str, dst: str | os.PathLike, hash_prefix: str | None = None, progress: bool = True) -> None:
    """Write the file at `url` to `dst`, with a progress bar. As torch.hub.download_url_to_file, the SHA-256 must start
    with `hash_prefix` (ValueError else); unlike it, fewer bytes than Content-Length is a DownloadCut, not a file."""
    request = urllib.request.Request(url, headers={"User-Agent": "vit-explorer"})
    with urllib.request.urlopen(request, timeout=60) as response, open(dst, "wb") as file:
        length = response.headers.get("Content-Length", "")
        expected = int(length) if length.strip().isdigit() else None
        sha256, received = hashlib.sha256(), 0
        with torch.hub.tqdm(total=expected, disable=not progress, unit="B", unit_scale=True,
                            unit_divisor=1024) as bar:
            # HTTPResponse.read(n) returns b"" when the connection closes early, without an error: counted below.
            while chunk := response.read(1 << 20):
                file.write(chunk)
                sha256.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        file.flush()
        os.fsync(file.fileno())  # on disk before it can be renamed into place
    if expected is not None and received != expected:
        raise DownloadCut(f"the connection closed after {received} of {expected} bytes")
    digest = sha256.hexdigest()
    if hash_prefix and not digest.startswith(hash_prefix):
        raise ValueError(f"its SHA-256 starts with {digest[:len(hash_prefix)]}, not {hash_prefix} as its name says")


class _Damaged(Exception):
    """A weights file that fails its check; str(error) says how, in a clause."""


def _read_torchvision_file(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a torchvision weights file, checked first: torch.load reads a zip's records without checking
    their CRC-32s, so changed bytes would load silently; a file cut short has no zip directory at its end."""
    with open(path, "rb") as file:
        is_zip = file.read(4) == b"PK\x03\x04"  # torch.save's format; older files are a bare pickle
    if is_zip:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError):
            raise _Damaged("its zip directory is missing or unreadable, as when a file is cut short") from None
        try:
            with archive:
                for record in archive.infolist():
                    if record.CRC == 0 and record.file_size:  # saved without CRC-32s (torch.serialization option)
                        continue
                    with archive.open(record) as data:  # zipfile raises BadZipFile at the end if the CRC-32 differs
                        while data.read(1 << 24):
                            pass
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            raise _Damaged(f"its bytes have changed: {reason(error)}") from None
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # weights_only refuses pickled code: a refusal is an error here, never a call
        raise _Damaged(f"torch.load with weights_only=True refused it: {type(error).__name__}") from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise _Damaged("it does not hold a state dict")
    try:
        config_from_torchvision(state_dict, heads=1)  # the keys of a torchvision ViT; heads are not in the file
    except ValueError as error:
        raise _Damaged(f"it holds no torchvision ViT, {reason(error)}") from None
    return state_dict


@contextmanager
def _held(path: Path):
    """Hold `path` against other threads and processes while it is read, repaired or downloaded (filelock).

    The lock file lies outside the cache folder, in <torch hub>/.locks (as huggingface_hub keeps its own in
    <cache>/.locks), so the folder holds weight files only. Holding it, any .partial of ours beside `path` is a
    killed run's, and is removed. Where no lock file can be made (a read-only cache) nothing can be written either,
    and readers need no lock.
    """
    lock_path = path.parent.parent / ".locks" / f"{path.name}.lock"
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(lock_path))
        lock.acquire()
    except OSError:
        lock = None
    if lock is None:
        yield
        return
    try:
        for stale in glob.glob(glob.escape(str(path)) + ".*" + _PARTIAL):
            Path(stale).unlink(missing_ok=True)
        yield
    finally:
        lock.release()


def load_pretrained(name: str = "ViT-B/16", variant: str = "DEFAULT", progress: bool = True) -> ModelBundle:
    """A torchvision-pretrained ViT as an explorer ModelBundle (weights, preprocessing and class names from torchvision)."""
    weights = get_weights(name, variant)
    state_dict = pretrained_state_dict(weights, progress)
    expected = CONFIGS[name].replace(image_size=weights.transforms().crop_size[0],
                                     num_classes=len(weights.meta["categories"]))
    path = cache_path(weights)
    try:
        model = from_torchvision(state_dict, heads=expected.heads, name=name, copy=False)
    except ValueError as error:
        raise WeightsUnavailable(
            f"The cached file {path} does not hold {name} weights ({str(error).rstrip('.')}); delete it and download "
            f"it again."
        ) from None
    if model.config != expected:
        raise WeightsUnavailable(
            f"The cached file {path} holds weights of another model ({_shape_summary(model.config)}, expected "
            f"{_shape_summary(expected)}); delete it and download it again."
        )
    acc = weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")
    return ModelBundle(
        model=model,
        preprocessing=Preprocessing.from_torchvision(weights.transforms()),
        class_names=list(weights.meta["categories"]),
        name=name,
        weights=weights.name,
        source=f"torchvision {PRETRAINED[name][1]}.{weights.name} ({cache_path(weights).name})",
        meta={"imagenet_acc1": acc, "url": weights.url},
    )


def _shape_summary(config: ViTConfig) -> str:
    height, width = config.image_hw
    return (f"{height}x{width} input, P={config.patch_size}, D={config.hidden_dim}, L={config.depth}, "
            f"MLP {config.mlp_dim}, {config.num_classes} classes")


def random_bundle(name: str, seed: int = 0) -> ModelBundle:
    """An untrained Table 1 model: real shapes, meaningless predictions. ImageNet preprocessing and class names."""
    from .model import ViT

    config = CONFIGS[name]
    torch.manual_seed(seed)
    model = ViT(config).eval()
    if name in PRETRAINED:
        weights = get_weights(name, "DEFAULT")
        preprocessing = Preprocessing.from_torchvision(weights.transforms())
        class_names = list(weights.meta["categories"])
    else:
        size = config.image_hw[0]
        preprocessing = Preprocessing(resize_size=size, crop_size=size, channels=config.channels,
                                      mean=(0.5,) * config.channels, std=(0.5,) * config.channels)
        class_names = [f"class {i}" for i in range(config.num_classes)]
    if config.num_classes != len(class_names):
        class_names = [f"class {i}" for i in range(config.num_classes)]
    return ModelBundle(model, preprocessing, class_names, name, UNTRAINED, f"{UNTRAINED}, seed {seed}")


# ---------------------------------------------------------------------------------------------------------------
# The project's own checkpoints: .safetensors + .json

def save_checkpoint(path: str | os.PathLike, model: ViT, class_names: list[str], preprocessing: Preprocessing,
                    provenance: dict | None = None) -> tuple[Path, Path]:
    """Write <path>.safetensors and <path>.json. Returns both paths."""
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights_path, json_path = _with(stem, ".safetensors"), _with(stem, ".json")
    safetensors_torch.save_file(tensors, str(weights_path), metadata={"format": CHECKPOINT_FORMAT})
    side = {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "class_names": list(class_names),
        "preprocessing": preprocessing.to_dict(),
        "num_parameters": model.num_parameters(),
        "provenance": provenance or {},
    }
    json_path.write_text(json.dumps(side, indent=2) + "\n")
    return weights_path, json_path


def read_checkpoint_info(path: str | os.PathLike) -> dict:
    """The JSON side file of a checkpoint (given either file, or the stem)."""
    json_path = _with(_stem(path), ".json")
    if not json_path.is_file():
        raise WeightsUnavailable(f"No checkpoint description at {json_path}; a checkpoint is a .safetensors and a .json file.")
    try:
        info = json.loads(json_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise WeightsUnavailable(f"{json_path} is not valid JSON ({reason(error)}); save the checkpoint again.") from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise WeightsUnavailable(f"{json_path} is not a ViT Explorer checkpoint (format {found!r}).")
    return info


def _stem(path) -> Path:
    path = Path(path)
    if path.suffix in PICKLE_SUFFIXES:
        raise WeightsUnavailable(
            f"{path.name} is a pickle file, which can run code when loaded; only .safetensors checkpoints are accepted."
        )
    return path.with_suffix("") if path.suffix in (".safetensors", ".json") else path


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(<stem>.safetensors, <stem>.json) for a checkpoint given as either file or its stem; a dotted stem such as
    "run.v2" is kept whole (Path.with_suffix would cut it to "run"). Refuses pickle suffixes like load_checkpoint."""
    stem = _stem(path)
    return _with(stem, ".safetensors"), _with(stem, ".json")


def _with(stem: Path, suffix: str) -> Path:
    """stem + suffix, appended: "run.v2" -> "run.v2.json" (Path.with_suffix would give "run.json")."""
    return stem.with_name(stem.name + suffix)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> ModelBundle:
    """Load one of the project's checkpoints (.safetensors + .json). Never unpickles anything."""
    stem = _stem(path)
    info = read_checkpoint_info(stem)
    weights_path = _with(stem, ".safetensors")
    if not weights_path.is_file():
        raise WeightsUnavailable(f"The weights file {weights_path} is missing; a checkpoint is a .safetensors and a .json file.")
    try:
        config = ViTConfig.from_dict(info["config"])
        preprocessing = Preprocessing.from_dict(info["preprocessing"])
        class_names = list(info["class_names"])
    except (KeyError, TypeError, ValueError) as error:
        raise WeightsUnavailable(f"{_with(stem, '.json')} is incomplete ({reason(error)}); save the checkpoint again.") from None
    try:
        tensors = safetensors_torch.load_file(str(weights_path), device="cpu")
    except Exception as error:  # safetensors raises its own error type for a damaged header
        raise WeightsUnavailable(f"{weights_path} is not a readable safetensors file ({reason(error)}); save the checkpoint again.") from None
    from .model import ViT

    with torch.device("meta"):
        model = ViT(config)
    expected = model.state_dict()
    mismatched = [k for k in expected if k not in tensors or tensors[k].shape != expected[k].shape]
    mismatched += sorted(set(tensors) - set(expected))
    if mismatched:
        raise WeightsUnavailable(
            f"The weights in {weights_path} do not fit its config (first mismatch: {mismatched[0]}); save the checkpoint again."
        )
    model.load_state_dict(tensors, strict=True, assign=True)
    model = model.to(device).eval()
    provenance = info.get("provenance", {})
    accuracy = provenance.get("test_accuracy")
    source = f"checkpoint {weights_path.name}" + (f", trained on {provenance['dataset']}" if "dataset" in provenance else "")
    if accuracy is not None:
        source += f", test accuracy {accuracy:.4f}"
    return ModelBundle(model, preprocessing, class_names, config.name or stem.name, stem.name, source, meta=info)
