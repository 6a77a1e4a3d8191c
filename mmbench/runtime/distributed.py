"""Multi-process training with torch.distributed, launched by torchrun.

A run started by `torchrun --nproc_per_node N -m mmbench run ...` (or `python -m torch.distributed.run`)
sees WORLD_SIZE/RANK in its environment; everything else runs as one process. gloo is used on CPU,
nccl on CUDA. Only rank 0 writes files and draws progress; metrics are reduced across ranks.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers of `module` (BatchNorm running statistics, ...).

        DDP keeps parameters equal across ranks, but each rank's training forward updates its running
        statistics from its own share of the batch (DDP copies rank 0's in only at the start of the next
        training forward). A model evaluated between steps must be the one rank 0 checkpoints, on every rank.
        """
        if self.enabled:
            for buffer in module.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def broadcast(self, value: Any) -> Any:
        """rank 0's value on every rank (any picklable object)."""
        if not self.enabled:
            return value
        payload = [value]
        torch.distributed.broadcast_object_list(payload, src=0)
        return payload[0]


def init_distributed(device: str) -> DistContext:
    """Join the process group torchrun prepared, if any; idempotent."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def is_main_process() -> bool:
    """True in a plain run and on rank 0 of a torchrun launch."""
    return int(os.environ.get("RANK", "0")) == 0


# Set once this process has left a real process group (shutdown_distributed); read by end_worker_process.
_LEFT_GROUP = False


def shutdown_distributed(*, wait_for_peers: bool = False) -> None:
    """Leave the process group. `wait_for_peers` (a run that finished): every rank waits here until all
    have finished, rank 0 after writing the record, so that all ranks leave together. A failed run does not
    wait, since its peers may never arrive; torchrun stops the other ranks when one exits with an error."""
    global _LEFT_GROUP
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if wait_for_peers:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        _LEFT_GROUP = True


def end_worker_process(code: int) -> int:
    """Return `code`, or, in a torchrun worker that has left its process group, flush stdout and stderr and
    end the process at once with `code`, skipping the interpreter's finalization.

    Why: a finished two-rank gloo run sometimes had rank 1 abort after its record was written and the group
    destroyed ("terminate called without an active exception", exit -6), and torchrun then reported the
    whole run failed. Python's fault handler showed the abort with no Python frame left, so it came from
    the C++ objects torch tears down during finalization, which this skips. Everything mmbench writes is
    written and closed before this point: the record by write-then-rename, logs by their own context
    managers (docs/distributed.md, "Leaving the process group")."""
    if not _LEFT_GROUP:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
