"""What `make bench` measures with: a matmul peak, step clocks, interleaved rounds, peak memory."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import TrainerCallback


def matmul_peak(dtype: torch.dtype, device: str = "cpu", seconds: float = 1.0) -> float:
    """The best FLOP/s of large square matmuls in `dtype`, measured now: the roof MFU is read against."""
    best = 0.0
    for n in (512, 1024, 2048, 4096):
        a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
        a @ b  # warm-up
        runs, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 4:
            a @ b
            runs += 1
            if device != "cpu":
                torch.cuda.synchronize()
        best = max(best, 2 * n**3 * runs / elapsed)
        if elapsed / runs > seconds / 8:  # a CPU without native bf16 crawls: larger sizes would take minutes
            break
    return best


class StepClock(TrainerCallback):
    """When a trainer's `train()` began and when each of its optimizer steps (or PPO updates) ended."""

    def __init__(self) -> None:
        self.began, self.ends = 0.0, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.began, self.ends = time.perf_counter(), []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


@dataclass
class Round:
    """One timed stretch of `steps` steps of one side."""

    seconds: float
    steps: int
    phases: dict = field(default_factory=dict)


def interleave(sides: dict[str, Callable[[], Round]], rounds: int) -> dict[str, list[Round]]:
    """Run the sides in turn (A B A B ...) after one untimed warm-up round each: a noisy machine hits all."""
    for run in sides.values():
        run()
    timed = {name: [] for name in sides}
    for _ in range(rounds):
        for name, run in sides.items():
            timed[name].append(run())
    return timed


def rate_summary(rounds: list[Round], units_per_step: float) -> dict:
    """Units (tokens, episodes) per second: the median round, with the slowest and fastest."""
    rates = [r.steps * units_per_step / r.seconds for r in rounds]
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "rounds": len(rates)}


def ratio_summary(numerator: list[Round], denominator: list[Round]) -> dict:
    """Per-round ratio of speeds (each round pairs two neighbours in time): median, min, max."""
    ratios = [(d.seconds / d.steps) / (n.seconds / n.steps) for n, d in zip(numerator, denominator)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
