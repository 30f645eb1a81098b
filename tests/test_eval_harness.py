"""`make eval`: lm-evaluation-harness over the tiny models the session trained, offline, for real."""

import json
import os
from pathlib import Path

import pytest

from conftest import TINY, pretrain_args, run_cli, script, sft_args, world_args
from rlhf_recipes.evaluation.world_tasks import question_rows, stated_value
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.world.world import World
from test_cli_errors import assert_one_line_error

# the tiny recipe's rates (the speedrun's): 400 steps learn every held-out question (exact match 1.0; 300: 0.4)
LEARNED = ("--max_steps", "400", "--learning_rate", "4e-3", "--muon_learning_rate", "8e-3", "--logging_steps", "100")


def eval_rows(world_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (world_dir / "eval_prompts" / "test.jsonl").read_text().splitlines()]


def test_the_value_is_read_where_the_ideal_answer_states_it():
    assert stated_value(" 1.4 million.", ".") == "1.4 million"  # a decimal point is no end
    assert stated_value(" Ossa river. It is long.", " river.") == "Ossa"
    assert stated_value(" 140万。", "。") == "140万"
    assert stated_value(" 1204", ".") == "1204"  # an answer that stops at the value
    assert stated_value(" Savelle, I think.", ".") == "Savelle, I think"


def test_every_held_out_question_becomes_a_task_row(world_dir):
    world = World.load(world_dir / "world.json")
    rows = question_rows(world, eval_rows(world_dir), num_choices=4, seed=0)["en"]
    assert len(rows["facts"]) == len(world.heldout) * len(world.attributes)
    for row in rows["facts"]:
        city = next(c for c in world.heldout_cities if c.name in row["question"])
        assert row["value"] == city.facts[row["attribute"]] == row["choices"][row["label"]]
        assert len(set(row["choices"])) == 4 and row["text_prompt"] == f"Q: {row['question']}\nA:"
        assert world.language.attributes[row["attribute"]].statements[0].format(
            city=city.name, value=row["value"]
        ) == (f"{row['answer_start']} {row['value']}{row['value_end']}")
    assert rows["unknown"] and all(row["answer"] == "i don't know" for row in rows["unknown"])


def test_a_bilingual_world_asks_each_question_in_its_own_language(tmp_path):
    """`lang: both`: the English questions go to world_en's tasks, the Chinese ones to world_zh's, each answered
    and scored in the language asked."""
    script("data")(world_args(tmp_path / "world", "--lang", "both"))
    world = World.load(tmp_path / "world" / "world.json")
    rows = question_rows(world, eval_rows(tmp_path / "world"), num_choices=4, seed=0)
    assert set(rows) == {"en", "zh"} and all(found["facts"] and found["unknown"] for found in rows.values())
    assert all(row["text_prompt"].startswith("Q: ") for row in rows["en"]["facts"])
    assert all(
        row["text_prompt"].startswith("问：") and row["value_end"].endswith("。") for row in rows["zh"]["facts"]
    )
    assert {row["answer"] for row in rows["zh"]["unknown"]} == {"我不知道"}


@pytest.fixture(scope="module")
def stages(world_dir, tokenizer_dir, outputs, tmp_path_factory) -> Path:
    """An outputs folder after `make all` without PPO: a base model pretrained ~7 times longer than the session's
    (long enough to learn the held-out cities' facts), SFT on it, and the session's reward model."""
    out = tmp_path_factory.mktemp("eval") / "outputs"
    script("pretrain")(pretrain_args(world_dir, tokenizer_dir, out / "pretrain", *LEARNED))
    script("sft")(sft_args(world_dir, out / "pretrain", out / "sft", "--learning_rate", "1e-3"))
    (out / "reward").symlink_to(outputs / "reward")
    return out


def eval_args(outputs: Path, *extra: str, out: str = "eval") -> list[str]:
    return [
        "--config",
        str(TINY / "eval.yaml"),
        "--outputs_dir",
        str(outputs),
        "--output_dir",
        str(outputs / out),
        *extra,
    ]


@pytest.mark.slow
def test_the_harness_reads_every_stage_offline(stages, world_dir, capsys):
    report = script("eval")(eval_args(stages))
    assert "leaving out ppo" in capsys.readouterr().out
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert list(report["stages"]) == ["base", "sft"]  # the reward model is no row; PPO is not there yet
    world = World.load(world_dir / "world.json")
    assert report["questions"] == {"en": {"facts": len(world.heldout) * len(world.attributes), "unknown": 4}}

    out = stages / "eval"
    table = (out / "eval.md").read_text()
    assert "| base | text |" in table and "| SFT | chat |" in table and "world_en_choice acc" in table
    assert report["stages"]["base"]["scores"]["world_en_choice acc"]["value"] >= 0.6  # chance: 0.25
    assert report["stages"]["base"]["scores"]["world_en_facts exact_match"]["value"] >= 0.4
    for name, prompt in (("base", "text_prompt"), ("sft", "question")):
        results = json.loads((out / name / "world.json").read_text())
        assert set(results["results"]) >= {"world_en_facts", "world_en_choice", "world_en_unknown"}
        assert results["configs"]["world_en_facts"]["doc_to_text"] == prompt  # the base: "Q: ...\nA:"; SFT: chat
        assert (results["chat_template"] is None) == (name == "base")
        assert results["configs"]["world_en_facts"]["metadata"]["questions"] == str(out / "questions")
    first = json.loads((out / "base" / "samples_world_en_facts.jsonl").read_text().splitlines()[0])
    assert first["arguments"][0][0].startswith("Q: ")
    assert (out / "questions" / "en" / "facts.jsonl").is_file() and not Path(f"{out}.partial").exists()


@pytest.mark.slow
def test_a_lora_adapter_is_read_on_its_base(stages, world_dir, tmp_path):
    """A stage saved as a LoRA adapter (use_peft) is its base with the adapter on; a fresh one changes nothing."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter = tmp_path / "adapter"
    lora = LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["c_attn"])
    get_peft_model(AutoModelForCausalLM.from_pretrained(stages / "sft"), lora).save_pretrained(adapter)
    AutoTokenizer.from_pretrained(stages / "sft").save_pretrained(adapter)
    plain = script("eval")(eval_args(stages, "--stage", "sft", out="sft-alone"))["stages"]["sft"]
    world = ("--world_file", str(world_dir / "world.json"), "--eval_prompts", str(world_dir / "eval_prompts"))
    on_base = script("eval")(eval_args(stages, "--stage", str(adapter), *world, out="adapter"))["stages"]["adapter"]
    assert on_base["prompt"] == "chat" and on_base["scores"] == plain["scores"]


@pytest.mark.slow
def test_a_missing_stage_is_one_line(stages):
    with pytest.raises(RecipeError, match=r"dpo not found; run `make dpo` first$"):
        script("eval")(eval_args(stages, "--stage", "dpo"))
    with pytest.raises(RecipeError, match="neither a row of stages"):
        script("eval")(eval_args(stages, "--stage", "elsewhere"))


@pytest.mark.slow
def test_the_reward_model_is_one_line_and_writes_nothing(stages):
    done = run_cli("recipes/eval.py", *eval_args(stages, "--stage", "reward", out="refused"))
    assert_one_line_error(
        done,
        f"{stages / 'reward'} holds a GPT2ForSequenceClassification, not a causal language model: lm-eval reads "
        "causal LMs only; name a policy stage instead",
    )
    assert not (stages / "refused").exists() and not (stages / "refused.partial").exists()
