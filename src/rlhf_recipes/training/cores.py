"""Jobs that share the cores share the threads.

Two stages side by side on 2 cores, each with a thread per core, oversubscribe them: OpenMP threads spin
waiting for each other, and pretraining fell from ~7.5 to ~0.5 steps/s with a second stage beside it. So
every process of this project that computes on the CPU (a stage, each rank of one, the comparisons, the
report, `make eval`) signs in to one folder per user while it works and takes its share: the cores divided
by the processes signed in. It looks again every few seconds of training (`trainers.ShareCores`), so a job
that starts or ends beside it moves the share. It imports no transformers: the stages that train no model
reach it (through their staged output) and start without it.

`RLHF_RECIPES_THREADS=n` fixes the count: n cores for the run, split between its ranks on this machine.
OMP_NUM_THREADS does not: the launchers set it themselves (accelerate to the physical cores, torchrun to 1
per rank), so it does not say what the user chose. A run is bit-for-bit reproducible at a fixed thread
count: the tests fix it, and so can a user comparing two runs to the last bit.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import torch

JOBS = Path(tempfile.gettempdir()) / f"rlhf-recipes-jobs-{os.getuid()}"
RECHECK_S = 5.0
_signed_in = 0  # nested sign-ins of this process (a report inside a test's stage): one entry, removed last


def cores() -> int:
    return len(os.sched_getaffinity(0))


def ranks_here() -> int:
    """This run's processes on this machine."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def fixed_threads() -> int | None:
    """The threads of this process that the user fixed, if any."""
    fixed = os.environ.get("RLHF_RECIPES_THREADS")
    return max(1, int(fixed) // ranks_here()) if fixed else None


def _alive(entry: Path) -> bool:
    """A signed-in process still running: its pid exists and started when the entry says (pids are reused)."""
    try:
        return psutil.Process(int(entry.name)).create_time() == float(entry.read_text())
    except (ValueError, OSError, psutil.Error):
        return False


def jobs_signed_in() -> int:
    return sum(_alive(entry) for entry in JOBS.glob("[0-9]*")) if JOBS.is_dir() else 0


def fair_share() -> int:
    """This process's threads: the fixed count, else the cores over the jobs signed in (this one included) and
    never more than the cores over this run's own ranks here (they may not have signed in yet)."""
    return fixed_threads() or max(1, cores() // max(jobs_signed_in(), ranks_here(), 1))


def share_now() -> int:
    """Set torch's threads to the fair share; return it."""
    threads = fair_share()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def signed_in() -> bool:
    """Whether this process computes inside `sharing_cores` (only then do other jobs move its share)."""
    return _signed_in > 0


@contextmanager
def sharing_cores() -> Iterator[None]:
    """Signed in while the block computes, at its fair share of the cores; a GPU run computes elsewhere."""
    global _signed_in
    if torch.cuda.is_available():
        yield
        return
    entry = JOBS / str(os.getpid())
    if _signed_in == 0:
        JOBS.mkdir(mode=0o700, exist_ok=True)
        entry.write_text(str(psutil.Process().create_time()))
    _signed_in += 1
    try:
        share_now()
        yield
    finally:
        _signed_in -= 1
        if _signed_in == 0:
            entry.unlink(missing_ok=True)
