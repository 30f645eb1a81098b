"""A reward model's score head and its scores of (prompt, answer) pairs, read at the last real token."""

from __future__ import annotations

import torch

from .config import RecipeError
from .context import context_length, fit_to_context


def score_head(model) -> torch.nn.Linear:
    """The one-output head of a sequence-classification model, whatever the architecture calls it."""
    for name in ("score", "classifier", "classification_head"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Linear):
            return head
    raise RecipeError(
        f"{type(model).__name__} has no linear `score` or `classifier` head; use a model whose "
        "AutoModelForSequenceClassification class has one"
    )


def _text(tokenizer, prompt, answer) -> str:
    if isinstance(answer, list):
        return tokenizer.apply_chat_template((prompt or []) + answer, tokenize=False)
    return (prompt or "") + answer + tokenizer.eos_token


def leading_special_tokens(tokenizer) -> int:
    """How many tokens the tokenizer puts before a plain text ([CLS], BOS): a text cut to fit keeps them."""
    bare = tokenizer("a", add_special_tokens=False).input_ids
    return tokenizer("a").input_ids.index(bare[0])


@torch.no_grad()
def rewards(model, tokenizer, prompts: list, answers: list, batch_size: int = 64) -> list[float]:
    """The reward model's score of each (prompt, answer), read at the last non-pad token.

    A text longer than the model's context is scored on its end, and counted in one line on stderr: the
    score is read at the last token, so cutting the start keeps the answer's end and EOS. Dropping is no
    option here (every answer needs a score), and TRL's RewardTrainer, which drops over-long pairs, never
    trained on a text whose end was cut.
    """
    model.eval()
    texts = [_text(tokenizer, p, a) for p, a in zip(prompts, answers)]
    # as TRL's RewardTrainer tokenizes: a chat template holds its special tokens, plain text gets the
    # tokenizer's own (an encoder's [CLS] ... [SEP]; a BOS where the tokenizer adds one)
    special = not any(isinstance(a, list) for a in answers)
    ids = tokenizer(texts, add_special_tokens=special).input_ids if texts else []  # the tokenizer refuses []
    head = leading_special_tokens(tokenizer) if special else 0
    ids, _ = fit_to_context(ids, context_length(model), "texts to score", head)
    out = []
    for i in range(0, len(ids), batch_size):
        batch = tokenizer.pad({"input_ids": ids[i : i + batch_size]}, padding_side="right", return_tensors="pt")
        out += model(**batch.to(model.device)).logits[:, 0].float().tolist()
    return out
