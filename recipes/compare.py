"""Stage 3a: collect comparisons -- the SFT model answers, the gold labeler ranks (`make compare`).

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/compare.py --config recipes/tiny/compare.yaml

As in InstructGPT, the SFT model answers each comparison prompt K times (sampled) and a labeler ranks
the answers. Every pair of the K answers whose gold scores differ becomes a `chosen`/`rejected` pair
(all C(K,2) pairs, not best-vs-rest, so middling answers are compared too); the label is the noisy
labeler's, flipped with probability `label_noise`. Gold ties are dropped: a human would have no
preference. The reward model thus learns the SFT model's own mistakes. The world generator's offline
pairs (with degenerate answers) can be mixed into the training split. Pairs from a held-out share of
the prompts form the test split: fresh SFT samples the reward model never sees.
"""

from __future__ import annotations

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from collections.abc import Sequence

from trl import TrlParser

from rlhf_recipes.evaluation.compare import CompareArguments, run_compare
from rlhf_recipes.training.config import cli, parse
from rlhf_recipes.training.launch import apply_launch
from rlhf_recipes.training.outputs import OutputArguments


def main(argv: Sequence[str] | None = None) -> dict:
    parser = TrlParser((CompareArguments, OutputArguments))
    args, output_args = parse(parser, apply_launch(parser, argv))  # the accelerate config picks the hardware
    return run_compare(args, output_args.overwrite_output_dir)


if __name__ == "__main__":
    cli(main)
