"""What a base model learned of the world: greedy recall of its facts, and how it continues a bare question."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from ..training.generation import complete
from ..world.world import BOTH, World, readings

RECALL_GOAL = 0.95  # a base model good enough for the later stages' story (issue 31's speedrun goal)


def fact_recall(model, tokenizer, world: World, generate=complete) -> dict:
    """Greedy completion of 'The population of <city> is' and the like, scored against the world (in each of
    its languages: a bilingual world's recall is per language too). `generate` continues the prompts as
    `complete` does; the report's counted n-gram models bring their own, to take the same probe."""
    cases = [(r, c, a) for r in readings(world) for c in r.cities for a in r.attributes]
    prompts = [r.language.probe(a).format(city=c.name) for r, c, a in cases]
    completions = generate(model, tokenizer, prompts, max_new_tokens=8)
    recalled = [done.text.strip().startswith(c.facts[a]) for (_, c, a), done in zip(cases, completions)]
    heldout = [c.name in r.heldout for r, c, _ in cases]
    examples = [f"{p} ->{c.text}" for p, c in list(zip(prompts, completions))[:: max(1, len(prompts) // 6)]]
    found = {
        "fact_recall": round(sum(recalled) / len(cases), 3),
        "facts_recalled": sum(recalled),
        "facts_total": len(cases),
        "heldout_fact_recall": round(sum(r for r, h in zip(recalled, heldout) if h) / max(1, sum(heldout)), 3),
        "recall_examples": examples,
    }
    if world.lang == BOTH:
        by_language = {
            r.lang: [hit for (q, _, _), hit in zip(cases, recalled) if q.lang == r.lang] for r in readings(world)
        }
        found["fact_recall_by_language"] = {code: round(sum(h) / len(h), 3) for code, h in by_language.items()}
    return found


def question_continuations(model, tokenizer, world: World) -> list[str]:
    """A base model asked a bare question tends to continue with more questions (FAQ pages)."""
    prompts = [
        r.language.attributes[a].questions[0].format(city=r.heldout[0]) + "\n"
        for r in readings(world)
        for a in r.attributes[:3]
    ]
    return [p + c.text for p, c in zip(prompts, complete(model, tokenizer, prompts, max_new_tokens=24))]


def probe(model, tokenizer, world: World) -> dict:
    """What a base model learned of `world`: its fact recall and how it goes on from bare questions, printed
    (a few lines to read) and returned for metrics.json."""
    found = fact_recall(model, tokenizer, world)
    found["question_continuations"] = question_continuations(model, tokenizer, world)
    for line in found.get("recall_examples", []) + found["question_continuations"]:
        print("  " + line.replace("\n", "\\n"))
    return found


class RecallAlongTraining(TrainerCallback):
    """Fact recall every `every` steps of pretraining, on the main process: the speedrun's measure (tokens and
    training seconds, the probes' own time left out, until recall first reaches `goal`)."""

    def __init__(self, tokenizer, world: World, every: int, tokens_per_step: int, goal: float = RECALL_GOAL):
        self.tokenizer, self.world, self.every, self.tokens_per_step, self.goal = (
            tokenizer,
            world,
            every,
            tokens_per_step,
            goal,
        )
        self.points: list[dict] = []
        self.started, self.probing = 0.0, 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or (state.global_step % self.every and state.global_step < state.max_steps):
            return
        began = time.perf_counter()
        recall = fact_recall(model, self.tokenizer, self.world)["fact_recall"]
        model.train()
        self.probing += time.perf_counter() - began
        seconds = time.perf_counter() - self.started - self.probing
        tokens = state.global_step * self.tokens_per_step
        self.points.append(
            {"step": state.global_step, "tokens": tokens, "train_seconds": round(seconds, 1), "fact_recall": recall}
        )

    def summary(self) -> dict:
        """`recall_along_training` and `recall_goal_reached` (the first point at or above the goal, or None)."""
        reached = next((p for p in self.points if p["fact_recall"] >= self.goal), None)
        return {"recall_along_training": self.points, "recall_goal_reached": reached} if self.points else {}
