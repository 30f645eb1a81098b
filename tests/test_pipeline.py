"""`make all` on one CPU runs every stage in one process, and `make <stage>` runs its stage in the process make
starts: each under the environment `accelerate launch` would give it, recording that command; on other
hardware each stage is launched as make does."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, sft_args
from rlhf_recipes.stages import in_process
from rlhf_recipes.stages.command import stage_command
from rlhf_recipes.training.outputs import MANIFEST

SHOW_ENVIRONMENT = "import json, os; print(json.dumps(dict(os.environ)))"
LAUNCH_VARIABLES = ("ACCELERATE_", "KMP_", "OMP_", "MASTER_")  # what the launcher sets for its script


@pytest.mark.slow  # starts a launcher or trains: `make test`
def test_a_stage_in_the_pipeline_sees_what_accelerate_launch_gives_it(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    shown = tmp_path / "show.py"
    shown.write_text(SHOW_ENVIRONMENT)
    command = stage_command("tiny", "sft", "cpu")
    launcher = command[: next(i for i, arg in enumerate(command) if arg.endswith(".py"))]
    launched = subprocess.run([*launcher, str(shown)], capture_output=True, text=True, check=True)
    by_accelerate = json.loads(launched.stdout.splitlines()[-1])
    with in_process.launched([*launcher, str(shown), "--seed", "3"]) as script:
        assert script == [str(shown), "--seed", "3"]
        ours = dict(os.environ)
    set_by_launch = {
        k: v for k, v in by_accelerate.items() if k.startswith(LAUNCH_VARIABLES) and os.environ.get(k) != v
    }
    assert {"ACCELERATE_USE_CPU", "ACCELERATE_MIXED_PRECISION"} <= set(set_by_launch)
    assert {k: ours.get(k) for k in set_by_launch} == set_by_launch
    assert "ACCELERATE_USE_CPU" not in os.environ or os.environ["ACCELERATE_USE_CPU"] != "True"  # restored after


@pytest.mark.slow  # starts a launcher or trains: `make test`
def test_a_stage_in_the_pipeline_records_its_own_command(world_dir, pretrained, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "sft"
    in_process.run_stage(stage_command("tiny", "sft", "cpu", None, sft_args(world_dir, pretrained[0], out)[2:]), True)
    recorded = json.loads((out / MANIFEST).read_text())["command"]
    assert recorded.startswith("accelerate launch --quiet --config_file accelerate_configs/cpu.yaml recipes/sft.py")
    assert f"--output_dir {out}" in recorded and f"--output_dir {out}" in (out / "README.md").read_text()


@pytest.mark.parametrize("hw, procs, here", [("cpu", None, True), ("cpu", 1, True), ("cpu", 2, False)])
def test_only_one_cpu_process_runs_in_the_pipeline_s_process(hw, procs, here):
    assert in_process.in_one_process(hw, procs) is here
    assert not in_process.in_one_process("multi_cpu", None) and not in_process.in_one_process("single_gpu", None)


@pytest.mark.slow  # starts a launcher or trains: `make test`
def test_a_stage_that_fails_stops_make_all_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "rlhf_recipes.stages.pipeline", "--model", "tiny", "--", "--no_such_option", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "all: python recipes/data.py" in result.stdout and "tokenizer" not in result.stdout
