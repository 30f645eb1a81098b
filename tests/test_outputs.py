"""A stage never deletes what the project did not write, two runs never write the same output at once, and
what a stage writes says how it was made."""

import fcntl
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from conftest import ROOT, TINY, run_cli, script
from rlhf_recipes.training import launch
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.launch import command_line
from rlhf_recipes.training.outputs import MANIFEST, write_model_card


def tokenizer_args(world_dir, out, *extra):
    return [
        "--config",
        str(TINY / "tokenizer.yaml"),
        "--dataset_name",
        str(world_dir / "pretrain"),
        "--vocab_size",
        "300",
        "--output_dir",
        str(out),
        *extra,
    ]


@pytest.mark.slow  # runs make: `make test`
def test_a_folder_the_project_did_not_write_is_refused_and_kept(world_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("a week of work")
    result = run_cli("recipes/tokenizer.py", *tokenizer_args(world_dir, out))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "did not write" in errors[0] and "--overwrite_output_dir" in errors[0], result.stderr
    assert (out / "notes.txt").read_text() == "a week of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no partial directory either


def test_overwrite_output_dir_replaces_it_when_asked(world_dir, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("scratch")
    script("tokenizer")(tokenizer_args(world_dir, out, "--overwrite_output_dir"))
    assert not (out / "notes.txt").exists() and (out / "tokenizer.json").is_file()


def test_a_stage_replaces_its_own_earlier_output(world_dir, tmp_path):
    out = tmp_path / "tok"
    script("tokenizer")(tokenizer_args(world_dir, out))
    manifest = (out / MANIFEST).read_text()
    assert '"stage": "tokenizer"' in manifest and '"finished"' in manifest
    (out / "stale.txt").write_text("from the first run")
    script("tokenizer")(tokenizer_args(world_dir, out))
    assert not (out / "stale.txt").exists() and (out / "tokenizer.json").is_file()
    assert not out.with_name("tok.partial").exists()


@pytest.mark.parametrize("where", ["cwd", "home", "root", "repo", "repo_data", "git_clone", "input"])
def test_folders_no_stage_may_replace_are_refused_outright(world_dir, tmp_path, monkeypatch, where):
    clone = tmp_path / "clone"
    (clone / ".git").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    out = {
        "cwd": ".",
        "home": os.path.expanduser("~"),
        "root": "/",
        "repo": str(ROOT),
        "repo_data": str(ROOT / "data"),
        "git_clone": str(clone),
        "input": str(world_dir / "pretrain"),
    }[where]
    before = sorted(os.listdir(out)) if os.path.isdir(out) else None
    with pytest.raises(RecipeError, match="refusing output_dir"):
        script("tokenizer")(tokenizer_args(world_dir, out, "--overwrite_output_dir"))  # not even when asked
    assert (sorted(os.listdir(out)) if os.path.isdir(out) else None) == before


def test_an_output_that_holds_an_input_is_refused(world_dir, tmp_path):
    with pytest.raises(RecipeError, match="holds this stage's input dataset_name"):
        script("tokenizer")(tokenizer_args(world_dir, world_dir))


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(world_dir, tmp_path):
    out = tmp_path / "tok"
    script("tokenizer")(tokenizer_args(world_dir, out))
    partial = tmp_path / "tok.partial"  # what a run in progress holds: its manifest and a lock
    partial.mkdir()
    (partial / MANIFEST).write_text("{}")
    fd = os.open(partial, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(RecipeError, match="another run is writing"):
            script("tokenizer")(tokenizer_args(world_dir, out))
    finally:
        os.close(fd)
    assert (out / "tokenizer.json").is_file() and (partial / MANIFEST).read_text() == "{}"


@pytest.mark.slow  # through make
def test_make_with_an_output_dir_holding_user_files_keeps_them(tmp_path):
    """The report of issue 13, through make itself: `make tokenizer ARGS=--output_dir <folder with notes.txt>`."""
    (tmp_path / "notes.txt").write_text("keep me")
    result = subprocess.run(
        ["make", "tokenizer", f"ARGS=--output_dir {tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0 and "did not write" in result.stderr, result.stderr[-2000:]
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def card(out) -> tuple[dict, str]:
    front, body = (out / "README.md").read_text().split("---\n")[1:3]
    return yaml.safe_load(front), body


def test_the_card_names_hub_repos_in_its_metadata_and_everything_in_its_text(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["recipes/sft.py", "--config", "recipes/tiny/sft.yaml"])
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    local = tmp_path / "pairs"
    local.mkdir()
    datasets = ["trl-lib/ultrafeedback_binarized@main", str(local), "data/*.jsonl", None]
    write_model_card(tmp_path, "SFT model", "...", {"loss": 1.5}, base_model="Qwen/Qwen2.5-0.5B", datasets=datasets)
    meta, body = card(tmp_path)
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B" and meta["datasets"] == ["trl-lib/ultrafeedback_binarized"]
    assert meta["library_name"] == "transformers" and meta["tags"] == ["rlhf-recipes"]
    assert "- base model: `Qwen/Qwen2.5-0.5B`" in body
    assert f"- datasets: `trl-lib/ultrafeedback_binarized@main`, `{local}`, `data/*.jsonl`" in body
    assert "```bash\npython recipes/sft.py --config recipes/tiny/sft.yaml\n```" in body and "| loss | 1.5 |" in body


def test_a_local_base_model_is_named_in_the_text_only(tmp_path):
    write_model_card(tmp_path, "SFT model", "...", {}, base_model=str(tmp_path), datasets=[str(tmp_path)])
    meta, body = card(tmp_path)
    assert "base_model" not in meta and "datasets" not in meta
    assert f"- base model: `{tmp_path}`" in body


def test_the_command_under_accelerate_launch_is_the_launcher_s(monkeypatch):
    launcher = [sys.executable, ".venv/bin/accelerate", "launch", "--config_file", "accelerate_configs/cpu.yaml"]
    launcher += ["recipes/sft.py", "--config", "recipes/tiny/sft.yaml", "--hub_token", "hf_x", "--hub_token=hf_y"]
    parent = SimpleNamespace(cmdline=lambda: launcher)
    monkeypatch.setattr(launch.psutil, "Process", lambda: SimpleNamespace(parent=lambda: parent))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what accelerate sets for the processes it starts
    assert command_line() == (
        "accelerate launch --config_file accelerate_configs/cpu.yaml recipes/sft.py --config recipes/tiny/sft.yaml "
        "--hub_token '<redacted>' '--hub_token=<redacted>'"
    )
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION")
    monkeypatch.setattr(sys, "argv", ["recipes/sft.py", "--hub_token", "hf_x"])
    assert command_line() == "python recipes/sft.py --hub_token '<redacted>'"


def test_the_manifest_and_the_card_record_the_command(world_dir, tmp_path, monkeypatch):
    args = tokenizer_args(world_dir, tmp_path / "tok")
    monkeypatch.setattr(sys, "argv", ["recipes/tokenizer.py", *args])
    script("tokenizer")(args)
    assert json.loads((tmp_path / "tok" / MANIFEST).read_text())["command"].startswith("python recipes/tokenizer.py")
    body = card(tmp_path / "tok")[1]
    assert f"- datasets: `{world_dir / 'pretrain'}`" in body and "base model" not in body  # trained from text alone
