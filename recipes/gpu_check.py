"""What only a GPU can show, run and measured in at most 8 minutes (`make gpu-check`).

    python recipes/gpu_check.py [--output_dir outputs/gpu-check]

On a machine with a CUDA GPU, on the tiny recipe: SFT and PPO on HW=single_gpu in bf16, QLoRA (4-bit) SFT,
SFT under ZeRO-2 on one GPU and the bench's GPU row, each the stage command `make` would run, with a timeout
of its own. Writes outputs/gpu-check/gpu_check.json: the GPU's name, what ran, and each step's time,
tokens/s, loss and peak GPU memory. Without a GPU it says so in one line and exits 0.
"""

from __future__ import annotations

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from collections.abc import Sequence

from trl import TrlParser

from rlhf_recipes.bench.gpu_check import GpuCheckArguments, run_check
from rlhf_recipes.training.config import cli, parse


def main(argv: Sequence[str] | None = None) -> dict | None:
    (args,) = parse(TrlParser((GpuCheckArguments,)), argv)
    return run_check(args)


if __name__ == "__main__":
    cli(main)
