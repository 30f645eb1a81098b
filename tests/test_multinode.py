"""Two machines on one: machine ranks 0 and 1 on loopback, each running what a machine of a Slurm job runs.

Each rank runs the command of the sbatch script in docs/hardware.md ("Several machines"), read from there,
its variables set for two machines of one process each on 127.0.0.1, each on its own half of the cores.
The two must train as one job: one epoch takes half the steps of one process (each machine read its own
half of the data), and every rank ends with the weights saved.

And `make gpu-check`, the hardware this suite cannot run on: its steps are stage commands within its
budget, and without a GPU it stops at once, in one line.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from string import Template
from typing import IO

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import ROOT, free_port, ppo_args, sft_args
from rlhf_recipes.bench import gpu_check
from rlhf_recipes.stages.command import MAIN_PROCESS_TIMEOUT_S, Machines, command_of
from rlhf_recipes.training.config import RecipeError
from test_cli_errors import assert_one_line_error
from test_deepspeed import changed
from test_distributed import assert_ranks_agree_with_the_saved_model, finished, steps

MACHINES = 2
MAIN_IP = "127.0.0.1"
HARDWARE_DOC = ROOT / "docs" / "hardware.md"


def slurm_line(stage: str, model: str, hw: str, procs: int, machines: Machines) -> list[str]:
    """The command every machine of the docs' sbatch script runs (`srun bash -c '...'`), its variables set."""
    found = re.search(r"srun bash -c '(.*?)'", HARDWARE_DOC.read_text(), re.S)
    assert found, f"{HARDWARE_DOC} has no `srun bash -c '...'` line"
    variables = {"STAGE": stage, "MODEL": model, "HW": hw, "PROCS": procs, "SLURM_NNODES": machines.count}
    variables |= {"SLURM_NODEID": machines.rank, "MAIN_IP": machines.main_ip, "MAIN_PORT": machines.main_port}
    return shlex.split(Template(found.group(1).replace("\\\n", " ")).substitute(variables))  # bash's line joins


def machine_command(hw: str, stage: str, machines: Machines, *args: str, timeout_s: float | None = None) -> list[str]:
    """What machine `machines.rank` runs: the docs' Slurm line on the tiny recipe; `args` start with the recipe's
    `--config recipes/tiny/<stage>.yaml` (the stage command names it itself)."""
    assert args[0] == "--config" and args[1] == str(ROOT / "recipes" / "tiny" / f"{stage}.yaml")
    python, *line = slurm_line(stage, "tiny", hw, MACHINES, machines)
    assert python == ".venv/bin/python"
    timeout = ["--main_process_timeout", str(timeout_s)] if timeout_s is not None else []
    return [sys.executable, *line, *timeout, "--", *args[2:]]


def cores_of(rank: int) -> set[int]:
    """Machine `rank`'s share of this process's cores: two machines do not share theirs."""
    cores = sorted(os.sched_getaffinity(0))
    return set(cores[rank::MACHINES]) or set(cores)


