"""A stage never deletes what the project did not write, and two runs never write the same output at once."""

import fcntl
import os
import subprocess

import pytest

import tokenizer
from conftest import ROOT, TINY, run_cli
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.outputs import MANIFEST


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
    tokenizer.main(tokenizer_args(world_dir, out, "--overwrite_output_dir"))
    assert not (out / "notes.txt").exists() and (out / "tokenizer.json").is_file()


def test_a_stage_replaces_its_own_earlier_output(world_dir, tmp_path):
    out = tmp_path / "tok"
    tokenizer.main(tokenizer_args(world_dir, out))
    manifest = (out / MANIFEST).read_text()
    assert '"stage": "tokenizer"' in manifest and '"finished"' in manifest
    (out / "stale.txt").write_text("from the first run")
    tokenizer.main(tokenizer_args(world_dir, out))
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
        tokenizer.main(tokenizer_args(world_dir, out, "--overwrite_output_dir"))  # not even when asked
    assert (sorted(os.listdir(out)) if os.path.isdir(out) else None) == before


def test_an_output_that_holds_an_input_is_refused(world_dir, tmp_path):
    with pytest.raises(RecipeError, match="holds this stage's input dataset_name"):
        tokenizer.main(tokenizer_args(world_dir, world_dir))


def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(world_dir, tmp_path):
    out = tmp_path / "tok"
    tokenizer.main(tokenizer_args(world_dir, out))
    partial = tmp_path / "tok.partial"  # what a run in progress holds: its manifest and a lock
    partial.mkdir()
    (partial / MANIFEST).write_text("{}")
    fd = os.open(partial, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(RecipeError, match="another run is writing"):
            tokenizer.main(tokenizer_args(world_dir, out))
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
