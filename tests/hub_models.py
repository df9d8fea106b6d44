"""Random-weight timm and transformers ViTs saved as those libraries save them, and a Hugging Face Hub on 127.0.0.1.

Shared by tests/test_families.py (the conversions) and tests/test_menu.py (the app's menu). Import skips the calling
test module where timm, transformers or huggingface_hub is missing.

    hf_model(**kwargs).save_pretrained(folder)       # transformers' ViTForImageClassification, every tensor perturbed
    save_timm(randomise(timm_model), folder)         # timm's save_for_hf: config.json + model.safetensors
    FakeHub.repos = {"google/vit-base-patch16-224": folder_files(folder)}   # with the fake_hub fixture
"""
from __future__ import annotations

import hashlib
import http.server
import re
import threading
import urllib.parse
from pathlib import Path

import pytest
import torch

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")
huggingface_hub = pytest.importorskip("huggingface_hub")

from transformers import ViTConfig as HFViTConfig  # noqa: E402
from transformers import ViTForImageClassification  # noqa: E402


def randomise(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Perturb every parameter (LayerNorm gains, biases, class token and head included, which libraries initialise to
    1, 0 or ~0), so that a tensor copied to the wrong place changes the logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def hf_model(**kwargs) -> ViTForImageClassification:
    torch.manual_seed(0)
    return randomise(ViTForImageClassification(HFViTConfig(**kwargs)))


def save_timm(model, folder: Path, **model_config) -> Path:
    from timm.models import save_for_hf

    save_for_hf(model, folder, model_config=model_config or None, safe_serialization=True)
    return folder


# ---------------------------------------------------------------------------------------------------------------
# The Hub on 127.0.0.1

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub(http.server.BaseHTTPRequestHandler):
    """Files in the Hub's layout, /<repo_id>/resolve/<revision>/<file>, with the headers huggingface_hub reads:
    X-Repo-Commit (the commit of the revision), ETag (the blob's name in the cache: the file's SHA-256, as the Hub
    gives it for files stored in Git LFS, such as weights), Content-Length; and for what
    is missing, 404 with X-Error-Code RepoNotFound, RevisionNotFound or EntryNotFound, as the Hub answers.

    `repos[repo_id]` is a repository whose every revision is one commit, COMMIT; `revisions[repo_id]` one with
    several: {name: (commit, files)}, a name being a branch ("main", "refs/pr/2", percent-encoded in the URL as the
    Hub's are) and each commit answering for itself too."""

    repos: dict[str, dict[str, bytes]] = {}
    revisions: dict[str, dict[str, tuple[str, dict[str, bytes]]]] = {}
    requests: list[tuple[str, str]] = []

    def _revision(self, repo: str, revision: str) -> tuple[str | None, dict[str, bytes] | None]:
        """(commit, files) of `revision` in `repo`; (None, None) for no such repository, (None, {}) for no such
        revision."""
        if repo in self.repos:
            return COMMIT, self.repos[repo]
        if repo not in self.revisions:
            return None, None
        for name, (commit, files) in self.revisions[repo].items():
            if revision in (name, commit):
                return commit, files
        return None, {}

    def _answer(self, body: bool) -> None:
        match = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<file>.+)",
                             urllib.parse.urlsplit(self.path).path)
        self.requests.append((self.command, self.path))
        commit, files = (self._revision(urllib.parse.unquote(match["repo"]), urllib.parse.unquote(match["revision"]))
                         if match else (None, None))
        name = urllib.parse.unquote(match["file"]) if match else ""
        if files is None or commit is None or name not in files:
            self.send_response(404)
            self.send_header("X-Error-Code", "RepoNotFound" if files is None else
                             "RevisionNotFound" if commit is None else "EntryNotFound")
            if commit is not None:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = files[name]
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802
        self._answer(body=False)

    def do_GET(self):  # noqa: N802
        self._answer(body=True)

    def log_message(self, *args):
        pass


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def fake_hub(monkeypatch):
    """A Hub on 127.0.0.1 (online for huggingface_hub, with HF_ENDPOINT pointing at it); yields (server, base URL)."""
    FakeHub.repos, FakeHub.revisions, FakeHub.requests = {}, {}, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("EXPLORER_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    try:
        yield server, endpoint
    finally:
        server.shutdown()
        server.server_close()
