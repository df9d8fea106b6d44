"""The app's environment, read in one place: torch threads, device, where to listen, where checkpoints and examples are.

    EXPLORER_THREADS            torch CPU threads (default: half the usable cores)
    EXPLORER_CHECKPOINTS        folder of the project's checkpoints (default: checkpoints/ next to app.py)
    EXPLORER_MODELS             a folder of your own models, one per subfolder (timm's or transformers' save_pretrained)
    EXPLORER_HOST, EXPLORER_PORT (or GRADIO_SERVER_NAME, GRADIO_SERVER_PORT): where to listen
    SPACE_ID                    set by Hugging Face Spaces: listen on 0.0.0.0, and downloads are allowed
    EXPLORER_OFFLINE            never touch the network (explorer.weights.offline)
    EXPLORER_MAX_MODELS, EXPLORER_TRACE_CACHE_ENTRIES, EXPLORER_TRACE_CACHE_MB: the server's bounds
    EXPLORER_SURVEYS            a folder of surveys (python -m explorer.survey --out ...), one per subfolder; the
                                checkpoints' own <stem>_survey folders are found without it
    EXPLORER_MEMORY_MB          the memory this process may use (default: a CPU Space's 16 GB where SPACE_ID is set
                                and SPACES_ZERO_GPU is not, else what the machine has available)
    EXPLORER_HEAVY_MB           analyses estimated above this run one at a time (default 1024)

Nothing here imports Gradio.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from ..deferred import deferred
from ..weights import offline

# Imported when first used (explorer/deferred.py): the page is up before torch is loaded.
torch = deferred("torch")

PACKAGE = Path(__file__).resolve().parent.parent  # explorer/
REPO = PACKAGE.parent  # a source checkout: app.py, assets/, checkpoints/
MAX_UPLOAD_MB = 20  # launch(max_file_size=...): Gradio answers 413 above it; the upload box says so

# Trace-cache size: at least the app's queue (max_size 32) plus the requests running (2), so that every waiting user's
# trace survives until their next control change; the byte bound (512 MiB) is what limits big models (a ViT-B/16
# trace is ~100 MB, so about five of them), and an evicted trace is traced again from the upload.
DEFAULT_TRACE_ENTRIES = 40
DEFAULT_TRACE_MB = 512
DEFAULT_MAX_MODELS = 2
DEFAULT_HEAVY_MB = 1024


def configure_threads(threads: int | None = None) -> int:
    """Torch's CPU threads: $EXPLORER_THREADS, else half the usable cores (at least 1). Two busy threads on two cores
    that are shared with other work (or with a second request) make a forward several times slower, not faster."""
    if threads is None:
        configured = os.environ.get("EXPLORER_THREADS", "").strip()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = int(configured) if configured else max(1, cores // 2)
    torch.set_num_threads(max(1, int(threads)))
    return torch.get_num_threads()


def default_device() -> str:
    """CUDA where torch sees a GPU, else the CPU (this imports torch: the app asks when a model is first needed)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def on_space(env=None) -> bool:
    """Running on a Hugging Face Space that may download (SPACE_ID set, EXPLORER_OFFLINE not set)."""
    env = os.environ if env is None else env
    return bool(env.get("SPACE_ID", "").strip()) and not offline()


def data_dir(name: str) -> Path:
    """assets/ or checkpoints/: next to app.py in a source checkout, else the copy `pip install .` put in the package
    (explorer/shipped_assets, explorer/shipped_checkpoints: see pyproject.toml)."""
    in_checkout = REPO / name
    return in_checkout if in_checkout.is_dir() else PACKAGE / f"shipped_{name}"


def default_checkpoint_dir(env=None) -> Path:
    """$EXPLORER_CHECKPOINTS, else the shipped checkpoints."""
    env = os.environ if env is None else env
    configured = env.get("EXPLORER_CHECKPOINTS", "").strip()
    return Path(configured) if configured else data_dir("checkpoints")


def default_models_dir(env=None) -> Path | None:
    """$EXPLORER_MODELS (each subfolder one model: config.json + model.safetensors), else None: no such menu entries."""
    env = os.environ if env is None else env
    configured = env.get("EXPLORER_MODELS", "").strip()
    return Path(configured).expanduser() if configured else None


