"""A stage on one CPU process runs in the interpreter that asked for it, as `accelerate launch` would run it.

`accelerate launch` starts a Python process of its own (~3 s of imports: accelerate and torch) whose only
work on one CPU process is to set a few environment variables and start the script, which imports torch,
transformers and TRL again. On `HW=cpu` with one process `make <stage>` and `make all` skip it: the script
runs here, under the environment the launcher would give it (computed by accelerate's own launcher code
from the stage's command), and records that command, so its model card still says how to run it alone.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..training.config import RecipeError, declared


def in_one_process(hw: str, procs: int | None) -> bool:
    """Whether the stage would run as one CPU process: then nothing about its launch needs a launcher."""
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
    from ..training.launch import RECORDED_COMMAND  # imports torch: not before a launch that runs elsewhere

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


def run_here(command: Sequence[str]) -> None:
    """Run a stage command's script in this interpreter, as its launch would run it."""
    with launched(command) as (script, *args):
        declared(script)(args)


def run_stage(command: Sequence[str], here: bool) -> None:
    """A stage command run `here` (`run_here`), or launched as `make <stage>` launches it."""
    if here:
        run_here(command)
    elif subprocess.run(list(command)).returncode != 0:
        raise RecipeError(f"the stage `{shlex.join(command)}` failed (its error is above); fix it and run again")
