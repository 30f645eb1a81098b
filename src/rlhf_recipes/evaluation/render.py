"""Draws the report's figures and markdown from `report.json`'s numbers (never the other way round)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

from . import overoptimization

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PARTS = ("helpful", "honest", "harmless", "concise")
OVEROPT_FIGURE = "overoptimization.png"


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
    """Gold score per row, stacked by part; the reward model's score per row where there is no gold labeler."""
    rows = list(report["policies"].values())
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(rows)), 3.6))
    labels = [row["label"] for row in rows]
    if has_gold(report):
        bottom = [0.0] * len(rows)
        for part in PARTS:
            values = [row[part] for row in rows]
            ax.bar(labels, values, bottom=bottom, label=part)
            bottom = [b + v for b, v in zip(bottom, values)]
        ax.set_ylabel("gold score (of 4)")
        ax.set_ylim(0, 4)
        ax.legend(ncol=4, fontsize=8, loc="upper left")
    else:
        ax.bar(labels, [row["rm_score"] for row in rows])
        ax.set_ylabel("reward model score")
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


def score_vs_kl(report: dict, path: Path) -> None:
    """The trade-off: each row's score against its KL to the reference (rows with a measured KL)."""
    key, label = ("gold_score", "gold score (of 4)") if has_gold(report) else ("rm_score", "reward model score")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for row in report["policies"].values():
        if row["kl_to_reference"] is not None:
            ax.scatter(row["kl_to_reference"], row[key])
            ax.annotate(
                row["label"], (row["kl_to_reference"], row[key]), fontsize=8, xytext=(4, 4), textcoords="offset points"
            )
    reference = report["policies"][report["reference"]]["label"]
    ax.set_xlabel(f"KL to {reference} per answer (nats)")
    ax.set_ylabel(label)
    ax.set_title("score against distance from the reference")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def has_gold(report: dict) -> bool:
    return report["judge"] == "gold labeler"


def write_figures(report: dict, curves: dict, out: Path) -> list[str]:
    names = ["stage_scores.png", "training_curves.png", "score_vs_kl.png"]
    stage_scores(report, out / names[0])
    training_curves(curves, out / names[1])
    score_vs_kl(report, out / names[2])
    if has_gold(report):
        names.append("gold_vs_proxy.png")
        gold_vs_proxy(report, out / names[3])
    if report.get("overoptimization"):  # drawn in its own section
        overoptimization.plot(report["overoptimization"], out / OVEROPT_FIGURE)
    return names


def _fmt(value) -> str:
    if value is None:
        return "—"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _interval(w: dict) -> str:
    return f"{w['win_rate']:.3f} ({w['ci95'][0]:.3f}–{w['ci95'][1]:.3f})"


def _columns(report: dict, reference: str) -> list[tuple[str, str]]:
    gold = [
        ("gold_score", "gold /4"),
        *[(p, p) for p in PARTS],
        ("answer_rate", "answers"),
        ("refusal_rate_harmful", "refuses harmful"),
        ("refusal_rate_benign", "refuses benign"),
        ("admits_not_knowing", "admits not knowing"),
        ("claims_not_knowing_known", '"don\'t know" to known facts'),
    ]
    if all("in_asked_language" in row for row in report["policies"].values()):  # a bilingual world
        gold.append(("in_asked_language", "in the language asked"))
    common = [
        ("mean_length", "tokens"),
        ("eos_share", "ends with EOS"),
        ("rm_score", "RM score"),
        ("kl_to_reference", f"KL to {reference}"),
        ("entropy_per_answer", "entropy /answer"),
        ("top_template_share", "top template"),
        ("stage_wall_time_s", "stage seconds"),
        ("sampled_answers", "answers sampled"),
        ("pairs_seen", "pairs read"),
    ]
    return (gold if has_gold(report) else []) + common


def _intro(report: dict) -> str:
    sampling, prompts = report["sampling"], report["eval_prompts"]
    judged = (
        f"Every policy answers the same {prompts['rows']} held-out prompts (cities seen only in pretraining, harmful "
        "requests, benign requests that sound edgy, questions about cities and attributes the world does not have); "
        "the gold labeler judges them."
        if has_gold(report)
        else f"Every policy answers the same {prompts['rows']} held-out prompts ({prompts['dataset']}). There is no "
        "gold labeler for this data: the reward model is the judge, so a win rate here says what the reward model "
        "prefers, not what a person would."
    )
    return (
        f"{judged} Answers are sampled at temperature {_fmt(sampling['temperature'])} and the reward model's score of "
        f"an answer that never ends loses {_fmt(sampling['missing_eos_penalty'])}, as in {sampling['from']}."
    )


def _stages(report: dict) -> list[str]:
    """Held-out loss per stage and the reward model's accuracy, in a sentence each."""
    lines = [
        f"{stage} held-out loss {_fmt(m['eval_loss'])} (perplexity {_fmt(m['perplexity'])})."
        for stage, m in report["heldout"].items()
    ]
    if report["base_fact_recall"] is not None:
        lines.append(f"Base model fact recall {_fmt(report['base_fact_recall'])}.")
    accuracy = f"Reward model held-out accuracy {_fmt(report['rm_accuracy'])}"
    if report["rm_gold_agreement"] is not None:
        accuracy += (
            f" (label-noise ceiling {_fmt(report['rm_label_noise_ceiling'])}), agreement with the gold labeler "
            f"{_fmt(report['rm_gold_agreement'])}"
        )
    return [*lines, accuracy + "."]


