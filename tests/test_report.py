"""The report on tiny checkpoints: markdown, JSON with every headline number, and PNG figures."""

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, ppo_args, script
from rlhf_recipes.evaluation.overoptimization import best_of_n_kl
from rlhf_recipes.stages.sweep import SweepArguments, seed_command
from rlhf_recipes.training.config import RecipeError

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`

HEADLINES = {"reference", "policies", "sampling", "rm_accuracy", "base_perplexity", "wall_time_s", "samples"}
ROW_KEYS = {
    "label",
    "gold_score",
    "helpful",
    "honest",
    "harmless",
    "concise",
    "answer_rate",
    "refusal_rate_harmful",
    "refusal_rate_benign",
    "mean_length",
    "eos_share",
    "rm_score",
    "win_rate_vs_reference",
    "kl_to_reference",
    "admits_not_knowing",
    "entropy_per_answer",
    "top_template_share",
    "collapsed",
}


@pytest.fixture(scope="module")
def outputs(world_dir, pretrained, sft_model, reward_model, dpo_model, rloo_model, grpo_model, tmp_path_factory):
    """A recipe's outputs folder, laid out as `make` lays it out, from the session's tiny stages."""
    root = tmp_path_factory.mktemp("outputs") / "tiny"
    root.mkdir()
    stages = {"pretrain": pretrained, "sft": sft_model, "reward": reward_model}
    stages |= {"dpo": dpo_model, "rloo": rloo_model, "grpo": grpo_model}
    for stage, (path, _) in stages.items():
        (root / stage).symlink_to(path)
    script("ppo")(
        ppo_args(world_dir, sft_model[0], reward_model[0], root / "ppo", "--eval_prompts", "", "--snapshot_steps", "1")
    )
    return root


def report_config(tmp_path, *extra_rows: dict) -> Path:
    """The tiny recipe's report.yaml with best-of-2 instead of 4, plus any extra rows."""
    config = yaml.safe_load((TINY / "report.yaml").read_text())
    for row in config["policies"]:
        row["best_of"] = min(row.get("best_of", 1), 2)
    config["policies"] += list(extra_rows)
    path = tmp_path / "report.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def report_args(world_dir, outputs, out, config=TINY / "report.yaml", *extra):
    return [
        "--config",
        str(config),
        "--outputs_dir",
        str(outputs),
        "--eval_prompts",
        str(world_dir / "eval_prompts"),
        "--world_file",
        str(world_dir / "world.json"),
        "--eval_max_new_tokens",
        "16",
        "--bootstrap_samples",
        "200",
        "--overopt_prompts",
        "4",
        "--overopt_best_of",
        "4",
        "--overopt_samples",
        "2",
        "--output_dir",
        str(out),
        *extra,
    ]


def test_report_writes_markdown_json_and_figures(world_dir, outputs, tmp_path):
    out = tmp_path / "report"
    result = script("report")(report_args(world_dir, outputs, out, report_config(tmp_path)))
    saved = json.loads((out / "report.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert HEADLINES <= set(saved)
    assert list(saved["policies"]) == ["base", "base_fewshot", "sft", "best_of_n", "ppo"]
    for row in saved["policies"].values():
        assert ROW_KEYS <= set(row)
        low, high = row["win_rate_vs_reference"]["ci95"]
        assert 0 <= low <= row["win_rate_vs_reference"]["win_rate"] <= high <= 1
    rows = saved["policies"]
    assert rows["sft"]["win_rate_vs_reference"]["win_rate"] == 0.5 and rows["sft"]["kl_to_reference"] == 0.0
    assert rows["best_of_n"]["kl_to_reference"] == round(math.log(2) - 1 / 2, 3)  # best-of-2, analytically
    assert rows["ppo"]["kl_to_reference"] is not None and rows["base"]["kl_to_reference"] is None
    ppo_config = json.loads((outputs / "ppo" / "metrics.json").read_text())["config"]
    assert saved["sampling"]["temperature"] == ppo_config["temperature"]  # read from PPO, not repeated
    assert saved["sampling"]["missing_eos_penalty"] == ppo_config["missing_eos_penalty"]
    assert "population" in saved["samples"][0]["prompt"]  # the ChatGPT story's example leads
    assert saved["samples"][1]["kind"] == "unknown"  # then a city or attribute the world does not have
    assert 0 <= rows["sft"]["admits_not_knowing"] <= 1 and rows["sft"]["entropy_per_answer"] > 0
    assert rows["base"]["entropy_per_answer"] is None and not rows["sft"]["collapsed"]
    curves = saved["overoptimization"]
    assert [p["n"] for p in curves["best_of_n"]] == [1, 2, 4] and curves["prompts"] == 4
    assert [p["kl"] for p in curves["best_of_n"]] == [round(best_of_n_kl(n), 4) for n in (1, 2, 4)]
    proxies = [p["proxy"] for p in curves["best_of_n"]]
    assert proxies == sorted(proxies)  # picking by the proxy can only raise the proxy's expected score
    assert [p["update"] for p in curves["runs"]["ppo"]] == [0, 1, 2]  # SFT, then every PPO snapshot
    assert all(p["kl"] > -0.5 for p in curves["runs"]["ppo"])
    markdown = (out / "report.md").read_text()
    ppo_win = rows["ppo"]["win_rate_vs_reference"]["win_rate"]
    assert "PPO vs SFT win rate" in markdown and f"{ppo_win:.3f}" in markdown
    assert "## Reward over-optimisation" in markdown
    counted = saved["counting"]["models"]  # before the network: n-grams counted on pretrain's tokens
    assert list(counted) == ["unigram", "bigram", "trigram", "pretrained"]
    assert counted["pretrained"]["perplexity"] == saved["base_perplexity"]
    assert "## Before the network: counting words" in markdown
    ppo_updates = [
        e for e in json.loads((outputs / "ppo" / "metrics.json").read_text())["log_history"] if "objective/kl" in e
    ]
    assert saved["stability"]["ppo"]["updates"] == len(ppo_updates) > 0  # the RL stage's updates, summed up
    assert set(saved["stability"]) <= {"ppo", "rloo", "grpo"} and "## Stability along training" in markdown
    for figure in ("stage_scores.png", "training_curves.png", "gold_vs_proxy.png", "overoptimization.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({figure})" in markdown


def test_a_new_row_is_one_line_of_yaml(world_dir, outputs, tmp_path):
    """A method added later is a script, a YAML and one row here; the table, JSON and samples follow."""
    extra = {"name": "ppo_best_of_2", "label": "best-of-2 (PPO + RM)", "path": "ppo", "best_of": 2}
    out = tmp_path / "report"
    result = script("report")(report_args(world_dir, outputs, out, report_config(tmp_path, extra)))
    row = result["policies"]["ppo_best_of_2"]
    assert row["label"] == extra["label"] and row["kl_to_reference"] is None  # best-of on another model than SFT
    assert all("ppo_best_of_2" in sample for sample in result["samples"])
    assert "| best-of-2 (PPO + RM) |" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "row, needle",
    [
        ({"name": "x", "path": "sft", "prompting": "chat"}, "optionally"),
        ({"name": "x", "path": "sft", "prompt": "shout"}, "prompt must be one of"),
        ({"name": "sft", "path": "sft"}, "must be unique"),
        ({"name": "x", "path": "orpo"}, "run `make orpo` first"),
    ],
)
def test_a_bad_row_is_one_line_before_any_work(world_dir, outputs, tmp_path, row, needle):
    with pytest.raises(RecipeError, match=re.escape(needle)):
        script("report")(report_args(world_dir, outputs, tmp_path / "report", report_config(tmp_path, row)))
    assert not (tmp_path / "report").exists() and not (tmp_path / "report.partial").exists()


def test_a_missing_stage_names_the_command_to_run(world_dir, outputs, tmp_path):
    for stage in ("pretrain", "sft", "reward"):
        (tmp_path / stage).symlink_to(outputs / stage)
    with pytest.raises(RecipeError, match="run `make ppo` first"):
        script("report")(report_args(world_dir, tmp_path, tmp_path / "report"))
    assert not (tmp_path / "report").exists()


def test_methods_report_has_every_row_and_its_cost(world_dir, outputs, tmp_path):
    """`make methods`: the eight rows of recipes/tiny/methods.yaml, with each method's cost and the KL figure."""
    config = yaml.safe_load((TINY / "methods.yaml").read_text())
    for row in config["policies"]:
        row["best_of"] = min(row.get("best_of", 1), 2)
    path = tmp_path / "methods.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "methods"
    result = script("report")(report_args(world_dir, outputs, out, path))
    rows = result["policies"]
    assert list(rows) == ["base", "base_fewshot", "sft", "best_of_n", "ppo", "dpo", "rloo", "grpo"]
    assert rows["ppo"]["sampled_answers"] == 16 and rows["rloo"]["sampled_answers"] == 16
    assert rows["dpo"]["pairs_seen"] == 96 and rows["dpo"]["sampled_answers"] is None
    for name in ("ppo", "dpo", "rloo", "grpo"):
        assert rows[name]["kl_to_reference"] is not None and rows[name]["stage_wall_time_s"] > 0
    assert (out / "score_vs_kl.png").read_bytes()[:4] == b"\x89PNG"
    assert "| GRPO |" in (out / "report.md").read_text()
    assert "counting" not in result  # ngram_orders: [] (the counted n-grams are in the report's)


def test_ppo_snapshots_load_as_plain_models(outputs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    snapshots = sorted((outputs / "ppo" / "snapshots").iterdir())
    assert [p.name for p in snapshots] == ["update-0001", "update-0002"]
    model, tokenizer = AutoModelForCausalLM.from_pretrained(snapshots[0]), AutoTokenizer.from_pretrained(snapshots[0])
    assert tokenizer.chat_template and model.config.vocab_size >= len(tokenizer)


def test_sweep_goes_on_where_it_stopped_and_reports_the_spread(
    world_dir, tokenizer_dir, outputs, comparisons, tmp_path, monkeypatch
):
    """Two seeds whose training stages are done (as after a sweep that died before its reports): the sweep
    keeps them, runs each seed's report from its own stages, and writes the spread."""
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for path in ROOT.glob("recipes/*.py"):
        (recipes / path.name).symlink_to(path)
    (recipes / "tiny").mkdir()
    for config in TINY.glob("*.yaml"):
        (recipes / "tiny" / config.name).write_text(config.read_text())
    quick = yaml.safe_load((recipes / "tiny" / "report.yaml").read_text())
    quick |= {"eval_max_new_tokens": 16, "bootstrap_samples": 200, "policies": quick["policies"][2:4]}
    quick["policies"][1]["best_of"] = 2
    (recipes / "tiny" / "report.yaml").write_text(yaml.safe_dump(quick))
    (tmp_path / "accelerate_configs").symlink_to(ROOT / "accelerate_configs")
    shared = tmp_path / "outputs" / "tiny"
    shared.mkdir(parents=True)
    (shared / "tokenizer").symlink_to(tokenizer_dir)
    (shared / "pretrain").symlink_to(outputs / "pretrain")
    for seed in (0, 1):
        seed_dir = shared / "sweep" / f"seed-{seed}"
        seed_dir.mkdir(parents=True)
        for stage, path in {"sft": outputs / "sft", "compare": comparisons[0], "reward": outputs / "reward"}.items():
            (seed_dir / stage).symlink_to(path)
        (seed_dir / "ppo").symlink_to(outputs / "ppo")
    monkeypatch.chdir(tmp_path)
    argv = seed_command(SweepArguments(), "report", shared / "sweep" / "seed-1", 1)
    assert argv[argv.index("--outputs_dir") + 1] == str(shared / "sweep" / "seed-1")
    assert argv[argv.index("--seed") + 1] == "1" and argv[argv.index("--overopt_prompts") + 1] == "0"
    summary = script("sweep")(["--seeds", "2", "--from_stage", "sft"])
    assert summary["seeds"] == [0, 1] and list(summary["rows"]) == ["sft", "best_of_n"]
    gold = summary["rows"]["best_of_n"]["gold_score"]
    assert len(gold["seeds"]) == 2 and min(gold["seeds"]) <= gold["mean"] <= max(gold["seeds"])
    assert summary["rows"]["sft"]["win_rate"]["seeds"] == [0.5, 0.5]  # SFT against itself
    for seed in (0, 1):
        assert (shared / "sweep" / f"seed-{seed}" / "report" / "report.json").is_file()
        assert (shared / "sweep" / f"seed-{seed}" / "pretrain").resolve() == (outputs / "pretrain").resolve()
    written = (shared / "sweep" / "sweep.md").read_text()
    assert "mean ± std" in written and "## Collapse check" in written
    assert (shared / "sweep" / "sweep.png").read_bytes()[:4] == b"\x89PNG"
