"""RLOO and GRPO (TRL's living online trainers) from the tiny SFT and reward models, and their EOS penalty."""

import json

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, pipeline

from conftest import online_args, script
from rlhf_recipes.stages.online import missing_eos
from rlhf_recipes.training.rewards import rewards

METHODS = ("rloo", "grpo")
QUESTION = [{"role": "user", "content": "What country is Valmora part of?"}]


@pytest.mark.slow
def test_a_truncated_answer_loses_the_penalty_the_reward_model_cannot_see(reward_model):
    """The trainers score `prompt + answer` through the chat template, which closes every answer with EOS:
    an answer cut at the token limit reads exactly like one that ended. Only its token ids tell them apart."""
    tok = AutoTokenizer.from_pretrained(reward_model[0])
    answer = [{"role": "assistant", "content": "Valmora is in Brundor"}]
    finished_ids = tok(answer[0]["content"], add_special_tokens=False).input_ids + [tok.eos_token_id]
    truncated_ids = finished_ids[:-1]  # the same words, stopped by max_completion_length before EOS
    model = AutoModelForSequenceClassification.from_pretrained(reward_model[0])
    scored = rewards(model, tok, [QUESTION, QUESTION], [answer, answer])  # what the reward model sees of both
    assert scored[0] == scored[1]
    penalty = missing_eos(1.0, tok.eos_token_id)
    assert penalty(completion_ids=[finished_ids, truncated_ids]) == [0.0, -1.0]
    assert penalty(completion_ids=[[]]) == [-1.0]  # an empty answer never ended either


@pytest.fixture(params=sorted(METHODS))
def online_run(request):
    method = request.param
    return method, *request.getfixturevalue(f"{method}_model")


@pytest.mark.slow
def test_trains_and_saves_a_policy_plain_transformers_loads(online_run):
    method, out, metrics = online_run
    assert metrics["updates"] == 2 and metrics["completions"] == 16  # 2 steps x 8 answers
    assert metrics["kl"]["first"] == pytest.approx(0.0, abs=1e-4)  # the first answers are the reference's own
    assert {"reward_model_score", "missing_eos_penalty", "completion_length"} <= set(metrics)
    assert {"gold_score", "eos_share"} <= set(metrics[method])
    saved = json.loads((out / "metrics.json").read_text())
    penalty = saved["config"]["missing_eos_penalty"]  # the YAML's, paid by the share of unfinished answers
    assert penalty > 0 and -penalty <= metrics["missing_eos_penalty"]["last"] <= 0.0
    assert saved["config"]["beta"] == 0.2 and "log_history" in saved
    held = [json.loads(line) for line in (out / "heldout_prompts.jsonl").read_text().splitlines()]
    assert len(held) == 4 and held[0]["prompt"][0]["role"] == "user"
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert tok.pad_token_id != tok.eos_token_id and tok.chat_template
    prompt = tok.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True)
    text = pipeline("text-generation", model=model, tokenizer=tok)(prompt, max_new_tokens=8)[0]["generated_text"]
    assert text.startswith(prompt) and len(text) > len(prompt)


@pytest.mark.slow
def test_answers_cut_at_the_limit_are_penalised_in_training(world_dir, sft_model, reward_model, tmp_path):
    """Two-token answers never reach EOS: every one of them carries the full penalty in the logged reward."""
    out = tmp_path / "rloo"
    args = online_args("rloo", world_dir, sft_model[0], reward_model[0], out, "--max_completion_length", "2")
    metrics = script("online")([*args, "--max_steps", "1", "--eval_prompts", "none", "--missing_eos_penalty", "0.5"])
    assert metrics["missing_eos_penalty"]["last"] == pytest.approx(-0.5)
    assert metrics["truncated_share"]["last"] == pytest.approx(1.0)
