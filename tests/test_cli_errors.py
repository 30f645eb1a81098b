"""Bad input: one clear line on stderr, a non-zero exit, and nothing that looks like a finished stage.

A few cases run the script as a user does (forked from a warm interpreter, `forkserver.py`), to prove the
one-line format and exit status of `cli()`; the rest call `main()` in-process and check the `RecipeError`
that `cli()` would print.
"""

import json
import os
import subprocess

import pytest

from conftest import ROOT, TINY, pretrain_args, run_cli, script, world_args
from rlhf_recipes.training.config import RecipeError


def refused(main, argv, *needles) -> str:
    """`main(argv)` raises the one-line error that `cli()` prints, naming every needle."""
    with pytest.raises(RecipeError) as caught:
        main(argv)
    message = str(caught.value)
    assert "\n" not in message and all(needle in message for needle in needles), message
    return message


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.slow  # a fresh interpreter per command (~8 s of imports): `make test`
def test_missing_data_dir_names_the_fix(tmp_path):
    result = run_cli(
        "recipes/tokenizer.py",
        "--config",
        str(TINY / "tokenizer.yaml"),
        "--dataset_name",
        str(tmp_path / "nowhere"),
        "--output_dir",
        str(tmp_path / "tok"),
    )
    assert_one_line_error(result, "not found", "make data")
    assert not (tmp_path / "tok").exists()


def test_unknown_yaml_key_is_an_error_not_ignored(tmp_path):
    config = tmp_path / "pretrain.yaml"
    config.write_text((TINY / "pretrain.yaml").read_text() + "learning_rat: 0.1\n")
    refused(script("pretrain"), ["--config", str(config)], "learning_rat")


def test_unknown_command_line_flag_is_an_error(tmp_path):
    result = run_cli("recipes/data.py", "--config", str(TINY / "data.yaml"), "--num_citys", "3")
    assert_one_line_error(result, "num_citys")


@pytest.mark.slow  # a fresh interpreter per command (~8 s of imports): `make test`
def test_missing_config_file(tmp_path):
    result = run_cli("recipes/data.py", "--config", str(tmp_path / "nope.yaml"))
    assert_one_line_error(result, "nope.yaml", "not found")


@pytest.mark.slow  # a fresh interpreter per command (~8 s of imports): `make test`
def test_bad_world_rate(tmp_path):
    result = run_cli("recipes/data.py", *world_args(tmp_path / "w", "--label_noise", "2"))
    assert_one_line_error(result, "label_noise")
    assert not (tmp_path / "w").exists()


def test_empty_dataset_fails_before_training(world_dir, tokenizer_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.jsonl").write_text("")
    (empty / "test.jsonl").write_text(json.dumps({"text": "A city."}) + "\n")
    args = pretrain_args(world_dir, tokenizer_dir, tmp_path / "pt")
    args[args.index("--dataset_name") + 1] = str(empty)
    refused(script("pretrain"), args, "empty")
    assert not (tmp_path / "pt").exists() and not (tmp_path / "pt.partial").exists()


def test_dataset_without_text_column(world_dir, tokenizer_dir, tmp_path):
    args = pretrain_args(world_dir, tokenizer_dir, tmp_path / "pt")
    args[args.index("--dataset_name") + 1] = str(world_dir / "sft")
    refused(script("pretrain"), args, "columns", "messages", "text")
    assert not (tmp_path / "pt").exists() and not (tmp_path / "pt.partial").exists()


@pytest.mark.slow  # through make and accelerate launch: ~15 s
def test_make_sft_with_a_hub_model_offline_says_how_to_get_it(tmp_path):
    """`make sft MODEL=gpt2` without the hub: one line naming the model and the fix, nothing written."""
    out = tmp_path / "sft"
    result = subprocess.run(
        ["make", "sft", "MODEL=gpt2", f"ARGS=--output_dir {out}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "openai-community/gpt2" in errors[0] and "hf download openai-community/gpt2" in errors[0]
    assert not out.exists() and not out.with_name("sft.partial").exists()
