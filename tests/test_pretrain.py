"""A tiny real pretraining run: the loss falls and the result is a plain Hugging Face model."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, pipeline

from conftest import pretrain_args, script, stage
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.optimizers import split_for_muon

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


def test_muon_steps_the_blocks_matrices_and_follows_the_schedule(world_dir, tokenizer_dir, tmp_path):
    """Muon takes the blocks' 2-D weights only, AdamW the embeddings (tied to the head), biases and norms; the
    Trainer's warm-up and decay reach both (accelerate reloads the optimizer's state on prepare, which once
    left Muon at a constant rate)."""
    args = pretrain_args(world_dir, tokenizer_dir, tmp_path / "pretrain", "--max_steps", "8", "--warmup_steps", "4")
    pretraining, _ = stage("pretrain").from_argv([*args, "--muon_learning_rate", "0.01", "--learning_rate", "0.002"])
    pretraining.prepare()
    matrices, others = split_for_muon(pretraining.model)
    names = {id(p): n for n, p in pretraining.model.named_parameters()}
    assert matrices and all(".h." in names[id(p)] and p.ndim == 2 for p in matrices)
    assert any("wte" in names[id(p)] for p in others) and any("ln_f" in names[id(p)] for p in others)
    seen = []

    class Rates(TrainerCallback):
        def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
            inner = optimizer.optimizer
            muon, adamw = inner.muon.param_groups[0]["lr"], inner.adamw.param_groups[0]["lr"]
            seen.append((muon, adamw, *lr_scheduler.get_last_lr()))

    before = [p.detach().clone() for p in matrices]
    pretraining.trainer(callbacks=[Rates()]).train()
    assert [(m, a) for m, a, _, _ in seen] == [(m, a) for _, _, m, a in seen]
    assert seen[1][0] == pytest.approx(5 * seen[1][1]) and max(m for m, *_ in seen) == pytest.approx(0.01)
    assert seen[-1][0] < 0.01 and all(not torch.equal(a, b) for a, b in zip(before, matrices))


def test_recall_along_training_counts_tokens_and_seconds_to_the_goal(world_dir, tokenizer_dir, tmp_path):
    """probe_steps: the speedrun's measure in metrics.json; a run without a world to probe is refused."""
    args = pretrain_args(world_dir, tokenizer_dir, tmp_path / "pretrain", "--max_steps", "10", "--probe_steps", "4")
    metrics = script("pretrain")(args)
    points = metrics["recall_along_training"]
    assert [p["step"] for p in points] == [4, 8, 10]
    assert [p["tokens"] for p in points] == [s * metrics["trained_tokens"] // 10 for s in (4, 8, 10)]
    assert 0 < points[0]["train_seconds"] < points[-1]["train_seconds"] < metrics["wall_time_s"]
    assert points[-1]["fact_recall"] == metrics["fact_recall"]
    assert metrics["recall_goal_reached"] == next((p for p in points if p["fact_recall"] >= 0.95), None)
    with pytest.raises(RecipeError, match="probe_steps needs a world"):
        script("pretrain")([*args, "--world_file", "", "--output_dir", str(tmp_path / "no-world")])
