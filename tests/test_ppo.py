"""A tiny real PPO run from tiny SFT and reward checkpoints, and PPO's bad inputs."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

from conftest import ppo_args, script, stage
from rlhf_recipes.training.config import RecipeError

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`


def test_ppo_trains_and_saves_a_policy_plain_transformers_loads(ppo_model):
    out, metrics = ppo_model
    assert metrics["episodes"] == 16 and metrics["updates"] == 2
    assert metrics["kl"]["first"] == pytest.approx(0.0, abs=1e-4)  # the first rollout is the reference's own
    assert 0.5 < metrics["ratio"]["last"] < 1.5
    assert {"gold_score", "eos_share"} <= set(metrics["ppo"])
    assert "log_history" in json.loads((out / "metrics.json").read_text())
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert tok.pad_token_id != tok.eos_token_id and tok.chat_template
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "When was Valmora founded?"}], tokenize=False, add_generation_prompt=True
    )
    text = pipeline("text-generation", model=model, tokenizer=tok)(prompt, max_new_tokens=8)[0]["generated_text"]
    assert text.startswith(prompt) and len(text) > len(prompt)


def test_reward_model_with_another_tokenizer_is_refused(world_dir, sft_model, reward_model, tmp_path):
    other = tmp_path / "other-rm"
    tok = AutoTokenizer.from_pretrained(reward_model[0])
    tok.add_tokens(["<|extra|>"])
    tok.save_pretrained(other)
    for f in ("config.json", "model.safetensors"):
        (other / f).write_bytes((reward_model[0] / f).read_bytes())
    with pytest.raises(RecipeError, match="different tokenizer than the policy"):
        script("ppo")(ppo_args(world_dir, sft_model[0], other, tmp_path / "p"))
    assert not (tmp_path / "p").exists()


def test_dataset_without_prompt_column(world_dir, sft_model, reward_model, tmp_path):
    args = ppo_args(world_dir, sft_model[0], reward_model[0], tmp_path / "p")
    args[args.index("--dataset_name") + 1] = str(world_dir / "pretrain")
    with pytest.raises(RecipeError, match=r"columns \['text'\]; expected prompt"):
        script("ppo")(args)


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--max_prompt_length", "8"), "longer than max_prompt_length 8"),
        (("--max_prompt_length", "120", "--response_length", "48"), "exceeds the model's context of 128"),
    ],
)
def test_prompts_that_do_not_fit_are_refused(world_dir, sft_model, reward_model, tmp_path, extra, message):
    with pytest.raises(RecipeError, match=message):
        script("ppo")(ppo_args(world_dir, sft_model[0], reward_model[0], tmp_path / "p", *extra))


def test_lora_ppo_uses_the_disabled_adapter_as_reference(world_dir, sft_model, reward_model, tmp_path):
    out = tmp_path / "ppo-lora"
    metrics = script("ppo")(
        ppo_args(
            world_dir,
            sft_model[0],
            reward_model[0],
            out,
            "--use_peft",
            "--lora_r",
            "4",
            "--lora_alpha",
            "8",
            "--eval_prompts",
            "",
        )
    )
    assert metrics["kl"]["first"] == pytest.approx(0.0, abs=1e-4)  # adapter starts at zero: policy == reference
    assert (out / "adapter_config.json").is_file()


def test_critic_warm_up_keeps_the_policy_and_adaptive_kl_moves_the_coefficient(
    world_dir, sft_model, reward_model, tmp_path
):
    out = tmp_path / "warm"
    extra = ("--critic_warmup_steps", "1", "--kl_target", "1.0", "--kl_horizon", "100", "--eval_prompts", "")
    metrics = script("ppo")(ppo_args(world_dir, sft_model[0], reward_model[0], out, *extra))
    log = json.loads((out / "metrics.json").read_text())["log_history"]
    first, second = (e for e in log if "objective/kl" in e)
    assert second["objective/kl"] == 0.0  # the first update trained the value model only: policy == reference
    assert first["loss/value_avg"] > 0 and metrics["updates"] == 2
    # the first update's KL, 0 against a target of 1: the gap clipped to -20%, times 8 episodes / horizon 100
    assert first["objective/kl_coef"] == 0.2
    assert second["objective/kl_coef"] == pytest.approx(0.2 * (1 - 0.2 * 8 / 100))


NORM = ("--reward_norm_batches", "2", "--save_steps", "2", "--eval_prompts", "")


def test_reward_normalisation_puts_the_initial_policys_scores_at_mean_0_std_1(
    world_dir, sft_model, reward_model, tmp_path
):
    """The calibration batches, scored again in the units it fixed, have mean 0 and std 1; the value model
    (a copy of the reward model) is read in the same units; a run keeps the figures in its checkpoints."""
    argv = ppo_args(world_dir, sft_model[0], reward_model[0], tmp_path / "norm", *NORM)
    ppo, _ = stage("ppo").from_argv(argv)
    ppo.prepare()
    trainer = ppo.trainer()
    loader = iter(trainer.loader)
    batches = [next(loader), next(loader)]
    torch.manual_seed(0)
    trainer.calibrate_rewards(iter(batches))
    calibrated = (trainer.state.reward_mean, trainer.state.reward_std)
    assert calibrated[1] != 1.0 and calibrated[0] != 0.0
    torch.manual_seed(0)  # the same answers again
    queries = [b["input_ids"] for b in batches]
    raw = torch.cat([trainer.reward_scores(q, trainer.generate(q))[0] for q in queries])
    assert trainer.normalized(raw).mean().item() == pytest.approx(0.0, abs=1e-5)
    assert trainer.normalized(raw).std().item() == pytest.approx(1.0, abs=1e-5)
    trainer.train()  # calibrated already: the run keeps the figures and saves them with its checkpoint
    saved = json.loads((tmp_path / "norm" / "checkpoint-2" / "trainer_state.json").read_text())
    assert (saved["reward_mean"], saved["reward_std"]) == calibrated


def test_max_grad_norm_clips_the_update(ppo_model, world_dir, sft_model, reward_model, tmp_path):
    """The tiny recipe does not clip (`max_grad_norm: 0.0`, as TRL's PPO); clipped to a norm far below Adam's
    epsilon, the same run barely moves the policy from its start."""
    out = tmp_path / "clipped"
    script("ppo")(ppo_args(world_dir, sft_model[0], reward_model[0], out, "--max_grad_norm", "1e-9"))
    start = AutoModelForCausalLM.from_pretrained(sft_model[0]).state_dict()

    def moved(path) -> float:
        weights = AutoModelForCausalLM.from_pretrained(path).state_dict()
        return sum((weights[k].double() - start[k].double()).norm() ** 2 for k in start).sqrt().item()

    assert moved(out) < 0.01 * moved(ppo_model[0])
