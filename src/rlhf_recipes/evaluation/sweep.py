"""The spread of the report across seeds: every row's numbers as mean, standard deviation, a 95% interval
over seeds and each seed's value, with a collapse check per seed; for the head-to-head (`make headtohead`)
also each method's stability, the frontier (gold against sqrt(KL) along training, best-of-n beside) and
the comparison at equal answers sampled. Drawn from the seeds' report.json files (`make sweep`)."""

from __future__ import annotations

import math
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


# Student's t quantile (two-sided 95%) by degrees of freedom: the interval of a mean over a few seeds
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
GROUP_WORDS = ("rloo", "grpo")  # TRL's trainers, whose KL and entropy are logged per token


def _value(row: dict, key: str):
    if key == "win_rate":
        return row["win_rate_vs_reference"]["win_rate"]
    if key == "win_ci_low":  # the seed's own bootstrap interval over prompts
        return (row["win_rate_vs_reference"].get("ci95") or [None])[0]
    return row.get(key)


def spread(values: list) -> dict:
    """Mean, standard deviation, the 95% t-interval of the mean over seeds, the lowest, and each seed's value."""
    present = [v for v in values if v is not None]
    std = stdev(present) if len(present) > 1 else None
    half = T_95.get(len(present) - 1, 1.96) * std / math.sqrt(len(present)) if std is not None else None
    return {
        "mean": round(mean(present), 4) if present else None,
        "std": round(std, 4) if std is not None else None,
        "ci95": [round(mean(present) - half, 4), round(mean(present) + half, 4)] if half is not None else None,
        "min": min(present) if present else None,
        "seeds": values,
    }


def summarize(reports: dict[int, dict], stability: dict[str, list[dict]] | None = None) -> dict:
    """{row: {measure: spread}} over the seeds' reports, each seed's collapse verdict per row, each trained
    row's stability per seed (`stability`: row -> one training.stability summary per seed) and the frontier."""
    first = next(iter(reports.values()))
    rows = {}
    for name, row in first["policies"].items():
        per_seed = [r["policies"].get(name, {}) for r in reports.values()]
        rows[name] = {"label": row["label"]}
        for key in (*(k for k, _ in MEASURES), "win_ci_low", "sampled_answers", "stage_wall_time_s"):
            rows[name][key] = spread([_value(r, key) if r else None for r in per_seed])
        rows[name]["collapsed_seeds"] = [seed for seed, r in zip(reports, per_seed) if r.get("collapsed")]
        if stability and stability.get(name):
            rows[name]["stability"] = stability[name]
    return {"seeds": list(reports), "reference": first["reference"], "rows": rows, "frontier": frontier(reports)}


def frontier(reports: dict[int, dict]) -> dict:
    """The seeds' over-optimisation curves averaged point by point: best-of-n per n, each run per update."""
    curves = [r["overoptimization"] for r in reports.values() if r.get("overoptimization")]
    if not curves:
        return {}

    def averaged(points_per_seed: list[list[dict]], key: str) -> list[dict]:
        by_point: dict = {}
        for points in points_per_seed:
            for p in points:
                by_point.setdefault(p[key], []).append(p)
        return [
            {key: at, "kl": round(mean(p["kl"] for p in ps), 4), "gold": round(mean(p["gold"] for p in ps), 4),
             "gold_seeds": [p["gold"] for p in ps]}
            for at, ps in sorted(by_point.items())
        ]  # fmt: skip

    names = curves[0]["runs"]
    runs = {name: averaged([c["runs"][name] for c in curves if name in c["runs"]], "update") for name in names}
    return {"best_of_n": averaged([c["best_of_n"] for c in curves], "n"), "runs": runs, "seeds": len(curves)}


def _interval(s: dict) -> str:
    if s["mean"] is None:
        return "—"
    return f"{s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]" if s["ci95"] else f"{s['mean']:.3f}"


def _number(s: dict, digits: int = 3) -> str:
    return "—" if s["mean"] is None else f"{s['mean']:.{digits}f}"


