"""python -m explorer.app.bench (or `vit-explorer-bench`): what seeing every stage costs, measured against torchvision's plain forward.

The question (issue 6): the first view should appear about as fast as torchvision alone classifies the image, and
every control change should feel instant. So, in one run on one machine, for ViT-B/16 (random weights: timing does
not depend on them) and for the shipped model (checkpoints/vit_fashion_mnist):

    forward      torchvision's VisionTransformer (eval, no_grad, batch 1) — the reference every ratio divides by;
                 our plain forward (the same weights, via from_torchvision); our traced forward (explorer.trace);
                 torchvision "classify an image file" (open + its own preprocessing + forward), for context
    analysis     every function of explorer.analysis, on the cached trace
    upload       image file -> first step on screen: the app's own `analyse` event handler (open, preprocess, trace,
                 draw step 0 and the patch picker) plus Gradio's own postprocessing of its outputs (figures to JSON,
                 images to files), as the server does before it answers
    step         clicking a step's tab the first time after an upload (the app's `step_n` handlers)
    figure       each view of each step on its own (views.render_views + Gradio postprocessing), to see what a
                 step's time is made of
    control      a control change (layer, head, clicked patch, class token, feature-map indices, rollout options,
                 LayerNorm layer): the app's handler for it, redrawn from the cached trace, with a value not seen
                 before (derived views memoised for other values are kept, as in a real session). Views of the
                 weights alone (Fig. 7 left and centre) are memoised once per model, so they are measured warm here;
                 their cold cost is in the analysis rows
    startup      `python app.py` (EXPLORER_OFFLINE=1, a free port on 127.0.0.1) -> first HTTP 200 on "/", beside a
                 bare Gradio Blocks app started the same way (alternately; target: <= 1.5x its time);
                 -> the default model loaded (the /stats API); the app process's peak RSS by then
    memory       peak RSS of a fresh process that imports the app, loads the model and caches one trace (ViT-B/16:
                 target <= 1.5 GB)

Each row gives the median and 90th percentile over --repeats runs after warm-up runs, the ratio of the median to
torchvision's forward of the same model on the same device, and PASS/MISS against the targets below. Absolute times
depend on the machine; the ratios are what to compare. torch's default thread count is used, and reported.

    python -m explorer.app.bench                          # ViT-B/16 and the shipped model, CPU (and CUDA if present)
    python -m explorer.app.bench --markdown               # also a Markdown table for the README
    python -m explorer.app.bench --from-json bench-results/bench.json --markdown   # print a past run's tables again
    python -m explorer.app.bench --checkpoint /tmp/x/vit_fashion_mnist --repeats 30 --json bench-results/run.json
    python -m explorer.app.bench --model ViT-Tiny-Test/8 --quick   # seconds: the smoke test's settings

This is a measurement, not a test: it exits 0 whether targets are met or missed (tests/test_bench.py only checks
that it runs and reports every row).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import gc
import importlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .server import Server
from .settings import REPO, Settings, data_dir, free_port
from .text import STEPS
from .ui import build_app

ROOT = REPO  # a source checkout: app.py, assets/, checkpoints/
DEFAULT_CHECKPOINT = data_dir("checkpoints") / "vit_fashion_mnist"
DEFAULT_IMAGE = data_dir("assets") / "cat_chelsea.jpg"
SHIPPED = "shipped"
DEFAULT_MODELS = ("ViT-B/16", SHIPPED)

# Targets of issue 6: (kind, limit, text). Ratios divide by torchvision's forward of the same model and device.
TARGETS: dict[str, tuple[str, float, str]] = {
    "forward.plain": ("ratio", 1.05, "<= 1.05x tv"),
    "forward.traced": ("ratio", 1.15, "<= 1.15x tv"),
    "upload": ("ratio", 1.5, "<= 1.5x tv"),
    "control": ("median", 100.0, "<= 100 ms"),
    "startup.http_200": ("ratio", 1.5, "<= 1.5x bare Gradio"),  # its ratio is to startup.bare_gradio
    "memory.peak_rss": ("median", 1500.0, "<= 1.5 GB"),
    # Explanations (issue 13): relevance is one forward and one backward; a deletion curve's shortened sequences
    # are batched. A curve from all N patches to none in 20 steps is held to 20 forwards; one point per patch is
    # reported without a target: its sequences hold (N + 2) / 2 forwards' worth of tokens, whatever the batching.
    "explain.relevance": ("ratio", 3.0, "<= 3x tv"),
    "explain.deletion": ("ratio", 20.0, "<= 20x tv"),
    # Controls that run the model by design (step 5): the class picker (relevance, Grad-CAM, faithfulness curves)
    # and the input size (a forward at 1.5x or 2x the side): measured, with no instant-redraw target.
    "control.set_target": ("none", 0.0, ""),
    "control.set_scale": ("none", 0.0, ""),
}
MEMORY_TARGET_MODEL = "ViT-B/16"
MODEL_RUNNING_CONTROLS = ("target", "scale")  # their redraws run the model: timed 3 times, not --repeats  # the RSS target is stated for ViT-B/16


@dataclass
class Row:
    """One measurement: times in ms (startup in s), memory in MB (10^6 bytes)."""

    id: str  # stable, e.g. "forward.traced", "control.set_layer", "figure.eq2.heads"
    label: str  # what was measured, in words
    model: str
    device: str
    unit: str  # "ms" | "s" | "MB"
    samples: list[float] = field(default_factory=list)
    ratio: float | None = None  # median / torchvision forward's median (time rows in ms only)
    target: str = ""
    status: str = ""  # "PASS" | "MISS" | "ERROR" | "" (no target)
    note: str = ""
    error: str = ""  # what went wrong when the measured code raised (then there are no samples)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def p90(self) -> float | None:
        return percentile(self.samples, 90) if self.samples else None

    def to_dict(self) -> dict:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "samples"}
        out.update(median=self.median, p90=self.p90, n=len(self.samples), samples=list(self.samples))
        return out


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated q-th percentile (as numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def judge(row: Row) -> Row:
    """Fill row.target and row.status from TARGETS (the longest id prefix that matches)."""
    if row.error:
        row.status = "ERROR"
        return row
    matches = [k for k in TARGETS if row.id == k or row.id.startswith(k + ".")]
    if not matches or (row.id == "memory.peak_rss" and row.model != MEMORY_TARGET_MODEL):
        return row
    kind, limit, text = TARGETS[max(matches, key=len)]
    if kind == "none":
        return row
    value = row.ratio if kind == "ratio" else row.median
    if value is None:
        return row
    row.target, row.status = text, ("PASS" if value <= limit else "MISS")
    return row


# ---------------------------------------------------------------------------------------------------------------
# Timing

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure(fn: Callable[[], object], repeats: int, warmup: int, device: str = "cpu",
            before: Callable[[], object] | None = None) -> list[float]:
    """Seconds per call of fn() over `repeats` timed calls after `warmup` untimed ones; before() runs untimed."""
    for _ in range(warmup):
        if before:
            before()
        fn()
    gc.collect()
    times = []
    for _ in range(repeats):
        if before:
            before()
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def measure_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                        device: str = "cpu") -> dict[str, list[float]]:
    """Like `measure`, but the functions take turns (in a rotating order), so drift in the machine's speed (other
    processes, clocks, caches) affects them alike: the fairest way to compare two forwards."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    gc.collect()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            _sync(device)
            start = time.perf_counter()
            fns[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def _ms(seconds: list[float]) -> list[float]:
    return [s * 1000 for s in seconds]


# ---------------------------------------------------------------------------------------------------------------
# The machine

def memory_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process in MB, from /proc (Linux); {} elsewhere."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024 / 1e6  # kB -> MB
    return out


def cpu_busy(seconds: float = 2.0) -> float | None:
    """The fraction of all CPUs busy over `seconds` (from /proc/stat; None elsewhere): is the machine quiet?"""
    def sample():
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total_0, idle_0 = sample()
        time.sleep(seconds)
        total_1, idle_1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle_1 - idle_0) / max(1, total_1 - total_0)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: VmHWM, else getrusage (kB on Linux, bytes on macOS)."""
    status = memory_status()
    if "VmHWM" in status:
        return status["VmHWM"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6


def machine_info() -> dict:
    import torch
    import torchvision

    info = {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
                       if k in os.environ},
    }
    for package in ("gradio", "plotly", "numpy", "PIL"):
        with contextlib.suppress(Exception):
            info[package] = importlib.import_module(package).__version__
    return info


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------------------------------------------------
# The models: ours and a torchvision twin with the same weights

@dataclass
class Subject:
    """One model to measure: ours, torchvision's with the same weights, and how the app's session names it."""

    name: str  # "ViT-B/16", "ViT-Fashion/4 (checkpoint vit_fashion_mnist)", ...
    ours: object  # explorer.ViT, eval
    tv: object  # torchvision VisionTransformer, eval
    preprocessing: object  # explorer.images.Preprocessing
    class_names: list[str]
    checkpoint_dir: Path  # the app session's checkpoint folder
    session_model: str  # what the session resolves: a menu label or a checkpoint's stem
    tv_transform: Callable  # PIL image -> (C, H, W): torchvision's own preprocessing


def torchvision_twin(model):
    """A torchvision VisionTransformer holding exactly `model`'s weights (the inverse of weights.from_torchvision)."""
    import torch
    from torchvision.models import VisionTransformer

    from ..weights import _key_table

    c = model.config
    height, width = c.image_hw
    if height != width:
        raise ValueError(f"torchvision's ViT takes square images; this model takes {height}x{width}.")
    tv = VisionTransformer(image_size=height, patch_size=c.patch_size, num_layers=c.depth, num_heads=c.heads,
                           hidden_dim=c.hidden_dim, mlp_dim=c.mlp_dim, num_classes=c.num_classes,
                           representation_size=c.representation_size)
    if c.channels != 3:  # torchvision's stem is RGB; its forward never checks C
        tv.conv_proj = torch.nn.Conv2d(c.channels, c.hidden_dim, kernel_size=c.patch_size, stride=c.patch_size)
    theirs = tv.state_dict()
    ours = model.state_dict()
    state = {}
    for our_key, candidates in _key_table(c.depth, c.representation_size is not None).items():
        state[next(k for k in candidates if k in theirs)] = ours[our_key].detach().clone()
    tv.load_state_dict(state, strict=True)
    return tv.eval()


