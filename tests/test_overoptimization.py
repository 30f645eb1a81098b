"""The over-optimisation curve's estimator and the collapse check, on numbers small enough to check by hand."""

import math
import random
from itertools import combinations
from statistics import mean

import pytest

from rlhf_recipes.evaluation.diversity import diversity, template
from rlhf_recipes.evaluation.overoptimization import (
    best_of_n_curve,
    best_of_n_expectation,
    best_of_n_kl,
    powers_of_two,
    verdict,
)
from rlhf_recipes.world.world import build_world


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_best_of_n_is_the_mean_over_every_subset(n):
    rng = random.Random(n)
    proxy = [rng.random() for _ in range(7)]
    gold = [rng.random() for _ in range(7)]
    picks = [max(subset, key=lambda i: proxy[i]) for subset in combinations(range(7), n)]
    expected = (mean(proxy[i] for i in picks), mean(gold[i] for i in picks))
    assert best_of_n_expectation(proxy, gold, n) == pytest.approx(expected)


def test_the_curve_reads_kl_analytically_and_says_where_gold_peaked():
    assert best_of_n_kl(1) == 0 and best_of_n_kl(64) == pytest.approx(math.log(64) - 63 / 64)
    assert powers_of_two(64) == [1, 2, 4, 8, 16, 32, 64]
    # a proxy that likes long answers, a gold score that likes them only up to a point
    proxy = [[float(i) for i in range(8)]]
    gold = [[min(i, 8 - i) for i in range(8)]]
    curve = best_of_n_curve(proxy, gold, [1, 2, 4, 8])
    assert [p["proxy"] for p in curve] == sorted(p["proxy"] for p in curve)
    assert curve[-1]["gold"] < max(p["gold"] for p in curve)
    assert "falls" in verdict(curve) and "no fall" in verdict(curve[:2])
    with pytest.raises(ValueError, match="best-of-9"):
        best_of_n_expectation([0.0] * 8, [0.0] * 8, 9)


def test_templates_mask_names_and_values_so_a_collapsed_policy_shows():
    world = build_world(0, 8, ["country", "population"], 0.25, num_unknown=4)
    a, b = world.cities[:2]
    same = [f"The population of {c.name} is {c.facts['population']}." for c in (a, b)]
    assert template(same[0], world) == template(same[1], world) == "The population of {city} is {value}."
    stranger = world.unknown[0]
    assert template(f"I don't know the population of {stranger}.", world) == "I don't know the population of {city}."
    assert diversity(same * 3, world)["collapsed"]
    varied = [*same, f"{a.name} lies in {a.facts['country']}.", "I can't help with that request."]
    check = diversity(varied, world)
    assert check["distinct_templates"] == 3 and not check["collapsed"]
