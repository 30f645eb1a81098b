"""Every stage through `accelerate launch` with two processes, as `make <stage> HW=multi_cpu` runs it.

Data parallel ranks must split the data (one epoch takes half the steps of one process) and end
with identical weights, the ones the stage saved.
"""

import json
import math
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from conftest import launch, ppo_args, pretrain_args, reward_args, sft_args
from rlhf_recipes.training.launch import weights_checksum
from rlhf_recipes.training.outputs import CHECKPOINT_DONE

pytestmark = pytest.mark.slow


def finished(result, out):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def assert_ranks_agree_with_the_saved_model(metrics, saved_model):
    ranks = metrics["ranks"]
    assert ranks["processes"] == 2
    first, second = ranks["weights_checksum_by_rank"]
    assert first == second
    assert weights_checksum(saved_model) == pytest.approx(first, rel=1e-9)


def steps(out):
    return json.loads((out / "trainer_state.json").read_text())["global_step"]


def test_pretraining_on_two_processes(world_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "pretrain"
    args = pretrain_args(world_dir, tokenizer_dir, out, "--max_steps", "10", "--world_file", "")
    metrics = finished(launch("multi_cpu", "pretrain", *args, forked=False), out)  # through the launcher itself
    assert_ranks_agree_with_the_saved_model(metrics, AutoModelForCausalLM.from_pretrained(out))
    assert metrics["trained_tokens"] == 10 * 2 * 8 * 128  # steps x ranks x per-device batch x context
    launched = r"\naccelerate launch --main_process_port \d+ --quiet --config_file accelerate_configs/multi_cpu.yaml "
    launched += r"recipes/pretrain\.py --config recipes/tiny/pretrain\.yaml --dataset_name "
    assert re.search(launched, (out / "README.md").read_text())  # the card's command is the launcher's, whole
    writers = {p.name.split(".")[-2] for p in (out / "runs").glob("*/events.out.tfevents.*")}  # ...<pid>.<n>
    assert len(writers) == 1  # one process (rank 0) draws the curves


def test_sft_on_two_processes_splits_the_data(world_dir, pretrained, tmp_path):
    out = tmp_path / "sft"
    args = sft_args(
        world_dir,
        pretrained[0],
        out,
        "--max_steps",
        "-1",
        "--num_train_epochs",
        "1",
        "--replay_fraction",
        "0",
        "--eval_prompts",
        "",
    )
    metrics = finished(launch("multi_cpu", "sft", *args), out)
    assert steps(out) == math.ceil(64 / (8 * 2))  # 64 dialogues, 8 per rank and step
    assert_ranks_agree_with_the_saved_model(metrics, AutoModelForCausalLM.from_pretrained(out))


def test_reward_model_on_two_processes_splits_the_data(world_dir, sft_model, tmp_path):
    out = tmp_path / "reward"
    args = reward_args(sft_model[0], world_dir / "preferences", out, "--normalize_rewards", "false")
    metrics = finished(launch("multi_cpu", "reward", *args), out)
    assert steps(out) == math.ceil(800 / (8 * 2))
    assert_ranks_agree_with_the_saved_model(metrics, AutoModelForSequenceClassification.from_pretrained(out))
    assert metrics["heldout"]["accuracy"] > 0.5


def test_ppo_on_two_processes(world_dir, sft_model, reward_model, tmp_path):
    out = tmp_path / "ppo"
    args = ppo_args(world_dir, sft_model[0], reward_model[0], out, "--total_episodes", "32", "--save_steps", "1")
    metrics = finished(launch("multi_cpu", "ppo", *args), out)
    assert metrics["updates"] == 32 // (8 * 2)  # each update: 8 prompts on each rank
    assert (out / "checkpoint-2" / CHECKPOINT_DONE).is_file()  # a checkpoint under DDP (trl#2375)
    # as a run killed after update 1 leaves it: resumed on two processes, it ends with the same weights
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed.with_name("resumed.partial"), ignore=shutil.ignore_patterns("checkpoint-2"))
    args[args.index("--output_dir") + 1] = str(resumed)
    result = launch("multi_cpu", "ppo", *args)
    assert "resuming from checkpoint-1" in result.stderr and finished(result, resumed)["updates"] == 2
    before, after = load_file(out / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert_ranks_agree_with_the_saved_model(metrics, AutoModelForCausalLM.from_pretrained(out))
    assert "gold_score" in metrics["ppo"]


def test_lora_ppo_on_two_processes(world_dir, sft_model, reward_model, tmp_path):
    """The reference is the adapter switched off, found through the DDP wrapper (TRL 1.12 could not: trl#2375)."""
    out = tmp_path / "ppo"
    args = ppo_args(
        world_dir, sft_model[0], reward_model[0], out, "--use_peft", "--lora_r", "4", "--total_episodes", "32"
    )
    metrics = finished(launch("multi_cpu", "ppo", *args, "--eval_prompts", ""), out)
    assert metrics["updates"] == 2 and metrics["kl"]["first"] == pytest.approx(0.0, abs=1e-4)
    assert (out / "adapter_config.json").is_file()
    assert len(set(metrics["ranks"]["weights_checksum_by_rank"])) == 1  # both ranks hold the same weights


def test_fsdp_without_a_gpu_is_refused_clearly(world_dir, pretrained, tmp_path):
    result = launch("fsdp", "sft", *sft_args(world_dir, pretrained[0], tmp_path / "sft"), processes=2)
    assert result.returncode != 0
    assert "error: FSDP needs GPUs here" in result.stderr and "HW=multi_cpu" in result.stderr
    assert not (tmp_path / "sft").exists()
