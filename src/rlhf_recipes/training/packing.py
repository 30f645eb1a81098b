"""Pretraining text as the model reads it: documents joined by EOS and cut into full blocks, no padding."""

from __future__ import annotations

from itertools import chain

from accelerate import PartialState

from .config import RecipeError
from .loading import load_splits


def packed(split, tokenizer, context: int, name: str):
    """`split`'s `text` rows as `input_ids` blocks of exactly `context` tokens (the last partial block dropped)."""

    def pack(batch):
        ids = list(chain.from_iterable(tokenizer(t).input_ids + [tokenizer.eos_token_id] for t in batch["text"]))
        return {"input_ids": [ids[i : i + context] for i in range(0, len(ids) // context * context, context)]}

    with PartialState().local_main_process_first():
        blocks = split.map(pack, batched=True, batch_size=1000, remove_columns=split.column_names)
    if len(blocks) == 0:
        raise RecipeError(f"{name} is shorter than one {context}-token block; lower context_length or add text")
    return blocks


def pretraining_splits(dataset: str, splits: list[str], held_out: tuple[float, int], tokenizer, context: int) -> dict:
    """The pretraining stage's train and held-out splits, packed: one function, so the report's n-gram counts
    read exactly the blocks the model trained and was evaluated on."""
    raw = load_splits(dataset, splits, [{"text"}], "run `make data` first or set dataset_name", held_out=held_out)
    return {name: packed(ds, tokenizer, context, f"dataset {dataset} split {name!r}") for name, ds in raw.items()}
