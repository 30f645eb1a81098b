"""lm-evaluation-harness over every stage's model: what SFT and RL cost or keep of the base model's knowledge.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/eval.py --config recipes/tiny/eval.yaml

`eval.yaml` lists the rows (`stages`): a name, a model folder and how it is asked -- `text` (the base model: the
question as the pretraining text's Q&A pages ask it) or `chat` (the stage's chat template, lm-eval's
`--apply_chat_template`). A row whose folder is not there is left out; a folder that holds no causal LM (the
reward model) is one line. On a `make data` world, the world's held-out questions become harness tasks
(recipes/tasks/, loaded with lm-eval's include_path, offline): facts asked as generation with exact match on
the value, as log-likelihood multiple choice over candidate values, and unknown entities scored on "I don't
know". `tasks` adds standard harness tasks (hellaswag, arc_easy) for those who have the Hub. Writes
<output_dir>/eval.md (a row per stage), eval.json, each stage's lm-eval results and answers, and the question
files, all at once or not at all.
"""

from __future__ import annotations

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from collections.abc import Sequence

from trl import TrlParser

from rlhf_recipes.evaluation.harness import HarnessArguments, run_eval
from rlhf_recipes.training.config import cli, parse
from rlhf_recipes.training.launch import apply_launch
from rlhf_recipes.training.outputs import OutputArguments


def main(argv: Sequence[str] | None = None) -> dict:
    parser = TrlParser((HarnessArguments, OutputArguments))
    args, output_args = parse(parser, apply_launch(parser, argv))  # the accelerate config picks the hardware
    return run_eval(args, output_args.overwrite_output_dir)


if __name__ == "__main__":
    cli(main)
