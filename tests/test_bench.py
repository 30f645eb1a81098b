"""`make bench` on the session's tiny stages: the recipe against the plain loop, PPO split into phases."""

import json
import math
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import ROOT, ppo_args, script
from conftest import stage as stage_class
from rlhf_recipes.bench.plain import PlainLoop, causal_lm_loss
from rlhf_recipes.bench.report import write_bench
from rlhf_recipes.bench.timing import Round, interleave

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`


@pytest.fixture
def checkout(world_dir, tokenizer_dir, pretrained, sft_model, reward_model, comparisons, tmp_path, monkeypatch):
    """A checkout after `make all`, as the bench expects to find it: the recipes, data/world, outputs/tiny."""
    (tmp_path / "recipes").symlink_to(ROOT / "recipes")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "world").symlink_to(world_dir)
    outputs = tmp_path / "outputs" / "tiny"
    outputs.mkdir(parents=True)
    stages = {"tokenizer": tokenizer_dir, "pretrain": pretrained[0], "sft": sft_model[0]}
    stages |= {"reward": reward_model[0], "compare": comparisons[0]}
    for stage, path in stages.items():
        (outputs / stage).symlink_to(path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_bench_times_the_recipe_against_a_plain_loop_and_splits_ppo(checkout):
    flags = ["--stages", "sft,grpo,ppo", "--rounds", "2", "--steps_per_round", "3", "--updates_per_round", "1"]
    for stage in ("sft", "grpo", "ppo"):
        script("bench")([*flags, "--stage", stage])
    args = SimpleNamespace(model="tiny", shape="recipe", bf16=False, output_dir="outputs/bench", stages="sft,grpo,ppo")
    args.__dict__.update(rounds=2, steps_per_round=3, updates_per_round=1)
    report = write_bench(args, 1e11, torch.device("cpu"))
    sft, grpo, ppo = report["stages"]
    assert grpo["stage"] == "grpo" and 0.1 < grpo["ratio"]["median"] < 10
    assert grpo["recipe_answers_per_s"]["median"] > 0 and grpo["plain_answers_per_s"]["median"] > 0
    assert sft["stage"] == "sft" and 0.2 < sft["ratio"]["median"] < 5  # same work on both sides
    assert sft["recipe_tokens_per_s"]["median"] > 0 and 0 < sft["mfu"] < 1
    rounds = report["raw"]["sft"]["rounds"]
    assert [len(rounds["recipe"]), len(rounds["plain"])] == [2, 2] and rounds["recipe"][0]["steps"] == 3
    assert ppo["stage"] == "ppo" and "time_ratio" not in ppo  # against TRL 1.12: make ppo-parity
    phases = ppo["phases"]["recipe"]  # read off the trainer's own timers
    assert phases["generation"] > 0 and phases["scoring"] > 0 and phases["training"] > 0
    assert 0 <= phases["other"] < 0.5 * ppo["recipe_s_per_update"]  # the timers cover most of an update
    assert math.isclose(sum(phases.values()), ppo["recipe_s_per_update"], rel_tol=0.3)
    for name in ("bench.json", "bench.md", "bench.png"):
        assert (checkout / "outputs" / "bench" / name).stat().st_size > 0
    assert "| sft |" in (checkout / "outputs" / "bench" / "bench.md").read_text()
    assert json.loads((checkout / "outputs" / "bench" / "bench.json").read_text())["stages"][0]["peak_rss_mib"] > 0


def test_the_plain_loop_trains(pretrained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(pretrained[0])
    tokenizer = AutoTokenizer.from_pretrained(pretrained[0])
    rows = [{"input_ids": tokenizer(f"Fact {i % 4}: the answer is {i % 4}.").input_ids} for i in range(32)]
    loss = causal_lm_loss(tokenizer.pad_token_id)
    loop = PlainLoop(model, rows, 8, loss, bf16=False, learning_rate=1e-3, max_grad_norm=1.0)
    batch = [rows[0], rows[1]]
    before = loss(model, batch, torch.device("cpu")).item()
    assert loop(12).steps == 12
    assert loss(model, batch, torch.device("cpu")).item() < before


def test_rounds_interleave_after_a_warm_up():
    calls = []
    sides = {name: (lambda name=name: calls.append(name) or Round(1.0, 1)) for name in ("a", "b")}
    timed = interleave(sides, rounds=2)
    assert calls == ["a", "b", "a", "b", "a", "b"] and [len(v) for v in timed.values()] == [2, 2]


def test_ppo_samples_with_the_cache_under_activation_checkpointing(world_dir, sft_model, reward_model, tmp_path):
    """In train mode with checkpointing on, GPT-2 gets no past key values while `generate` feeds it one token
    at a time: the PPO trainer switches checkpointing off to sample, and on again to learn."""
    ppo, _ = stage_class("ppo").from_argv(
        ppo_args(world_dir, sft_model[0], reward_model[0], tmp_path / "p", "--activation_checkpointing", "true")
    )
    ppo.prepare()
    trainer = ppo.trainer()
    prompt = torch.tensor([[5, 6, 7, 8, 9, 10]])
    greedy = {"max_new_tokens": 8, "min_new_tokens": 8, "do_sample": False}
    plain = AutoModelForCausalLM.from_pretrained(sft_model[0]).eval().generate(prompt, **greedy)
    lengths = []
    with trainer._generating_policy() as policy:
        policy.transformer.wte.register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[1]))
        assert policy.generate(prompt, **greedy).tolist() == plain.tolist()
    assert lengths == [6] + [1] * 7  # the prompt once, then one cached token per step
    assert trainer.accelerator.unwrap_model(trainer.model).policy.is_activation_checkpointing  # on again
