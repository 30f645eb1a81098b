"""One rule for paths: a recipe folder names its data and outputs roots once (recipe.yaml); the Chinese and
bilingual folders are recipes/tiny on their own roots, plus only the keys that differ."""

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, stage
from rlhf_recipes.training.config import RecipeError, parse
from rlhf_recipes.training.recipes import (
    RECIPE_FILE,
    config_file,
    moved,
    recipe_config,
    recipe_stages,
    resolved_config,
    stage_config_exists,
)

RECIPES = ROOT / "recipes"
# folder: (data_root, outputs_root)
OVER_TINY = {
    "tiny-zh": ("data/world-zh", "outputs/tiny-zh"),
    "tiny-bilingual": ("data/world-both", "outputs/tiny-bilingual"),
}


def strings(value):
    """Every string in a YAML value, nested mappings and lists included."""
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return [value] if isinstance(value, str) else []


def under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


@pytest.mark.parametrize("model", OVER_TINY)
def test_every_stage_of_a_folder_over_tiny_runs_on_its_own_roots(model):
    data_root, outputs_root = OVER_TINY[model]
    assert recipe_stages(model, RECIPES) == recipe_stages("tiny", RECIPES)
    for name in recipe_stages(model, RECIPES):
        config = recipe_config(model, name, RECIPES)
        paths = [s for s in strings(config) if s.startswith(("data/", "outputs/"))]
        assert paths, f"{model}/{name}: no data or outputs path"
        for path in paths:
            assert under(path, data_root) or under(path, outputs_root), f"{model}/{name}: {path}"
            assert not under(path, "data/world") and not under(path, "outputs/tiny"), f"{model}/{name}: {path}"
        written = config.get("output_dir") or config["outputs_dir"]  # chat and serve read outputs_dir, write none
        assert under(written, data_root if name == "data" else outputs_root), f"{model}/{name}: {written}"
        tiny = recipe_config("tiny", name, RECIPES)
        assert config.keys() >= tiny.keys(), f"{model}/{name} lost keys of recipes/tiny/{name}.yaml"


@pytest.mark.parametrize("model", OVER_TINY)
def test_a_folder_over_tiny_keeps_only_what_differs_and_says_so(model):
    """Every YAML kept is an overlay: a header naming the base file, and only keys whose value differs."""
    for path in sorted((RECIPES / model).glob("*.yaml")):
        if path.name == RECIPE_FILE:
            continue
        assert path.read_text().startswith(f"# Only what differs from recipes/tiny/{path.name}"), path
        own = yaml.safe_load(path.read_text())
        base = moved(
            recipe_config("tiny", path.stem, RECIPES), dict(zip(("data/world", "outputs/tiny"), OVER_TINY[model]))
        )
        assert own and all(base.get(key) != value for key, value in own.items()), f"{path}: a key equal to tiny's"


def test_the_overlay_wins_over_the_base():
    assert recipe_config("tiny-zh", "sft", RECIPES)["chat_template_path"] == "recipes/tiny-zh/chat_template.jinja"
    assert "chat_template_path" not in recipe_config("tiny", "sft", RECIPES)
    assert recipe_config("tiny-bilingual", "tokenizer", RECIPES)["vocab_size"] == 2048
    assert recipe_config("tiny", "tokenizer", RECIPES)["vocab_size"] == 1024
    assert recipe_config("tiny-zh", "data", RECIPES)["lang"] == "zh"
    assert recipe_config("tiny-zh", "grpo", RECIPES)["method"] == "grpo"  # online.py picks its trainer by it


