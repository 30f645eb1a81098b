"""Runs you can watch: every training stage draws its curves in TensorBoard, under <output_dir>/runs/."""

import shutil
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import pretrain_args, script

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`

# each stage's tiny run (a conftest fixture) and a curve it must draw
CURVES = {
    "pretrained": "train/loss",
    "sft_model": "train/loss",
    "reward_model": "train/loss",
    "dpo_model": "train/loss",
    "ppo_model": "train/objective/kl",
    "rloo_model": "train/reward",
    "grpo_model": "train/reward",
}


def curves(out: Path) -> dict[str, dict[int, float]]:
    """Every scalar in the event files under `out`/runs/ (each run's folder), by tag and step."""
    found = {}
    for run in sorted((out / "runs").iterdir()):
        events = EventAccumulator(str(run))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            found.setdefault(tag, {}).update({point.step: point.value for point in events.Scalars(tag)})
    return found


@pytest.mark.parametrize("stage, tag", CURVES.items())
def test_every_training_stage_draws_its_curves(request, stage, tag):
    out, _ = request.getfixturevalue(stage)
    drawn = curves(out)
    assert len(drawn.get(tag, {})) >= 2, f"{tag} not drawn twice; tags: {sorted(drawn)}"


def test_a_resumed_run_keeps_the_curves_of_the_run_it_continues(world_dir, tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "pretrain"
    args = pretrain_args(world_dir, tokenizer_dir, out, "--max_steps", "20", "--world_file", "")
    args += ["--save_strategy", "steps", "--save_steps", "10"]
    script("pretrain")(args)
    partial = out.with_name("pretrain.partial")
    out.rename(partial)  # as a run killed after its checkpoint at step 10 leaves it
    shutil.rmtree(partial / "checkpoint-20")
    script("pretrain")(args)
    assert "resuming from checkpoint-10" in capsys.readouterr().err
    losses = curves(out)["train/loss"]
    assert {5, 10, 15, 20} <= set(losses)  # steps 5 and 10: only the dead run drew them
