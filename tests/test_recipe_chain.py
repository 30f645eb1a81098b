"""Every recipe folder is one chain: each stage reads what the stage before it wrote, by the same path."""

from pathlib import Path

import pytest

from conftest import ROOT
from rlhf_recipes.training.recipes import recipe_config, recipe_stages, stage_config_exists

RECIPES = ROOT / "recipes"
FOLDERS = sorted(p.parent for p in RECIPES.glob("*/recipe.yaml") if stage_config_exists(p.parent.name, "sft", RECIPES))

# (stage, field, the stage whose output it reads, sub-folder of that output)
CHAIN = [
    ("tokenizer", "dataset_name", "data", "pretrain"),
    ("pretrain", "dataset_name", "data", "pretrain"),
    ("pretrain", "tokenizer_name_or_path", "tokenizer", ""),
    ("sft", "model_name_or_path", "pretrain", ""),
    ("sft", "dataset_name", "data", "sft"),
    ("compare", "model_name_or_path", "sft", ""),
    ("compare", "dataset_name", "data", "comparison_prompts"),
    ("reward", "model_name_or_path", "sft", ""),
    ("reward", "dataset_name", "compare", ""),
    ("ppo", "sft_model_path", "sft", ""),
    ("ppo", "reward_model_path", "reward", ""),
    ("ppo", "dataset_name", "data", "rl_prompts"),
]


WORLD_OPTIONS = {"world_file", "eval_prompts", "replay_dataset", "offline_pairs", "heldout_pairs"}
TALK = ("chat", "serve")  # read the stages' outputs, write none


def configs(folder: Path) -> dict[str, dict]:
    """Every stage of the folder as the scripts read it: over its base (recipe.yaml), if it has one."""
    return {stage: recipe_config(folder.name, stage, RECIPES) for stage in recipe_stages(folder.name, RECIPES)}


def has(folder: Path, stage: str) -> bool:
    return stage_config_exists(folder.name, stage, RECIPES)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_each_stage_reads_the_previous_stage_output(folder):
    stages = configs(folder)
    checked = 0
    for stage, key, source, sub in CHAIN:
        if stage in stages and source in stages and stages[stage].get(key):
            expected = str(Path(stages[source]["output_dir"]) / sub) if sub else stages[source]["output_dir"]
            assert stages[stage][key] == expected, f"{folder.name}/{stage}.yaml {key}"
            checked += 1
    assert checked >= 3, f"{folder.name}: fewer links than sft -> reward -> ppo"


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_world_extras_follow_the_main_dataset_and_name_no_world_path(folder):
    """A world option names no path: `auto` (the main dataset's world, if any) or `none`, so a user's data
    swapped in by `--dataset_name` never brings the toy world along."""
    for stage, config in configs(folder).items():
        for key in WORLD_OPTIONS & config.keys():
            assert config[key] in ("auto", "none"), f"{folder.name}/{stage}.yaml {key}: {config[key]}"


@pytest.mark.parametrize("folder", [f for f in FOLDERS if has(f, "report")], ids=lambda p: p.name)
def test_every_report_row_is_a_stage_output_of_its_folder(folder):
    stages = configs(folder)
    report = stages.pop("report")
    for name in TALK:
        stages.pop(name, None)
    outputs = {stage: config["output_dir"] for stage, config in stages.items()}
    named = [row["path"] for row in report["policies"]] + [report["reward_model"], report["rl_stage"]]
    for path in named:
        assert str(Path(report["outputs_dir"]) / path) in outputs.values(), f"{folder.name}/report.yaml {path}"
    assert report["output_dir"].startswith(report["outputs_dir"])


@pytest.mark.parametrize("folder", [f for f in FOLDERS if has(f, "chat")], ids=lambda p: p.name)
def test_chat_and_serve_talk_to_the_report_rows(folder):
    """`make chat` and `make serve` offer the policies of the report and of methods.yaml, from the same folders."""
    stages = configs(folder)
    rows = [row for name in ("report", "methods") if name in stages for row in stages[name]["policies"]]
    policies = {row["name"]: (row["path"], row.get("best_of", 1)) for row in rows if row["prompt"] != "fewshot"}
    for name in TALK:
        talk = stages[name]
        assert talk["outputs_dir"] == stages["report"]["outputs_dir"], f"{folder.name}/{name}.yaml"
        assert {row["name"]: (row["path"], row.get("best_of", 1)) for row in talk["stages"]} == policies
        assert talk["reward_model"] == stages["report"]["reward_model"]
