"""The report: every policy of the ChatGPT story judged on the same held-out prompts.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/report.py --config recipes/tiny/report.yaml

`report.yaml` lists the rows (`policies`): a name, a model folder, and how to prompt it -- `text` (the bare
question, as one would prompt a base model), `fewshot` (Q:/A: examples first, the answer cut at the next
"Q:", as a few-shot user would) or `chat` (the chat template) -- and `best_of: n` for a row that samples
n answers and lets the reward model pick one. Adding a method is one more line. Every row samples at the
temperature the RL stage trained at, and is scored by the reward model less that stage's missing-EOS
penalty (both read from the RL stage's metrics.json, so they cannot drift from what it used).

On the embedded world (the RL stage trained on `make data` prompts) the gold labeler judges every answer:
its score and parts, answer and refusal rates, and the win rate against the reference row with a bootstrap
interval. On a user's data there is no labeler: the prompts are those the RL stage held out, the reward
model is the judge of the win rate, and the gold columns are left out. Either way: length, EOS share, the
reward model's score, the KL to the reference per answer, held-out loss and perplexity per stage, the
reward model's accuracy, wall time per stage, training curves and side-by-side samples; and, before the
network, n-gram models counted on the pretraining tokens beside the base model (`ngram_orders`). Numbers
go to `report.json`; `report.md` and the PNG figures are drawn from it.
"""

from __future__ import annotations

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from collections.abc import Sequence

from trl import TrlParser

from rlhf_recipes.evaluation.report import ReportArguments, run_report
from rlhf_recipes.training.config import cli, parse
from rlhf_recipes.training.launch import apply_launch
from rlhf_recipes.training.outputs import OutputArguments


def main(argv: Sequence[str] | None = None) -> dict:
    parser = TrlParser((ReportArguments, OutputArguments))
    args, output_args = parse(parser, apply_launch(parser, argv))  # the accelerate config picks the hardware
    return run_report(args, output_args.overwrite_output_dir)


if __name__ == "__main__":
    cli(main)