def _tv_transform(preprocessing):
    """torchvision transforms doing what `preprocessing` does (resize, centre crop, to tensor, normalise)."""
    from torchvision import transforms as T

    steps = [T.Grayscale()] if preprocessing.channels == 1 else []
    steps += [T.Resize(preprocessing.resize_size, interpolation=T.InterpolationMode(preprocessing.interpolation)),
              T.CenterCrop(preprocessing.crop_size), T.ToTensor(), T.Normalize(preprocessing.mean, preprocessing.std)]
    return T.Compose(steps)


def _stem(name: str) -> str:
    """The checkpoint stem under which a random-weight preset is saved for the app's session."""
    return "bench_" + "".join(ch if ch.isalnum() else "_" for ch in name).lower()


def _random_preset(name: str):
    """(ours, torchvision twin, preprocessing, class names, torchvision transform) for a preset with random weights.
    Table 1 presets are torchvision's own builders (vit_b_16() etc.: random init, nothing downloaded)."""
    import torch
    import torchvision

    from ..config import CONFIGS
    from ..images import Preprocessing
    from ..model import ViT
    from ..weights import PRETRAINED, from_torchvision, get_weights

    if name not in CONFIGS:
        raise SystemExit(f"Unknown model {name!r}; choose {SHIPPED!r} or one of {', '.join(CONFIGS)}.")
    torch.manual_seed(0)
    if name in PRETRAINED:
        tv = getattr(torchvision.models, PRETRAINED[name][0])().eval()
        weights = get_weights(name, "DEFAULT")
        preprocessing = Preprocessing.from_torchvision(weights.transforms())
        class_names = list(weights.meta["categories"])
        tv_transform = weights.transforms()
    else:
        config = CONFIGS[name]
        tv = torchvision_twin(ViT(config))
        size, channels = config.image_hw[0], config.channels
        preprocessing = Preprocessing(resize_size=size, crop_size=size, channels=channels,
                                      mean=(0.5,) * channels, std=(0.5,) * channels)
        class_names = [f"class {i}" for i in range(config.num_classes)]
        tv_transform = _tv_transform(preprocessing)
    return from_torchvision(tv, name=name), tv, preprocessing, class_names, tv_transform


