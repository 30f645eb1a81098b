"""Jobs that share the cores share the threads: each process signed in takes the cores over the processes signed
in, looks again as others come and go, and keeps a count the user fixed."""

import os
import subprocess
import sys

import psutil
import pytest
import torch

from conftest import script, sft_args
from rlhf_recipes.training import cores, trainers

CORES = len(os.sched_getaffinity(0))


@pytest.fixture
def jobs(tmp_path, monkeypatch):
    """An empty sign-in folder, and no fixed count: the share is decided by who else is signed in."""
    monkeypatch.setattr(cores, "JOBS", tmp_path / "jobs")
    for name in ("RLHF_RECIPES_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(CORES)  # not the test worker's share: a stage that did not share would keep every core
    yield tmp_path / "jobs"
    torch.set_num_threads(threads)


@pytest.fixture
def another_job(jobs):
    """A second process of the project, signed in while it sleeps."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    jobs.mkdir(exist_ok=True)
    entry = jobs / str(process.pid)
    entry.write_text(str(psutil.Process(process.pid).create_time()))
    yield entry
    process.kill()
    process.wait()


def test_alone_a_job_takes_every_core(jobs):
    with cores.sharing_cores():
        assert cores.jobs_signed_in() == 1 and torch.get_num_threads() == CORES
    assert not list(jobs.iterdir())  # signed out


def test_two_jobs_split_the_cores(another_job):
    with cores.sharing_cores():
        assert cores.jobs_signed_in() == 2 and torch.get_num_threads() == max(1, CORES // 2)


def test_entries_of_finished_processes_are_not_counted(jobs, another_job):
    (jobs / "999999999").write_text("1.0")  # no such process
    another_job.write_text("1.0")  # its pid, but a process started at another time: the pid was reused
    assert cores.jobs_signed_in() == 0


def test_a_job_that_leaves_gives_its_cores_back(another_job, monkeypatch):
    monkeypatch.setattr(cores, "RECHECK_S", 0.0)
    with cores.sharing_cores():
        watch = trainers.ShareCores()
        another_job.unlink()
        watch.on_step_end(None, None, None)
        assert torch.get_num_threads() == CORES
        assert watch.threads_used == {max(1, CORES // 2), CORES}


def test_nested_sign_ins_are_one_entry_removed_last(jobs):
    with cores.sharing_cores():
        with cores.sharing_cores():  # a report inside a stage of the same process
            pass
        assert cores.jobs_signed_in() == 1
    assert cores.jobs_signed_in() == 0


def test_a_fixed_count_is_kept(jobs, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what torchrun sets for every rank: not the user's choice
    assert cores.fair_share() == max(1, CORES // 2)  # the run's ranks split the cores
    monkeypatch.setenv("RLHF_RECIPES_THREADS", "4")  # the user's cores for the run, split between its 2 ranks
    assert cores.fair_share() == 2


@pytest.mark.slow  # trains SFT: `make test`
@pytest.mark.skipif(CORES < 2, reason="one core: every share is one thread")
def test_a_stage_beside_another_job_trains_on_its_share(another_job, world_dir, pretrained, tmp_path):
    metrics = script("sft")(sft_args(world_dir, pretrained[0], tmp_path / "sft"))
    assert metrics["cpu_threads"] == [CORES // 2]
    assert not (cores.JOBS / str(os.getpid())).exists()  # signed out when the stage ended