def default_address(env=None) -> tuple[str, int]:
    """(host, port) to bind when none is given on the command line. Host: EXPLORER_HOST, else GRADIO_SERVER_NAME, else
    0.0.0.0 on a Hugging Face Space (SPACE_ID set: it runs `python app.py` and expects 0.0.0.0:7860), else 127.0.0.1.
    Port: EXPLORER_PORT, else GRADIO_SERVER_PORT, else 7860."""
    env = os.environ if env is None else env
    host = (env.get("EXPLORER_HOST", "").strip() or env.get("GRADIO_SERVER_NAME", "").strip()
            or ("0.0.0.0" if env.get("SPACE_ID", "").strip() else "127.0.0.1"))
    port = env.get("EXPLORER_PORT", "").strip() or env.get("GRADIO_SERVER_PORT", "").strip() or "7860"
    return host, int(port)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` now (the OS picks it): for servers started by the benchmark and the tests."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


CPU_SPACE_MB = 16 * 1024  # a cpu-basic Space: 2 vCPU, 16 GB (its /proc/meminfo shows the host's memory instead)


def space_memory_mb(env=None) -> int | None:
    """The memory of the Space this runs on, in MB, where it is known: a CPU Space's (SPACE_ID set, SPACES_ZERO_GPU
    not); else None."""
    env = os.environ if env is None else env
    zero_gpu = env.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")
    return CPU_SPACE_MB if env.get("SPACE_ID", "").strip() and not zero_gpu else None


def _int(env, name: str, default: int) -> int:
    value = env.get(name, "").strip()
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment, read once by `Settings.from_env()`."""

    checkpoint_dir: Path = field(default_factory=default_checkpoint_dir)
    models_dir: Path | None = field(default_factory=default_models_dir)  # the user's own models, one per subfolder
    assets_dir: Path = field(default_factory=lambda: data_dir("assets"))
    device: str | None = None  # None: default_device(), decided when a model is first needed (it imports torch)
    host: str = "127.0.0.1"
    port: int = 7860
    max_models: int = DEFAULT_MAX_MODELS
    trace_entries: int = DEFAULT_TRACE_ENTRIES
    trace_bytes: int = DEFAULT_TRACE_MB * 2**20
    max_upload_mb: int = MAX_UPLOAD_MB
    surveys_dir: Path | None = None  # $EXPLORER_SURVEYS: surveys of any model, matched to it by its weights' digest
    memory_mb: int | None = None  # None: the machine's available memory, read when it is needed
    heavy_mb: int = DEFAULT_HEAVY_MB

    @classmethod
    def from_env(cls, env=None, **overrides) -> "Settings":
        env = os.environ if env is None else env
        host, port = default_address(env)
        values = dict(
            checkpoint_dir=default_checkpoint_dir(env), models_dir=default_models_dir(env), host=host, port=port,
            max_models=_int(env, "EXPLORER_MAX_MODELS", DEFAULT_MAX_MODELS),
            trace_entries=_int(env, "EXPLORER_TRACE_CACHE_ENTRIES", DEFAULT_TRACE_ENTRIES),
            trace_bytes=_int(env, "EXPLORER_TRACE_CACHE_MB", DEFAULT_TRACE_MB) * 2**20,
            memory_mb=_int(env, "EXPLORER_MEMORY_MB", 0) or space_memory_mb(env),
            surveys_dir=Path(env["EXPLORER_SURVEYS"]) if env.get("EXPLORER_SURVEYS", "").strip() else None,
            heavy_mb=_int(env, "EXPLORER_HEAVY_MB", DEFAULT_HEAVY_MB),
        )
        values.update(overrides)
        return cls(**values)

    def examples(self) -> list[Path]:
        """Example images: photos first, then the Fashion-MNIST images that suit the shipped model."""
        files = sorted(p for p in self.assets_dir.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        return [p for p in files if not p.name.startswith("fashion")] + [p for p in files if p.name.startswith("fashion")]
