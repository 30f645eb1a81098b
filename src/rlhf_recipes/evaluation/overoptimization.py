"""Reward over-optimisation (Gao et al. 2022): the gold score and the reward model's (proxy) score against
the KL to the SFT model, for best-of-n and along an RL run. Optimising a proxy first raises the gold score;
pushed further from the SFT model, the proxy keeps rising while the gold score stalls or falls. The KL
penalty exists to stop short of that.
"""

from __future__ import annotations

import math
from math import comb
from pathlib import Path
from statistics import mean

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n || base policy) in nats, the analytic value for distinct samples (Stiennon et al. 2020)."""
    return math.log(n) - (n - 1) / n


def best_of_n_expectation(proxy: list[float], gold: list[float], n: int) -> tuple[float, float]:
    """Expected (proxy, gold) score of the answer the proxy ranks first among n drawn without replacement
    from these K samples of one prompt, exactly (the unbiased estimator of Nakano et al. 2021): ranked by
    proxy, the i-th lowest of K is the best of a random n-subset with probability C(i-1, n-1) / C(K, n)."""
    k = len(proxy)
    if not 1 <= n <= k:
        raise ValueError(f"best-of-{n} needs at least {n} samples per prompt, got {k}")
    order = sorted(range(k), key=lambda i: proxy[i])
    weights = [comb(rank, n - 1) / comb(k, n) for rank in range(k)]
    return (
        sum(w * proxy[i] for w, i in zip(weights, order)),
        sum(w * gold[i] for w, i in zip(weights, order)),
    )


def best_of_n_curve(proxy: list[list[float]], gold: list[list[float]], ns: list[int]) -> list[dict]:
    """One point per n: KL, and the mean over prompts of the expected proxy and gold score of best-of-n."""
    points = []
    for n in ns:
        pairs = [best_of_n_expectation(p, g, n) for p, g in zip(proxy, gold)]
        points.append(
            {
                "n": n,
                "kl": round(best_of_n_kl(n), 4),
                "proxy": round(mean(p for p, _ in pairs), 4),
                "gold": round(mean(g for _, g in pairs), 4),
            }
        )
    return points


def powers_of_two(limit: int) -> list[int]:
    return [2**i for i in range(int(math.log2(limit)) + 1)]


def verdict(points: list[dict]) -> str:
    """What a curve shows, in a sentence: where the gold score peaked, and whether it fell after."""
    best = max(points, key=lambda p: p["gold"])
    last = points[-1]
    where = f"KL {best['kl']:.2f} nats"
    if best is last or best["gold"] - last["gold"] < 0.02:
        return f"gold still rising or flat at the farthest point ({where}, gold {best['gold']:.2f}): no fall seen"
    return (
        f"gold peaks at {where} ({best['gold']:.2f}) and falls to {last['gold']:.2f} at KL {last['kl']:.2f} "
        f"while the proxy goes from {best['proxy']:.2f} to {last['proxy']:.2f}"
    )


def _panel(ax, points: list[dict], title: str, labels: list[str]) -> None:
    x = [math.sqrt(max(p["kl"], 0.0)) for p in points]
    ax.plot(x, [p["gold"] for p in points], "o-", color="tab:blue", label="gold (labeler)")
    ax.set_ylabel("gold score (of 4)", color="tab:blue")
    twin = ax.twinx()
    twin.plot(x, [p["proxy"] for p in points], "s--", color="tab:orange", label="proxy (reward model)")
    twin.set_ylabel("reward model score", color="tab:orange")
    for xi, p, label in zip(x, points, labels):
        ax.annotate(label, (xi, p["gold"]), fontsize=7, xytext=(3, -10), textcoords="offset points")
    ax.set_xlabel("sqrt(KL to SFT), nats^0.5")
    ax.set_title(title)
    lines = ax.get_lines()[:1] + twin.get_lines()[:1]
    ax.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="lower right")


def plot(curves: dict, path: Path) -> None:
    """Gao et al.'s figure: gold (solid) and proxy (dashed) against sqrt(KL), best-of-n and each RL run."""
    runs = curves["runs"]
    fig, axes = plt.subplots(1, 1 + len(runs), figsize=(5.5 * (1 + len(runs)), 4), squeeze=False)
    bon = curves["best_of_n"]
    _panel(axes[0][0], bon, "best-of-n (SFT samples, RM picks)", [f"n={p['n']}" for p in bon])
    for ax, (name, points) in zip(axes[0][1:], runs.items()):
        _panel(ax, points, f"{name} along training", [str(p["update"]) for p in points])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(curves: dict, figure: str) -> list[str]:
    lines = [
        "## Reward over-optimisation",
        "",
        f"Gold and proxy (reward model) score against KL to SFT on {curves['prompts']} held-out prompts, as in "
        "Gao et al. (2022): best-of-n from "
        f"{curves['samples_per_prompt']} SFT samples per prompt (KL = log n − (n−1)/n), and each RL run's saved "
        "policies (KL measured on their own samples; update 0 is the SFT model).",
        "",
        "| curve | point | KL (nats) | proxy | gold /4 |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| best-of-n | n={p['n']} | {p['kl']:.3f} | {p['proxy']:.3f} | {p['gold']:.3f} |" for p in curves["best_of_n"]
    ]
    for name, points in curves["runs"].items():
        lines += [
            f"| {name} | update {p['update']} | {p['kl']:.3f} | {p['proxy']:.3f} | {p['gold']:.3f} |" for p in points
        ]
    lines += ["", f"- best-of-n: {verdict(curves['best_of_n'])}."]
    lines += [f"- {name}: {verdict(points)}." for name, points in curves["runs"].items() if len(points) > 1]
    return [*lines, "", f"![{figure}]({figure})", ""]
