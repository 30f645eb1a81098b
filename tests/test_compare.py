"""Collecting comparisons: the SFT model's own answers, ranked by the noisy gold labeler."""

import pytest
from datasets import load_dataset

from conftest import TINY, script
from rlhf_recipes.training.config import RecipeError

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`


def test_pairs_are_written_as_a_standard_preference_dataset(comparisons):
    out, metrics = comparisons
    ds = load_dataset(str(out))
    assert set(ds) == {"train", "test"}
    assert {"prompt", "chosen", "rejected", "difference"} <= set(ds["train"].column_names)
    row = ds["test"][0]
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert set(ds["test"]["source"]) == {"sft_samples"}  # offline pairs only ever join the train split
    assert metrics["offline_pairs_in_train"] == 50
    assert metrics["samples"] == 16 * 4
    assert 0 <= metrics["label_agreement_with_gold"] <= 1


def test_every_collected_pair_has_a_gold_preference(comparisons, world_dir):
    from rlhf_recipes.world.labeler import GoldLabeler
    from rlhf_recipes.world.world import World

    out, _ = comparisons
    labeler = GoldLabeler(World.load(world_dir / "world.json"))
    for row in load_dataset(str(out))["test"]:
        prompt = row["prompt"][-1]["content"]
        gold = [labeler.score(prompt, r[0]["content"]).total for r in (row["chosen"], row["rejected"])]
        # the text alone loses whether generation stopped at EOS, so compare only what the text shows
        if gold[0] != gold[1]:
            assert (gold[0] > gold[1]) == row["label_agrees_with_gold"]


def test_one_sample_per_prompt_cannot_be_compared(tmp_path):
    with pytest.raises(RecipeError, match="at least 2"):
        script("compare")(
            [
                "--config",
                str(TINY / "compare.yaml"),
                "--num_samples_per_prompt",
                "1",
                "--output_dir",
                str(tmp_path / "c"),
            ]
        )
