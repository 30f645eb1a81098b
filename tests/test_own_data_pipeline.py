"""Issue #12's done-when: every stage on a user's data files, through `make`, never opens `data/world/`.

The data has nothing to do with the world (definitions of invented words, generated here) and has a train
split only. Each stage runs the command `make <stage>` runs (read with `make -n`), in a checkout with a world
in `data/world/` (as after `make all`), where a stage that fell back on it would find it. An audit hook in
every interpreter the commands start logs any attempt to open a file or list a folder under `data/world/`,
found or not (a checkout without a world would only turn the same attempt into an error); the log must stay
empty, and no stage may report a world metric. The commands are forked from the worker's warm interpreter
(forkserver.py), which runs the hook's `sitecustomize.py` as a fresh interpreter would: six fresh ones would
pay ~40 s of imports.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, warm_server
from test_own_data import definitions, preference_rows, sft_rows, write_jsonl

pytestmark = pytest.mark.slow

LINKED = ("recipes", "accelerate_configs", "Makefile", "pyproject.toml", "requirements.txt")
AUDIT_HOOK = """
import os, sys
_world, _log = os.environ["WATCHED_WORLD"], os.environ["WORLD_OPEN_LOG"]
def _watch(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.path.abspath(os.fsdecode(args[0]))
        if path == _world or path.startswith(_world + os.sep):
            with open(_log, "a") as log:
                log.write(f"{sys.argv[0]}: {event} {path}\\n")
sys.addaudithook(_watch)
"""
TINY_SHAPES = "--n_layer 2 --n_embd 64 --n_head 2 --context_length 128"
# the user's commands: the tiny recipe, the dataset options, and shapes small enough for a test
STAGES = {
    "tokenizer": "--dataset_name user/text.jsonl --vocab_size 400",
    "pretrain": f"--dataset_name user/text.jsonl {TINY_SHAPES} --max_steps 30 --warmup_steps 2 --save_strategy no",
    "sft": "--dataset_name user/sft.jsonl --max_steps 16 --save_strategy no",
    "reward": "--dataset_name user/pairs.jsonl --max_steps 16 --save_strategy no",
    "ppo": "--dataset_name user/prompts.jsonl --total_episodes 16 --per_device_train_batch_size 8 "
    "--local_rollout_forward_batch_size 8 --num_eval_prompts 8 --response_length 16 --save_strategy no",
    "report": "--eval_max_new_tokens 16 --bootstrap_samples 100 --num_side_by_side 2",
}


def users_files(root: Path) -> None:
    pairs = definitions(240, seed=1)
    write_jsonl(root / "user" / "text.jsonl", [{"text": d} for _, d in pairs])
    write_jsonl(root / "user" / "sft.jsonl", sft_rows(pairs[:160]))
    write_jsonl(root / "user" / "pairs.jsonl", preference_rows(pairs[:160]))
    write_jsonl(root / "user" / "prompts.jsonl", [{"prompt": r["prompt"]} for r in preference_rows(pairs[160:])])


def audited(root: Path, hooks: Path) -> dict[str, str]:
    """The environment of a command whose interpreters log what they open under root/data/world."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")])),
        "WATCHED_WORLD": str(root / "data" / "world"),
        "WORLD_OPEN_LOG": str(root / "world-opens.log"),
        "OMP_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
    }


def run_as_make_would(root: Path, env: dict, *make_args: str) -> subprocess.CompletedProcess:
    """The one command `make <make_args>` runs (`python -m <module> ...`), forked from the warm interpreter."""
    planned = subprocess.run(
        ["make", "-n", "--no-print-directory", *make_args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    python, flag, module, *args = shlex.split(planned.stdout)
    assert (python, flag) == (sys.executable, "-m"), planned.stdout
    return warm_server().run(module, args, root, env=env, module=True)


def checkout(root: Path, world: Path, hooks: Path) -> dict[str, dict]:
    """Run every stage with `make` in a checkout at `root` holding `world`; return each stage's metrics.json."""
    root.mkdir()
    for name in LINKED:
        (root / name).symlink_to(ROOT / name)
    shutil.copytree(world, root / "data" / "world")
    users_files(root)
    env = audited(root, hooks)
    venv = Path(sys.executable).parent.parent
    for stage, args in STAGES.items():
        done = run_as_make_would(root, env, stage, f"VENV={venv}", f"ARGS={args}")
        assert done.returncode == 0, f"make {stage}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    outputs = root / "outputs" / "tiny"
    return {stage: json.loads((outputs / stage / "metrics.json").read_text()) for stage in STAGES if stage != "report"}


def test_every_stage_on_a_users_files_never_opens_the_world(world_dir, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT_HOOK)
    root = tmp_path / "checkout"
    metrics = checkout(root, world_dir, hooks)
    log = root / "world-opens.log"
    assert not log.exists(), f"a stage opened the world:\n{log.read_text()}"
    report = json.loads((root / "outputs" / "tiny" / "report" / "report.json").read_text())
    assert report["judge"] == "reward model" and "gold_score" not in report["policies"]["sft"]
    assert list(report["policies"]) == ["base", "sft", "best_of_n", "ppo"]  # few-shot needs the world
    assert report["eval_prompts"] == {"dataset": "ppo/heldout_prompts.jsonl", "rows": 8}
    assert set(report["heldout"]) == {"pretrain", "sft"}
    for stage, stage_metrics in metrics.items():
        assert stage_metrics.get("world") is None, stage
        assert "user/" in stage_metrics["data"]["dataset"], stage
    world_metrics = {"fact_recall", "base", "sft", "ppo", "gold_agreement"}
    found = {(stage, key) for stage, m in metrics.items() for key in world_metrics if m.get(key)}
    found |= {("reward", k) for k in metrics["reward"].get("heldout", {}) if "gold" in k}
    assert not found, f"world metrics {found}"
    model_card = (root / "outputs" / "tiny" / "pretrain" / "README.md").read_text()
    assert "- dataset: user/text.jsonl" in model_card and "world" not in model_card

    # the hook sees what it should: an attempt on the world, forked in the same environment, is logged, found or not
    probe = tmp_path / "probe.py"
    probe.write_text("for path in ('data/world/world.json', 'data/world/no-such-file'):\n    open(path)\n")
    warm_server().run(str(probe), [], root, env=audited(root, hooks))
    assert log.read_text().count("data/world/") == 2
