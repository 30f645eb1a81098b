"""`make all`: every stage and the report, one after another; on one CPU process, all in this one process.

Each stage's script imports torch, transformers, TRL and peft before its first step: in a process of its
own, eight stages pay that eight times. On `HW=cpu` with one process `make all` runs them here, one after
another, the imports paid once, each as `make <stage>` runs it (in_process.py: under the environment
`accelerate launch` would give it, recording that command). On any other hardware (several processes,
GPUs, DeepSpeed) each stage is launched as `make <stage>` launches it.

    python -m rlhf_recipes.stages.pipeline --model tiny --hw cpu [--procs N] [-- --key value ...]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..training.config import cli
from .command import stage_command
from .in_process import in_one_process, run_stage, shown

STAGES = ("data", "tokenizer", "pretrain", "sft", "compare", "reward", "ppo", "report")


def run_all(model: str, hw: str, procs: int | None, args: Sequence[str]) -> None:
    here = in_one_process(hw, procs)
    for stage in STAGES:
        command = stage_command(model, stage, hw, procs, args)
        print(f"all: {shown(command)}", flush=True)
        run_stage(command, here)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--hw", default="cpu")
    parser.add_argument("--procs", type=int, default=None)
    known, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    run_all(known.model, known.hw, known.procs, [a for a in rest if a != "--"])


if __name__ == "__main__":
    cli(main)