def prepare_checkpoints(models: list[str], checkpoint: Path, folder: Path) -> Path:
    """The app session's checkpoint folder for this run: the shipped checkpoint linked in, other non-Table-1 presets
    saved with random weights. (Table 1 presets are the session's own "random init" entries.)"""
    from ..weights import save_checkpoint
    from .registry import TABLE_1

    folder.mkdir(parents=True, exist_ok=True)
    for name in models:
        if name == SHIPPED:
            for suffix in (".json", ".safetensors"):
                link = folder / (checkpoint.name + suffix)
                if not link.exists():
                    link.symlink_to(Path(str(checkpoint) + suffix).resolve())
        elif name not in TABLE_1 and not (folder / f"{_stem(name)}.json").exists():
            ours, _, preprocessing, class_names, _ = _random_preset(name)
            save_checkpoint(folder / _stem(name), ours, class_names, preprocessing,
                            provenance={"note": "explorer.app.bench: random init"})
    return folder


def session_model(name: str, checkpoint: Path) -> str:
    """How the app's session names a model of this run (a checkpoint stem or a menu label)."""
    from .registry import TABLE_1, untrained_label

    if name == SHIPPED:
        return checkpoint.name
    return untrained_label(name) if name in TABLE_1 else _stem(name)


def build_subject(name: str, checkpoint: Path, folder: Path) -> Subject:
    """ViT-B/16 exactly as the issue states it (torchvision.models.vit_b_16(), random init) and ours from it; the
    shipped checkpoint and a torchvision twin of it; or another preset with random weights."""
    from ..weights import load_checkpoint

    if name == SHIPPED:
        bundle = load_checkpoint(checkpoint)
        ours = bundle.model.eval()
        return Subject(f"{ours.config.name or 'shipped'} ({checkpoint.name})", ours, torchvision_twin(ours),
                       bundle.preprocessing, bundle.class_names, folder, session_model(name, checkpoint),
                       _tv_transform(bundle.preprocessing))
    ours, tv, preprocessing, class_names, tv_transform = _random_preset(name)
    return Subject(name, ours, tv, preprocessing, class_names, folder, session_model(name, checkpoint), tv_transform)


# ---------------------------------------------------------------------------------------------------------------
# The app, driven in-process: its own event handlers and Gradio's own postprocessing of their outputs

class AppDriver:
    """Calls the app's event handlers as Gradio would (inputs by component, outputs through postprocess_data), on a
    page built by the app's own factory (explorer.app.ui.build_app) for the server being measured."""

    def __init__(self, app):
        from gradio.state_holder import SessionState

        self.app = app
        self.session = app.server
        self.events = {fn.api_name: fn for fn in app.demo.fns.values() if fn.api_name}
        self.names = {id(component): name for name, component in app.components.items()}
        self.loop = asyncio.new_event_loop()
        self.state = {}  # component name -> value, as a browser session would hold them
        self.session_state = SessionState(app.demo)  # the server makes one per browser session, not per event

    def close(self) -> None:
        self.loop.close()

    def event_names(self) -> list[str]:
        return list(self.events)

    def call(self, api_name: str, postprocess: bool = True, event_data=None):
        """Run one event as the server would: the handler on the inputs this browser session holds, then Gradio's
        postprocessing and JSON. Outputs are kept as the browser keeps them (gr.State values, updated values), so
        `key`, `source`, `selected` and `step` follow the app's own handlers. With postprocess=False only the
        handler runs (to tell its time from Gradio's). `event_data` (a click's gr.SelectData) is passed as Gradio
        passes it (gradio.helpers.special_args)."""
        from gradio.helpers import special_args

        event = self.events[api_name]
        inputs = special_args(event.fn, [self._value(c) for c in event.inputs], event_data=event_data)[0]
        predictions = event.fn(*inputs)
        if not postprocess:
            return predictions
        payload = self.loop.run_until_complete(self.app.demo.postprocess_data(event, predictions, self.session_state))
        # What goes over the wire: JSON of the postprocessed values (figures are already JSON strings).
        json.dumps([p.model_dump() if hasattr(p, "model_dump") else p for p in payload], default=str)
        values = [predictions] if len(event.outputs) == 1 else list(predictions)
        for component, value in zip(event.outputs, values):
            name = self.names.get(id(component))
            if name is None:
                continue
            if isinstance(value, dict) and value.get("__type__") == "update":
                if "value" in value:
                    self.state[name] = value["value"]
            else:
                self.state[name] = value
        return predictions

    def _value(self, component):
        """What this browser session sends for an input: what it holds, else the component's initial value."""
        name = self.names.get(id(component))
        if name in self.state:
            return self.state[name]
        value = getattr(component, "value", None)
        return None if callable(value) else copy.deepcopy(value)


# ---------------------------------------------------------------------------------------------------------------
# Measurements

