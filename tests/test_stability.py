"""Stability along training: the per-update figures read alike from PPO's and TRL's logs, the warning lines,
the run's summary, and the policy snapshots every RL method and DPO save for the frontier curves."""

import json

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlhf_recipes.training.stability import KL_ALARM, measures, summarize, warnings


def ppo_entry(kl: float, entropy: float, step: int = 1) -> dict:
    return {"objective/kl": kl, "objective/entropy": entropy, "policy/clipfrac_avg": 0.01, "val/ratio": 1.0,
            "val/answer_length": 10.0, "val/explained_variance": 0.5, "step": step}  # fmt: skip


def test_trl_figures_per_token_are_scaled_to_per_answer():
    entry = {"kl": 0.05, "entropy": 0.2, "completions/mean_length": 20.0, "clip_ratio/region_mean": 0.0}
    found = measures(entry)
    assert found["kl"] == pytest.approx(1.0) and found["entropy"] == pytest.approx(4.0)
    assert found["answer_length"] == 20.0 and found["clip_fraction"] == 0.0
    assert measures({"loss": 1.0, "entropy": 0.3, "mean_token_accuracy": 0.5}) is None  # SFT's log is no update
    assert measures(ppo_entry(0.3, 1.0))["kl"] == 0.3  # PPO's are per answer already


def test_a_kl_over_the_alarm_and_an_entropy_jump_are_warned_steady_updates_are_not():
    steady = [measures(ppo_entry(0.3, 1.0 + 0.1 * i)) for i in range(6)]
    assert all(not warnings(steady[:i], u, i) for i, u in enumerate(steady))
    assert warnings(steady, measures(ppo_entry(KL_ALARM + 0.5, 1.2)), 7) == [
        f"update 7: KL {KL_ALARM + 0.5:.2f} nats per answer, above {KL_ALARM}"
    ]
    jump = warnings(steady, measures(ppo_entry(0.3, 5.0)), 7)
    assert len(jump) == 1 and "entropy 5.00" in jump[0]
    assert not warnings(steady[:3], measures(ppo_entry(0.3, 5.0)), 4)  # too few updates to know what is usual


def test_the_summary_counts_what_the_warnings_saw():
    log = [ppo_entry(0.2, 1.0, s) for s in range(1, 6)] + [ppo_entry(3.0, 1.0, 6), {"train_runtime": 5.0}]
    found = summarize(log)
    assert found["updates"] == 6 and found["kl_over_alarm"] == 1 and found["warnings"] == 1
    assert found["kl_max"] == 3.0 and found["first_warnings"][0].startswith("update 6:")
    assert summarize([{"loss": 1.0}]) == {}


@pytest.mark.slow
def test_a_real_ppo_run_logs_every_figure_the_summary_reads(ppo_model):
    out, _ = ppo_model
    found = summarize(json.loads((out / "metrics.json").read_text())["log_history"])
    assert found["updates"] == 2
    assert {"kl_max", "entropy_max", "clip_fraction_mean", "ratio_mean", "answer_length_mean"} <= set(found)
    assert 1 <= found["answer_length_mean"] <= 16  # the test's response_length


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rloo", "grpo", "dpo"])
def test_every_method_saves_snapshots_plain_transformers_loads(method, request):
    out, _ = request.getfixturevalue(f"{method}_model")
    snapshots = sorted((out / "snapshots").iterdir())
    expected = ["update-0006", "update-0012"] if method == "dpo" else ["update-0001", "update-0002"]
    assert [p.name for p in snapshots] == expected
    model, tok = AutoModelForCausalLM.from_pretrained(snapshots[0]), AutoTokenizer.from_pretrained(snapshots[0])
    assert tok.chat_template and model.config.vocab_size >= len(tok)
    if method != "dpo":
        found = summarize(json.loads((out / "metrics.json").read_text())["log_history"])
        assert found["updates"] == 2 and {"entropy_max", "answer_length_mean"} <= set(found)
