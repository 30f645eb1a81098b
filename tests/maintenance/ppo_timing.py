"""`make ppo-parity`'s timing: the recipe's PPO update against TRL 1.12's PPOTrainer with its defaults.

Runs in the parity environment (TRL 1.12 installed), on the models `make all` trained. Both trainers get
fresh copies of the same four models and the same task (batch, answer length, stop token, temperature,
EOS penalty, KL coefficient, episodes, seed); TRL keeps its defaults for everything else (bf16,
activation checkpointing, rollout batch, PPO epochs). Updates run in interleaved rounds (A B A B ...),
each split into phases: ours by its own timers, TRL's by timers wrapped around the module-level helpers
its loop calls (it has none of its own). Writes timing.json and timing.md to --output_dir.
"""

import argparse
import gc
import json
import tempfile
import time
import types
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import torch
from trl.experimental.ppo import PPOConfig, PPOTrainer, ppo_trainer

from rlhf_recipes.bench.report import GOAL_PPO, summarize, table
from rlhf_recipes.bench.stages import configured, recipe_args
from rlhf_recipes.bench.timing import Round, StepClock, interleave, peak_rss_mib

TASK = ("per_device_train_batch_size", "response_length", "stop_token", "temperature", "missing_eos_penalty")
TASK += ("kl_coef", "total_episodes", "seed")


def _timed(function, totals: dict, phase_of):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[phase_of()] += time.perf_counter() - start

    return wrapper


@contextmanager
def trl_phases(trainer):
    """Seconds per phase of TRL 1.12's updates run inside the block (generation, scoring, training, gc)."""
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
        del trainer.accelerator.backward, trainer.optimizer.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates_per_round", type=int, default=3)
    parser.add_argument("--output_dir", default="outputs/ppo-parity")
    bench = parser.parse_args()
    bench.bf16, bench.shape, bench.steps_per_round = False, "recipe", 0
    bench.data_root = bench.outputs_root = None  # the recipe's own inputs, as `make all` left them
    out = Path(bench.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(dir=out) as work:
        argv = recipe_args(bench, "ppo", Path(work), {})
        ours, clocks = configured("ppo", argv), {"recipe": StepClock(), "trl_defaults": StepClock()}
        recipe = ours.trainer(callbacks=[clocks["recipe"]])
        same_task = {k: getattr(ours.config, k) for k in TASK}
        same_task["use_cpu"] = ours.config.use_cpu or not torch.cuda.is_available()
        defaults = PPOConfig(output_dir=str(Path(work) / "trl"), report_to="none", save_strategy="no", **same_task)
        theirs = configured("ppo", argv)
        baseline = PPOTrainer(
            args=defaults, processing_class=theirs.tokenizer, model=theirs.policy, ref_model=theirs.ref,
            reward_model=theirs.reward, value_model=theirs.value,
            train_dataset=theirs.prompts.select_columns(["input_ids"]), callbacks=[clocks["trl_defaults"]],
        )  # fmt: skip

        def ours_run() -> Round:
            before, start = dict(recipe.phase_seconds), time.perf_counter()
            recipe.train(updates=bench.updates_per_round)
            seconds = time.perf_counter() - start
            phases = {k: recipe.phase_seconds[k] - before.get(k, 0.0) for k in recipe.phase_seconds}
            phases["other"] = seconds - sum(phases.values())
            return Round(seconds, len(clocks["recipe"].ends), phases)

        def trl_run() -> Round:
            baseline.args.num_total_batches = bench.updates_per_round
            start = time.perf_counter()
            with trl_phases(baseline) as phases:
                baseline.train()
            seconds = time.perf_counter() - start
            phases = dict(phases)
            phases["other"] = seconds - sum(phases.values())
            return Round(seconds, len(clocks["trl_defaults"].ends), phases)

        rounds = interleave({"recipe": ours_run, "trl_defaults": trl_run}, bench.rounds)
    settings = ("bf16", "gradient_checkpointing", "local_rollout_forward_batch_size", "num_ppo_epochs")
    result = {
        "kind": "ppo",
        "episodes_per_step": recipe.batch_size,
        "trl_defaults": {k: getattr(defaults, k) for k in settings},
        "rounds": {side: [vars(r) for r in rs] for side, rs in rounds.items()},
        "peak_rss_mib": round(peak_rss_mib()),
    }
    row = summarize("ppo", result, peak=1.0)
    (out / "timing.json").write_text(json.dumps({"row": row, "raw": result}, indent=2))
    text = table([row]).split("\n", 2)[2].strip()  # the PPO lines, without the empty table of trained stages
    (out / "timing.md").write_text(text + "\n")
    print(text)
    print(f"goal: the recipe's update at most {GOAL_PPO} of TRL 1.12 defaults' time")


if __name__ == "__main__":
    main()
