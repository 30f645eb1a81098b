"""Win rate of our answers over theirs on the same prompts, with a bootstrap interval over prompts."""

import random
from statistics import mean

import datasets
import evaluate

_DESCRIPTION = """
The share of prompts on which our answer's gold score beats theirs (a tie counts half), the way
InstructGPT reports how often labelers prefer one model's answer to a baseline's. The 95% interval
resamples prompts with replacement (percentile bootstrap), so it shows how much the rate would move
on another draw of prompts of the same kind.
"""

_CITATION = """
@inproceedings{ouyang2022training,
  title={Training language models to follow instructions with human feedback},
  author={Ouyang, Long and Wu, Jeff and Jiang, Xu and others},
  booktitle={Advances in Neural Information Processing Systems},
  year={2022}
}
@book{efron1994introduction,
  title={An Introduction to the Bootstrap},
  author={Efron, Bradley and Tibshirani, Robert J.},
  publisher={Chapman and Hall/CRC},
  year={1994}
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): gold totals of our answers, one per prompt.
    references (`list` of `float`): gold totals of their answers to the same prompts, in the same order.
    resamples (`int`, defaults to 2000): bootstrap resamples of the prompts.
    seed (`int`, defaults to 0): seed of the bootstrap's `random.Random`.
Returns:
    win_rate (`float`): mean of 1 (ours higher), 0.5 (tie), 0 (theirs higher), rounded to 3 places.
    ci95 (`list` of two `float`): the bootstrap's 2.5th and 97.5th percentiles.
Examples:
    >>> win_rate = load_metric("win_rate")
    >>> win_rate.compute(predictions=[4.0, 3.5, 2.0], references=[3.0, 3.5, 4.0], resamples=100)
    {'win_rate': 0.5, 'ci95': [0.0, 0.833]}
"""


def wins(ours: list[float], theirs: list[float]) -> list[float]:
    return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(ours, theirs)]


def percentile_interval(values: list[float], rng: random.Random, resamples: int) -> list[float]:
    boots = sorted(mean(rng.choices(values, k=len(values))) for _ in range(resamples))
    return [round(boots[int(0.025 * resamples)], 3), round(boots[int(0.975 * resamples) - 1], 3)]


class WinRate(evaluate.Metric):
    """How often our answers beat theirs; `compute()` takes `resamples` and `seed` for the interval."""

    def _info(self) -> evaluate.MetricInfo:
        value = datasets.Value("float64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": value, "references": value}),
        )

    def _compute(self, predictions, references, resamples: int = 2000, seed: int = 0) -> dict:
        # evaluate itself rejects predictions and references of different lengths
        if not predictions:
            raise ValueError("win_rate needs at least one prompt's pair of gold totals")
        if resamples < 1:
            raise ValueError(f"resamples must be at least 1, got {resamples}")
        outcomes = wins(predictions, references)
        return {
            "win_rate": round(mean(outcomes), 3),
            "ci95": percentile_interval(outcomes, random.Random(seed), resamples),
        }