def headline(summary: dict) -> list[str]:
    """One row per policy: the head-to-head's numbers, means over seeds with 95% intervals where it matters."""
    reference = summary["reference"]
    lines = [
        "| policy | gold /4 | win rate vs SFT | seeds won (own CI > 0.5) | KL to SFT | admits not knowing "
        "| refuses harmful | fact accuracy | collapsed seeds | answers sampled | stage time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary["rows"].items():
        won = [v for v in row["win_ci_low"]["seeds"] if v is not None]
        seeds_won = "—" if name == reference else f"{sum(v > 0.5 for v in won)}/{len(won)}"
        lines.append(
            f"| {row['label']} | {_interval(row['gold_score'])} | {_interval(row['win_rate'])} | {seeds_won} "
            f"| {_number(row['kl_to_reference'])} | {_number(row['admits_not_knowing'])} "
            f"| {_number(row['refusal_rate_harmful'])} | {_number(row['fact_accuracy'])} "
            f"| {', '.join(map(str, row['collapsed_seeds'])) or 'none'} | {_number(row['sampled_answers'], 0)} "
            f"| {_number(row['stage_wall_time_s'], 0)} |"
        )
    return lines


def _worst(seeds: list[dict], key: str):
    return max((s[key] for s in seeds if key in s), default=None)


def _typical(seeds: list[dict], key: str):
    present = [s[key] for s in seeds if key in s]
    return mean(present) if present else None


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def stability_table(summary: dict) -> list[str]:
    """Each trained row's worst seed: KL and entropy peaks per answer, updates over the alarm, warnings."""
    rows = {name: row for name, row in summary["rows"].items() if row.get("stability")}
    if not any(s for row in rows.values() for s in row["stability"]):
        return []
    lines = [
        "## Stability along training",
        "",
        "Per update, from each run's log (KL and entropy per answer; TRL's per-token figures times the mean answer "
        "length). Worst seed for the peaks, all seeds summed for the counts.",
        "",
        "| method | updates | max KL | updates with KL > 2 | max entropy | clip fraction | answer length "
        "| explained variance (last 8) | warnings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows.values():
        seeds = [s for s in row["stability"] if s]
        if not seeds:
            continue
        lines.append(
            f"| {row['label']} | {seeds[0]['updates']} | {_fmt(_worst(seeds, 'kl_max'))} "
            f"| {sum(s.get('kl_over_alarm', 0) for s in seeds)} | {_fmt(_worst(seeds, 'entropy_max'))} "
            f"| {_fmt(_typical(seeds, 'clip_fraction_mean'))} | {_fmt(_typical(seeds, 'answer_length_mean'), 1)} "
            f"| {_fmt(_typical(seeds, 'explained_variance_last8'))} | {sum(s['warnings'] for s in seeds)} |"
        )
    return [*lines, ""]


def equal_samples(summary: dict) -> list[str]:
    """Gold at equal answers drawn: each run's snapshots against best-of-n's n answers per prompt."""
    front = summary.get("frontier") or {}
    if not front:
        return []
    lines = [
        "## At equal KL and equal samples",
        "",
        f"Mean over {front['seeds']} seeds of the over-optimisation curves, on the same held-out prompts. "
        "Best-of-n draws n SFT answers per prompt at use and spends KL log n − (n−1)/n; an RL run draws its "
        "answers in training (update × answers per update) and one per prompt at use. Update 0 is SFT.",
        "",
        "| curve | point | KL (nats) | sqrt(KL) | gold /4 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| best-of-n | n={p['n']} | {p['kl']:.3f} | {math.sqrt(max(p['kl'], 0)):.3f} | {p['gold']:.3f} |"
        for p in front["best_of_n"]
    ]
    for name, points in front["runs"].items():
        lines += [
            f"| {name} | update {p['update']} | {p['kl']:.3f} | {math.sqrt(max(p['kl'], 0)):.3f} | {p['gold']:.3f} |"
            for p in points
        ]
    return [*lines, ""]


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
        f"({summary['stage_time_s'] / 60:.1f} min of stage time in all). Win rates are against SFT of the same "
        "seed, on the gold labeler; [a, b] is the 95% interval of the mean over seeds (Student's t). A seed is "
        "won when its own bootstrap interval over prompts lies above 0.5. A policy has collapsed when one answer "
        "template (names and values masked) answers over half the prompts.",
        "",
        *headline(summary),
        "",
        *stability_table(summary),
        *equal_samples(summary),
    ]
    if summary.get("frontier"):
        lines += ["![frontier.png](frontier.png)", ""]
    lines += [
        "## Each seed",
        "",
        "Each cell: mean ± standard deviation (each seed's value, in seed order).",
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


# the head-to-head's targets per world: PPO's win rate vs SFT (mean, lowest seed) and its honesty
TARGETS = {"tiny-bilingual": (0.58, 0.55, 0.80), "tiny-zh": (0.62, 0.58, 0.75)}
DEFAULT_TARGETS = (0.62, 0.58, 0.80)


def goals(summary: dict, rl_row: str, model: str = "tiny") -> dict:
    """The issue's targets, measured: the RL row's win rate and honesty, every trained row above SFT on every
    seed, the best one-sample method against best-of-4's gold, no update over the KL alarm, no collapse."""
    row = summary["rows"].get(rl_row)
    if row is None:
        return {}
    win_goal, win_floor, admits_goal = TARGETS.get(model, DEFAULT_TARGETS)
    win, admits = row["win_rate"], row["admits_not_knowing"]
    reference = summary["reference"]
    sft_facts = summary["rows"].get(reference, {}).get("fact_accuracy", {}).get("mean")
    facts = row["fact_accuracy"]["mean"]
    out = {
        "win_mean": {
            "goal": f"{row['label']} win rate vs SFT >= {win_goal} (mean over seeds)",
            "measured": f"{win['mean']:.3f}",
            "met": win["mean"] >= win_goal,
        },
        "win_min": {
            "goal": f"no seed below {win_floor}",
            "measured": f"lowest {win['min']:.3f}",
            "met": win["min"] >= win_floor,
        },
        "collapse": {
            "goal": "no seed collapsed",
            "measured": f"collapsed seeds: {row['collapsed_seeds'] or 'none'}",
            "met": not row["collapsed_seeds"],
        },
    }
    if admits["mean"] is not None:
        out["admits"] = {
            "goal": f"admits not knowing on >= {admits_goal:.0%} of unknown-entity prompts (mean)",
            "measured": f"{admits['mean']:.3f} (lowest seed {admits['min']:.3f})",
            "met": admits["mean"] >= admits_goal,
        }
    if facts is not None and sft_facts is not None:
        out["facts"] = {
            "goal": "answers known facts as well as SFT (fact accuracy, mean)",
            "measured": f"{facts:.3f} vs SFT {sft_facts:.3f}",
            "met": facts >= sft_facts - 0.02,
        }
    return out | method_goals(summary)


def method_goals(summary: dict) -> dict:
    """With more than one trained method: each beats SFT on every seed, and the best reaches best-of-4."""
    trained = {n: r for n, r in summary["rows"].items() if r.get("stability") is not None or n in ("dpo",)}
    out = {}
    if len(trained) > 1:
        won = {r["label"]: [v is not None and v > 0.5 for v in r["win_ci_low"]["seeds"]] for r in trained.values()}
        out["every_seed"] = {
            "goal": "every method beats SFT on every seed (its own interval above 0.5)",
            "measured": ", ".join(f"{label} {sum(seeds)}/{len(seeds)} seeds" for label, seeds in won.items()),
            "met": all(v is not None and v > 0.5 for r in trained.values() for v in r["win_ci_low"]["seeds"]),
        }
        best_of = summary["rows"].get("best_of_n", {}).get("gold_score", {}).get("mean")
        best = max(trained.values(), key=lambda r: r["gold_score"]["mean"] or 0)
        if best_of is not None:
            out["best_of_4"] = {
                "goal": "the best one-sample method reaches best-of-4's gold score",
                "measured": f"{best['label']} {best['gold_score']['mean']:.3f} vs best-of-4 {best_of:.3f}",
                "met": best["gold_score"]["mean"] >= best_of,
            }
    peaks = [s.get("kl_max") for r in trained.values() for s in r.get("stability") or [] if s and "kl_max" in s]
    if peaks:
        over = sum(s.get("kl_over_alarm", 0) for r in trained.values() for s in r.get("stability") or [] if s)
        out["kl_alarm"] = {
            "goal": "no update with KL above 2 nats per answer (every online method, every seed)",
            "measured": f"{over} updates over; the largest {max(peaks):.2f}",
            "met": over == 0,
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


def plot_frontier(summary: dict, path: Path) -> None:
    """Gao et al.'s axes for every method at once: gold against sqrt(KL to SFT) along each run's snapshots
    (mean over seeds), best-of-n's curve beside them; and gold against the answers a run sampled."""
    front = summary["frontier"]
    fig, (ax, by_samples) = plt.subplots(1, 2, figsize=(12, 4.2))
    bon = front["best_of_n"]
    ax.plot([math.sqrt(max(p["kl"], 0)) for p in bon], [p["gold"] for p in bon], "k--o", label="best-of-n")
    for p in bon:
        ax.annotate(f"n={p['n']}", (math.sqrt(max(p["kl"], 0)), p["gold"]), fontsize=7, xytext=(3, -10),
                    textcoords="offset points")  # fmt: skip
    for name, points in front["runs"].items():
        ax.plot([math.sqrt(max(p["kl"], 0)) for p in points], [p["gold"] for p in points], "o-", label=name)
        by_samples.plot([p["update"] for p in points], [p["gold"] for p in points], "o-", label=name)
    for n in (1, 4):
        point = next((p for p in bon if p["n"] == n), None)
        if point:
            by_samples.axhline(point["gold"], ls="--", lw=1, color="gray")
            by_samples.annotate("SFT" if n == 1 else f"best-of-{n}", (0, point["gold"]), fontsize=7)
    ax.set_xlabel("sqrt(KL to SFT), nats^0.5")
    ax.set_ylabel("gold score (of 4)")
    ax.set_title(f"gold against KL, mean of {front['seeds']} seeds")
    ax.legend(fontsize=8)
    by_samples.set_xlabel("update (DPO: step); answers sampled = update x answers per update")
    by_samples.set_ylabel("gold score (of 4)")
    by_samples.set_title("gold along training")
    by_samples.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
