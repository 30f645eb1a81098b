"""How fast each stage trains against what the hardware allows (`make bench`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/bench.py --model tiny

For pretraining, SFT, the reward model and DPO: the recipe's own trainer (built by the stage's
script from its YAML, data and model) against a plain PyTorch loop on a copy of the same
model, the same rows, batch size and dtype, in interleaved rounds (A B A B ...) so a noisy machine slows
both alike; the figure is recipe/plain in tokens per second, median and range over the rounds, with
MFU against a matmul peak measured in the same run. RLOO and GRPO: the same, against a plain loop that
samples, scores and trains as they do, in answers per second. For PPO: the recipe's update against TRL 1.12's
`PPOTrainer` with its defaults (bf16, activation checkpointing, its garbage collection) on the same
models and batch, interleaved likewise, each update split into generation, scoring, training, gc and
the rest. Each stage runs in its own process, so its peak RSS is its own. Needs the stage inputs of
`make all`; `--shape gpt2-124m` swaps in random GPT-2-124M-sized models built from their config.
Writes outputs/bench/bench.json, bench.md and bench.png.
"""

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from dataclasses import dataclass, field

from trl import TrlParser

from rlhf_recipes.bench.stages import STAGES, run_all
from rlhf_recipes.training.config import cli, parse
from rlhf_recipes.training.launch import apply_launch


@dataclass
class BenchArguments:
    model: str = field(default="tiny", metadata={"help": "Recipe folder under recipes/ whose stage YAMLs are timed."})
    stages: str = field(default=",".join(STAGES), metadata={"help": f"Comma list of stages, of {', '.join(STAGES)}."})
    shape: str = field(
        default="recipe",
        metadata={
            "help": "recipe: the recipe's own models (run `make all` first); gpt2-124m: random GPT-2-124M-sized ones."
        },
    )
    rounds: int = field(default=5, metadata={"help": "Timed rounds per side, after one untimed warm-up round."})
    steps_per_round: int = field(default=8, metadata={"help": "Optimizer steps per round and side."})
    updates_per_round: int = field(default=3, metadata={"help": "PPO, RLOO, GRPO updates per round and side."})
    bf16: bool = field(default=False, metadata={"help": "Train in bf16 autocast (recipes and plain loops alike)."})
    data_root: str | None = field(
        default=None, metadata={"help": "Read the stages' data under this root, not the recipe's (make gpu-check)."}
    )
    outputs_root: str | None = field(
        default=None, metadata={"help": "Read the stages' models under this root, not the recipe's (make gpu-check)."}
    )
    output_dir: str = field(default="outputs/bench", metadata={"help": "Where bench.json, bench.md, bench.png go."})
    stage: str | None = field(default=None, metadata={"help": "Internal: time this one stage in this process."})


def main(argv=None) -> dict:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = TrlParser((BenchArguments,))
    (bench,) = parse(parser, apply_launch(parser, argv))
    return run_all(bench, argv, __file__)


if __name__ == "__main__":
    cli(main)
