"""The report on tiny checkpoints: markdown, JSON with every headline number, and PNG figures."""

import json

import pytest

import ppo
import report
from conftest import TINY, ppo_args
from rlhf_recipes.training.config import RecipeError

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`

HEADLINES = {"ppo_vs_sft_win_rate", "rm_accuracy", "kl_ppo_sft", "base_perplexity", "wall_time_s", "samples"}
STAGE_KEYS = {
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
    "win_rate_vs_sft",
}


@pytest.fixture(scope="module")
def outputs(world_dir, pretrained, sft_model, reward_model, tmp_path_factory):
    """A recipe's outputs folder, laid out as `make` lays it out, from the session's tiny stages."""
    root = tmp_path_factory.mktemp("outputs") / "tiny"
    root.mkdir()
    for stage, path in (("pretrain", pretrained[0]), ("sft", sft_model[0]), ("reward", reward_model[0])):
        (root / stage).symlink_to(path)
    ppo.main(ppo_args(world_dir, sft_model[0], reward_model[0], root / "ppo", "--eval_prompts", ""))
    return root


def report_args(world_dir, outputs, out, *extra):
    return [
        "--config",
        str(TINY / "report.yaml"),
        "--outputs_dir",
        str(outputs),
        "--data_dir",
        str(world_dir),
        "--eval_prompts",
        str(world_dir / "eval_prompts"),
        "--world_file",
        str(world_dir / "world.json"),
        "--eval_max_new_tokens",
        "16",
        "--best_of_n",
        "2",
        "--bootstrap_samples",
        "200",
        "--output_dir",
        str(out),
        *extra,
    ]


def test_report_writes_markdown_json_and_figures(world_dir, outputs, tmp_path):
    out = tmp_path / "report"
    result = report.main(report_args(world_dir, outputs, out))
    saved = json.loads((out / "report.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert HEADLINES <= set(saved)
    assert set(saved["stages"]) == {"base", "base_fewshot", "sft", "best_of_n", "ppo"}
    for stage in saved["stages"].values():
        assert STAGE_KEYS <= set(stage)
        low, high = stage["win_rate_vs_sft"]["ci95"]
        assert 0 <= low <= stage["win_rate_vs_sft"]["win_rate"] <= high <= 1
    assert saved["stages"]["sft"]["win_rate_vs_sft"]["win_rate"] == 0.5
    assert "population" in saved["samples"][0]["prompt"]  # the ChatGPT story's example leads
    markdown = (out / "report.md").read_text()
    assert "PPO vs SFT win rate" in markdown and f"{saved['ppo_vs_sft_win_rate']['win_rate']:.3f}" in markdown
    for figure in ("stage_scores.png", "training_curves.png", "gold_vs_proxy.png"):
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({figure})" in markdown


def test_a_missing_stage_names_the_command_to_run(world_dir, outputs, tmp_path):
    for stage in ("pretrain", "sft", "reward"):
        (tmp_path / stage).symlink_to(outputs / stage)
    with pytest.raises(RecipeError, match="run `make ppo` first"):
        report.main(report_args(world_dir, tmp_path, tmp_path / "report"))
    assert not (tmp_path / "report").exists()
