"""push_to_hub sends a stage's finished folder, and nothing else, to the Hub; offline here.

The Hub client's two calls (create_repo, upload_folder) are recorded instead of made, and any other
attempt to reach the network is recorded and refused.
"""

import json
import shutil
import socket
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi

from conftest import script, sft_args
from rlhf_recipes.stages.runner import Stage
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.outputs import MANIFEST

PUSH = ("--push_to_hub", "true", "--hub_model_id", "someone/tiny-sft")
SECRET = "hf_not_a_real_token_123"
QUICK = ("--max_steps", "3", "--eval_prompts", "", "--world_file", "", "--replay_fraction", "0")


@pytest.fixture
def hub(monkeypatch):
    """What reached the Hub client, and any other connection the run tried (refused)."""
    calls = {"create_repo": [], "upload_folder": [], "network": []}

    def create_repo(self, repo_id, **kwargs):
        calls["create_repo"].append({"repo_id": repo_id, "token": self.token, **kwargs})

    def upload_folder(self, *, folder_path, **kwargs):
        folder = Path(folder_path)
        seen = {"files": {p.name for p in folder.iterdir()}, "readme": (folder / "README.md").read_text()}
        seen["partial_left"] = folder.with_name(folder.name + ".partial").exists()
        calls["upload_folder"].append({"folder": folder, "seen": seen, **kwargs})

    def connect(sock, address):
        calls["network"].append(address)
        raise OSError("no network in the tests")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return calls


def as_the_cli(monkeypatch, args: list[str]) -> list[str]:
    """The command line a user's run has, which the card and the manifest record."""
    monkeypatch.setattr(sys, "argv", ["recipes/sft.py", *args])
    return args


@pytest.mark.slow
def test_the_finished_folder_is_pushed_once_it_is_in_place(world_dir, pretrained, tmp_path, hub, monkeypatch):
    out = tmp_path / "sft"
    args = as_the_cli(monkeypatch, sft_args(world_dir, pretrained[0], out, *QUICK, *PUSH, "--hub_token", SECRET))
    script("sft")(args)
    (created,) = hub["create_repo"]
    assert created == {"repo_id": "someone/tiny-sft", "token": SECRET, "private": None, "exist_ok": True}
    (upload,) = hub["upload_folder"]
    assert upload["folder"] == out and upload["repo_id"] == "someone/tiny-sft"
    assert "checkpoint-*" in upload["ignore_patterns"]
    seen = upload["seen"]
    assert {"model.safetensors", "README.md", "tokenizer.json"} <= seen["files"] and not seen["partial_left"]
    front, body = seen["readme"].split("---\n")[1:3]
    assert "base_model" not in yaml.safe_load(front)  # a local folder: the Hub refuses paths there
    assert f"- base model: `{pretrained[0]}`" in body and f"- datasets: `{world_dir / 'sft'}`" in body
    assert f"python recipes/sft.py --config {args[1]}" in body and "--hub_token '<redacted>'" in body
    assert hub["network"] == []
    for path in out.rglob("*"):  # the token is in no file of the run: manifest, card, training_args.bin, events
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    assert "hub_token" not in json.loads((out / MANIFEST).read_text())["settings"]


@pytest.mark.slow
def test_a_failed_run_pushes_nothing(world_dir, pretrained, tmp_path, hub):
    args = sft_args(world_dir, pretrained[0], tmp_path / "sft", *QUICK, *PUSH)
    args[args.index("--dataset_name") + 1] = str(world_dir / "pretrain")  # no dialogues: fails inside the stage
    with pytest.raises(RecipeError, match="expected messages"):
        script("sft")(args)
    assert hub == {"create_repo": [], "upload_folder": [], "network": []}


@pytest.mark.slow
def test_a_resumed_run_may_start_pushing(world_dir, pretrained, tmp_path, hub, capsys):
    out = tmp_path / "sft"
    args = sft_args(world_dir, pretrained[0], out, *QUICK, "--save_strategy", "steps", "--save_steps", "2")
    script("sft")(args)
    partial = out.with_name("sft.partial")
    out.rename(partial)  # as a run killed after its checkpoint at step 2 leaves it
    shutil.rmtree(partial / "checkpoint-3")
    script("sft")(args + [*PUSH, "--hub_private_repo", "true"])
    assert "resuming from checkpoint-2" in capsys.readouterr().err
    assert hub["create_repo"][0]["private"] is True and [u["folder"] for u in hub["upload_folder"]] == [out]


@pytest.mark.slow
def test_a_failed_push_keeps_the_folder_and_says_how_to_push_again(world_dir, pretrained, tmp_path, hub, monkeypatch):
    def unavailable(self, **kwargs):
        raise OSError("503 Service Unavailable")

    monkeypatch.setattr(HfApi, "upload_folder", unavailable)
    out = tmp_path / "sft"
    with pytest.raises(RecipeError, match=r"is saved, but pushing it to someone/tiny-sft failed \(503 .*`hf upload"):
        script("sft")(sft_args(world_dir, pretrained[0], out, *QUICK, *PUSH))
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        ((), "push_to_hub needs hub_model_id"),
        (("--hub_model_id", "someone/tiny/sft"), "hub_model_id 'someone/tiny/sft' is not a Hub repo id"),
        (("--hub_model_id", "someone/tiny-sft", "--hub_revision", "dev"), "unset hub_revision"),
    ],
)
def test_a_push_that_cannot_work_is_refused_before_any_training(world_dir, tmp_path, hub, monkeypatch, extra, message):
    monkeypatch.setattr(Stage, "run", lambda *a: pytest.fail("trained before refusing the push"))
    out = tmp_path / "sft"
    with pytest.raises(RecipeError, match=message):
        script("sft")(sft_args(world_dir, tmp_path / "model", out, "--push_to_hub", "true", *extra))
    assert not out.exists() and not out.with_name("sft.partial").exists()
    assert hub == {"create_repo": [], "upload_folder": [], "network": []}
