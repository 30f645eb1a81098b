"""The one way a stage's command is built: `make <stage>` (`make bench` too), the sweep and the tests call it.

    python -m rlhf_recipes.stages.command sft --model tiny --hw cpu [--procs 2] [-- --learning_rate 1e-4 ...]

stands for `accelerate launch --config_file accelerate_configs/cpu.yaml recipes/sft.py --config recipes/tiny/sft.yaml`
(`data` and `tokenizer` need no launcher: plain `python`). On one CPU process the script runs in this
process, as that launch would run it (in_process.py), and saves the launcher's start-up; on anything else
this process becomes the launch. An unknown model, hardware or stage is one line listing the choices.

On several machines every machine runs the same command with its own `--machine_rank`:

    python -m rlhf_recipes.stages.command sft --hw multi_node --procs 16 --num_machines 2 --machine_rank 1 \
        --main_process_ip 10.0.0.1 --main_process_port 29500

A machine other than rank 0 first waits for the main process's port to open, at most `--main_process_timeout`
seconds, and then stops in one line naming the address instead of waiting on in torch's rendezvous.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..training.config import RecipeError, cli
from ..training.recipes import recipe_stages, stage_config_exists
from .in_process import in_one_process, run_here

SCRIPTS = {"rloo": "online", "grpo": "online", "methods": "report"}  # a stage run by another stage's script
UNLAUNCHED = ("data", "tokenizer")  # one process, no accelerate: they train no model
BY_MODEL = ("bench",)  # scripts that read every stage YAML of a model themselves: `--model`, not `--config`


MAIN_PROCESS_TIMEOUT_S = 300  # a machine's wait for rank 0's port: rank 0 may still be importing torch


@dataclass(frozen=True)
class Machines:
    """This machine's place in a run over several: accelerate's per-machine launch options."""

    count: int
    rank: int
    main_ip: str
    main_port: int = 29500

    def options(self) -> list[str]:
        return [
            "--num_machines",
            str(self.count),
            "--machine_rank",
            str(self.rank),
            "--main_process_ip",
            self.main_ip,
            "--main_process_port",
            str(self.main_port),
        ]


def choices(folder: str, pattern: str) -> list[str]:
    """What the files matching `pattern` in `folder` name: `*.yaml` their stems, `*/sft.yaml` their folders."""
    return sorted(p.stem if p.parent == Path(folder) else p.parent.name for p in Path(folder).glob(pattern))


def stage_command(
    model: str,
    stage: str,
    hw: str = "cpu",
    procs: int | None = None,
    args: Sequence[str] = (),
    machines: Machines | None = None,
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
        if machines:
            raise RecipeError(
                f"{stage} runs on one machine, unlaunched; drop --num_machines and the other machine options"
            )
        return [sys.executable, *script]
    if not Path("accelerate_configs", f"{hw}.yaml").is_file():
        raise RecipeError(
            f"HW={hw} has no accelerate config; choose one of {', '.join(choices('accelerate_configs', '*.yaml'))}"
        )
    launch = [str(Path(sys.executable).with_name("accelerate")), "launch", "--quiet", "--config_file"]
    launch += [f"accelerate_configs/{hw}.yaml", *(["--num_processes", str(procs)] if procs else [])]
    return [*launch, *(machines.options() if machines else []), *script]


def stage_options(argv: Sequence[str]) -> argparse.Namespace:
    """What `python -m rlhf_recipes.stages.command <argv>` (what `make` runs) asks for: the stage, where it runs,
    its machines (`machines`, None on one) and the script's own arguments (`args`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("stage")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--hw", default="cpu")
    parser.add_argument("--procs", type=int, default=None)
    parser.add_argument("--num_machines", type=int, default=None)
    parser.add_argument("--machine_rank", type=int, default=None)
    parser.add_argument("--main_process_ip", default=None)
    parser.add_argument("--main_process_port", type=int, default=29500)
    parser.add_argument("--main_process_timeout", type=float, default=MAIN_PROCESS_TIMEOUT_S)
    options, rest = parser.parse_known_args(argv)
    options.args = [a for a in rest if a != "--"]
    options.machines = machines_of(options)
    return options


def machines_of(options: argparse.Namespace) -> Machines | None:
    """The machines the options name, all three of them or none."""
    named = (options.num_machines, options.machine_rank, options.main_process_ip)
    if all(value is None for value in named):
        return None
    if any(value is None for value in named):
        raise RecipeError(
            "a run over several machines needs --num_machines, --machine_rank and --main_process_ip on every "
            "machine; give all three (docs/hardware.md: Several machines)"
        )
    if not 0 <= options.machine_rank < options.num_machines:
        raise RecipeError(
            f"--machine_rank {options.machine_rank} is not one of 0..{options.num_machines - 1} "
            f"(--num_machines {options.num_machines}); number the machines from 0, the main one"
        )
    return Machines(options.num_machines, options.machine_rank, options.main_process_ip, options.main_process_port)


def command_of(argv: Sequence[str]) -> list[str]:
    """The stage command that `python -m rlhf_recipes.stages.command <argv>` stands for."""
    return command_for(stage_options(argv))


def command_for(options: argparse.Namespace) -> list[str]:
    return stage_command(options.model, options.stage, options.hw, options.procs, options.args, options.machines)


def wait_for_main_process(machines: Machines, timeout_s: float) -> None:
    """Return once the main process's port (machine rank 0's) accepts a connection, or stop in one line.

    torch's rendezvous would wait 10 minutes for it and then fail in a traceback that names neither the
    address nor the fix."""
    address = (machines.main_ip, machines.main_port)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(address, timeout=min(5.0, max(0.1, deadline - time.monotonic()))):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise RecipeError(
                    f"machine rank {machines.rank} cannot reach the main process at {address[0]}:{address[1]} "
                    f"within {timeout_s:g} s ({e.strerror or e}); start machine rank 0 too, with this same "
                    "--main_process_ip (its address as the other machines reach it) and --main_process_port (open "
                    "between the machines), or wait longer with --main_process_timeout"
                ) from None
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def main(argv: Sequence[str] | None = None) -> None:
    """Run the stage's command here, or launch it in this process's place (make's exit status is the stage's)."""
    options = stage_options(sys.argv[1:] if argv is None else argv)
    command = command_for(options)
    if options.machines is None and in_one_process(options.hw, options.procs):
        run_here(command)
        return
    if options.machines and options.machines.rank > 0:
        wait_for_main_process(options.machines, options.main_process_timeout)
    os.execv(command[0], command)


if __name__ == "__main__":
    cli(main)
