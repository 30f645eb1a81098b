"""A model's context length, and token-id lists fitted to it with one line saying how many were cut.

Past its context a model with a position table (GPT-2) fails with a bare `IndexError` deep in torch;
texts that long are a user's own data, not a bug, so they are cut where it does least harm, and counted.
"""

from __future__ import annotations

import sys

from accelerate import PartialState

from .config import RecipeError


def context_length(model) -> int:
    """The most tokens `model` reads at once (GPT-2's `n_positions`, others' `max_position_embeddings`);
    10**9 where the config sets no limit."""
    config = model.config
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 10**9


def fit_to_context(ids: list[list[int]], limit: int, what: str, head: int = 0) -> tuple[list[list[int]], int]:
    """Each list longer than `limit` cut to its first `head` and last `limit - head` tokens; and how many were.

    The end is kept because a reward model's score, and an answer's last tokens, are read there; `head`
    keeps what a tokenizer puts first ([CLS], BOS). Any cut is said in one line on stderr, naming `what`.
    """
    cut = sum(len(x) > limit for x in ids)
    say_cut(
        what, cut, len(ids), f"the model's context of {limit} tokens", f"kept the last {limit - head} tokens of each"
    )
    return [x if len(x) <= limit else x[:head] + x[len(x) - limit + head :] for x in ids], cut


def say_cut(what: str, cut: int, total: int, limit: str, done: str) -> None:
    """The one line every stage prints when texts did not fit: how many, the limit, and what was done with them."""
    if cut:
        PartialState().print(  # once per machine, not once per rank
            f"{what}: {cut} of {total} are longer than {limit}; {done} (shorten them, or raise the limit within "
            "the model's context)",
            file=sys.stderr,
        )


def check_max_length(config, model) -> int:
    """A trainer's `max_length`, refused when it passes the model's context: past its position table a model
    fails mid-training with a bare IndexError."""
    context = context_length(model)
    if config.max_length > context:
        raise RecipeError(f"max_length is {config.max_length}, beyond the model's context of {context} tokens; "
                          f"set max_length to at most {context}")  # fmt: skip
    return config.max_length
