"""`make all`: every stage and the report, one after another; on one CPU process, all in this one process.

`make <stage>` starts a stage alone: `accelerate launch` (a Python process of its own) starts the script,
which imports torch, transformers, TRL and peft before its first step. Eight stages pay that eight times.
On `HW=cpu` with one process nothing about the launch differs between stages, so `make all` runs them
here, one after another, the imports paid once. Each stage gets the environment `accelerate launch` would
give it (computed by accelerate's own launcher code from the stage's command) and records that command, so
its model card still says how to run it alone. On any other hardware (several processes, GPUs, DeepSpeed)
each stage is launched as `make <stage>` launches it.

    python -m rlhf_recipes.stages.pipeline --model tiny --hw cpu [--procs N] [-- --key value ...]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..training.config import RecipeError, cli, declared
from ..training.launch import RECORDED_COMMAND
from .command import stage_command

STAGES = ("data", "tokenizer", "pretrain", "sft", "compare", "reward", "ppo", "report")


def in_one_process(hw: str, procs: int | None) -> bool:
    """Whether every stage would run as one CPU process, launched alike: then one interpreter can run them all."""
    return hw == "cpu" and procs in (None, 1)


def launch_environment(command: Sequence[str]) -> dict[str, str]:
    """The environment `accelerate launch <options> script ...` gives its script, by accelerate's own code."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import prepare_simple_launcher_cmd_env

    args = launch_command_parser().parse_args([*command[2:], "script.py"])  # the options after `accelerate launch`
    args, _, _ = _validate_launch_command(args)
    return prepare_simple_launcher_cmd_env(args)[1]


@contextmanager
def launched(command: Sequence[str]) -> Iterator[list[str]]:
    """A stage command's script and arguments, under the environment its launch gives it, recorded as that."""
    script = next(i for i, arg in enumerate(command) if arg.endswith(".py"))
    accelerate = Path(command[0]).name == "accelerate"  # data, tokenizer: plain python
    environment = launch_environment(command[:script]) if accelerate else {}
    saved = dict(os.environ)
    os.environ.update({**environment, RECORDED_COMMAND: shown(command)})
    try:
        yield list(command[script:])
    finally:
        os.environ.clear()
        os.environ.update(saved)


def shown(command: Sequence[str]) -> str:
    """The command as a user would type it: `accelerate launch ...`, `python recipes/...`."""
    name = Path(command[0]).name
    return shlex.join([name if name == "accelerate" else "python", *command[1:]])


def run_stage(command: Sequence[str], here: bool) -> None:
    """One stage: in this process, or launched as `make <stage>` launches it."""
    print(f"all: {shown(command)}", flush=True)
    if not here:
        if subprocess.run(list(command)).returncode != 0:
            raise RecipeError(f"the stage `{shlex.join(command)}` failed (its error is above); fix it and run again")
        return
    with launched(command) as (script, *args):
        declared(script)(args)


def run_all(model: str, hw: str, procs: int | None, args: Sequence[str]) -> None:
    here = in_one_process(hw, procs)
    for stage in STAGES:
        run_stage(stage_command(model, stage, hw, procs, args), here)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--hw", default="cpu")
    parser.add_argument("--procs", type=int, default=None)
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    run_all(known.model, known.hw, known.procs, [a for a in rest if a != "--"])


if __name__ == "__main__":
    cli(main)
