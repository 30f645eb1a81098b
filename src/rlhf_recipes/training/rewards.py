"""A reward model's score head and its scores of (prompt, answer) pairs, read at the last real token."""

from __future__ import annotations

import torch

from .config import RecipeError


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


@torch.no_grad()
def rewards(model, tokenizer, prompts: list, answers: list, batch_size: int = 64) -> list[float]:
    """The reward model's score of each (prompt, answer), read at the last non-pad token."""
    model.eval()
    texts = [_text(tokenizer, p, a) for p, a in zip(prompts, answers)]
    # as TRL's RewardTrainer tokenizes: a chat template holds its special tokens, plain text gets the
    # tokenizer's own (an encoder's [CLS] ... [SEP]; a BOS where the tokenizer adds one)
    special = not any(isinstance(a, list) for a in answers)
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    out = []
    try:
        for i in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=special
            ).to(model.device)
            out += model(**batch).logits[:, 0].float().tolist()
    finally:
        tokenizer.padding_side = side
    return out
