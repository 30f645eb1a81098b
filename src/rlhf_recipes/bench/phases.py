"""Where a TRL 1.12 PPO update spends its time: generation, scoring, training, garbage collection, the rest.

TRL's `PPOTrainer.train` is one long loop; it calls module-level helpers (`batch_generation`, `forward`,
`get_reward`, `gc.collect`) and the accelerator's `backward` and the optimizer's `step`. For the bench
only, those names are wrapped with timers while a round runs and put back afterwards.
"""

from __future__ import annotations

import gc
import time
import types
from collections import defaultdict
from contextlib import contextmanager

import torch
from trl.experimental.ppo import ppo_trainer

PHASES = ("generation", "scoring", "training", "gc", "other")


def _timed(function, totals: dict, phase_of):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[phase_of()] += time.perf_counter() - start

    return wrapper


@contextmanager
def ppo_phases(trainer):
    """Yield a dict that fills with seconds per phase while the trainer's updates run inside the block."""
    totals = defaultdict(float)
    module = {name: getattr(ppo_trainer, name) for name in ("batch_generation", "forward", "get_reward", "gc")}
    backward, step = trainer.accelerator.backward, trainer.optimizer.step
    grad_or_scoring = lambda: "training" if torch.is_grad_enabled() else "scoring"  # noqa: E731
    ppo_trainer.batch_generation = _timed(module["batch_generation"], totals, lambda: "generation")
    ppo_trainer.forward = _timed(module["forward"], totals, grad_or_scoring)
    ppo_trainer.get_reward = _timed(module["get_reward"], totals, lambda: "scoring")
    ppo_trainer.gc = types.SimpleNamespace(collect=_timed(gc.collect, totals, lambda: "gc"))
    trainer.accelerator.backward = _timed(backward, totals, lambda: "training")
    trainer.optimizer.step = _timed(step, totals, lambda: "training")
    try:
        yield totals
    finally:
        for name, original in module.items():
            setattr(ppo_trainer, name, original)
        del trainer.accelerator.backward, trainer.optimizer.step  # the instance attributes: methods again
