"""What a base model learned of the world: greedy recall of its facts, and how it continues a bare question."""

from __future__ import annotations

from ..evaluation.generation import complete
from .world import World


def fact_recall(model, tokenizer, world: World) -> dict:
    """Greedy completion of 'The population of <city> is' and the like, scored against the world."""
    cases = [(c, a) for c in world.cities for a in world.attributes]
    prompts = [world.language.probe(a).format(city=c.name) for c, a in cases]
    completions = complete(model, tokenizer, prompts, max_new_tokens=8)
    heldout = set(world.heldout)
    right = {"train": 0, "heldout": 0}
    total = {"train": 0, "heldout": 0}
    for (city, attr), done in zip(cases, completions):
        group = "heldout" if city.name in heldout else "train"
        total[group] += 1
        right[group] += done.text.strip().startswith(city.facts[attr])
    examples = [f"{p} ->{c.text}" for p, c in list(zip(prompts, completions))[:: max(1, len(prompts) // 6)]]
    return {
        "fact_recall": round((right["train"] + right["heldout"]) / len(cases), 3),
        "facts_recalled": right["train"] + right["heldout"],
        "facts_total": len(cases),
        "heldout_fact_recall": round(right["heldout"] / max(1, total["heldout"]), 3),
        "recall_examples": examples,
    }


def question_continuations(model, tokenizer, world: World) -> list[str]:
    """A base model asked a bare question tends to continue with more questions (FAQ pages)."""
    forms = world.language.attributes
    prompts = [forms[a].questions[0].format(city=world.heldout[0]) + "\n" for a in world.attributes[:3]]
    return [p + c.text for p, c in zip(prompts, complete(model, tokenizer, prompts, max_new_tokens=24))]
