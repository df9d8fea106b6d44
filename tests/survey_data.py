"""Shared by tests/test_survey.py and tests/test_distributed.py: Fashion-MNIST-format data, how to start the package's
commands in fresh processes (under torchrun too), and a comparison of two JSON documents number by number."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from explorer.data import write_idx

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "vit_fashion_mnist"


def write_fashion_idx(folder: Path, n_test: int = 64, n_train: int = 8, seed: int = 0) -> Path:
    """Fashion-MNIST-format IDX files (all four, as explorer.data expects): 28x28 light-on-dark pictures of a bright
    rectangle or ellipse of random size and place, with noise; labels 0-9 at random."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:28, 0:28]
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 40, (n, 28, 28))
        for image in images:
            top, left = rng.integers(2, 12, 2)
            height, width = rng.integers(8, 16, 2)
            if rng.random() < 0.5:
                image[top:top + height, left:left + width] += 160
            else:
                inside = (((rows - top - height / 2) / (height / 2)) ** 2
                          + ((cols - left - width / 2) / (width / 2)) ** 2)
                image[inside <= 1] += 160
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", np.clip(images, 0, 255))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return folder


def subprocess_env() -> dict:
    """The environment for the package's commands in a fresh process: this checkout importable, offline, one thread
    per process (the machine is shared), loopback only, and no torchrun variables inherited."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(ROOT), EXPLORER_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo on the loopback interface, whatever the host name resolves to
    return env


def run_module(module: str, args: list[str], processes: int | None = None, timeout: float = 300):
    """`python -m module args`, or under torchrun with `processes` processes on this machine. -> CompletedProcess"""
    if processes is None:
        command = [sys.executable, "-m", module, *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   "-m", module, *args]
    return subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def json_difference(a, b, path: str = "$") -> float:
    """The largest absolute difference between the numbers of two JSON documents; everything else (keys, lengths,
    strings, None, booleans) must be equal, else AssertionError naming where."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{path}: keys differ"
        return max([json_difference(a[k], b[k], f"{path}.{k}") for k in a], default=0.0)
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        return max([json_difference(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b))], default=0.0)
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        assert isinstance(b, (int, float)) and not isinstance(b, bool), f"{path}: {a!r} against {b!r}"
        return abs(float(a) - float(b))
    assert a == b, f"{path}: {a!r} against {b!r}"
    return 0.0
