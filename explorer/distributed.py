"""Several processes under torchrun: which one this is, the process group, and the device each one uses.

torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for every process it starts. With WORLD_SIZE
above 1 `start` joins the process group (gloo on CPU, nccl on GPU, each process on cuda:LOCAL_RANK); otherwise this
is one process, rank 0 of 1, and nothing here touches torch.distributed, so a plain `python -m ...` run is unchanged.

    torchrun --standalone --nproc-per-node=2 -m explorer.survey ...          # one machine, two processes
    torchrun --nnodes=2 --node-rank=0 --nproc-per-node=8 \\
             --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 -m explorer.train ...   # and --node-rank=1 on the other
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# Long enough for the slowest process to finish its share (a survey's faithfulness curves, an epoch's evaluation)
# while the others wait at the next collective; torch's default is 30 minutes.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Processes:
    """This process's place among those torchrun started."""

    rank: int = 0  # 0..world-1, over all machines
    world: int = 1  # processes in all
    local_rank: int = 0  # 0..(processes on this machine)-1: which GPU it uses
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that prints, shows progress and writes the outputs."""
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        if not self.distributed:
            return None
        return "nccl" if self.device.type == "cuda" else "gloo"

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather(self, value) -> list:
        """Every process's `value` (any picklable object), in rank order; [value] for one process."""
        if not self.distributed:
            return [value]
        gathered = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def gather(self, value) -> list | None:
        """Every process's `value` in rank order on rank 0; None on the others."""
        if not self.distributed:
            return [value]
        gathered = [None] * self.world if self.main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Element-wise sums over the processes, in float64 (exact for counts)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()


def launched() -> tuple[int, int, int]:
    """(rank, world, local rank) from torchrun's environment; (0, 1, 0) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    return rank, world, local_rank


def pick_device(device: str | None, local_rank: int = 0) -> torch.device:
    """"auto" (or None): cuda when there is a GPU, else cpu. "cuda" under torchrun: cuda:LOCAL_RANK."""
    name = (device or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    return torch.device(name)


def start(device: str | None = "auto") -> Processes:
    """This process's rank and device; joins the process group when torchrun started more than one process."""
    rank, world, local_rank = launched()
    chosen = pick_device(device, local_rank)
    processes = Processes(rank, world, local_rank, chosen)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)  # nccl's object collectives use the current device
    if processes.distributed and not dist.is_initialized():
        dist.init_process_group(processes.backend, timeout=TIMEOUT)
    return processes


def finish(processes: Processes) -> None:
    """Leave the process group (after a last barrier, so that no process exits while another still talks to it)."""
    if processes.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def abandon(processes: Processes) -> None:
    """Leave the process group after an error, without the last barrier (the others may never reach it)."""
    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()
