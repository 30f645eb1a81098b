"""The world's held-out questions as lm-evaluation-harness tasks: the question files, and what the task YAMLs call.

`write_questions` writes, per language the world is written in, two JSON-lines files the tasks read:

    questions/<lang>/facts.jsonl     every held-out fact question (`make data`'s eval_prompts, kind fact): the
                                     value, the ideal answer's words before and after it, candidate values
    questions/<lang>/unknown.jsonl   the questions about held-out unknown cities and attributes the world lacks

The task YAMLs (`recipes/tasks/`) name the functions below with `!function`: `questions` loads a file as the
tasks' dataset (its folder comes from the harness's `metadata`, so one YAML serves every world), and the two
filters turn an answer into what exact match compares: the value where the ideal answer states it, or the
world's own "I don't know".
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ..training.chat import last_user_message
from ..world.world import LANGUAGES, World, admits_not_knowing, asked_about, reading_for, readings

FACTS, UNKNOWN = "facts", "unknown"
QUESTIONS_KEY = "questions"  # the metadata key naming the questions folder


def answer_parts(world: World, attr: str, city: str) -> tuple[str, str]:
    """The ideal answer's words before its value (the answer the harness starts for the model) and after it."""
    before, after = world.language.attributes[attr].statements[0].format(city=city, value="\0").split("\0")
    return before.rstrip(), after


def text_prompt(world: World, question: str) -> str:
    """The question as the pretraining text's Q&A pages ask it ("Q: ...\\nA:"), for a model with no chat."""
    return world.language.qa_format.format(question=question, answer="").rstrip()


def candidates(world: World, attr: str, value: str, count: int, rng: random.Random) -> tuple[list[str], int]:
    """`count` values of `attr` that cities have, the true one among them at a random place; and that place."""
    others = rng.sample([v for v in world.values(attr) if v != value], min(count - 1, len(world.values(attr)) - 1))
    place = rng.randrange(len(others) + 1)
    return others[:place] + [value] + others[place:], place


def fact_row(world: World, question: str, num_choices: int, rng: random.Random) -> dict:
    attr, name = asked_about(world.language, question)
    value = world.city(name).facts[attr]
    before, after = answer_parts(world, attr, name)
    choices, label = candidates(world, attr, value, num_choices, rng)
    return {
        "question": question,
        "text_prompt": text_prompt(world, question),
        "answer_start": before,
        "value": value,
        "value_end": after,
        "choices": choices,
        "label": label,
        "attribute": attr,
        "lang": world.lang,
    }


def unknown_row(world: World, question: str) -> dict:
    return {
        "question": question,
        "text_prompt": text_prompt(world, question),
        "answer": world.language.unknown_markers[0],
        "lang": world.lang,
    }


def question_rows(world: World, eval_rows: list[dict], num_choices: int, seed: int) -> dict[str, dict[str, list]]:
    """{lang: {facts: rows, unknown: rows}}: the held-out prompts of `eval_rows` (kinds fact and unknown), each
    in the language it is asked in; candidate values drawn with `seed`."""
    rng = random.Random(seed)
    found = {reading.lang: {FACTS: [], UNKNOWN: []} for reading in readings(world)}
    for row in eval_rows:
        question = last_user_message(row["prompt"])
        reading = reading_for(world, question)
        if row.get("kind") == "fact":
            found[reading.lang][FACTS].append(fact_row(reading, question, num_choices, rng))
        elif row.get("kind") == "unknown":
            found[reading.lang][UNKNOWN].append(unknown_row(reading, question))
    return {lang: kinds for lang, kinds in found.items() if kinds[FACTS]}


def write_questions(rows: dict[str, dict[str, list]], folder: Path) -> None:
    for lang, kinds in rows.items():
        (folder / lang).mkdir(parents=True, exist_ok=True)
        for kind, found in kinds.items():
            (folder / lang / f"{kind}.jsonl").write_text(
                "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in found)
            )


# --- what the task YAMLs call ---------------------------------------------------------------------


def questions(lang: str, kind: str, **metadata):
    """A task's dataset: questions/<lang>/<kind>.jsonl under the folder the harness's metadata names (`--metadata
    '{"questions": "outputs/tiny/eval/questions"}'` on lm-eval's command line), read from disk, never a hub."""
    import datasets

    folder = metadata.get(QUESTIONS_KEY)
    if not folder:
        raise ValueError(f"the world tasks read their questions from a folder: pass metadata {QUESTIONS_KEY}")
    return datasets.load_dataset("json", data_files={"test": str(Path(folder) / lang / f"{kind}.jsonl")})


def stated_value(answer: str, value_end: str) -> str:
    """The words between the answer's start and where the ideal answer goes on after the value ("." or " river.";
    a decimal point is no end); the whole answer when it never goes on that way."""
    found = re.match(r"\s*(.*?)" + re.escape(value_end) + r"(?!\d)", answer)
    return (found.group(1) if found else answer).strip()


def value_as_stated(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval filter: each answer cut to the value it states, for exact match against the true value."""
    return [[stated_value(r, doc["value_end"]) for r in answers] for answers, doc in zip(resps, docs)]


def says_not_knowing(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """lm-eval filter: an answer that admits not knowing (the world's markers, in the doc's language) becomes the
    world's "i don't know", for exact match against it; any other answer stays as it is."""
    return [
        [doc["answer"] if admits_not_knowing(LANGUAGES[doc["lang"]], r) else r.strip() for r in answers]
        for answers, doc in zip(resps, docs)
    ]
