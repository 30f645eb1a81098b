"""The head-to-head's arithmetic (`make headtohead`): what each seed runs, the intervals over seeds, the
goals, the stability table and the frontier averaged over seeds."""

import math
from pathlib import Path
from statistics import mean, stdev

from rlhf_recipes.evaluation import sweep
from rlhf_recipes.stages.sweep import SweepArguments, chain, report_stage, seed_args

WINS = {"sft": [0.5, 0.5, 0.5], "ppo": [0.61, 0.57, 0.64], "rloo": [0.66, 0.49, 0.6]}
GOLD = {"sft": [3.5, 3.6, 3.4], "best_of_n": [3.9, 3.85, 3.88], "ppo": [3.8, 3.7, 3.9], "rloo": [3.95, 3.6, 3.9]}


def curve(seed: int) -> dict:
    bon = [{"n": n, "kl": math.log(n) - (n - 1) / n, "proxy": 0.0, "gold": 3.5 + 0.1 * i + 0.01 * seed}
           for i, n in enumerate((1, 2, 4))]  # fmt: skip
    run = [{"update": u, "kl": 0.1 * u, "proxy": 0.0, "gold": 3.5 + 0.05 * u + 0.01 * seed} for u in (0, 8, 16)]
    return {"best_of_n": bon, "runs": {"ppo": run, "rloo": run}, "prompts": 4, "samples_per_prompt": 4}


def report(seed: int) -> dict:
    policies = {}
    for name in ("sft", "best_of_n", "ppo", "rloo"):
        win = WINS.get(name, [0.6] * 3)[seed]
        policies[name] = {
            "label": name.upper(), "gold_score": GOLD[name][seed], "admits_not_knowing": 0.8,
            "win_rate_vs_reference": {"win_rate": win, "ci95": [win - 0.04, win + 0.04]},
            "fact_accuracy": 0.9, "collapsed": False, "sampled_answers": 1024, "kl_to_reference": 0.4,
        }  # fmt: skip
    return {"reference": "sft", "policies": policies, "overoptimization": curve(seed)}


def stability() -> dict:
    calm = {"updates": 64, "warnings": 0, "kl_max": 1.2, "kl_over_alarm": 0, "entropy_max": 3.0}
    return {"ppo": [calm] * 3, "rloo": [calm, calm | {"kl_max": 2.6, "kl_over_alarm": 2, "warnings": 2}, calm]}


def summary() -> dict:
    found = sweep.summarize({seed: report(seed) for seed in range(3)}, stability())
    return found | {"from_stage": "sft", "stage_time_s": 600}


def test_every_method_trains_from_the_same_seed_and_the_report_has_a_row_and_a_curve_for_each():
    args = SweepArguments(methods=["ppo", "dpo", "rloo", "grpo"], report_overopt=True, output_dir="x")
    assert chain(args) == ("sft", "compare", "reward", "ppo", "dpo", "rloo", "grpo", "methods")
    assert report_stage(SweepArguments()) == "report" and chain(SweepArguments())[-2:] == ("ppo", "report")
    argv = seed_args(args, "methods", Path("x/seed-1"), 1)
    assert argv[argv.index("--overopt_runs") + 1 :][:4] == ["ppo", "dpo", "rloo", "grpo"]
    assert "--snapshot_steps" not in seed_args(args, "rloo", Path("x/seed-1"), 1)


def test_the_interval_over_seeds_is_students_t():
    win = summary()["rows"]["ppo"]["win_rate"]
    values = WINS["ppo"]
    half = 4.303 * stdev(values) / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert win["mean"] == round(mean(values), 4)
    assert win["ci95"] == [round(mean(values) - half, 4), round(mean(values) + half, 4)]


def test_the_goals_say_which_method_lost_a_seed_and_which_update_spiked():
    goals = sweep.goals(summary(), "ppo", "tiny")
    assert goals["win_mean"]["measured"] == "0.607" and not goals["win_mean"]["met"]  # below 0.62
    assert goals["win_min"]["measured"] == "lowest 0.570" and not goals["win_min"]["met"]  # below 0.58
    assert goals["every_seed"]["met"] is False and "RLOO 2/3 seeds" in goals["every_seed"]["measured"]
    assert goals["kl_alarm"]["met"] is False and "2 updates over; the largest 2.60" == goals["kl_alarm"]["measured"]
    assert goals["best_of_4"]["met"] is False  # RLOO 3.817 and PPO 3.8 below best-of-4's 3.877
    assert sweep.goals(summary(), "ppo", "tiny-zh")["admits"]["goal"].startswith("admits not knowing on >= 75%")


def test_the_page_shows_the_headline_the_stability_and_the_curves_at_equal_samples(tmp_path):
    found = summary()
    front = found["frontier"]
    assert [p["n"] for p in front["best_of_n"]] == [1, 2, 4] and front["seeds"] == 3
    point = front["runs"]["ppo"][1]
    assert (point["update"], point["kl"], point["gold"]) == (8, 0.8, 3.91) and len(point["gold_seeds"]) == 3
    page = sweep.markdown(found, sweep.goals(found, "ppo"), "sweep.png")
    assert "| RLOO | 3.817 [" in page and "| 2/3 |" in page  # gold with its interval; seeds won
    assert "## Stability along training" in page and "| RLOO | 64 | 2.600 | 2 |" in page
    assert "## At equal KL and equal samples" in page and "| ppo | update 16 |" in page
    sweep.plot_frontier(found, tmp_path / "frontier.png")
    assert (tmp_path / "frontier.png").read_bytes()[:4] == b"\x89PNG"
