"""The samples of README.md and docs/*.md run, and their links lead somewhere.

Every ```python block runs. The blocks of one page run in order in one shared namespace, as a reader would type them
into one notebook (a later block may use an earlier block's names), with the repository as the working directory,
offline (EXPLORER_OFFLINE=1, HF_HUB_OFFLINE=1), torch on one thread; a page that imports timm, transformers or
gradio_client is skipped where that library is missing. A block opened with ```python no-run (a sample that needs
what a test can't have, such as the app serving on port 7860) is only compiled; ```bash blocks are shell commands,
not run.
What a page would download is put in a local cache first, and only for the pages that need it:
- `load_pretrained(...)`: torchvision's ViT-B/16 IMAGENET1K_V1 file, zero weights saved under torchvision's file name
  in a temporary TORCH_HOME/hub/checkpoints (as tests/test_weights.py seeds its cache);
- a Hub id in quotes (`"google/vit-base-patch16-224"`): a small random transformers ViT saved in a temporary Hugging
  Face cache under that id, in the cache's own layout (refs/main -> snapshots/<commit>/).
A page that declares views (`@view(...)`) has the app's view registry put back as it was afterwards.

Every relative link (and image) of those pages points to a file of the repository, and a `#fragment` to a heading of
that page (GitHub's anchors).
"""
from __future__ import annotations

import json
import linecache
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
RUN, NO_RUN = "python", "python no-run"
HUB_ID = re.compile(r"""["']((?:google|timm)/vit[\w.-]*)["']""")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def blocks(page: Path) -> list[tuple[str, int, str]]:
    """(info string, line of the opening fence, code) of every fenced block of `page`."""
    text = page.read_text(encoding="utf-8")
    return [(m[1].strip(), text.count("\n", 0, m.start()) + 1, m[2]) for m in FENCE.finditer(text)]


def name(page: Path) -> str:
    return str(page.relative_to(REPO))


def test_the_readme_is_short_and_keeps_the_space_configuration():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines; move detail to docs/."
    assert lines[0] == "---" and "sdk: gradio" in lines and "app_file: app.py" in lines
    text = "\n".join(lines)
    assert "bash .ci/run" in text and "python app.py" in text  # the two commands (.ci/run: "the test command")


# An environment variable read by the code (os.environ.get, os.getenv, env.get, env[...] and settings' _int(env, ...)),
# of the explorer or of the libraries it drives; a general one such as PYTHONPATH is not a setting of ours.
READS = re.compile(r"""(?:environ\.get|environ\[|getenv|env\.get|env\[|_int\(env,)\s*\(?\s*"""
                   r"""["']([A-Z][A-Z0-9_]*)["'](?!\]\s*=[^=])""")  # not an assignment, os.environ["X"] = ...
OURS = re.compile(r"(?:EXPLORER|HF|GRADIO|TORCH|TRANSFORMERS|XDG)_\w+|SPACE_ID|WORLD_SIZE|RANK|LOCAL_RANK")


def test_the_readme_lists_every_setting_the_code_reads():
    read = {match for file in (REPO / "explorer").rglob("*.py") for match in READS.findall(file.read_text("utf-8"))}
    settings = (REPO / "README.md").read_text(encoding="utf-8").partition("## Settings")[2].partition("\n## ")[0]
    missing = sorted(v for v in read if OURS.fullmatch(v) and f"`{v}" not in settings)
    assert not missing, f"README.md's settings do not mention {missing}, which the code reads."


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_python_blocks_are_marked_run_or_no_run(page):
    for info, line, code in blocks(page):
        if info.split(" ")[0] in ("py", "python", "python3", "pycon"):
            assert info in (RUN, NO_RUN), f"{name(page)}:{line}: a Python block is ```python or ```python no-run."
        if info.startswith("python"):
            compile(code, f"{name(page)}:{line}", "exec")  # no-run blocks are at least valid Python


# ---------------------------------------------------------------------------------------------------------------
# Running the samples

