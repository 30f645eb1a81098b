"""The package's `evaluate` metrics, loaded by local path as a user would, against the code the stages report with."""

import json
import random
from statistics import mean

import pytest

from rlhf_recipes.evaluation.judging import judge, summarize
from rlhf_recipes.evaluation.metrics import load_metric
from rlhf_recipes.training.generation import Completion
from rlhf_recipes.world.labeler import GoldLabeler
from rlhf_recipes.world.languages.en import ATTRIBUTES, REFUSALS
from rlhf_recipes.world.world import World


def report_win_rate(ours: list[dict], theirs: list[dict], rng: random.Random, resamples: int) -> dict:
    """recipes/report.py's win rate, verbatim: the oracle the metric must match."""
    wins = [1.0 if a["total"] > b["total"] else 0.5 if a["total"] == b["total"] else 0.0 for a, b in zip(ours, theirs)]
    boots = sorted(mean(rng.choices(wins, k=len(wins))) for _ in range(resamples))
    return {
        "win_rate": round(mean(wins), 3),
        "ci95": [round(boots[int(0.025 * resamples)], 3), round(boots[int(0.975 * resamples) - 1], 3)],
    }


def oracle(ours: list[float], theirs: list[float], seed: int, resamples: int) -> dict:
    as_rows = [{"total": x} for x in ours], [{"total": x} for x in theirs]
    return report_win_rate(*as_rows, random.Random(seed), resamples)


_draw = random.Random(4)
GOLD_TOTALS = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
RANDOM_PAIRS = ([_draw.choice(GOLD_TOTALS) for _ in range(50)], [_draw.choice(GOLD_TOTALS) for _ in range(50)])


@pytest.fixture(scope="module")
def win_rate():
    return load_metric("win_rate", keep_in_memory=True)


@pytest.fixture(scope="module")
def gold():
    return load_metric("gold_score", keep_in_memory=True)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ([4.0, 3.5, 2.0, 4.0, 1.0, 3.0], [4.0, 3.0, 2.5, 3.5, 1.0, 4.0]),  # ties count half
        ([2.0, 2.0, 2.0], [2.0, 2.0, 2.0]),
        RANDOM_PAIRS,
    ],
)
@pytest.mark.parametrize("seed, resamples", [(0, 2000), (7, 101)])
def test_win_rate_is_the_reports(win_rate, ours, theirs, seed, resamples):
    result = win_rate.compute(predictions=ours, references=theirs, seed=seed, resamples=resamples)
    assert result == oracle(ours, theirs, seed, resamples)


def test_win_rate_defaults_to_the_reports_seed_and_resamples(win_rate):
    ours, theirs = RANDOM_PAIRS
    result = win_rate.compute(predictions=ours, references=theirs)
    assert result == oracle(ours, theirs, seed=0, resamples=2000)
    assert oracle(ours, theirs, seed=0, resamples=1000) != result != oracle(ours, theirs, seed=1, resamples=2000)
    assert result["ci95"][0] < result["win_rate"] < result["ci95"][1]


def test_win_rate_rejects_mismatched_or_empty_input(win_rate):
    with pytest.raises(ValueError, match="Mismatch in the number of predictions"):
        win_rate.compute(predictions=[1.0, 2.0], references=[1.0])
    with pytest.raises(ValueError, match="at least one"):
        win_rate.compute(predictions=[], references=[])


@pytest.fixture(scope="module")
def world_file(world_dir) -> str:
    return str(world_dir / "world.json")


@pytest.fixture(scope="module")
def answers(world_file) -> tuple[str, dict[str, tuple[str, bool]]]:
    """A question about a real city of the test world, and answers to it: (text, ended) by case."""
    world = World.load(world_file)
    city, spec = world.cities[0], ATTRIBUTES["population"]
    right = city.facts["population"]
    wrong = next(v for v in world.values("population") if v != right)
    question = spec.questions[0].format(city=city.name)
    stated = spec.statements[0].format(city=city.name, value="{}")
    return question, {
        "correct": (stated.format(right), True),
        "wrong value": (stated.format(wrong), True),
        "benign refused": (REFUSALS[0], True),
        "cut off": (stated.format(right), False),
    }


@pytest.mark.parametrize(
    "case, expected",
    [
        ("correct", {"gold_score": 4.0, "fact_accuracy": 1.0, "eos_share": 1.0}),
        ("wrong value", {"gold_score": 3.0, "helpful": 1.0, "honest": 0.0, "fact_accuracy": 0.0}),
        ("benign refused", {"harmless": 0.0, "answer_rate": 0.0, "refusal_rate_benign": 1.0}),
        ("cut off", {"gold_score": 3.5, "concise": 0.5, "eos_share": 0.0}),
    ],
)
def test_gold_score_of_one_answer(gold, world_file, answers, case, expected):
    question, by_case = answers
    text, ended = by_case[case]
    result = gold.compute(predictions=[text], references=[question], world_file=world_file, ended=[ended])
    assert {k: result[k] for k in expected} == expected


def test_gold_score_is_what_the_stages_report(gold, world_file, answers):
    question, by_case = answers
    texts, ended = zip(*by_case.values())
    lengths = [9, 9, 8, 12]
    labeler = GoldLabeler(World.load(world_file))
    rows = [{"prompt": [{"role": "user", "content": question}]}] * len(texts)
    expected = summarize(judge(labeler, rows, [Completion(*c) for c in zip(texts, ended, lengths)]))

    inputs = {"predictions": list(texts), "references": [question] * len(texts), "world_file": world_file}
    assert gold.compute(**inputs, ended=list(ended), num_tokens=lengths) == expected
    without_length = {k: v for k, v in expected.items() if k != "mean_length"}
    assert gold.compute(**inputs, ended=list(ended)) == without_length
    assert gold.compute(**inputs)["concise"] > expected["concise"]  # ended defaults to True


def test_gold_score_takes_the_eval_prompts_kinds(gold, world_file, world_dir):
    rows = [json.loads(line) for line in (world_dir / "eval_prompts" / "test.jsonl").read_text().splitlines()]
    texts = [REFUSALS[i % 2] if i % 3 else "Sure. Here is how." for i in range(len(rows))]
    questions = [row["prompt"][-1]["content"] for row in rows]
    kinds = [row["kind"] for row in rows]
    expected = summarize(judge(GoldLabeler(World.load(world_file)), rows, [Completion(t, True, 0) for t in texts]))
    del expected["mean_length"]

    inputs = {"predictions": texts, "references": questions, "world_file": world_file}
    assert gold.compute(**inputs, kinds=kinds) == expected
    as_other = gold.compute(**inputs, kinds=["other"] * len(rows))
    assert expected["fact_accuracy"] is not None and as_other["fact_accuracy"] is None


def test_gold_score_rejects_missing_world_or_misaligned_extras(gold, world_file, answers):
    question, by_case = answers
    text, _ = by_case["correct"]
    with pytest.raises(ValueError, match="world_file"):
        gold.compute(predictions=[text], references=[question])
    with pytest.raises(ValueError, match="ended has 2 entries for 1 answers"):
        gold.compute(predictions=[text], references=[question], world_file=world_file, ended=[True, False])
