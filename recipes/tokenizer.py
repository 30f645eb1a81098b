"""Stage 1a: train a GPT-2-style byte-level BPE tokenizer on the pretraining text (`make tokenizer`).

    python recipes/tokenizer.py --config recipes/tiny/tokenizer.yaml

Writes a standard tokenizer directory (`AutoTokenizer.from_pretrained` loads it) with distinct EOS
and PAD tokens -- PPO needs them apart -- and the repo's chat template. Its metrics.json says how well
it compresses the text, and how much of it falls back to byte tokens (a line suggests a larger
vocabulary when that is high); the engine is `rlhf_recipes.training.tokenizers`.
"""

from __future__ import annotations

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from rlhf_recipes.training.config import cli, parse
from rlhf_recipes.training.loading import dataset_help, load_splits
from rlhf_recipes.training.outputs import (
    OutputArguments,
    Stopwatch,
    input_paths,
    staged_output,
    write_json,
    write_model_card,
)
from rlhf_recipes.training.tokenizers import measure, train_bpe


@dataclass
class TokenizerArguments:
    dataset_name: str = field(default="data/world/pretrain", metadata={"help": dataset_help("`text`")})
    dataset_train_split: str = field(default="train", metadata={"help": "Split to train the tokenizer on."})
    vocab_size: int = field(default=1024, metadata={"help": "Target vocabulary size, special tokens included."})
    output_dir: str = field(default="outputs/tiny/tokenizer", metadata={"help": "Where the tokenizer is saved."})


def make_parser() -> TrlParser:
    return TrlParser((TokenizerArguments, OutputArguments))


def load_texts(args: TokenizerArguments) -> list[str]:
    split = args.dataset_train_split
    return load_splits(args.dataset_name, [split], [{"text"}], "run `make data` first or set dataset_name")[split][
        "text"
    ]


def main(argv: Sequence[str] | None = None) -> dict:
    args, output_args = parse(make_parser(), argv)
    clock = Stopwatch()
    with staged_output(
        args.output_dir, stage="tokenizer", inputs=input_paths(args), overwrite=output_args.overwrite_output_dir
    ) as out:
        texts = load_texts(args)
        tokenizer = train_bpe(texts, args.vocab_size)
        metrics = {
            "data": {"dataset": args.dataset_name, "rows": len(texts)},
            **measure(tokenizer, texts),
            "wall_time_s": clock.seconds,
        }
        tokenizer.save_pretrained(out)
        write_model_card(
            out,
            "Tokenizer",
            "A GPT-2-style byte-level BPE tokenizer trained on the pretraining text (rlhf-recipes stage 1a), with "
            "distinct EOS and PAD tokens and the repo's chat template.",
            metrics,
            load_with="`AutoTokenizer.from_pretrained`",
            datasets=[args.dataset_name],
        )
        write_json(Path(out) / "metrics.json", metrics)
    print(f"tokenizer: {metrics} -> {args.output_dir}")
    return metrics


if __name__ == "__main__":
    cli(main)