def seed_torchvision(torch_home: Path) -> None:
    """torchvision's ViT-B/16 IMAGENET1K_V1 file in torch_home's hub cache: zero weights of the right shapes, saved
    as torchvision saves them (building the model's random init would cost seconds and prove nothing more here)."""
    import torch
    import torchvision

    from explorer.weights import get_weights

    url = get_weights("ViT-B/16", "IMAGENET1K_V1").url
    path = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):
        shapes = torchvision.models.vit_b_16().state_dict()
    torch.save({key: torch.zeros(tensor.shape, dtype=tensor.dtype) for key, tensor in shapes.items()}, path)


def seed_hub(cache: Path, repo_id: str) -> None:
    """A small random transformers ViTForImageClassification, cached under `repo_id` as huggingface_hub caches it."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=64, num_labels=10)
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    transformers.ViTForImageClassification(config).eval().save_pretrained(snapshot, safe_serialization=True)
    (snapshot / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "size": {"height": 32, "width": 32},
        "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)


@pytest.fixture
def view_registry():
    """The app's view registry as it is now, put back after the test (a page may declare views of its own)."""
    from explorer.app import views

    saved = {key: getattr(views, key).copy() for key in ("VIEWS", "PAGE", "CONTROLS") if hasattr(views, key)}
    yield
    for key, value in saved.items():
        registry = getattr(views, key)
        registry.clear()
        registry.update(value) if isinstance(registry, dict) else registry.extend(value)


RUNNABLE = [page for page in PAGES if any(info == RUN for info, _, _ in blocks(page))]


@pytest.fixture
def torch_home(tmp_path):
    """A temporary TORCH_HOME, in memory (/dev/shm) where there is one: a seeded ViT-B/16 file is 346 MB."""
    memory = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=memory)) if memory.is_dir() and os.access(memory, os.W_OK) else tmp_path
    yield folder / "torch"
    if folder != tmp_path:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def one_thread():
    """Torch on one thread while the samples run: on a shared 2-core machine two threads per op wait on each other
    (the shipped model's faithfulness curves took 17 s on two threads, 0.6 s on one, under load)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page", RUNNABLE, ids=name)
def test_python_blocks_run(page, tmp_path, torch_home, one_thread, monkeypatch, request):
    code = [(line, source) for info, line, source in blocks(page) if info == RUN]
    text = "\n".join(source for _, source in code)
    for variable in ("EXPLORER_MODELS", "EXPLORER_CHECKPOINTS", "EXPLORER_SURVEYS", "EXPLORER_WEIGHTS_MIRROR",
                     "HF_HOME", "HF_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "huggingface"))
    monkeypatch.chdir(REPO)
    for library in ("timm", "transformers", "gradio_client"):  # optional, in tests/requirements.txt
        if re.search(rf"^\s*(?:import [\w, ]*\b{library}\b|from {library}\b)", text, re.MULTILINE):
            pytest.importorskip(library)
    if "load_pretrained(" in text:
        seed_torchvision(torch_home)
    for repo_id in sorted(set(HUB_ID.findall(text))):
        seed_hub(tmp_path / "huggingface", repo_id)
    if "@view(" in text:
        request.getfixturevalue("view_registry")
    namespace = {"__name__": f"docs_{page.stem}"}
    for line, source in code:
        where = f"{name(page)}:{line}"
        linecache.cache[where] = (len(source), None, source.splitlines(True), where)  # tracebacks show the sample
        exec(compile(source, where, "exec"), namespace)


# ---------------------------------------------------------------------------------------------------------------
# Links

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of the headings of `page`: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*#*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, n = slug, 1
        while anchor in found:
            anchor, n = f"{slug}-{n}", n + 1
        found.add(anchor)
    return found


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_relative_links_point_to_files(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or REPO not in (file, *file.parents):
            broken.append(f"{target} (no such file)")
        elif fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target} (no heading #{fragment} in {name(file)})")
    assert not broken, f"{name(page)}: broken links: {broken}"
