"""Where a survey's per-image records live while it runs: shard files to resume from, and the split and merge over
the processes of a torchrun.

Per-image records are appended to JSON-lines shard files (one per process) in the work folder and flushed after every
batch; on a restart the images already in a shard are skipped, a half-written last line is dropped, and the merge keeps
one record per image index, so nothing is counted twice. The work folder's manifest.json names the model (with a
digest of its weights), the data and the faithfulness settings; a work folder of another survey is refused, not mixed
in.

Under torchrun the images still to do are split across the processes (the k-th goes to rank k mod world), and the
per-image records are gathered to rank 0 through torch.distributed (no shared file system needed), which merges them
in index order. So the merged records do not depend on the number of processes.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..distributed import Processes
from ..model import ViT
from .images import Images
from .records import image_records
from .summary import SurveyError


def weights_digest(model: torch.nn.Module) -> str:
    """A short digest of every parameter and buffer (names, shapes and bytes): which weights a survey is of."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def read_shards(work: Path) -> dict[int, dict]:
    """Every complete record in work/shard-*.jsonl, by image index (the first record of an index wins)."""
    records: dict[int, dict] = {}
    for path in sorted(work.glob("shard-*.jsonl")):
        with path.open("r", encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # a line cut short by a kill: ignored, and cut off before anything is appended
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("index"), int):
                    records.setdefault(record["index"], record)
    return records


class Shard:
    """This process's shard file, opened for appending after cutting off a half-written last line."""

    def __init__(self, work: Path, rank: int):
        self.path = work / f"shard-{rank}.jsonl"
        if self.path.exists():
            data = self.path.read_bytes()
            complete = data[: data.rfind(b"\n") + 1]
            if len(complete) != len(data):
                self.path.write_bytes(complete)
        self.file = self.path.open("a", encoding="utf-8")

    def append(self, records: list[dict]) -> None:
        self.file.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def check_manifest(work: Path, manifest: dict) -> None:
    """Write work/manifest.json, or check that the one there describes this survey (else refuse to mix results)."""
    path = work / "manifest.json"
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except ValueError:
            existing = None
        if existing != manifest:
            differs = sorted(k for k in manifest if not isinstance(existing, dict) or existing.get(k) != manifest[k])
            what = ", ".join(differs) or "its manifest"
            raise SurveyError(f"The work folder {work} holds the shards of another survey ({what} differ); delete it "
                              f"or choose another --work.")
        return
    temporary = path.with_name(f"manifest.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, path)  # atomic: processes that write it at once write the same text


def _compact(record: dict) -> dict:
    """A record as held in memory until the merge: its per-layer numbers and rollout map as float64 arrays, the same
    values in a quarter of the memory of lists of Python floats (a survey of many images must not grow with them)."""
    arrays = ("mean_distance", "rollout", "head_importance")
    return {k: np.asarray(v, dtype=np.float64) if k in arrays else v for k, v in record.items()}


def survey_images(model: ViT, images: Images, n: int, work: Path, processes: Processes, batch_size: int,
                  faithfulness_images: int, steps: int | None,
                  after_batch: Callable[[list[dict]], None] | None = None,
                  heads: bool = True) -> tuple[list[dict] | None, dict]:
    """The records of the first n images, resumed from the shards in `work`, this process's share computed batch by
    batch (`after_batch` is called with each batch's records). Rank 0 returns them in index order, the others None;
    every process returns the work done: {"computed": images computed, "compute_s": the slowest process's seconds}."""
    records = {i: _compact(r) for i, r in read_shards(work).items() if i < n}
    done = set().union(*processes.all_gather(sorted(records)))  # what every process found: one split for all
    todo = [i for i in range(n) if i not in done]
    mine = todo[processes.rank::processes.world]
    shard = Shard(work, processes.rank)
    start = time.time()
    bar = tqdm(total=len(mine), desc=f"survey (rank 0 of {processes.world})" if processes.distributed else "survey",
               unit="img", disable=not processes.main, mininterval=1, file=sys.stdout)
    try:
        for b in range(0, len(mine), batch_size):
            batch = mine[b:b + batch_size]
            new = image_records(model, images, batch, faithfulness_images, steps, heads)
            shard.append(new)
            records.update((r["index"], _compact(r)) for r in new)
            bar.update(len(batch))
            if after_batch is not None:
                after_batch(new)
    finally:
        bar.close()
        shard.close()
    shares = processes.all_gather((len(mine), time.time() - start))  # every process's (images, seconds)
    work_done = {"computed": sum(count for count, _ in shares),
                 "compute_s": max(seconds for _, seconds in shares)}  # the slowest process's: the wall time of the work
    gathered = processes.gather(records)
    if not processes.main:
        return None, work_done
    merged: dict[int, dict] = {}
    for part in gathered:
        for i, record in part.items():
            merged.setdefault(i, record)  # one record per image, whichever process holds it
    missing = [i for i in range(n) if i not in merged]
    if missing:
        raise SurveyError(f"{len(missing)} images have no result (first: {missing[0]}); run the survey again.")
    return [merged[i] for i in range(n)], work_done
