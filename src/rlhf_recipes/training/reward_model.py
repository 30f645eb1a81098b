"""A trained reward model's scale and accuracy: what the reward stage sets and measures after training."""

from __future__ import annotations

import math
from collections import defaultdict
from statistics import mean, pstdev

import torch

from ..compat import on_this_process_only
from .rewards import rewards, score_head


def _prompts(pairs) -> list:
    return list(pairs["prompt"]) if "prompt" in pairs.column_names else [None] * len(pairs)


def pair_accuracy(model, tokenizer, pairs) -> dict:
    """Accuracy (against the labels, and against gold where known) and margin, overall and by difference.

    Where the pairs record whether each label agrees with the gold labeler, the accuracy ceiling is read
    from them: a reward model that agrees with gold on every pair scores exactly that against noisy labels.
    """
    chosen = rewards(model, tokenizer, _prompts(pairs), pairs["chosen"])
    rejected = rewards(model, tokenizer, _prompts(pairs), pairs["rejected"])
    right = [c > r for c, r in zip(chosen, rejected)]
    result = {
        "pairs": len(pairs),
        "accuracy": round(mean(right), 3),
        "margin": round(mean(c - r for c, r in zip(chosen, rejected)), 3),
    }
    if "label_agrees_with_gold" in pairs.column_names:
        gold = [ok == agrees for ok, agrees in zip(right, pairs["label_agrees_with_gold"])]
        result["gold_agreement"] = round(mean(gold), 3)
        result["label_noise_ceiling"] = round(mean(pairs["label_agrees_with_gold"]), 3)
    if "difference" in pairs.column_names:
        groups = defaultdict(list)
        for ok, kind in zip(right, pairs["difference"]):
            groups[kind].append(ok)
        result["accuracy_by_difference"] = {k: round(mean(v), 3) for k, v in sorted(groups.items())}
    return result


def fresh_score_head(model) -> None:
    """Start the one-output head at N(0, 1/sqrt(d_model + 1)) with no bias (the implementation details of RLHF
    with PPO): the SFT model's features, read by a head that favours no answer yet."""
    head = score_head(model)
    torch.nn.init.normal_(head.weight, std=1 / math.sqrt(head.in_features + 1))
    if head.bias is not None:
        torch.nn.init.zeros_(head.bias)


def normalize_saved(model, tokenizer, pairs, out) -> dict:
    """`normalize` the saved reward model in `out` and save it again (on this process: a ZeRO-3 run is live)."""
    found = normalize(model, tokenizer, pairs)
    with on_this_process_only():
        model.save_pretrained(out)
    return found


def normalize(model, tokenizer, pairs) -> dict:
    """Scale the head so rewards of the answers in `pairs` (the SFT model's own) have std 1; report their mean.

    A bias-free head (GPT-2's) cannot shift the mean; PPO's value baseline and advantage whitening
    absorb a constant offset, so only the scale matters there.
    """
    answers = list(pairs["chosen"]) + list(pairs["rejected"])
    values = rewards(model, tokenizer, _prompts(pairs) * 2, answers)
    std = pstdev(values) or 1.0
    score_head(model).weight.data /= std
    return {"reward_std_before": round(std, 4), "reward_mean": round(mean(values) / std, 4)}
