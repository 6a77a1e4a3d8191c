"""How many intra-op threads a run's torch uses (`run.threads`).

Measured on the 2-core machines mmbench is developed on (docs/results/step-profile.md): two intra-op threads
make STARS' CPU step at most 1.1x faster than one, at twice the CPU, and 10-70x *slower* as soon as another
process wants a core (OpenMP's threads wait on each other while one of them is descheduled). So on a machine
with at most two usable CPUs the default is one thread, which leaves the other core to the data-loading
worker (`method.train.num_workers`) or to another run; elsewhere torch's own choice stands. An explicit
OMP_NUM_THREADS or MKL_NUM_THREADS in the environment always wins over the default.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

SMALL_MACHINE_CPUS = 2


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else the machine's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads() -> int | None:
    """`run.threads: 0`: None (torch's default) unless the environment says nothing and the machine is small."""
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return None
    return 1 if usable_cpus() <= SMALL_MACHINE_CPUS else None


@contextlib.contextmanager
def run_threads(setting: int) -> Iterator[int]:
    """Set torch's intra-op threads for the run (`setting` > 0: that many; 0: `default_threads`) and restore
    the process's count afterwards, so that an in-process caller (tests, notebooks) keeps its own."""
    import torch

    before = torch.get_num_threads()
    wanted = setting if setting > 0 else default_threads()
    if wanted is not None:
        torch.set_num_threads(wanted)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
