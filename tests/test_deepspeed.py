"""DeepSpeed ZeRO-2, ZeRO-3 and ZeRO-3 with CPU offload, for real, on two CPU processes (gloo).

The same recipe YAMLs as everywhere; only the accelerate config changes. Under ZeRO-3 no rank holds
the whole model, so the check is that the gathered, saved model loads and was trained.
"""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from conftest import launch, ppo_args, reward_args, sft_args
from rlhf_recipes.training.launch import weights_checksum

pytestmark = pytest.mark.slow


def finished(result, out):
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


def changed(start, saved) -> bool:
    return weights_checksum(saved) != pytest.approx(weights_checksum(start), rel=1e-7)


@pytest.mark.parametrize("config", ["deepspeed_zero2", "deepspeed_zero3_offload"])  # plain ZeRO-3: reward, PPO
def test_sft_under_deepspeed(config, world_dir, pretrained, tmp_path):
    out = tmp_path / "sft"
    args = sft_args(world_dir, pretrained[0], out, "--max_steps", "6", "--eval_prompts", "")
    ops = tmp_path / "torch_extensions"  # ZeRO-3 offload builds CPU Adam: the venv's own folder keeps it
    env = {"TORCH_EXTENSIONS_DIR": str(ops)} if config == "deepspeed_zero2" else {}
    metrics = finished(launch(config, "sft", *args, processes=2, env=env), out)
    saved = AutoModelForCausalLM.from_pretrained(out)
    assert metrics["ranks"]["processes"] == 2 and metrics["train_loss"] < 20
    assert changed(AutoModelForCausalLM.from_pretrained(pretrained[0]), saved)
    if config == "deepspeed_zero2":  # weights are replicated under ZeRO-2: every rank holds the saved ones
        first, second = metrics["ranks"]["weights_checksum_by_rank"]
        assert first == second == pytest.approx(weights_checksum(saved), rel=1e-9)
        # nor did DeepSpeed compile its CPU all-reduce op for inference (a minute of g++; compat.py)
        assert not ops.exists() or not any(ops.iterdir()), sorted(p.name for p in ops.iterdir())


@pytest.mark.parametrize("config", ["deepspeed_zero2", "deepspeed_zero3"])
def test_reward_model_under_deepspeed(config, world_dir, sft_model, tmp_path):
    out = tmp_path / "reward"
    args = reward_args(sft_model[0], world_dir / "preferences", out, "--max_steps", "20")
    metrics = finished(launch(config, "reward", *args, processes=2), out)
    assert metrics["ranks"]["processes"] == 2
    if config == "deepspeed_zero3":  # sharded weights: no rank can vouch for the whole model
        assert metrics["ranks"]["weights_checksum_by_rank"] == [None, None]
    assert metrics["heldout"]["accuracy"] > 0.5 and metrics["reward_std_before"] > 0
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_labels == 1


def test_ppo_under_zero3_generates_with_gathered_weights(world_dir, sft_model, reward_model, tmp_path):
    out = tmp_path / "ppo"
    args = ppo_args(world_dir, sft_model[0], reward_model[0], out, "--total_episodes", "32", "--save_strategy", "no")
    metrics = finished(launch("deepspeed_zero3", "ppo", *args, processes=2), out)
    assert metrics["updates"] == 2 and metrics["kl"]["first"] == pytest.approx(0.0, abs=1e-4)
    assert changed(AutoModelForCausalLM.from_pretrained(sft_model[0]), AutoModelForCausalLM.from_pretrained(out))
    assert "gold_score" in metrics["ppo"]


def test_ppo_under_zero2_resumes_bit_identically(world_dir, sft_model, reward_model, tmp_path):
    """A checkpoint under DeepSpeed is the engine's own (accelerate's save_state); a run resumed from update 1
    ends with the uninterrupted run's weights, to the bit."""
    out = tmp_path / "ppo"
    args = ppo_args(world_dir, sft_model[0], reward_model[0], out, "--total_episodes", "32", "--save_steps", "1")
    args += ["--eval_prompts", "", "--world_file", ""]
    metrics = finished(launch("deepspeed_zero2", "ppo", *args, processes=2), out)
    assert metrics["updates"] == 2
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed.with_name("resumed.partial"), ignore=shutil.ignore_patterns("checkpoint-2"))
    args[args.index("--output_dir") + 1] = str(resumed)
    result = launch("deepspeed_zero2", "ppo", *args, processes=2)
    assert "resuming from checkpoint-1" in result.stderr and finished(result, resumed)["updates"] == 2
    before, after = load_file(out / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
