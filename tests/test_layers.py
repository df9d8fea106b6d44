"""The package's layers: the core (every module of explorer/ outside explorer/app) imports neither Gradio nor the
app, and importing it does not pay for Gradio, transformers or timm; the app sub-package is the only home of Gradio."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "explorer"
CORE = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] != "app")


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in the file (top level or inside functions), relative ones resolved."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative to explorer/ for a core module
                module = "explorer" + ("." + module if module else "")
                names |= {f"{module}.{alias.name}" for alias in node.names} if not node.module else set()
            names.add(module)
    return names


def test_no_core_module_imports_gradio_or_the_app():
    assert {p.name for p in CORE} >= {"config.py", "model.py", "trace.py", "analysis.py", "weights.py", "images.py",
                                      "render.py", "explain.py", "engine.py", "sources.py"}
    for path in CORE:
        imported = _imports(path)
        assert not {m for m in imported if m == "gradio" or m.startswith("gradio.")}, path.name
        assert not {m for m in imported if m == "explorer.app" or m.startswith("explorer.app.")}, path.name


def test_importing_the_core_loads_no_gradio_transformers_or_timm():
    code = ("import sys, explorer, explorer.analysis, explorer.render, explorer.explain, explorer.families, "
            "explorer.train, explorer.evaluate, explorer.data; "
            "print(sorted(m for m in ('gradio', 'transformers', 'timm', 'explorer.app') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_gradio_is_imported_only_by_the_app_sub_package():
    users = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")
             if any(m == "gradio" or m.startswith("gradio.") for m in _imports(path))}
    assert users and all(name.startswith("app/") for name in users), users


def test_the_page_is_built_before_torch_is_imported(tmp_path):
    """Issue 15's cold start: the page (menu, card, steps, controls) is built from modules that defer torch
    (explorer/deferred.py), so `python app.py` answers before torch and torchvision are loaded; the first analysis
    then imports them and works."""
    example = sorted((PACKAGE.parent / "assets").rglob("*.png"))[0]
    code = f"""
import os, sys
os.environ.update(EXPLORER_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                  TORCH_HOME={str(tmp_path / 'torch')!r}, GRADIO_TEMP_DIR={str(tmp_path / 'gradio')!r})
import explorer, explorer.app
from explorer.app.server import Server
from explorer.app.settings import Settings
from explorer.app.ui import build_app
app = build_app(Server(Settings.from_env()))
heavy = [m for m in ("torch", "torchvision", "safetensors.torch", "plotly", "explorer.model", "explorer.analysis",
                     "explorer.render", "explorer.trace") if m in sys.modules]
assert not heavy, heavy
labels = [label for _, label in app.server.registry.choices()]
assert "ViT-H/14 · IMAGENET1K_SWAG_E2E_V1" in labels and "ViT-B/16 · random init" in labels, labels
entry = app.server.analyse({str(example)!r}, app.server.registry.fallback_label())
assert "torch" in sys.modules and entry.trace.logits.shape[-1] == entry.config.num_classes
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_a_deferred_module_is_whole_for_every_thread_that_touches_it_first(tmp_path):
    """Many threads touch a deferred module while it is still importing (slowly): each sees the finished module
    (importlib.util.LazyLoader on Python < 3.12 can hand out a half-made one: the reason for explorer/deferred.py)."""
    (tmp_path / "slow_module.py").write_text("import time\ntime.sleep(0.5)\nVALUE = 42\n")
    code = """
import sys, threading
from explorer.deferred import deferred
slow = deferred("slow_module")
assert "slow_module" not in sys.modules  # nothing imported yet
seen = []
threads = [threading.Thread(target=lambda: seen.append(slow.VALUE)) for _ in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(seen)
"""
    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{PACKAGE.parent}"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str([42] * 16)
