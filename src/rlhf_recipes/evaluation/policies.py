"""The policies a person or the report asks, and the reward model's (proxy) score of their answers.

One row type for report.yaml's `policies` and chat.yaml's and serve.yaml's `stages`: a name, a model folder,
how it is prompted and how many answers the reward model picks from. One proxy score for the report and for
`make chat`/`make serve`: the reward model's, less the missing-EOS penalty the RL stage trained with, so a
score means the same wherever it is shown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from ..training.config import RecipeError
from ..training.generation import Completion
from ..training.rewards import rewards

PROMPTING = ("text", "fewshot", "chat")


@dataclass
class Policy:
    """One row: a model folder and how it is asked."""

    name: str
    path: str  # relative to outputs_dir (or absolute)
    prompt: str = "chat"  # text (the bare question, as a base model is asked) | fewshot | chat
    label: str | None = None  # shown in tables, figures and columns; the name if unset
    best_of: int = 1  # n > 1: n answers, the reward model picks one (best-of-n)

    @property
    def title(self) -> str:
        return self.label or self.name


def read_policies(
    entries: list, kind: str, prompting: Sequence[str] = PROMPTING, reference: str | None = None
) -> list[Policy]:
    """The rows of a YAML (`kind`: what the YAML calls a row), checked before any work: known keys, known
    prompting, unique names (and the reference among them, where rows are measured against one)."""
    known = {f.name for f in fields(Policy)}
    policies = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"name", "path"} <= set(entry) or set(entry) - known:
            raise RecipeError(
                f"{kind} {entry!r}: a row has name and path, and optionally {sorted(known - {'name', 'path'})}"
            )
        policy = Policy(**entry)
        if policy.prompt not in prompting or policy.best_of < 1:
            raise RecipeError(f"{kind} {policy.name}: prompt must be one of {tuple(prompting)} and best_of at least 1")
        policies.append(policy)
    names = [p.name for p in policies]
    if len(set(names)) != len(names) or (reference is not None and reference not in names):
        include = f" and include the reference {reference!r}" if reference is not None else ""
        raise RecipeError(f"{kind} names must be unique{include}; got {names}")
    return policies


def rl_config(stage: Path) -> dict:
    """The settings an RL stage recorded in its metrics.json (sampling temperature, missing-EOS penalty), or {}
    before it has finished: what it trained with, so the proxy score cannot drift from what it saw."""
    metrics = stage / "metrics.json"
    return json.loads(metrics.read_text()).get("config", {}) if metrics.is_file() else {}


@dataclass
class ProxyScorer:
    """The reward model's score less the RL stage's missing-EOS penalty for answers cut at the token limit
    (the chat template closes every answer with EOS, so the reward model alone cannot tell)."""

    model: object
    tokenizer: object
    missing_eos_penalty: float

    @classmethod
    def load(cls, path: Path, missing_eos_penalty: float) -> ProxyScorer:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from ..training.loading import load_pretrained

        model = load_pretrained(AutoModelForSequenceClassification, str(path)).eval()
        return cls(model, load_pretrained(AutoTokenizer, str(path)), missing_eos_penalty)

    def __call__(self, prompts: list[list[dict]], answers: Sequence[Completion]) -> list[float]:
        """One score per (conversation so far, answer)."""
        scores = rewards(
            self.model, self.tokenizer, prompts, [[{"role": "assistant", "content": a.text}] for a in answers]
        )
        return [s - (0.0 if a.ended else self.missing_eos_penalty) for s, a in zip(scores, answers)]