def bench_forward(subject: Subject, x, device: str, repeats: int, warmup: int, image_path: Path) -> list[Row]:
    import torch
    from PIL import Image

    from ..trace import trace

    ours, tv = subject.ours.to(device), subject.tv.to(device)
    x = x.to(device)
    mean, std = subject.preprocessing.mean, subject.preprocessing.std

    def tv_forward():
        with torch.no_grad():
            return tv(x)

    def plain():
        with torch.no_grad():
            return ours(x)

    def traced():
        return trace(ours, x, mean=mean, std=std, class_names=subject.class_names)

    def classify():
        with Image.open(image_path) as image:
            pixels = subject.tv_transform(image.convert("RGB")).unsqueeze(0).to(device)  # (1, C, H, W)
        with torch.no_grad():
            return tv(pixels).softmax(-1).topk(5)

    difference = float((tv_forward() - plain()).abs().max())
    times = measure_interleaved({"tv": tv_forward, "plain": plain, "traced": traced}, repeats, warmup, device)
    rows = [
        Row("forward.torchvision", "torchvision forward (the reference)", subject.name, device, "ms", _ms(times["tv"])),
        Row("forward.plain", "our plain forward (same weights)", subject.name, device, "ms", _ms(times["plain"]),
            note=f"max |logit difference| to torchvision {difference:.1e}"),
        Row("forward.traced", "our traced forward (explorer.trace)", subject.name, device, "ms", _ms(times["traced"])),
        Row("forward.torchvision_classify", "torchvision: open file + its preprocessing + forward", subject.name,
            device, "ms", _ms(measure(classify, repeats, warmup, device))),
    ]
    subject.ours, subject.tv = ours.cpu(), tv.cpu()
    return rows


class Recorder:
    """Collects the rows of one model on one device; a measurement whose code raises becomes an ERROR row."""

    def __init__(self, model: str, device: str, repeats: int, warmup: int):
        self.model, self.device, self.repeats, self.warmup = model, device, repeats, warmup
        self.rows: list[Row] = []

    def time(self, row_id: str, label: str, fn: Callable[[], object], before: Callable[[], object] | None = None,
             note: str = "", repeats: int | None = None) -> Row:
        repeats = self.repeats if repeats is None else min(repeats, self.repeats)
        try:
            row = Row(row_id, label, self.model, self.device, "ms",
                      _ms(measure(fn, repeats, min(self.warmup, repeats), self.device, before)), note=note)
        except Exception as error:  # a measurement, not a test: report it in the table and go on
            reason = (str(error).strip().splitlines() or [""])[0][:160]
            row = Row(row_id, label, self.model, self.device, "ms", error=f"{type(error).__name__}: {reason}")
        self.rows.append(row)
        return row


def bench_analysis(record: Recorder, subject: Subject, entry) -> None:
    """Every public function of explorer.analysis, on the cached trace."""
    from .. import analysis

    t = entry.trace
    model = subject.ours.to(record.device)
    L = t.depth
    weight = entry.projection_weight
    cases: dict[str, tuple[str, Callable]] = {
        "attention_rollout": ("attention rollout, heads fused layer by layer",
                              lambda: analysis.attention_rollout(analysis.fused_attentions(t).unsqueeze(1))),
        "rollout_map": ("rollout map (Fig. 6), mean fusion", lambda: analysis.rollout_map(t)),
        "rollout_map.max_discard": ("rollout map, max fusion, discard 0.9", lambda: analysis.rollout_map(t, "max", 0.9)),
        "query_attention": ("attention of the class token, layer L", lambda: analysis.query_attention(t, L, 0)),
        "query_attention_layers": ("attention of the class token, every layer",
                                   lambda: analysis.query_attention_layers(t, 0)),
        "fused_attentions": ("heads fused (max) for every layer", lambda: analysis.fused_attentions(t, "max")),
        "attention_matrix": ("attention matrix of layer L, mean over heads", lambda: analysis.attention_matrix(t, L)),
        "fused_attentions_and_distance": ("fused heads and mean distance, one pass over the layers",
                                          lambda: analysis.fused_attentions_and_distance(t, "mean", True)),
        "mean_attention_distance": ("mean attention distance (Fig. 7 right)", lambda: analysis.mean_attention_distance(t)),
        "position_similarity": ("position-embedding similarity (Fig. 7 centre)",
                                lambda: analysis.position_similarity(t["embed.position_embedding"], t.grid)),
        "embedding_filter_components": ("filter principal components (Fig. 7 left)",
                                        lambda: analysis.embedding_filter_components(weight, 28)),
        "logit_lens": ("logit lens", lambda: analysis.logit_lens(t, model, 5)),
        "token_norms": ("token norms", lambda: analysis.token_norms(t)),
    }
    for name, (label, fn) in cases.items():
        record.time(f"analysis.{name}", label, fn)
    bench_explain(record, model, entry)
    subject.ours = model.cpu()


def bench_explain(record: Recorder, model, entry) -> None:
    """explorer.explain on the traced image: relevance and Grad-CAM (one forward + one backward each), and deletion
    curves over every patch and at the app's resolution (batched shortened sequences). Slow rows run fewer times."""
    from .. import analysis, explain

    x = entry.trace["input.pixels"].unsqueeze(0).to(record.device)  # (1, C, H, W)
    N = entry.config.num_patches
    order = explain.patch_order(analysis.rollout_map(entry.trace))  # (N,), any order costs the same
    steps = explain.default_steps(entry.config) or N
    record.time("explain.relevance", "relevance (Chefer et al.): one forward + one backward",
                lambda: explain.relevance(model, x))
    record.time("explain.grad_cam", "Grad-CAM, last block: one forward + one backward",
                lambda: explain.grad_cam(model, x))
    record.time("explain.deletion.steps20", f"deletion curve over all {N} patches in 20 steps (21 sequences, batched)",
                lambda: explain.deletion_curve(model, x, order, steps=min(20, N)), repeats=5)
    if steps < N:
        record.time("explain.deletion_app", f"deletion curve, {steps + 1} points (the app's faithfulness chart)",
                    lambda: explain.deletion_curve(model, x, order, steps=steps), repeats=5)
    record.time("explain.every_patch_deletion", f"deletion curve, one point per patch ({N + 1} sequences, batched)",
                lambda: explain.deletion_curve(model, x, order), repeats=3,
                note=f"holds {(N + 2) / 2:.0f} forwards' worth of tokens, whatever the batching")


MEASURED_ANALYSIS = {"attention_rollout", "rollout_map", "query_attention", "query_attention_layers", "fused_attentions",
                     "attention_matrix", "mean_attention_distance", "position_similarity", "fused_attentions_and_distance",
                     "embedding_filter_components", "logit_lens", "token_norms"}
