"""Draws the report's figures and markdown from `report.json`'s numbers (never the other way round)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PARTS = ("helpful", "honest", "harmless", "concise")


def _series(log: list[dict], key: str) -> tuple[list, list]:
    points = [(e.get("step", i), e[key]) for i, e in enumerate(log) if key in e]
    return [p[0] for p in points], [p[1] for p in points]


def training_curves(curves: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    panels = [
        ("pretrain", [("loss", "train loss")], "pretraining"),
        ("sft", [("loss", "train loss"), ("eval_loss", "eval loss")], "SFT"),
        ("reward", [("loss", "train loss"), ("accuracy", "train accuracy")], "reward model"),
        ("ppo", [("objective/scores", "RM score"), ("objective/kl", "KL to SFT")], "PPO"),
    ]
    for ax, (stage, keys, title) in zip(axes, panels):
        log = curves.get(stage) or []
        for key, label in keys:
            x, y = _series(log, key)
            if y:
                ax.plot(x, y, label=label)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_scores(report: dict, path: Path) -> None:
    rows = list(report["policies"].values())
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(rows)), 3.6))
    bottom = [0.0] * len(rows)
    for part in PARTS:
        values = [row[part] for row in rows]
        ax.bar([row["label"] for row in rows], values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_ylabel("gold score (of 4)")
    ax.set_ylim(0, 4)
    ax.legend(ncol=4, fontsize=8, loc="upper left")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def gold_vs_proxy(report: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for row in report["policies"].values():
        ax.scatter(row["rm_score"], row["gold_score"])
        ax.annotate(
            row["label"], (row["rm_score"], row["gold_score"]), fontsize=8, xytext=(4, 4), textcoords="offset points"
        )
    ax.set_xlabel("reward model score (proxy)")
    ax.set_ylabel("gold labeler score")
    ax.set_title("gold vs proxy, per policy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_figures(report: dict, curves: dict, out: Path) -> list[str]:
    names = ["stage_scores.png", "training_curves.png", "gold_vs_proxy.png"]
    stage_scores(report, out / names[0])
    training_curves(curves, out / names[1])
    gold_vs_proxy(report, out / names[2])
    return names


def _fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _interval(w: dict) -> str:
    return f"{w['win_rate']:.3f} ({w['ci95'][0]:.3f}–{w['ci95'][1]:.3f})"


def write_markdown(report: dict, figures: list[str]) -> str:
    rows = report["policies"]
    reference = rows[report["reference"]]["label"]
    cols = [
        ("gold_score", "gold /4"),
        *[(p, p) for p in PARTS],
        ("answer_rate", "answers"),
        ("refusal_rate_harmful", "refuses harmful"),
        ("refusal_rate_benign", "refuses benign"),
        ("mean_length", "tokens"),
        ("eos_share", "ends with EOS"),
        ("rm_score", "RM score"),
        ("kl_to_reference", f"KL to {reference}"),
    ]
    sampling = report["sampling"]
    lines = [
        "# rlhf-recipes report",
        "",
        f"Every policy answers the same {report['eval_prompts']} held-out prompts (cities seen only in "
        "pretraining, harmful requests, benign requests that sound edgy); the gold labeler judges them. Answers are "
        f"sampled at temperature {_fmt(sampling['temperature'])} and the reward model's score of an answer that never "
        f"ends loses {_fmt(sampling['missing_eos_penalty'])}, as in {sampling['from']}.",
        "",
        "| policy | " + " | ".join(c[1] for c in cols) + f" | gold win rate vs {reference} (95% CI) |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for row in rows.values():
        cells = " | ".join(_fmt(row[c[0]]) for c in cols)
        lines.append(f"| {row['label']} | {cells} | {_interval(row['win_rate_vs_reference'])} |")
    last = list(rows.values())[-1]
    lines += [
        "",
        f"**{last['label']} vs {reference} win rate: {_interval(last['win_rate_vs_reference'])}** (95% CI; ties "
        f"count half). KL to {reference} is in nats per answer (best-of-n: log n − (n−1)/n). ",
        f"Base model held-out perplexity: {_fmt(report['base_perplexity'])}, fact recall "
        f"{_fmt(report['base_fact_recall'])}. Reward model held-out accuracy {_fmt(report['rm_accuracy'])} "
        f"(label-noise ceiling {_fmt(report['rm_label_noise_ceiling'])}), agreement with the gold labeler "
        f"{_fmt(report['rm_gold_agreement'])}.",
        "",
    ]
    lines += [f"![{f}]({f})" for f in figures]
    lines += ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["wall_time_s"].items()]
    lines += ["", "## The same prompts, every policy", ""]
    for sample in report["samples"]:
        lines += [f"**{sample['prompt']}** ({sample['kind']})", "", "| policy | answer | gold |", "|---|---|---|"]
        for name, row in rows.items():
            answer = sample[name]["answer"].replace("\n", " ⏎ ").replace("|", "\\|")
            lines.append(f"| {row['label']} | {answer} | {sample[name]['gold']:g} |")
        lines.append("")
    return "\n".join(lines) + "\n"
