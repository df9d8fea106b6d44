"""Hugging Face Hub downloads with integrity checks, through huggingface_hub (its cache, its progress bar).

EXPLORER_OFFLINE=1 or HF_HUB_OFFLINE=1 (read at each call) allow only the cache; a file that is then missing, or a
network error, raises WeightsUnavailable with one sentence naming the files and where to put them. HF_ENDPOINT,
HF_HOME and HF_HUB_CACHE are also read at each call. A cached safetensors file is checked before use (its size
against its header; its SHA-256 against its blob's name, which is that SHA-256 for weights, stored in Git LFS); a
damaged one is downloaded again (force_download) where the network is allowed, and offline is one sentence naming
it. A checkpoint may be pinned: its files come from one revision (a commit), and its model.safetensors must have a
given SHA-256; where none is given, the first verified download records it in <cache>/explorer-pins.json and later
loads of that repository must match it. huggingface_hub is imported only inside the functions that need it, so
`import explorer` stays fast.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..common import reason
from ..weights import WeightsUnavailable, offline
from .files import read_json


HUB_EXTRA = 'pip install "vit-explorer[hub]"'


def huggingface_hub(submodule: str = ""):
    """huggingface_hub (or one of its submodules), imported now; one-sentence WeightsUnavailable where it is missing
    (a core install of the explorer)."""
    import importlib

    try:
        return importlib.import_module("huggingface_hub" + (f".{submodule}" if submodule else ""))
    except ModuleNotFoundError:
        raise WeightsUnavailable(f"Models from the Hugging Face Hub need the huggingface_hub package, which is not "
                                 f"installed: {HUB_EXTRA} (or pip install huggingface_hub).") from None


def hub_folder_name(repo_id: str) -> str:
    """The folder that stands in for a Hub checkpoint in $EXPLORER_MODELS: "google--vit-base-patch16-224"."""
    return repo_id.replace("/", "--")


def by_hand(repo_id: str, folder: str) -> str:
    """The clause that says how to provide a Hub checkpoint's files without the network."""
    return (f"put its config.json and model.safetensors (and preprocessor_config.json, if it has one) from "
            f"https://huggingface.co/{repo_id} in {folder}")


def hub_offline() -> str | None:
    """The variable that forbids the network now (read at each call), or None."""
    if offline():
        return "EXPLORER_OFFLINE"
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return variable
    return "HF_HUB_OFFLINE" if huggingface_hub("constants").HF_HUB_OFFLINE else None


