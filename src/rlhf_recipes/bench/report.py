"""`make bench`'s outputs: bench.json (every round), bench.md (the table) and bench.png (the ratios)."""

from __future__ import annotations

import json
import platform
import statistics
from pathlib import Path

import torch

from ..training.outputs import write_json
from .timing import Round, rate_summary, ratio_summary

GOAL_RATIO = 0.95  # every training recipe at least this share of the plain loop's tokens/s
GOAL_PPO = 0.6  # the recipe's PPO update at most this share of TRL's defaults' time


def machine(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def summarize(stage: str, result: dict, peak: float) -> dict:
    rounds = {side: [Round(**r) for r in rs] for side, rs in result["rounds"].items()}
    row = {"stage": stage, "peak_rss_mib": result["peak_rss_mib"]}
    if result["kind"] == "offline":
        recipe = rate_summary(rounds["recipe"], result["tokens_per_step"])
        row.update(
            {
                "recipe_tokens_per_s": recipe,
                "plain_tokens_per_s": rate_summary(rounds["plain"], result["tokens_per_step"]),
                "ratio": ratio_summary(rounds["recipe"], rounds["plain"]),
                "mfu": recipe["median"] * result["flops_per_token"] / peak,
                "parameters": result["parameters"],
            }
        )
    elif result["kind"] == "online":
        row.update(
            {
                "recipe_answers_per_s": rate_summary(rounds["recipe"], result["answers_per_step"]),
                "plain_answers_per_s": rate_summary(rounds["plain"], result["answers_per_step"]),
                "ratio": ratio_summary(rounds["recipe"], rounds["plain"]),
            }
        )
    else:
        per_update = {side: [r.seconds / r.steps for r in rs] for side, rs in rounds.items()}
        row.update(
            {
                "recipe_s_per_update": statistics.median(per_update["recipe"]),
                "phases": {side: phase_shares(rs) for side, rs in rounds.items()},
                "recipe_episodes_per_s": rate_summary(rounds["recipe"], result["episodes_per_step"]),
            }
        )
        if "trl_defaults" in rounds:  # `make ppo-parity`, where TRL 1.12's PPOTrainer is installed
            row["trl_defaults_s_per_update"] = statistics.median(per_update["trl_defaults"])
            row["time_ratio"] = ratio_summary(rounds["trl_defaults"], rounds["recipe"])  # speeds inverted: times
            row["trl_defaults"] = result["trl_defaults"]
    return row


def phase_shares(rounds: list[Round]) -> dict:
    """Seconds per update in each phase, summed over the rounds."""
    steps = sum(r.steps for r in rounds)
    names = sorted({name for r in rounds for name in r.phases})
    return {name: sum(r.phases.get(name, 0.0) for r in rounds) / steps for name in names}


def spread(summary: dict, digits: int = 2) -> str:
    return f"{summary['median']:.{digits}f} ({summary['min']:.{digits}f}–{summary['max']:.{digits}f})"


def table(rows: list[dict]) -> str:
    lines = [
        "| stage | recipe tokens/s | plain loop tokens/s | recipe / plain | MFU | peak RSS (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "recipe_answers_per_s" in row:
            lines.append(
                f"| {row['stage']} (answers/s) | {row['recipe_answers_per_s']['median']:.1f} | "
                f"{row['plain_answers_per_s']['median']:.1f} | {spread(row['ratio'])} | — | {row['peak_rss_mib']:,} |"
            )
        elif "ratio" in row:
            lines.append(
                f"| {row['stage']} | {row['recipe_tokens_per_s']['median']:,.0f} | "
                f"{row['plain_tokens_per_s']['median']:,.0f} | {spread(row['ratio'])} | {row['mfu']:.1%} | "
                f"{row['peak_rss_mib']:,} |"
            )
    for row in (row for row in rows if "phases" in row):
        against = (
            f"TRL 1.12 defaults {row['trl_defaults_s_per_update']:.2f} s ({_settings(row['trl_defaults'])}): "
            f"recipe / defaults time {spread(row['time_ratio'])} (goal at most {GOAL_PPO})"
            if "time_ratio" in row
            else "against TRL 1.12's PPOTrainer: `make ppo-parity`"
        )
        lines += [
            "",
            f"PPO update: recipe {row['recipe_s_per_update']:.2f} s; {against}; peak RSS {row['peak_rss_mib']:,} MiB.",
            "",
            "| seconds per update | " + " | ".join(PHASE_ORDER) + " | total |",
            "|---|" + "---|" * (len(PHASE_ORDER) + 1),
        ]
        for side, phases in row["phases"].items():
            cells = " | ".join(f"{phases.get(p, 0.0):.2f}" for p in PHASE_ORDER)
            lines.append(f"| {side.replace('_', ' ')} | {cells} | {sum(phases.values()):.2f} |")
    return "\n".join(lines) + "\n"


PHASE_ORDER = ("generation", "scoring", "training", "gc", "other")


def _settings(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    offline = [r for r in rows if "ratio" in r]
    names = [r["stage"] for r in offline]
    medians = [r["ratio"]["median"] for r in offline]
    errors = [
        [m - r["ratio"]["min"] for m, r in zip(medians, offline)],
        [r["ratio"]["max"] - m for m, r in zip(medians, offline)],
    ]
    left.bar(names, medians, yerr=errors, capsize=4, color="tab:blue")
    left.axhline(1.0, color="grey", lw=0.8)
    left.axhline(GOAL_RATIO, color="tab:red", ls="--", lw=0.8, label=f"goal {GOAL_RATIO}")
    left.set_ylabel("recipe / plain loop speed")
    left.set_title("Training step vs a plain PyTorch loop")
    left.legend(loc="lower right")
    for row in rows:
        if "phases" in row:
            sides = list(row["phases"])
            bottom = [0.0] * len(sides)
            for phase in PHASE_ORDER:
                values = [row["phases"][s].get(phase, 0.0) for s in sides]
                right.bar([s.replace("_", " ") for s in sides], values, bottom=bottom, label=phase)
                bottom = [b + v for b, v in zip(bottom, values)]
            right.set_ylabel("seconds per update")
            right.set_title("PPO update, by phase")
            right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_bench(bench, peak: float, device) -> dict:
    out = Path(bench.output_dir)
    stages = [s for s in bench.stages.split(",") if (out / "stages" / f"{s}.json").is_file()]
    results = {s: json.loads((out / "stages" / f"{s}.json").read_text()) for s in stages}
    rows = [summarize(s, results[s], peak) for s in stages]
    report = {
        "machine": machine(device),
        "torch": torch.__version__,
        "dtype": "bf16 autocast" if bench.bf16 else "fp32",
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "model": bench.model,
        "shape": bench.shape,
        "rounds": bench.rounds,
        "steps_per_round": bench.steps_per_round,
        "ppo_updates_per_round": bench.updates_per_round,
        "goals": {"recipe_over_plain_at_least": GOAL_RATIO, "ppo_over_trl_defaults_at_most": GOAL_PPO},
        "stages": rows,
        "raw": results,
    }
    write_json(out / "bench.json", report)
    header = (
        f"# make bench: {bench.model} ({bench.shape}), {report['dtype']}, on {report['machine']}\n\n"
        f"torch {torch.__version__}; matmul peak {report['matmul_peak_gflops']} GFLOP/s measured in this run; "
        f"{bench.rounds} interleaved rounds per side after a warm-up round "
        f"({bench.steps_per_round} steps; PPO {bench.updates_per_round} updates); "
        "median (min–max over rounds).\n\n"
    )
    (out / "bench.md").write_text(header + table(rows))
    chart(rows, out / "bench.png")
    print(header + table(rows))
    return report
