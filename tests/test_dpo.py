"""DPO (TRL's DPOTrainer) from the tiny SFT model on ranked pairs, the SFT model as reference."""

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

pytestmark = pytest.mark.slow


def test_dpo_learns_the_pairs_and_saves_a_policy_plain_transformers_loads(dpo_model):
    out, metrics = dpo_model
    assert metrics["updates"] == 12 and metrics["pairs_seen"] == 96
    assert metrics["world"] is not None and {"gold_score", "eos_share"} <= set(metrics["dpo"])
    log = json.loads((out / "metrics.json").read_text())["log_history"]
    losses = [e["loss"] for e in log if "loss" in e]
    accuracies = [e["rewards/accuracies"] for e in log if "rewards/accuracies" in e]
    assert len(losses) == 6 and losses[-1] < losses[0]  # the DPO loss falls from log 2 = its value at the reference
    assert accuracies[-1] > 0.5  # the implicit reward ranks the training pairs
    assert {"accuracy", "margin", "loss"} <= set(metrics["heldout"])  # too few held-out pairs here to rank
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert tok.pad_token_id != tok.eos_token_id and tok.chat_template
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What country is Valmora part of?"}], tokenize=False, add_generation_prompt=True
    )
    text = pipeline("text-generation", model=model, tokenizer=tok)(prompt, max_new_tokens=8)[0]["generated_text"]
    assert text.startswith(prompt) and len(text) > len(prompt)
