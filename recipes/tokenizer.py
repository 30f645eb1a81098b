"""Stage 1a: train a GPT-2-style byte-level BPE tokenizer on the pretraining text (`make tokenizer`).

    python recipes/tokenizer.py --config recipes/tiny/tokenizer.yaml

Writes a standard tokenizer directory (`AutoTokenizer.from_pretrained` loads it) with distinct EOS
and PAD tokens -- PPO needs them apart -- and the repo's chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from trl import TrlParser

from rlhf_recipes.training.chat import CHAT_TEMPLATE, EOS_TOKEN, PAD_TOKEN
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
from rlhf_recipes.world.world import BILINGUAL, text_language


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


def train_bpe(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, unk_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def compression(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> float:
    """Characters per token over `texts`."""
    return sum(map(len, texts)) / sum(len(tokenizer(t).input_ids) for t in texts)


def main(argv: Sequence[str] | None = None) -> dict:
    args, output_args = parse(make_parser(), argv)
    clock = Stopwatch()
    with staged_output(
        args.output_dir, stage="tokenizer", inputs=input_paths(args), overwrite=output_args.overwrite_output_dir
    ) as out:
        texts = load_texts(args)
        tokenizer = train_bpe(texts, args.vocab_size)
        sample = texts[: min(len(texts), 2000)]
        chars_per_token = compression(tokenizer, sample)
        metrics = {
            "data": {"dataset": args.dataset_name, "rows": len(texts)},
            "vocab_size": len(tokenizer),
            "chars_per_token": round(chars_per_token, 2),
            "corpus_tokens_estimate": round(sum(map(len, texts)) / chars_per_token),
            "wall_time_s": clock.seconds,
        }
        by_language = {lang: [t for t in sample if text_language(t) == lang] for lang in BILINGUAL}
        if all(by_language.values()):  # text in both scripts: how well each is compressed
            metrics["chars_per_token_by_language"] = {
                k: round(compression(tokenizer, v), 2) for k, v in by_language.items()
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
