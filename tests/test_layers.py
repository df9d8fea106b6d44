"""The package's layers and shape: the core (every module of explorer/ outside explorer/app) imports neither Gradio
nor the app, and importing it does not pay for Gradio, transformers or timm; the app sub-package is the only home of
Gradio; every module does one job, said in its first sentence, in at most 600 non-blank lines; no two modules import
each other, directly or through others, at the top or inside functions; the figure layer imports no torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "explorer"
MODULES = sorted(PACKAGE.rglob("*.py"))
CORE = [p for p in MODULES if p.relative_to(PACKAGE).parts[0] != "app"]
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in the file (top level or inside functions), relative ones resolved:
    `from .x import y` names both explorer...x and explorer...x.y (y may be a module)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([module] if module else []))
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "deferred" and node.args \
                and isinstance(node.args[0], ast.Constant):  # explorer.deferred: imported on first use
            names.add(node.args[0].value)
    return names


def _graph() -> dict[str, set[str]]:
    """explorer module -> the explorer modules it imports (a package's own __init__ left out: importing a.b runs a
    first, which is not a dependency of a.b's code)."""
    ours = {_module_name(p): p for p in MODULES}
    graph = {}
    for name, path in ours.items():
        graph[name] = {m for m in _imports(path) if m in ours and m != name and not name.startswith(m + ".")}
    return graph


def test_every_module_does_one_job_in_at_most_600_lines():
    for path in MODULES:
        text = path.read_text()
        lines = sum(1 for line in text.splitlines() if line.strip())
        assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)}: {lines} non-blank lines"
        if lines > 5:  # a module opens with its job, in a sentence
            docstring = ast.get_docstring(ast.parse(text))
            assert docstring and "." in docstring.split("\n\n")[0], path.relative_to(PACKAGE)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of the graph (a list of modules, first == last), or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for other in sorted(graph.get(name, ())):
            if state.get(other) == 1:
                return path[path.index(other):] + [other]
            if other not in state and (found := visit(other, path + [other])):
                return found
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (found := visit(name, [name])):
            return found
    return None


def test_no_import_cycle_between_modules():
    # The finder finds what it must: a direct and an indirect cycle, and none in a chain.
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    graph = _graph()
    assert "explorer.trace" in graph["explorer.explain"]  # imports inside functions and deferred ones are counted
    assert _cycle(graph) is None, "import cycle: " + " -> ".join(_cycle(graph))


def test_the_figure_layer_imports_no_torch():
    figures = [p for p in MODULES if _module_name(p) == "explorer.render" or _module_name(p).startswith("explorer.render.")]
    assert figures
    for path in figures:
        imported = _imports(path)
        assert not {m for m in imported if m.split(".")[0] in ("torch", "torchvision", "gradio")}, path.name
        assert not {m for m in imported if m.startswith(("explorer.model", "explorer.trace", "explorer.analysis",
                                                         "explorer.explain", "explorer.app"))}, path.name
    done = subprocess.run([sys.executable, "-c", "import sys, explorer.render; print('torch' in sys.modules)"],
                          capture_output=True, text=True, timeout=120, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_no_core_module_imports_gradio_or_the_app():
    assert {_module_name(p) for p in CORE} >= {"explorer.config", "explorer.model", "explorer.trace",
                                               "explorer.analysis", "explorer.weights", "explorer.images",
                                               "explorer.render", "explorer.explain", "explorer.families"}
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
    users = {path.relative_to(PACKAGE).as_posix() for path in MODULES
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
