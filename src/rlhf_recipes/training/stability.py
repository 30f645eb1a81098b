"""Is an RL run stable? The per-update figures users watch, read alike from the project's PPO and TRL's
RLOO/GRPO logs, a warning line when an update jumps, and a summary of the run for the report.

PPO logs KL and entropy per answer (summed over its tokens); TRL's trainers log them per token, so they
are scaled by the mean answer length to compare. The KL alarm is the head-to-head's goal: no update
above 2 nats per answer. An entropy jump is an update whose entropy is over twice the run's median so
far and at least a nat above it: the sign of a policy sampling noise.
"""

from __future__ import annotations

from statistics import mean, median

from accelerate import PartialState
from transformers import TrainerCallback

KL_ALARM = 2.0  # nats per answer
ENTROPY_JUMP, ENTROPY_MARGIN = 2.0, 1.0  # x the median so far, and nats above it
PPO_KEYS = {
    "kl": "objective/kl", "entropy": "objective/entropy", "clip_fraction": "policy/clipfrac_avg",
    "ratio": "val/ratio", "answer_length": "val/answer_length", "explained_variance": "val/explained_variance",
}  # fmt: skip
GROUP_KEYS = {"clip_fraction": "clip_ratio/region_mean", "answer_length": "completions/mean_length"}


def measures(entry: dict) -> dict[str, float] | None:
    """One logged update's figures (KL and entropy per answer); None for a log line that is not an update."""
    if "objective/kl" in entry:
        return {name: entry[key] for name, key in PPO_KEYS.items() if key in entry}
    if "entropy" in entry and "completions/mean_length" in entry:
        length = entry["completions/mean_length"]
        found = {name: entry[key] for name, key in GROUP_KEYS.items() if key in entry}
        found["entropy"] = entry["entropy"] * length
        if "kl" in entry:
            found["kl"] = entry["kl"] * length
        return found
    return None


def warnings(history: list[dict], update: dict, step: int) -> list[str]:
    """The warning lines `update` (the figures of update `step`) earns, given the run's earlier updates."""
    found = []
    if update.get("kl", 0.0) > KL_ALARM:
        found.append(f"update {step}: KL {update['kl']:.2f} nats per answer, above {KL_ALARM}")
    entropies = [h["entropy"] for h in history if "entropy" in h]
    if len(entropies) >= 4 and "entropy" in update:
        typical = median(entropies)
        if update["entropy"] > max(ENTROPY_JUMP * typical, typical + ENTROPY_MARGIN):
            found.append(
                f"update {step}: entropy {update['entropy']:.2f} nats per answer, the run's median {typical:.2f}"
            )
    return found


class StabilityWatch(TrainerCallback):
    """Prints a warning line when an update's KL or entropy jumps (on the main process), as it happens."""

    def __init__(self) -> None:
        self.history: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        update = measures(logs or {})
        if update is None:
            return
        for line in warnings(self.history, update, state.global_step):
            PartialState().print(f"stability warning: {line}", flush=True)
        self.history.append(update)


def summarize(log_history: list[dict]) -> dict:
    """A run's stability in a few numbers: KL and entropy peaks, updates over the KL alarm, the warnings."""
    updates, lines = [], []
    for step, entry in enumerate(log_history, start=1):
        update = measures(entry)
        if update is not None:
            lines += warnings(updates, update, entry.get("step", step))
            updates.append(update)
    if not updates:
        return {}
    column = lambda name: [u[name] for u in updates if name in u]  # noqa: E731
    summary = {"updates": len(updates), "warnings": len(lines), "first_warnings": lines[:3]}
    if column("kl"):
        summary |= {"kl_max": round(max(column("kl")), 3), "kl_over_alarm": sum(k > KL_ALARM for k in column("kl"))}
    if column("entropy"):
        summary["entropy_max"] = round(max(column("entropy")), 3)
    for name in ("clip_fraction", "ratio", "answer_length"):
        if column(name):
            summary[f"{name}_mean"] = round(mean(column(name)), 4)
    if column("explained_variance"):
        summary["explained_variance_last8"] = round(mean(column("explained_variance")[-8:]), 3)
    return summary