def write(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.yaml").write_text(text)
    return folder


def test_an_overlay_path_stays_as_written_and_a_path_into_the_base_folder_is_not_moved(tmp_path):
    sft = "output_dir: outputs/a/sft\ntemplate: recipes/a/t.jinja\nrows: [{path: outputs/a/x}, outputs/ab]\n"
    write(tmp_path / "a", recipe="data_root: data/a\noutputs_root: outputs/a\n", sft=sft)
    write(
        tmp_path / "b",
        recipe="base: a\ndata_root: data/b\noutputs_root: outputs/b\n",
        sft="output_dir: elsewhere/sft\n",
    )
    assert resolved_config(tmp_path / "b" / "sft.yaml") == {
        "output_dir": "elsewhere/sft",
        "template": "recipes/a/t.jinja",  # a file of the base, shared; b names its own in its overlay
        "rows": [{"path": "outputs/b/x"}, "outputs/ab"],  # moved at a path-component boundary only
    }


def test_moved_respects_path_component_boundaries():
    moves = {"outputs/tiny": "outputs/tiny-zh", "data/world": "data/world-zh"}
    assert moved("outputs/tiny", moves) == "outputs/tiny-zh"
    assert moved("outputs/tiny/sft", moves) == "outputs/tiny-zh/sft"
    assert moved("outputs/tiny-bilingual/sft", moves) == "outputs/tiny-bilingual/sft"
    assert moved("data/world-both", moves) == "data/world-both"
    assert moved(["data/world/sft", {"k": "data/world"}, 3], moves) == ["data/world-zh/sft", {"k": "data/world-zh"}, 3]


def test_a_stage_file_the_folder_no_longer_has_parses_on_its_roots():
    """`--config recipes/tiny-zh/ppo.yaml` (tiny-zh holds no ppo.yaml): tiny's PPO on tiny-zh's paths."""
    assert not (RECIPES / "tiny-zh" / "ppo.yaml").exists() and stage_config_exists("tiny-zh", "ppo", RECIPES)
    ppo, _ = stage("ppo").from_argv(["--config", str(RECIPES / "tiny-zh" / "ppo.yaml")])
    assert ppo.args.dataset_name == "data/world-zh/rl_prompts"
    assert ppo.config.sft_model_path == "outputs/tiny-zh/sft"
    assert ppo.config.reward_model_path == "outputs/tiny-zh/reward"
    assert ppo.config.output_dir == "outputs/tiny-zh/ppo"
    assert ppo.config.kl_coef == 0.2  # tiny's settings


def test_the_command_line_still_wins_and_errors_name_the_path_given():
    given = str(RECIPES / "tiny-zh" / "sft.yaml")
    sft, _ = stage("sft").from_argv(["--config", given, "--output_dir", "elsewhere"])
    assert sft.config.output_dir == "elsewhere" and sft.config.chat_template_path.endswith(
        "tiny-zh/chat_template.jinja"
    )
    assert sft.model_args.model_name_or_path == "outputs/tiny-zh/pretrain"
    with pytest.raises(RecipeError) as caught:
        stage("sft").from_argv(["--config", given, "--learning_rate", "fast"])
    assert given in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(RecipeError, match="not found, nor .*recipes/tiny/nope.yaml of its base; its stages are chat"):
        stage("sft").from_argv(["--config", str(RECIPES / "tiny-zh" / "nope.yaml")])


@pytest.mark.parametrize(
    "recipe, message",
    [
        (
            "base: tiny\noutputs_root: outputs/x\nouput_root: typo\n",
            "unknown key ouput_root; a recipe.yaml holds only",
        ),
        ("base: tiny-fr\noutputs_root: outputs/x\n", "base tiny-fr does not exist; choose one of tiny, zh"),
        ("base: zh\noutputs_root: outputs/x\n", "base zh has a base itself \\(tiny\\); name tiny as the base"),
        ("base: tiny\ndata_root: data/x\n", "a folder with a base needs its own outputs_root"),
        ("base: tiny\noutputs_root: [outputs/x]\n", "outputs_root is \\['outputs/x'\\], not a name or path"),
        ("base: tiny\noutputs_root: outputs/x\noutputs_root: outputs/y\n", "line 3: outputs_root is set twice"),
    ],
    ids=["unknown-key", "unknown-base", "chain", "no-outputs-root", "not-a-path", "duplicate"],
)
def test_a_bad_recipe_yaml_is_one_line_naming_it(tmp_path, recipe, message):
    write(
        tmp_path / "tiny",
        recipe="data_root: data/world\noutputs_root: outputs/tiny\n",
        sft="output_dir: outputs/tiny/sft\n",
    )
    write(tmp_path / "zh", recipe="base: tiny\noutputs_root: outputs/zh\n")
    write(tmp_path / "x", recipe=recipe)
    with pytest.raises(RecipeError, match=message) as caught:
        stage("sft").from_argv(["--config", str(tmp_path / "x" / "sft.yaml")])
    assert str(tmp_path / "x" / RECIPE_FILE) in str(caught.value) and "\n" not in str(caught.value)


def test_a_users_yaml_outside_the_recipe_folders_parses_as_before(tmp_path):
    """No recipe.yaml next to it: read as written, TRL's parser opens the file itself, paths untouched."""
    mine = tmp_path / "ppo.yaml"
    mine.write_text((RECIPES / "tiny" / "ppo.yaml").read_text().replace("kl_coef: 0.2", "kl_coef: 0.3"))
    assert config_file(mine) == mine
    ppo, _ = stage("ppo").from_argv(["--config", str(mine)])
    assert ppo.config.sft_model_path == "outputs/tiny/sft" and ppo.config.kl_coef == 0.3
    with pytest.raises(RecipeError, match=f"config file {tmp_path / 'nope.yaml'} not found; pass --config"):
        stage("ppo").from_argv(["--config", str(tmp_path / "nope.yaml")])


def test_a_plain_parser_reads_the_resolved_stage(tmp_path):
    """Any script's parser (data, tokenizer, chat, ...) goes through the same `parse`."""
    from dataclasses import dataclass

    from trl import TrlParser

    @dataclass
    class Tokenizer:
        dataset_name: str = ""
        dataset_train_split: str = "train"
        vocab_size: int = 0
        output_dir: str = ""

    (args,) = parse(TrlParser((Tokenizer,)), ["--config", str(RECIPES / "tiny-bilingual" / "tokenizer.yaml")])
    assert (args.dataset_name, args.vocab_size, args.output_dir) == (
        "data/world-both/pretrain", 2048, "outputs/tiny-bilingual/tokenizer")  # fmt: skip


@pytest.mark.parametrize("target", ["chat", "serve"])
def test_make_chat_and_serve_use_the_folders_own_settings_on_its_outputs(target):
    made = subprocess.run(["make", "-n", target, "MODEL=tiny-zh"], cwd=ROOT, capture_output=True, text=True)
    line = next(line for line in made.stdout.splitlines() if f"recipes/{target}.py" in line)
    assert f"--config recipes/tiny-zh/{target}.yaml" in line and "--outputs_dir" not in line
    assert recipe_config("tiny-zh", target, RECIPES)["outputs_dir"] == "outputs/tiny-zh"


TRAINING_STAGES = ("pretrain", "sft", "reward", "dpo", "rloo", "grpo", "ppo")


# What the optimizer and its schedule rely on: transformers' and TRL's defaults move between releases, so each
# recipe writes them (DeepSpeed's `auto` values read them too).
OPTIMIZER_SETTINGS = (
    "optim",
    "learning_rate",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "weight_decay",
    "max_grad_norm",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "warmup_steps",
)


def test_every_training_stage_writes_its_optimizer_settings():
    """No hidden defaults: every training recipe of every folder (overlays through their base) names each setting its
    optimizer reads."""
    folders = sorted(p.parent.name for p in RECIPES.glob(f"*/{RECIPE_FILE}"))
    checked = [
        (folder, name) for folder in folders for name in recipe_stages(folder, RECIPES) if name in TRAINING_STAGES
    ]
    assert len({folder for folder, _ in checked}) >= 5, checked
    missing = [
        f"{folder}/{name}: {key}"
        for folder, name in checked
        for key in OPTIMIZER_SETTINGS
        if key not in recipe_config(folder, name, RECIPES)
    ]
    assert not missing, missing