# Timed as parts of the above (ranking inside the logit lens).
INSIDE_MEASURED = {"patch_index", "patch_position", "fuse_heads", "patch_distances", "ranking", "equally_likely"}


def analysis_not_measured() -> list[str]:
    """Public functions of explorer.analysis that bench_analysis does not time (new ones, to be added)."""
    import inspect

    from .. import analysis

    return sorted(name for name, obj in vars(analysis).items()
                  if inspect.isfunction(obj) and obj.__module__ == analysis.__name__ and not name.startswith("_")
                  and name not in MEASURED_ANALYSIS | INSIDE_MEASURED)


def default_state(driver: AppDriver, session_model: str, image) -> dict:
    """A fresh browser session that has chosen `session_model` and `image`; every other input keeps the value the
    app gives its component (the page as it loads)."""
    label = driver.session.registry.resolve(session_model).label
    return {"image": image, "model": label, "model_in_use": label, "step": 0}


def bench_upload(record: Recorder, driver: AppDriver, subject: Subject, image: Path, row_id: str, label: str,
                 breakdown: bool = False) -> None:
    """Image file -> first step on screen: the app's `analyse` handler, with an empty trace cache each time.
    With `breakdown`, also its parts: the session alone (open, preprocess, trace, logit lens), the handler alone
    (that plus drawing step 0 and the picker); the rest of the full time is Gradio's postprocessing."""
    session = driver.session
    driver.state = default_state(driver, subject.session_model, str(image))
    record.time(row_id, label, lambda: driver.call("analyse"), before=session.cache.clear)
    if breakdown:
        model = driver.state["model"]
        record.time("breakdown.session_analyse", "  of which session.analyse: open, preprocess, trace, logit lens",
                    lambda: session.analyse(str(image), model), before=session.cache.clear)
        record.time("breakdown.analyse_handler", "  of which the app's handler: that + drawing step 0 and picker",
                    lambda: driver.call("analyse", postprocess=False), before=session.cache.clear)


def _control_value(option: str, config, i: int):
    """The i-th new value for a control (never the default, cycling through what the control offers)."""
    from . import views

    L, h, D = config.depth, config.heads, config.hidden_dim
    if option == "indices":
        return views.random_indices(D, seed=i)
    if option in ("layer", "ln_layer"):
        return 2 + i % (L - 1) if L > 1 else 1
    if option == "head":
        return str(1 + i % h)
    if option == "fusion":
        return ("max", "min")[i % 2]
    if option == "discard":
        return (0.5, 0.9, 0.25, 0.75)[i % 4]
    if option == "ln_which":
        return views.LN_CHOICES[1]
    if option == "target":
        return str((1 + i) % config.num_classes)  # never the same class twice in a row
    if option == "scale":
        return views.SCALES[1 + i % (len(views.SCALES) - 1)]
    raise KeyError(f"explorer.app.bench has no values for the control {option!r}; add them to _control_value.")


def _patch_click(config, i: int) -> tuple[float, float, int]:
    """A click (x, y) in the patch picker on the i-th of a spread of patches; returns (x, y, patch index)."""
    from . import views

    rows, cols = config.grid
    index = (7 + i * 37) % (rows * cols)  # hops across the grid
    side = config.patch_size * views.picker_scale(config)
    row, col = divmod(index, cols)
    return (col + 0.5) * side, (row + 0.5) * side, index


def bench_steps(record: Recorder, driver: AppDriver, subject: Subject, image: Path):
    """Tab clicks (each step drawn the first time), every control change per step, and each output on its own.
    Returns the cached entry."""
    import gradio as gr

    from . import views

    session = driver.session
    driver.state = default_state(driver, subject.session_model, str(image))
    session.cache.clear()
    driver.call("analyse")
    entry = session.entry(session.cache.keys()[-1])
    config = entry.config
    after_upload = dict(entry.memo)  # what the upload left memoised (step 0 is on screen)
    uploaded = dict(driver.state)  # the browser's state after the upload (key, source, ...)

    def before(memo: dict, **state):
        """Before each timed run: the memo and the browser state as they were (so every run is the same case)."""
        def restore():
            with entry.lock:
                entry.memo.clear()
                entry.memo.update(memo)
            driver.state.update(state)
        return restore

    for number in range(len(STEPS)):
        driver.state = dict(uploaded)
        event = f"step_{number}"
        record.time(f"step.{number}", f"tab click: step '{STEPS[number]}' drawn the first time",
                    lambda: driver.call(event), before=before(after_upload))
        before(after_upload)()
        driver.call(event)
        shown, on_step = dict(entry.memo), dict(driver.state)  # this step on screen with the default options

        for api_name in driver.event_names():  # every control whose outputs are on this step
            option = api_name[len("set_"):]
            if not api_name.startswith("set_") or not views.affected(number, option):
                continue
            counter = iter(range(10**9))

            def change(option=option, counter=counter, api_name=api_name):
                driver.state[option] = _control_value(option, config, next(counter))
                driver.call(api_name)

            record.time(f"control.{api_name}", f"{option} changed -> redraw (step {number})", change,
                        before=before(shown), repeats=3 if option in MODEL_RUNNING_CONTROLS else None)
            driver.state = dict(on_step)
        if "random_indices" in driver.events and views.affected(number, "indices"):
            record.time("control.random_indices", f"'Random' feature maps -> redraw (step {number})",
                        lambda: driver.call("random_indices"), before=before(shown, **on_step))
            driver.state = dict(on_step)
        if "select_patch" in driver.events and views.affected(number, "selected"):
            counter = iter(range(10**9))

            def click(counter=counter):
                x, y, _ = _patch_click(config, next(counter))
                driver.call("select_patch", event_data=gr.SelectData(None, {"index": [x, y], "value": None}))

            record.time(f"control.select_patch.step{number}", f"patch clicked -> redraw (step {number})", click,
                        before=before(shown, **on_step))
            if "class_token" in driver.events:  # back to the class token after a patch was clicked
                record.time(f"control.class_token.step{number}", f"class token chosen -> redraw (step {number})",
                            lambda: driver.call("class_token"),
                            before=before(shown, **dict(on_step, selected=_patch_click(config, 0)[2])))
            driver.state = dict(on_step)

    # The views of each step on their own: their drawing plus Gradio's postprocessing for that component.
    for number in range(len(STEPS)):
        for name in views.step_views(number):
            component = driver.app.components[name]

            def draw(name=name, component=component):
                value = views.render_views(entry, [name], views.Options())[0]
                payload = component.postprocess(value)
                json.dumps(payload.model_dump() if hasattr(payload, "model_dump") else payload, default=str)

            record.time(f"figure.{name}", f"step {number} output {name} (drawn + postprocessed)", draw,
                        before=before(after_upload))
    return entry


