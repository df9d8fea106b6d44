"""The package's layers: the core (every module of explorer/ outside explorer/app) imports neither Gradio nor the
app, and importing it does not pay for Gradio, transformers or timm; the app sub-package is the only home of Gradio."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "explorer"
CORE = sorted(p for p in PACKAGE.glob("*.py"))


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
                                      "render.py", "explain.py", "families.py"}
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
