"""Tiny real SFT runs: loss falls, answers end with EOS, LoRA saves a loadable adapter."""

import json

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import script, sft_args, stage
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.generation import complete

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`


def test_loss_falls_and_the_model_learns_to_stop(sft_model, world_dir):
    out, metrics = sft_model
    losses = [e["loss"] for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert losses[-1] < 0.7 * losses[0]
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    rows = [json.loads(line) for line in (world_dir / "sft" / "train.jsonl").read_text().splitlines()[:8]]
    prompts = [tok.apply_chat_template(r["messages"][:1], tokenize=False, add_generation_prompt=True) for r in rows]
    answers = complete(model, tok, prompts, max_new_tokens=40)
    assert sum(a.ended for a in answers) >= 6, [a.text for a in answers]
    assert metrics["sft"]["eos_share"] > metrics["base"]["eos_share"]
    assert set(metrics["sft"]) >= {"gold_score", "fact_accuracy", "refusal_rate_harmful", "refusal_rate_benign"}


def test_replay_mixes_pretraining_text_into_training(world_dir, pretrained, tmp_path):
    sft, _ = stage("sft").from_argv(sft_args(world_dir, pretrained[0], tmp_path / "x", "--replay_fraction", "0.5"))
    sft.prepare()
    train = sft.train_set
    assert len(train) == 64 + 32
    fully_trained = sum(all(label != -100 for label in row) for row in train["labels"])
    assert fully_trained == 32  # replayed text is trained on every token; dialogues only on the answers


def test_lora_merged_output_is_a_full_model_and_keeps_the_adapter(world_dir, pretrained, tmp_path):
    out = tmp_path / "lora"
    script("sft")(
        sft_args(
            world_dir,
            pretrained[0],
            out,
            "--use_peft",
            "--lora_r",
            "4",
            "--lora_alpha",
            "8",
            "--max_steps",
            "5",
            "--merge_adapter",
            "--eval_prompts",
            "",
        )
    )
    assert (out / "adapter" / "adapter_config.json").is_file() and not (out / "adapter_config.json").exists()
    base = AutoModelForCausalLM.from_pretrained(pretrained[0])
    size = base.num_parameters()
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() == size
    assert isinstance(PeftModel.from_pretrained(base, out / "adapter"), PeftModel)


def test_lora_without_merge_saves_only_the_adapter(world_dir, pretrained, tmp_path):
    out = tmp_path / "lora"
    script("sft")(
        sft_args(
            world_dir,
            pretrained[0],
            out,
            "--use_peft",
            "--lora_r",
            "4",
            "--lora_alpha",
            "8",
            "--max_steps",
            "3",
            "--eval_prompts",
            "",
        )
    )
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()


def test_dataset_without_dialogue_columns_names_what_it_found(world_dir, pretrained, tmp_path):
    args = sft_args(world_dir, pretrained[0], tmp_path / "x")
    args[args.index("--dataset_name") + 1] = str(world_dir / "pretrain")
    with pytest.raises(RecipeError, match=r"columns \['text'\]; expected messages or completion/prompt"):
        script("sft")(args)
    assert not (tmp_path / "x").exists()


def test_missing_checkpoint_says_which_stage_to_run(world_dir, tmp_path):
    with pytest.raises(RecipeError, match="not found; run `make pretrain` first"):
        script("sft")(sft_args(world_dir, tmp_path / "no-model", tmp_path / "x"))
