"""Does the story hold across seeds? (`make sweep SEEDS=5`)

    python recipes/sweep.py --model tiny --seeds 5 --from_stage sft

For each seed k, every stage from `from_stage` on (sft: SFT, comparisons, reward model, PPO, report;
pretrain: pretraining too) runs as `make` runs it, with `--seed k`, into outputs/<model>/sweep/seed-<k>/;
a stage's inputs are its seed's own outputs, stages before `from_stage` are shared (linked from
outputs/<model>/). The seeds' reports become sweep.json, sweep.md and sweep.png in outputs/<model>/sweep:
every row's gold score, win rate, honesty and collapse check as mean, standard deviation and each seed's
value. A finished stage of a seed is kept, so a sweep that dies goes on where it stopped; a stage that dies
resumes from its own checkpoints.
"""

from __future__ import annotations

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from collections.abc import Sequence

from trl import TrlParser

from rlhf_recipes.stages.sweep import SweepArguments, run_sweep
from rlhf_recipes.training.config import cli, parse


def main(argv: Sequence[str] | None = None) -> dict:
    (args,) = parse(TrlParser((SweepArguments,)), argv)
    return run_sweep(args)


if __name__ == "__main__":
    cli(main)
