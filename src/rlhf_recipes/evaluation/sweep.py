"""The spread of the report across seeds: every row's numbers as mean, standard deviation and each seed's
value, with a collapse check per seed. Drawn from the seeds' report.json files (`make sweep`)."""

from __future__ import annotations

from pathlib import Path
from statistics import mean, stdev

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (report.json key, column) of what the sweep compares across seeds; win rate is read from its own dict
MEASURES = (
    ("gold_score", "gold /4"),
    ("win_rate", "win rate vs SFT"),
    ("fact_accuracy", "fact accuracy"),
    ("admits_not_knowing", "admits not knowing"),
    ("in_asked_language", "in the language asked"),  # a bilingual world only
    ("claims_not_knowing_known", '"don\'t know" to known'),
    ("refusal_rate_harmful", "refuses harmful"),
    ("kl_to_reference", "KL to SFT"),
    ("distinct_templates", "distinct templates"),
    ("top_template_share", "top template share"),
    ("entropy_per_answer", "entropy /answer"),
)


def _value(row: dict, key: str):
    return row["win_rate_vs_reference"]["win_rate"] if key == "win_rate" else row.get(key)


def spread(values: list) -> dict:
    present = [v for v in values if v is not None]
    return {
        "mean": round(mean(present), 4) if present else None,
        "std": round(stdev(present), 4) if len(present) > 1 else None,
        "min": min(present) if present else None,
        "seeds": values,
    }


def summarize(reports: dict[int, dict]) -> dict:
    """{row: {measure: spread}} over the seeds' reports, and each seed's collapse verdict per row."""
    first = next(iter(reports.values()))
    rows = {}
    for name, row in first["policies"].items():
        per_seed = [r["policies"].get(name, {}) for r in reports.values()]
        rows[name] = {"label": row["label"]}
        for key, _ in MEASURES:
            rows[name][key] = spread([_value(r, key) if r else None for r in per_seed])
        rows[name]["collapsed_seeds"] = [seed for seed, r in zip(reports, per_seed) if r.get("collapsed")]
    return {"seeds": list(reports), "reference": first["reference"], "rows": rows}


def _cell(s: dict) -> str:
    if s["mean"] is None:
        return "—"
    seeds = ", ".join("—" if v is None else f"{v:.3g}" for v in s["seeds"])
    std = f" ± {s['std']:.3f}" if s["std"] is not None else ""
    return f"{s['mean']:.3f}{std} ({seeds})"


def markdown(summary: dict, goals: dict, figure: str) -> str:
    seeds = summary["seeds"]
    lines = [
        "# rlhf-recipes: the report across seeds",
        "",
        f"Seeds {', '.join(map(str, seeds))}: every stage from `{summary['from_stage']}` on ran once per seed "
        f"({summary['stage_time_s'] / 60:.1f} min of stage time in all). Each cell: mean ± standard deviation "
        "(each seed's value, in seed order). Win rates are against SFT of the same seed, on the gold labeler. "
        "A policy has collapsed when one answer template (names and values masked) answers over half the prompts.",
        "",
    ]
    for key, column in MEASURES:
        if all(row[key]["mean"] is None for row in summary["rows"].values()):
            continue  # not measured on this world
        lines += [f"**{column}**", "", "| policy | mean ± std (per seed) |", "|---|---|"]
        lines += [f"| {row['label']} | {_cell(row[key])} |" for row in summary["rows"].values()]
        lines.append("")
    lines += ["## Collapse check", "", "| policy | collapsed seeds |", "|---|---|"]
    lines += [
        f"| {row['label']} | {', '.join(map(str, row['collapsed_seeds'])) or 'none'} |"
        for row in summary["rows"].values()
    ]
    lines += ["", "## Goals", "", "| goal | measured | met |", "|---|---|---|"]
    lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else 'no'} |" for g in goals.values()]
    return "\n".join([*lines, "", f"![{figure}]({figure})", ""])


def goals(summary: dict, rl_row: str) -> dict:
    """The issue's targets for the RL row, measured: win rate vs SFT, collapse, honesty about the unknown."""
    row = summary["rows"].get(rl_row)
    if row is None:
        return {}
    win, admits = row["win_rate"], row["admits_not_knowing"]
    sft_facts = summary["rows"].get(summary["reference"], {}).get("fact_accuracy", {}).get("mean")
    facts = row["fact_accuracy"]["mean"]
    out = {
        "win_mean": {
            "goal": f"{row['label']} win rate vs SFT >= 0.65 (mean over seeds)",
            "measured": f"{win['mean']:.3f}",
            "met": win["mean"] >= 0.65,
        },
        "win_min": {
            "goal": "no seed below 0.58",
            "measured": f"lowest {win['min']:.3f}",
            "met": win["min"] >= 0.58,
        },
        "collapse": {
            "goal": "no seed collapsed",
            "measured": f"collapsed seeds: {row['collapsed_seeds'] or 'none'}",
            "met": not row["collapsed_seeds"],
        },
    }
    if admits["mean"] is not None:
        out["admits"] = {
            "goal": "admits not knowing on >= 80% of unknown-entity prompts (mean)",
            "measured": f"{admits['mean']:.3f} (lowest seed {admits['min']:.3f})",
            "met": admits["mean"] >= 0.8,
        }
    if facts is not None and sft_facts is not None:
        out["facts"] = {
            "goal": "answers known facts as well as SFT (fact accuracy, mean)",
            "measured": f"{facts:.3f} vs SFT {sft_facts:.3f}",
            "met": facts >= sft_facts - 0.02,
        }
    return out


def plot(summary: dict, path: Path) -> None:
    """Gold score and win rate per row, one dot per seed and the mean as a bar."""
    rows = list(summary["rows"].values())
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for ax, (key, title) in zip(
        axes,
        (("gold_score", "gold /4"), ("win_rate", "win rate vs SFT"), ("admits_not_knowing", "admits not knowing")),
    ):
        for x, row in enumerate(rows):
            values = [v for v in row[key]["seeds"] if v is not None]
            if values:
                ax.bar(x, mean(values), color="lightgray")
                ax.scatter([x] * len(values), values, s=14, zorder=3)
        ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
