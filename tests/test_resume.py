"""A training stage killed with SIGKILL resumes from its last complete checkpoint, to the same weights.

For each training stage: an uninterrupted run (the reference), then the same command run as `make <stage>`
runs it (on one CPU process, `python -m rlhf_recipes.stages.command`, here forked from a warm interpreter:
tests/forkserver.py), killed with SIGKILL once a checkpoint is complete, and run again. The second run
must say where it resumes, skip a checkpoint that was still being written, and end with the reference's
step counter and, bit for bit, its weights. Bit-identity needs one thread on both sides
(RLHF_RECIPES_THREADS=1 for the command and the run in process): float sums reduced across a different
number of threads differ in the last bits.
"""

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import (
    LAUNCH_ENV,
    ROOT,
    launch_command,
    ppo_args,
    pretrain_args,
    reward_args,
    script,
    sft_args,
    warm_server,
)
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.outputs import CHECKPOINT_DONE, MANIFEST

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`

TIMING_KEYS = {"eps", "train_runtime", "train_samples_per_second", "train_steps_per_second", "eval_runtime"}
TIMING_KEYS |= {"eval_samples_per_second", "eval_steps_per_second"}
# transformers' end-of-training `train_loss` averages the steps of the last run only (upstream behaviour)
NOT_COMPARED = TIMING_KEYS | {"train_loss", "time/generation_s", "time/scoring_s", "time/training_s"}


@pytest.fixture
def one_thread(monkeypatch):
    """One thread here and in the stage run here, whatever this worker's share of the cores (cores.py)."""
    monkeypatch.setenv("RLHF_RECIPES_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def stage_args(stage, world_dir, tokenizer_dir, pretrained, sft_model, reward_model, out) -> list[str]:
    """Each stage's test arguments, with a checkpoint every few steps and no evaluation that is not needed."""
    if stage == "pretrain":
        return pretrain_args(world_dir, tokenizer_dir, out, "--max_steps", "80", "--world_file", "") + [
            *("--save_strategy", "steps", "--save_steps", "20"),
        ]
    if stage == "sft":
        return sft_args(world_dir, pretrained[0], out, "--world_file", "", "--eval_prompts", "") + [
            *("--max_steps", "40", "--save_strategy", "steps", "--save_steps", "10"),
        ]
    if stage == "reward":
        return reward_args(sft_model[0], world_dir / "preferences", out) + [
            *("--max_steps", "40", "--save_strategy", "steps", "--save_steps", "10", "--normalize_rewards", "false"),
        ]
    return ppo_args(world_dir, sft_model[0], reward_model[0], out, "--world_file", "", "--eval_prompts", "") + [
        *("--total_episodes", "32", "--save_strategy", "steps", "--save_steps", "1"),
    ]


MAINS = {stage: script(stage) for stage in ("pretrain", "sft", "reward", "ppo")}


def launch_and_kill(stage: str, args: list[str], partial: Path) -> str:
    """Run the stage as `make` does (`python -m rlhf_recipes.stages.command ...`, forked from a warm interpreter)
    and SIGKILL it once a checkpoint is complete."""
    python, _, module, *command = launch_command("cpu", stage, *args)
    env = {**os.environ, **LAUNCH_ENV, "RLHF_RECIPES_THREADS": "1"}
    running = warm_server().start(module, command, ROOT, env=env, module=True)
    (pid,) = running.pids
    deadline = time.monotonic() + 300
    while not list(partial.glob(f"checkpoint-*/{CHECKPOINT_DONE}")):
        if not alive(pid) or time.monotonic() > deadline:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
            pytest.fail(f"{stage} ended before its first checkpoint: {running.wait().stderr[-2000:]}")
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    assert running.wait().returncode == -signal.SIGKILL
    done = sorted((p.parent for p in partial.glob(f"checkpoint-*/{CHECKPOINT_DONE}")), key=lambda p: int(p.name[11:]))
    return done[-1].name


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def fake_half_written(partial: Path, complete: str) -> str:
    """A checkpoint as a crash during its save leaves it: weights cut short, never marked complete."""
    step = int(complete.split("-")[1]) + 1000
    half = partial / f"checkpoint-{step}"
    shutil.copytree(partial / complete, half)
    (half / CHECKPOINT_DONE).unlink()
    weights = half / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return half.name


def assert_same_weights(a: Path, b: Path) -> None:
    left, right = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert left.keys() == right.keys()
    different = [k for k in left if not torch.equal(left[k], right[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[0]}"


def steps_and_losses(out: Path, stage: str) -> tuple:
    """The step counter and the logged training curve, without wall-clock timings."""
    if stage == "ppo":
        metrics = json.loads((out / "metrics.json").read_text())
        history, step = metrics["log_history"], (metrics["updates"], metrics["episodes"])
    else:
        state = json.loads((out / "trainer_state.json").read_text())
        history, step = state["log_history"], state["global_step"]
    return step, [{k: v for k, v in e.items() if k not in NOT_COMPARED} for e in history]


@pytest.mark.parametrize("stage", ["pretrain", "sft", "reward", "ppo"])
def test_a_killed_run_resumes_to_the_weights_of_an_uninterrupted_one(
    stage, world_dir, tokenizer_dir, pretrained, sft_model, reward_model, tmp_path, one_thread, capsys
):
    def args(out):
        return stage_args(stage, world_dir, tokenizer_dir, pretrained, sft_model, reward_model, out)

    reference = tmp_path / "reference"
    MAINS[stage](args(reference))

    out = tmp_path / "resumed"
    partial = out.with_name("resumed.partial")
    last = launch_and_kill(stage, args(out), partial)
    assert not out.exists()
    half = fake_half_written(partial, last)
    capsys.readouterr()
    MAINS[stage](args(out))
    log = capsys.readouterr().err
    assert f"resuming from {last} " in log and f"removing {half}" in log, log
    assert not partial.exists() and (out / MANIFEST).is_file()
    assert_same_weights(reference, out)
    assert steps_and_losses(out, stage) == steps_and_losses(reference, stage)


def test_resume_false_starts_over_and_other_settings_are_refused(world_dir, tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "pretrain"
    args = stage_args("pretrain", world_dir, tokenizer_dir, None, None, None, out)
    script("pretrain")(args)
    partial = out.with_name("pretrain.partial")
    out.rename(partial)  # as a run killed after its last checkpoint leaves it
    with pytest.raises(RecipeError, match=r"other settings \(learning_rate: 0.002 -> 0.001\).*--resume false"):
        script("pretrain")(args + ["--learning_rate", "1e-3"])
    assert (partial / "checkpoint-80" / CHECKPOINT_DONE).is_file()  # refused: nothing removed
    capsys.readouterr()
    script("pretrain")(args + ["--learning_rate", "1e-3", "--resume", "false"])
    assert "resuming" not in capsys.readouterr().err
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 80 and state["log_history"][0]["step"] == 5  # trained from step 0