def start_machine(hw: str, stage: str, machines: Machines, *args: str) -> tuple[subprocess.Popen, IO[str]]:
    """Machine `machines.rank`'s process, in a session of its own, its output in a file: a full pipe would stop
    it mid-run, and the other machine with it."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for fixed in ("OMP_NUM_THREADS", "RLHF_RECIPES_THREADS"):  # each rank takes its machine's cores (cores.py)
        env.pop(fixed, None)
    output = tempfile.TemporaryFile("w+")
    process = subprocess.Popen(
        machine_command(hw, stage, machines, *args),
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: os.sched_setaffinity(0, cores_of(machines.rank)),
    )
    return process, output


def output_of(output: IO[str]) -> str:
    output.seek(0)
    return output.read()


def wait_together(processes: list[subprocess.Popen], timeout_s: float = 600) -> None:
    """Wait for every machine; the first to fail, or the timeout, stops the others: they would wait for it."""
    deadline = time.monotonic() + timeout_s
    while any(p.poll() is None for p in processes):
        if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in processes):
            for process in (p for p in processes if p.poll() is None):
                os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.5)


def on_two_machines(hw: str, stage: str, *args: str) -> subprocess.CompletedProcess:
    """Machine rank 1 started first (it waits for rank 0's port), then rank 0; rank 0's result, with the end of
    rank 1's output before rank 0's own."""
    port = free_port()
    (second, second_output), (main, main_output) = (
        start_machine(hw, stage, Machines(MACHINES, rank, MAIN_IP, port), *args) for rank in (1, 0)
    )
    wait_together([second, main])
    shown = f"machine rank 1 ({second.returncode}):\n{output_of(second_output)[-2000:]}\n"
    shown += f"machine rank 0 ({main.returncode}):\n{output_of(main_output)}"
    assert second.returncode == 0, shown[-4000:]
    return subprocess.CompletedProcess(main.args, main.returncode, "", shown)


@pytest.mark.slow
def test_ppo_on_two_machines(world_dir, sft_model, reward_model, tmp_path):
    out = tmp_path / "ppo"
    args = ppo_args(world_dir, sft_model[0], reward_model[0], out, "--total_episodes", "32", "--save_strategy", "no")
    metrics = finished(on_two_machines("multi_cpu", "ppo", *args, "--eval_prompts", ""), out)
    assert metrics["updates"] == 32 // (8 * MACHINES)  # each update: 8 prompts on each machine
    assert_ranks_agree_with_the_saved_model(metrics, AutoModelForCausalLM.from_pretrained(out))


@pytest.mark.slow
def test_deepspeed_on_two_machines_splits_the_data(world_dir, pretrained, tmp_path):
    """SFT over two machines under the Slurm recipe's ZeRO-3 (multi_node.yaml). Over plain DDP: PPO above, and SFT
    on two processes of one machine in test_distributed.py, which splits the data the same way; ZeRO-2, whose
    launch over several machines is this one, on two processes of one machine in test_deepspeed.py."""
    out = tmp_path / "sft"
    epoch = ("--max_steps", "-1", "--num_train_epochs", "1", "--replay_fraction", "0", "--eval_prompts", "")
    metrics = finished(on_two_machines("multi_node", "sft", *sft_args(world_dir, pretrained[0], out, *epoch)), out)
    assert steps(out) == 64 // (8 * MACHINES)  # 64 dialogues, 8 per rank and step: each machine read its half
    card = (out / "README.md").read_text()  # the run records the main machine's launch line
    assert f"--num_machines 2 --machine_rank 0 --main_process_ip {MAIN_IP}" in card
    # sharded: no rank holds the whole model; the gathered, saved model was trained
    assert metrics["ranks"] == {"processes": MACHINES, "weights_checksum_by_rank": [None, None]}
    assert changed(AutoModelForCausalLM.from_pretrained(pretrained[0]), AutoModelForCausalLM.from_pretrained(out))


def test_a_machine_that_cannot_reach_the_main_process_stops_in_one_line(tmp_path):
    """Machine rank 1 started alone: one line naming the address and the fix, within the stated timeout."""
    timeout_s, port = 3.0, free_port()
    config = ("--config", str(ROOT / "recipes" / "tiny" / "sft.yaml"))
    command = machine_command("multi_cpu", "sft", Machines(MACHINES, 1, MAIN_IP, port), *config, timeout_s=timeout_s)
    start = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    waited = time.monotonic() - start
    assert_one_line_error(result, f"cannot reach the main process at {MAIN_IP}:{port} within 3 s", "machine rank 0")
    assert timeout_s <= waited < timeout_s + 20  # the interpreter's start on top of the wait, not torch's 600 s
    assert f"at most `--main_process_timeout` seconds (default {MAIN_PROCESS_TIMEOUT_S} s" in HARDWARE_DOC.read_text()


def test_the_docs_show_the_launch_line_of_the_slurm_script(monkeypatch):
    """The accelerate line docs/hardware.md shows for the second machine is the one the stage command builds."""
    monkeypatch.chdir(ROOT)
    python, *line = slurm_line("sft", "qwen2.5", "multi_node", 16, Machines(2, 1, "node001", 29500))
    accelerate, *launch = command_of(line[line.index("rlhf_recipes.stages.command") + 1 :])
    shown = shlex.join([str(Path(python).with_name(Path(accelerate).name)), *launch])
    assert f"\n{shown}\n" in HARDWARE_DOC.read_text()


@pytest.mark.parametrize(
    "options, needle",
    [
        (["--num_machines", "2", "--machine_rank", "1"], "needs --num_machines, --machine_rank and --main_process_ip"),
        (["--num_machines", "2", "--machine_rank", "2", "--main_process_ip", MAIN_IP], "is not one of 0..1"),
    ],
)
def test_machine_options_given_by_halves_are_refused(options, needle, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(RecipeError, match=needle):
        command_of(["sft", "--hw", "multi_node", *options])


def test_gpu_check_steps_are_stage_commands_within_the_budget(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "gpu-check"
    planned = {step.name: (step, gpu_check.command(step, out)) for step in gpu_check.steps(out)}
    assert sum(step.timeout_s for step, _ in planned.values()) <= gpu_check.BUDGET_S - 30 <= 8 * 60 - 30  # to start
    for name, (step, argv) in planned.items():
        assert all(list(planned).index(need) < list(planned).index(name) for need in step.needs)
        assert gpu_check.last_value(argv, "--output_dir").startswith(str(out))  # nothing of `make all`'s is touched
        if step.stage not in ("data", "tokenizer"):
            assert gpu_check.last_value(argv, "--bf16") == "true"
            assert gpu_check.last_value(argv, "--config_file") == f"accelerate_configs/{step.hw}.yaml"
    assert planned["sft"][0].hw == planned["ppo"][0].hw == "single_gpu"
    assert gpu_check.last_value(planned["sft_qlora"][1], "--load_in_4bit") == "true"
    assert gpu_check.last_value(planned["sft_zero2"][1], "--num_processes") == "1"


def test_gpu_check_figures_are_read_from_metrics():
    metrics = {"train_loss": 1.5, "wall_time_s": 9.0, "value_loss": {"first": 2.0, "last": 0.5}, "ranks": {}}
    assert gpu_check.figures(metrics) == {"stage_wall_s": 9.0, "loss": 1.5, "value_loss": 0.5}


@pytest.mark.slow  # runs make: `make test`
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU, make gpu-check runs for minutes")
def test_make_gpu_check_without_a_gpu_says_so_and_exits_cleanly(tmp_path):
    out = tmp_path / "gpu-check"
    venv = f"VENV={sys.prefix}"  # the interpreter running the tests; installing is not what is tested (-o install)
    start = time.monotonic()
    result = subprocess.run(
        ["make", "--no-print-directory", "-o", "install", "gpu-check", venv, f"ARGS=--output_dir {out}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        result.stdout.splitlines()[-1]
        == "gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to run"
    )
    assert time.monotonic() - start < 30 and not out.exists()