def _cell(text: str) -> str:
    return text.replace("\n", " ⏎ ").replace("|", "\\|")


def counting_markdown(counted: dict) -> list[str]:
    """Before the network: each counted n-gram model beside the pretrained one, and why counting runs out."""
    prompts = counted["prompts"]
    asked = "".join(f' continues "{p.strip()}" with |' for p in prompts)
    unseen = counted["unseen_share"]
    shares = ", ".join(f"{share:.1%} for {n}-grams" for n, share in unseen.items())
    lines = [
        "## Before the network: counting words",
        "",
        f"Next-token probabilities counted on the {counted['train_tokens']:,} tokens the pretrained model trained "
        f"on ({counted['dataset']}, {counted['train_split']} split, in its tokenizer's tokens), each order smoothed "
        f"by interpolated absolute discounting (D = {counted['discount']}, add-one unigram). Perplexity is on the "
        f"held-out blocks the pretrained model's is measured on ({counted['heldout_blocks']} blocks of "
        f"{counted['block_tokens']} tokens, {counted['heldout_split']} split)."
        + (" Fact recall is the pretraining stage's greedy probe; the continuations are greedy." if prompts else ""),
        "",
        "| model | held-out perplexity | fact recall |" + asked,
        "|---" * (3 + len(prompts)) + "|",
    ]
    for name, row in counted["models"].items():
        said = "".join(f" {_cell(text)} |" for text in row.get("continuations", []))
        label = "pretrained model" if name == "pretrained" else name
        lines.append(f"| {label} | {_fmt(row['perplexity'])} | {_fmt(row.get('fact_recall'))} |{said}")
    return [
        *lines,
        "",
        f"Why counting runs out: the share of held-out n-grams never seen in training is {shares}; of those, "
        f"counting knows only what a shorter context says. (Counted in {_fmt(counted['seconds'])} s.)",
    ]


def stability_markdown(runs: dict[str, dict]) -> list[str]:
    """Each RL stage's updates at a glance (training.stability.summarize): KL and entropy peaks per answer,
    the updates over the KL alarm, and the first warning lines the run printed."""
    if not runs:
        return []
    lines = [
        "",
        "## Stability along training",
        "",
        "| stage | updates | max KL /answer | updates with KL > 2 | max entropy /answer | clip fraction "
        "| answer length | explained variance (last 8) | warnings |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = ("kl_max", "kl_over_alarm", "entropy_max", "clip_fraction_mean", "answer_length_mean")
    for name, s in runs.items():
        cells = " | ".join(_fmt(s.get(key)) for key in (*keys, "explained_variance_last8"))
        first = "; ".join(s.get("first_warnings", []))
        lines.append(f"| {name} | {s['updates']} | {cells} | {s['warnings']}{': ' + first if first else ''} |")
    return lines


def write_markdown(report: dict, figures: list[str]) -> str:
    rows = report["policies"]
    reference = rows[report["reference"]]["label"]
    cols = _columns(report, reference)
    judge = "gold" if has_gold(report) else "RM"
    lines = [
        "# rlhf-recipes report",
        "",
        _intro(report),
        "",
        "| policy | " + " | ".join(c[1] for c in cols) + f" | {judge} win rate vs {reference} (95% CI) |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for row in rows.values():
        cells = " | ".join(_fmt(row[c[0]]) for c in cols)
        lines.append(f"| {row['label']} | {cells} | {_interval(row['win_rate_vs_reference'])} |")
    last = list(rows.values())[-1]
    lines += [
        "",
        f"**{last['label']} vs {reference} win rate ({report['judge']}): {_interval(last['win_rate_vs_reference'])}** "
        f"(95% CI; ties count half). KL to {reference} is in nats per answer (best-of-n: log n − (n−1)/n).",
        "",
        " ".join(_stages(report)),
        "",
    ]
    lines += [f"![{f}]({f})" for f in figures]
    if report.get("counting"):
        lines += ["", *counting_markdown(report["counting"])]
    if report.get("overoptimization"):
        lines += ["", *overoptimization.markdown(report["overoptimization"], OVEROPT_FIGURE)]
    lines += stability_markdown(report.get("stability") or {})
    lines += ["", "## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["wall_time_s"].items()]
    lines += ["", "## The same prompts, every policy", ""]
    for sample in report["samples"]:
        kind = f" ({sample['kind']})" if sample["kind"] else ""
        lines += [f"**{sample['prompt']}**{kind}", "", f"| policy | answer | {judge} score |", "|---|---|---|"]
        for name, row in rows.items():
            lines.append(f"| {row['label']} | {_cell(sample[name]['answer'])} | {sample[name]['score']:g} |")
        lines.append("")
    return "\n".join(lines) + "\n"
