"""The one way a stage's command is built: `make <stage>` (`make bench` too), the sweep and the tests call it.

    python -m rlhf_recipes.stages.command sft --model tiny --hw cpu [--procs 2] [-- --learning_rate 1e-4 ...]

runs `accelerate launch --config_file accelerate_configs/cpu.yaml recipes/sft.py --config recipes/tiny/sft.yaml`
(`data` and `tokenizer` need no launcher: plain `python`). An unknown model, hardware or stage is one line
listing the choices.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..training.config import RecipeError, cli
from ..training.recipes import recipe_stages, stage_config_exists

SCRIPTS = {"rloo": "online", "grpo": "online", "methods": "report"}  # a stage run by another stage's script
UNLAUNCHED = ("data", "tokenizer")  # one process, no accelerate: they train no model
BY_MODEL = ("bench",)  # scripts that read every stage YAML of a model themselves: `--model`, not `--config`


def choices(folder: str, pattern: str) -> list[str]:
    """What the files matching `pattern` in `folder` name: `*.yaml` their stems, `*/sft.yaml` their folders."""
    return sorted(p.stem if p.parent == Path(folder) else p.parent.name for p in Path(folder).glob(pattern))


def stage_command(
    model: str, stage: str, hw: str = "cpu", procs: int | None = None, args: Sequence[str] = ()
) -> list[str]:
    """`accelerate launch ... recipes/<script>.py --config recipes/<model>/<stage>.yaml <args>`, checked first."""
    models = choices("recipes", "*/recipe.yaml")
    if not Path("recipes", model).is_dir():
        raise RecipeError(f"MODEL={model} is not a recipe folder; choose one of {', '.join(models)}")
    config = Path("recipes", model, f"{stage}.yaml")
    if stage not in BY_MODEL and not stage_config_exists(model, stage):
        stages = ", ".join(recipe_stages(model))
        raise RecipeError(f"recipes/{model} has no {stage}.yaml; its stages are {stages}")
    chosen = ["--model", model] if stage in BY_MODEL else ["--config", str(config)]
    chosen += ["--method", stage] if SCRIPTS.get(stage) == "online" else []  # the target names the trainer
    script = ["recipes/" + SCRIPTS.get(stage, stage) + ".py", *chosen, *args]
    if stage in UNLAUNCHED:
        return [sys.executable, *script]
    if not Path("accelerate_configs", f"{hw}.yaml").is_file():
        raise RecipeError(
            f"HW={hw} has no accelerate config; choose one of {', '.join(choices('accelerate_configs', '*.yaml'))}"
        )
    launch = [str(Path(sys.executable).with_name("accelerate")), "launch", "--quiet", "--config_file"]
    launch += [f"accelerate_configs/{hw}.yaml", *(["--num_processes", str(procs)] if procs else [])]
    return [*launch, *script]


def command_of(argv: Sequence[str]) -> list[str]:
    """The stage command that `python -m rlhf_recipes.stages.command <argv>` (what `make` runs) stands for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("stage")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--hw", default="cpu")
    parser.add_argument("--procs", type=int, default=None)
    known, rest = parser.parse_known_args(argv)
    return stage_command(known.model, known.stage, known.hw, known.procs, [a for a in rest if a != "--"])


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stage's command in this process's place (make's exit status is then the stage's)."""
    command = command_of(sys.argv[1:] if argv is None else argv)
    os.execv(command[0], command)


if __name__ == "__main__":
    cli(main)
