"""The prompts of the online RL stages (PPO, RLOO, GRPO): one dataset, checked, split the same way in each.

Each stage holds out the first `num_eval_prompts` of the train split and trains on the rest, so every
method learns from the same prompts and the report can judge them all on the ones none of them saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accelerate import PartialState

from .config import RecipeError
from .loading import dataset_help, load_splits

PROMPT_FIX = "run `make data` first or set dataset_name"


@dataclass
class PromptArguments:
    dataset_name: str | None = field(
        default=None, metadata={"help": dataset_help("`prompt` (conversational or plain)")}
    )
    max_prompt_length: int = field(
        default=64, metadata={"help": "Longest prompt in tokens; longer ones are an error, not silently cut."}
    )
    drop_long_prompts: bool = field(
        default=False, metadata={"help": "Skip prompts longer than max_prompt_length (hub data) instead of failing."}
    )
    num_eval_prompts: int = field(
        default=16,
        metadata={
            "help": "Prompts held out of the train split (its first ones): the stage's eval set, saved as "
            "heldout_prompts.jsonl for the report on a user's data."
        },
    )


def render(prompt, tokenizer) -> str:
    """A prompt as the policy sees it: a conversation through the chat template, plain text as it is."""
    if isinstance(prompt, list):
        return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return prompt


def prompt_splits(args, tokenizer, context: int, completion_length: int) -> tuple:
    """(train, held-out) prompt datasets, each with `prompt` and its `input_ids`, checked against the context."""
    if args.max_prompt_length + completion_length > context:
        raise RecipeError(
            f"max_prompt_length {args.max_prompt_length} + response_length {completion_length} exceeds the "
            f"model's context of {context} tokens"
        )
    train = load_splits(args.dataset_name, [args.dataset_train_split], [{"prompt"}], PROMPT_FIX, args.dataset_config)[
        args.dataset_train_split
    ]
    others = [c for c in train.column_names if c != "prompt"]
    with PartialState().local_main_process_first():
        train = train.map(
            lambda row: {"input_ids": tokenizer(render(row["prompt"], tokenizer), add_special_tokens=False).input_ids},
            remove_columns=others,
        )
    if args.drop_long_prompts:
        kept = train.filter(lambda row: len(row["input_ids"]) <= args.max_prompt_length)
        print(f"kept {len(kept)} of {len(train)} prompts of at most {args.max_prompt_length} tokens")
        if len(kept) == 0:
            raise RecipeError(
                f"every prompt in {args.dataset_name} is longer than max_prompt_length "
                f"{args.max_prompt_length}; raise it"
            )
        train = kept
    longest = max(map(len, train["input_ids"]))
    if longest > args.max_prompt_length:
        raise RecipeError(
            f"a prompt in {args.dataset_name} is {longest} tokens, longer than max_prompt_length "
            f"{args.max_prompt_length}; raise it (within the context) or shorten the prompts"
        )
    held = min(args.num_eval_prompts, len(train) // 2)
    return train.select(range(held, len(train))), train.select(range(held))