def prepare_photo(folder: Path) -> Path:
    """A 12-megapixel JPEG (4032x3024, a phone photo's size) made from the cat example: what visitors upload."""
    from PIL import Image

    path = folder / "photo_12mp.jpg"
    if not path.exists():
        with Image.open(DEFAULT_IMAGE) as image:
            image.convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC).save(path, quality=90)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Processes: cold start and memory

def _app_env(checkpoint_dir: Path | None, temp: Path) -> dict:
    env = dict(os.environ, EXPLORER_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1",
               GRADIO_TEMP_DIR=str(temp / "gradio"), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if checkpoint_dir is not None:
        env["EXPLORER_CHECKPOINTS"] = str(checkpoint_dir)
    return env


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _call_api(base: str, api_name: str, timeout: float = 10.0):
    """Gradio's two-request HTTP API: POST /gradio_api/call/<name>, then read the event stream's data."""
    request = urllib.request.Request(f"{base}/gradio_api/call/{api_name}", data=b'{"data": []}',
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        event_id = json.loads(response.read())["event_id"]
    with urllib.request.urlopen(f"{base}/gradio_api/call/{api_name}/{event_id}", timeout=timeout) as response:
        text = response.read().decode()
    data = [line[len("data:"):].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1]) if data else None


# The yardstick of the cold start (issue 15): a bare Gradio Blocks app, launched as the app is (queue, no SSR), on the
# same machine, in the same environment, started alternately with it.
BARE_GRADIO = """
import sys
import gradio as gr
with gr.Blocks(title="bare") as demo:
    gr.Markdown("# A bare Gradio Blocks app")
demo.queue().launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), ssr_mode=False)
"""


def app_command(port: int) -> list[str]:
    """`python app.py` on 127.0.0.1:port in a source checkout; `python -m explorer.app` (the same main) where the
    package was pip-installed."""
    start_app = [str(ROOT / "app.py")] if (ROOT / "app.py").is_file() else ["-m", "explorer.app"]
    return [sys.executable, *start_app, "--host", "127.0.0.1", "--port", str(port)]


def cold_start(checkpoint_dir: Path | None, temp: Path, timeout: float = 180.0, bare: bool = False) -> dict:
    """Start `python app.py` on a free port; seconds to the first HTTP 200 and to the default model being loaded.
    bare=True: the same for BARE_GRADIO (HTTP 200 only)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", BARE_GRADIO, str(port)] if bare else app_command(port)
    log = open(temp / f"app-{port}.log", "w+")
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=_app_env(checkpoint_dir, temp), stdout=log,
                               stderr=subprocess.STDOUT)
    result = {"port": port}
    try:
        while "http_200_s" not in result:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"app.py exited with {process.returncode}: {log.read()[-2000:]}")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"app.py did not answer on {base} within {timeout:.0f} s.")
            if _http_ok(base + "/"):
                result["http_200_s"] = time.perf_counter() - start
            else:
                time.sleep(0.05)
        while not bare and time.perf_counter() - start < timeout:
            with contextlib.suppress(urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
                stats = _call_api(base, "stats")
                if stats and stats[0].get("models_loaded", 0) >= 1:
                    result["model_loaded_s"] = time.perf_counter() - start
                    break
            time.sleep(0.1)
        result.update({f"app_{k}_mb": v for k, v in memory_status(process.pid).items()})
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    return result


def memory_child(model: str, checkpoint: Path, device: str, image: Path) -> dict:
    """In a fresh process: import the app, load `model`, upload one image (trace cached, step 0 drawn): peak RSS."""
    import torch

    with tempfile.TemporaryDirectory(prefix="explorer-bench-") as folder:
        temp = Path(folder)
        checkpoint_dir = prepare_checkpoints([model], checkpoint, temp / "checkpoints")
        os.environ.setdefault("GRADIO_TEMP_DIR", str(temp / "gradio"))  # where Gradio writes what it serves
        baseline = memory_status().get("VmRSS")
        session = Server(Settings.from_env(checkpoint_dir=checkpoint_dir), device=device)
        driver = AppDriver(build_app(session))
        session.registry.get(session_model(model, checkpoint))
        driver.state = default_state(driver, session_model(model, checkpoint), str(image))
        driver.call("analyse")
        out = {"baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(), "rss_mb": memory_status().get("VmRSS"),
               "trace_cache_mb": session.cache.nbytes() / 1e6, "cache_entries": len(session.cache)}
        if device.startswith("cuda"):
            out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 1e6
        driver.close()
        return out


def measure_memory(model: str, checkpoint: Path, device: str, image: Path, temp: Path) -> dict:
    """Run memory_child in a fresh interpreter (so nothing this process did counts) and read its JSON line."""
    command = [sys.executable, "-m", "explorer.app.bench", "--memory-child", "--model", model, "--checkpoint",
               str(checkpoint), "--device", device, "--image", str(image)]
    done = subprocess.run(command, cwd=ROOT, env=_app_env(None, temp), capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the memory subprocess failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------------------------
# Output

def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "x":
        return f"{value:.2f}x"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


COLUMNS = ("model", "device", "measurement", "median", "p90", "unit", "n", "x tv forward", "target", "result")


def table_rows(rows: list[Row]) -> list[list[str]]:
    return [[r.model, r.device, r.label, _fmt(r.median), _fmt(r.p90), r.unit, str(len(r.samples)), _fmt(r.ratio, "x"), r.target or "",
             r.status or ""] for r in rows]


def format_table(rows: list[Row]) -> str:
    body = table_rows(rows)
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(COLUMNS)]
    right = {3, 4, 6, 7}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(COLUMNS, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for b in body:
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(b, widths))))
    return "\n".join(lines)


SUMMARY_GROUPS = ("forward.", "load.", "upload.", "breakdown.", "step.", "control.", "startup.", "memory.")


def format_markdown(rows: list[Row], machine: dict | None = None) -> str:
    """The README's table: every row with a target and what explains them (figure and analysis rows are left to the
    JSON file), then the machine in one line."""
    rows = [r for r in rows if r.id.startswith(SUMMARY_GROUPS)]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---:" if i in (3, 4, 6, 7) else "---"
                                                              for i in range(len(COLUMNS))) + "|"]
    for b in table_rows(rows):
        b[2] = b[2].strip()  # Markdown drops leading spaces: the breakdown rows say "of which" instead
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in b) + " |")
    if machine:
        lines += ["", f"Measured on {machine_line(machine)}."]
    return "\n".join(lines)


def rows_from_json(report: dict) -> list[Row]:
    """The rows of a report written by --json (to print its tables again without measuring)."""
    fields = {f.name for f in dataclasses.fields(Row)}
    return [Row(**{k: v for k, v in row.items() if k in fields}) for row in report["rows"]]


def machine_line(machine: dict) -> str:
    return (f"{machine['processor']}, {machine['cpus_usable']} of {machine['cpu_count']} CPUs usable, "
            f"torch {machine['torch']} with {machine['torch_threads']} threads "
            f"({machine['torch_interop_threads']} inter-op), torchvision {machine['torchvision']}, "
            f"Python {machine['python']}, {machine['platform']}"
            + (f", CUDA {machine['cuda']}" if machine.get("cuda") else ", no CUDA"))


# ---------------------------------------------------------------------------------------------------------------
# Main

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m explorer.app.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", default=None, metavar="NAME",
                   help=f"a preset (random weights) or {SHIPPED!r} (the --checkpoint); repeatable; default: "
                        f"{' and '.join(DEFAULT_MODELS)}. ViT-Tiny-Test/8 makes a run take seconds (the smoke test)")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                   help="the shipped model's checkpoint stem (.safetensors + .json) (default: %(default)s)")
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="the uploaded image (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per row (default 20; --quick: 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before each row (default 2; --quick: 0)")
    p.add_argument("--cold-starts", type=int, default=None, help="app starts to time (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="few repeats, no 12-megapixel upload (for the smoke test)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CPU, and CUDA too when torch.cuda.is_available() (default)")
    p.add_argument("--skip-cold-start", action="store_true", help="skip the app start and the memory subprocess")
    p.add_argument("--json", type=Path, default=ROOT / "bench-results" / "bench.json", help="(default: %(default)s)")
    p.add_argument("--markdown", action="store_true",
                   help="also print the rows with targets (and what explains them) as a Markdown table, for the README")
    p.add_argument("--from-json", type=Path, default=None, metavar="PATH",
                   help="measure nothing: print the tables of a report written earlier by --json")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.models = args.model or list(DEFAULT_MODELS)
    args.repeats = args.repeats or (3 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 2)
    args.cold_starts = args.cold_starts or (1 if args.quick else 3)
    return args


def devices(choice: str) -> tuple[list[str], list[str]]:
    """(devices to measure, notes on skipped ones)."""
    import torch

    cuda = torch.cuda.is_available()
    if choice == "cpu":
        return ["cpu"], []
    if choice == "cuda":
        return (["cuda"], []) if cuda else ([], ["CUDA is not available here: the CUDA measurements were skipped."])
    return (["cpu", "cuda"], []) if cuda else (["cpu"], ["No CUDA device here: CUDA measurements skipped."])


def run(args: argparse.Namespace) -> tuple[dict, list[Row]]:
    import torch

    from ..images import open_image

    started = time.perf_counter()
    machine = machine_info()
    report: dict = {"machine": machine, "targets": {k: v[2] for k, v in TARGETS.items()}, "notes": [], "skipped": [],
                    "models": {},
                    "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                                 if k not in ("memory_child", "model")}}
    device_list, skipped = devices(args.device)
    report["skipped"] += skipped
    models = list(args.models)
    if SHIPPED in models and not Path(str(args.checkpoint) + ".json").is_file():
        models.remove(SHIPPED)
        report["skipped"].append(f"No checkpoint at {args.checkpoint}(.json/.safetensors): the shipped model was "
                                 f"skipped; pass --checkpoint.")
    if analysis_not_measured():
        report["notes"].append(f"explorer.analysis functions not timed: {', '.join(analysis_not_measured())}.")
    print(f"explorer.app.bench on {machine_line(machine)}")
    print(f"load average at start {machine['load_average']}; {args.repeats} repeats after {args.warmup} warm-up runs",
          flush=True)
    busy = cpu_busy()
    machine["cpu_busy_before_start"] = busy
    if busy is not None and busy > 0.15:
        note = (f"Other processes kept {busy:.0%} of the CPUs busy just before the start: times are slower and "
                f"noisier than on a quiet machine.")
        report["notes"].append(note)
        print(note, flush=True)

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="explorer-bench-") as folder:
        temp = Path(folder)
        checkpoint_dir = prepare_checkpoints(models, args.checkpoint, temp / "checkpoints")
        os.environ.setdefault("GRADIO_TEMP_DIR", str(temp / "gradio"))  # where Gradio writes what it serves
        photo = None if args.quick else prepare_photo(temp)
        for name in models:
            subject = build_subject(name, args.checkpoint, checkpoint_dir)
            report["models"][subject.name] = {"config": subject.ours.config.to_dict(),
                                              "parameters": subject.ours.num_parameters(),
                                              "session_model": subject.session_model}
            x = subject.preprocessing(open_image(args.image).image)  # (1, C, H, W)
            for device in device_list:
                phase = time.perf_counter()
                print(f"- {subject.name} on {device}: forward ...", flush=True)
                record = Recorder(subject.name, device, args.repeats, args.warmup)
                record.rows += bench_forward(subject, x, device, args.repeats, args.warmup, args.image)
                session = Server(Settings.from_env(checkpoint_dir=checkpoint_dir), device=device)
                driver = AppDriver(build_app(session))
                load_start = time.perf_counter()
                session.registry.get(subject.session_model)
                record.rows.append(Row("load.model", "model loaded by the session (once per process)", subject.name,
                                       device, "ms", [1000 * (time.perf_counter() - load_start)]))
                print(f"  upload, steps, controls, figures, analysis ...", flush=True)
                bench_upload(record, driver, subject, args.image, "upload.first_step",
                             f"upload -> step 0 on screen ({args.image.name})", breakdown=True)
                if photo is not None:
                    bench_upload(record, driver, subject, photo, "upload.first_step_12mp",
                                 "upload -> step 0 on screen (12-megapixel JPEG)")
                try:
                    entry = bench_steps(record, driver, subject, args.image)
                except Exception as error:  # the app changed under the bench: say so in the table, go on
                    record.rows.append(Row("steps", "steps and controls (stopped early)", subject.name, device, "ms",
                                           error=f"{type(error).__name__}: {str(error)[:200]}"))
                    entry = session.entry(session.cache.keys()[-1]) if len(session.cache) else None
                if entry is not None:
                    bench_analysis(record, subject, entry)
                reference = next(r.median for r in record.rows if r.id == "forward.torchvision")
                for row in record.rows:
                    if row.unit == "ms" and row.samples and row.id != "load.model":
                        row.ratio = row.median / reference
                rows += record.rows
                driver.close()
                del session, driver, entry
                gc.collect()
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                print(f"  done in {time.perf_counter() - phase:.0f} s", flush=True)
            del subject
            gc.collect()

        if args.skip_cold_start:
            report["skipped"].append("Cold start and the memory subprocess were skipped (--skip-cold-start).")
        else:
            print(f"- cold start x{args.cold_starts}, each beside a bare Gradio app ...", flush=True)
            bare, starts = [], []
            for _ in range(args.cold_starts):  # alternately, so that both see the same machine
                bare.append(cold_start(None, temp, bare=True))
                starts.append(cold_start(checkpoint_dir, temp))
            report["cold_starts"], report["bare_gradio_starts"] = starts, bare
            app_device = "cuda" if torch.cuda.is_available() else "cpu"  # the app's own choice (session.default_device)
            bare_row = Row("startup.bare_gradio", "cold start: a bare Gradio Blocks app -> HTTP 200", "gradio", "cpu",
                           "s", [s["http_200_s"] for s in bare])
            app_row = Row("startup.http_200", "cold start: python app.py -> HTTP 200", "app", app_device, "s",
                          [s["http_200_s"] for s in starts],
                          note=f"checkpoints: {', '.join(models)}; ratio: to the bare Gradio app's median")
            app_row.ratio = app_row.median / bare_row.median
            rows += [bare_row, app_row]
            loaded = [s["model_loaded_s"] for s in starts if "model_loaded_s" in s]
            if loaded:
                rows.append(Row("startup.model_loaded", "cold start -> default model loaded (/stats)", "app", app_device,
                                "s", loaded))
            peaks = [s["app_VmHWM_mb"] for s in starts if "app_VmHWM_mb" in s]
            if peaks:
                rows.append(Row("memory.app_started", "app process peak RSS: default model loaded, no trace", "app",
                                app_device, "MB", peaks))
            for name in models:
                for device in device_list:
                    print(f"- memory: {name} on {device} ...", flush=True)
                    memory = measure_memory(name, args.checkpoint, device, args.image, temp)
                    model_name = next(m for m, info in report["models"].items()
                                      if info["session_model"] == session_model(name, args.checkpoint))
                    rows.append(Row("memory.peak_rss", "peak RSS: app imported, model loaded, 1 trace cached",
                                    model_name, device, "MB", [memory["peak_rss_mb"]],
                                    note=f"trace cache {memory['trace_cache_mb']:.0f} MB; RSS after imports "
                                         f"{memory['baseline_rss_mb']:.0f} MB"))
                    report.setdefault("memory", {})[f"{model_name} on {device}"] = memory

    for row in rows:
        judge(row)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    report["rows"] = [r.to_dict() for r in rows]
    report["summary"] = {"pass": sum(r.status == "PASS" for r in rows), "miss": sum(r.status == "MISS" for r in rows),
                         "error": sum(r.status == "ERROR" for r in rows),
                         "misses": [f"{r.model} {r.device} {r.id}" for r in rows if r.status in ("MISS", "ERROR")],
                         "seconds": round(time.perf_counter() - started, 1)}
    return report, rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.models[0], args.checkpoint, args.device, args.image)))
        return 0
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        rows = rows_from_json(report)
        print(format_table(rows))
        if args.markdown:
            print()
            print(format_markdown(rows, report["machine"]))
        return 0
    report, rows = run(args)
    print()
    print(format_table(rows))
    summary = report["summary"]
    print(f"\n{summary['pass']} PASS, {summary['miss']} MISS, {summary['error']} ERROR"
          + (f": {'; '.join(summary['misses'])}" if summary["misses"] else "")
          + f". Medians of {args.repeats} runs; ratios to torchvision's forward of the same model and device.")
    print(f"Machine: {machine_line(report['machine'])}; load average {report['machine']['load_average']} at start, "
          f"{report['machine']['load_average_end']} at the end.")
    for row in rows:
        if row.error:
            print(f"ERROR {row.model} {row.device} {row.id}: {row.error}")
    for line in report["skipped"] + report["notes"]:
        print(line)
    if args.markdown:
        print()
        print(format_markdown(rows, report["machine"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nWrote {args.json} ({summary['seconds']} s).")
    return 0


def console() -> None:
    """`vit-explorer-bench` and `python -m explorer.app.bench`."""
    code = main()
    # Everything is written; skip the interpreter's teardown, where a native library thread left by torch / Gradio
    # sometimes aborts the process ("terminate called without an active exception") and turns a finished run into
    # exit status -6.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