def hub_cache_dir() -> Path:
    """Where huggingface_hub caches downloads now: $HF_HUB_CACHE, else $HF_HOME/hub, else its default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    return Path(huggingface_hub("constants").HF_HUB_CACHE).expanduser()


def snapshot(repo_id: str, folder: str, revision: str | None = None, sha256: str | None = None) -> Path:
    """The cached snapshot folder of `repo_id` at `revision` (a commit or branch; None: main) holding config.json,
    the safetensors weights and (transformers) its preprocessor_config.json, downloaded first where the network is
    allowed. `sha256`: what model.safetensors must hash to (None: what the first verified download recorded).
    `folder` is where a user can put those files instead, as the one-sentence errors say."""
    config_path = _file(repo_id, "config.json", folder, revision=revision)
    hf_config = read_json(config_path)
    try:
        weights = _weights_file(repo_id, "model.safetensors", folder, revision)
        check_pin(repo_id, revision or "main", weights, sha256)
    except _MissingOnHub:
        try:
            index = _file(repo_id, "model.safetensors.index.json", folder, revision=revision)
        except _MissingOnHub:
            at = f" at revision {revision}" if revision else ""
            raise WeightsUnavailable(f"{repo_id} has no model.safetensors on the Hub{at}, and the explorer never "
                                     f"unpickles pytorch_model.bin; pick a checkpoint that offers safetensors."
                                     ) from None
        for shard in sorted(set(read_json(index).get("weight_map", {}).values())):
            _weights_file(repo_id, shard, folder, revision)
    if "model_type" in hf_config:
        try:
            _file(repo_id, "preprocessor_config.json", folder, revision=revision)
        except _MissingOnHub:
            pass  # ViTImageProcessor's defaults apply, as in transformers
    return config_path.parent


PINS = "explorer-pins.json"  # in the Hugging Face cache: {repo_id: {"revision", "commit", "sha256"}}


def check_pin(repo_id: str, revision: str, weights: Path, sha256: str | None) -> str:
    """The SHA-256 of a verified model.safetensors, checked against `sha256` when given, else against the one
    recorded for `repo_id` at its first verified download (recorded now if there is none). One sentence else."""
    actual = file_sha256(weights)
    pins_path = hub_cache_dir() / PINS
    pins = read_json(pins_path) if pins_path.is_file() else {}
    expected = sha256 or pins.get(repo_id, {}).get("sha256")
    if expected is None:
        pins[repo_id] = {"revision": revision, "commit": weights.parent.name, "sha256": actual}
        pins_path.parent.mkdir(parents=True, exist_ok=True)
        partial = pins_path.with_name(f"{PINS}.{os.getpid()}")
        partial.write_text(json.dumps(pins, indent=1, sort_keys=True))
        partial.replace(pins_path)
    elif actual != expected:
        remedy = (f"the catalogue pins; delete {weights} to download it again" if sha256 else
                  f"recorded in {pins_path} at its first download; delete that record to accept the new file")
        raise WeightsUnavailable(f"model.safetensors of {repo_id} at {revision} has SHA-256 {actual}, not the "
                                 f"{expected} {remedy}.")
    return actual


class _MissingOnHub(Exception):
    """The repository exists but has no such file."""


def _weights_file(repo_id: str, filename: str, folder: str, revision: str | None = None) -> Path:
    """_file for a safetensors file, checked: a cached copy cut short or with changed bytes is downloaded again
    where the network is allowed (huggingface_hub checks a download's size, but never a cached file)."""
    path = _file(repo_id, filename, folder, revision=revision)
    damage = _safetensors_damage(path)
    if damage is None:
        return path
    flag = hub_offline()
    if flag:
        raise WeightsUnavailable(f"The cached file {path} of {repo_id} is damaged ({damage}) and {flag} is set: unset "
                                 f"it to have it downloaded afresh, or delete it and run once with the network.")
    path = _file(repo_id, filename, folder, force_download=True, revision=revision)
    damage = _safetensors_damage(path)
    if damage is not None:
        raise WeightsUnavailable(f"{filename} of {repo_id} was damaged in the cache and came damaged again from the "
                                 f"Hub ({damage}); try again later, or put an intact copy in {folder}.")
    return path


_checked_blobs: set[tuple] = set()  # (blob, inode, size, mtime, ctime): hashed once per process, not at every load


def _safetensors_damage(path: Path) -> str | None:
    """Why a cached safetensors file can't be used as it is, in a clause, or None when it is intact."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):  # the header, and a size that covers every tensor it lists
            pass
    except Exception as error:  # safetensors raises its own error type for a damaged header or a short file
        return reason(error)
    blob = path.resolve()
    stat = blob.stat()
    key = (str(blob), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if not re.fullmatch(r"[0-9a-f]{64}", blob.name) or key in _checked_blobs:
        return None  # a blob named otherwise (a git hash, or a cache written by hand) has no SHA-256 to check
    if file_sha256(blob) != blob.name:
        return "its SHA-256 is not the one the Hub named it by"
    _checked_blobs.add(key)
    return None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes; a cache blob already checked against its name (the Hub's SHA-256) is not read
    again."""
    blob = path.resolve()
    stat = blob.stat()
    if (str(blob), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns) in _checked_blobs:
        return blob.name
    digest = hashlib.sha256()
    with open(blob, "rb") as file:
        while chunk := file.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def _file(repo_id: str, filename: str, folder: str, force_download: bool = False, revision: str | None = None) -> Path:
    """One file of a Hub repository at `revision` (None: main): from the cache, or downloaded into it. One-sentence
    WeightsUnavailable else."""
    hub = huggingface_hub()
    errors = huggingface_hub("errors")
    flag = hub_offline()
    cache = hub_cache_dir()
    put = by_hand(repo_id, folder)
    down = None if flag or force_download else hub_unreachable()
    if flag or down:
        cached = hub.try_to_load_from_cache(repo_id, filename, cache_dir=str(cache), revision=revision)
        if isinstance(cached, str):
            return Path(cached)
        if cached is not None:  # huggingface_hub's marker: the Hub said this file does not exist
            raise _MissingOnHub(filename)
        if down:
            raise WeightsUnavailable(f"The Hugging Face Hub cannot be reached ({down}) and {filename} of {repo_id} is "
                                     f"not in the Hugging Face cache {cache}: {put}, or try again with the network.")
        raise WeightsUnavailable(f"Offline ({flag} is set) and {filename} of {repo_id} is not in the Hugging Face "
                                 f"cache {cache}: {put}, or run once with the network.")
    try:
        return Path(hub.hf_hub_download(
            repo_id, filename, cache_dir=str(cache), endpoint=os.environ.get("HF_ENDPOINT") or None,
            force_download=force_download, revision=revision))
    except errors.RepositoryNotFoundError:
        raise WeightsUnavailable(f"There is no repository {repo_id} on the Hugging Face Hub (or it is private or "
                                 f"gated); check the id.") from None
    except errors.OfflineModeIsEnabled:
        raise WeightsUnavailable(f"Offline (HF_HUB_OFFLINE is set) and {filename} of {repo_id} is not in the "
                                 f"Hugging Face cache {cache}: {put}.") from None
    except errors.LocalEntryNotFoundError as error:  # before the next: in older versions also an EntryNotFoundError
        cause = error.__cause__ or error.__context__ or error
        raise WeightsUnavailable(f"Could not download {filename} of {repo_id} ({reason(cause)}) and it is not in the "
                                 f"Hugging Face cache {cache}; with no network, {put}.") from None
    except errors.RevisionNotFoundError:
        if revision is None:
            raise _MissingOnHub(filename) from None
        raise WeightsUnavailable(f"{repo_id} has no revision {revision} on the Hugging Face Hub any more; update "
                                 f"explorer/families/catalogue.py, or {put}.") from None
    except getattr(errors, "RemoteEntryNotFoundError", errors.EntryNotFoundError):
        raise _MissingOnHub(filename) from None
    except (errors.HfHubHTTPError, OSError) as error:
        cause = error.__cause__ or error.__context__ or error
        raise WeightsUnavailable(f"Could not download {filename} of {repo_id} ({reason(cause)}) and it is not in the "
                                 f"Hugging Face cache {cache}; with no network, {put}.") from None


# Without a network huggingface_hub retries each file for ~24 s before it fails: one TCP connection to the Hub's
# server, the name lookup included, is tried first for this long, and a failure kept a while (every file of a model
# is asked for in turn).
PROBE_SECONDS = 1.5
PROBE_KEPT_SECONDS = 30.0
_probes: dict[tuple[str, int], tuple[float, str | None]] = {}  # (host, port) -> (time asked, why unreachable)


def hub_unreachable() -> str | None:
    """Why the Hub's server ($HF_ENDPOINT, else huggingface.co) can't be reached now, in a clause, or None; known
    within PROBE_SECONDS."""
    import socket
    import threading
    import time
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    address = (host, url.port or (80 if url.scheme == "http" else 443))
    asked, why = _probes.get(address, (-1e9, None))
    if why is not None and time.monotonic() - asked < PROBE_KEPT_SECONDS:
        return why  # a Hub that answered is asked again: it may have gone away since
    answer: list[str | None] = []

    def connect():
        try:
            socket.create_connection(address, timeout=PROBE_SECONDS).close()
            answer.append(None)
        except OSError as error:
            answer.append(f"{host}: {reason(error)}")

    probe = threading.Thread(target=connect, daemon=True)  # a name lookup has no timeout of its own
    probe.start()
    probe.join(PROBE_SECONDS)
    why = answer[0] if answer else f"{host} did not answer within {PROBE_SECONDS:g} s"
    _probes[address] = (time.monotonic(), why)
    return why
