"""A tiny real pretraining run: the loss falls and the result is a plain Hugging Face model."""

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`


def test_loss_falls_and_perplexity_is_reported(pretrained):
    out, metrics = pretrained
    losses = [e["loss"] for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert len(losses) >= 5
    assert losses[-1] < 0.7 * losses[0]
    assert 1.0 < metrics["perplexity"] < metrics["parameters"]
    assert metrics["facts_total"] == 12 * 5 and 0 <= metrics["facts_recalled"] <= metrics["facts_total"]
    assert json.loads((out / "metrics.json").read_text())["perplexity"] == metrics["perplexity"]
    assert not out.with_name(out.name + ".partial").exists()


def test_saved_model_loads_and_generates_with_plain_transformers(pretrained):
    out, _ = pretrained
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template and tok.pad_token_id != tok.eos_token_id
    generator = pipeline("text-generation", model=model, tokenizer=tok)
    text = generator("The population of", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith("The population of") and len(text) > len("The population of")
