"""Tiny real reward-model runs: it ranks held-out pairs above chance and reads the score at EOS."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from conftest import reward_args, script
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.rewards import rewards

pytestmark = pytest.mark.slow  # trains tiny models for real: `make test`, not `make test-fast`


def test_ranks_heldout_pairs_well_above_chance(reward_model):
    _, metrics = reward_model
    heldout = metrics["heldout"]
    assert heldout["pairs"] == 100
    assert heldout["gold_agreement"] > 0.65, heldout  # chance is 0.5; six kinds of difference, 800 pairs
    assert heldout["margin"] > 0
    kinds = {"style", "wrong_value", "harmful", "over_refusal", "unknown", "degenerate"}
    assert set(heldout["accuracy_by_difference"]) == kinds


def test_saved_reward_model_is_a_plain_classifier_scoring_at_eos(reward_model):
    out, metrics = reward_model
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id != tok.eos_token_id
    chat = [{"role": "user", "content": "Which river flows through Valmora?"}]
    short = chat + [{"role": "assistant", "content": "I can't help with that request."}]
    long = chat + [{"role": "assistant", "content": "Great question! I would be happy to help you with that."}]
    alone = rewards(model, tok, [None], [short])[0]
    padded = rewards(model, tok, [None, None], [short, long])[0]  # `short` now carries right padding
    assert padded == pytest.approx(alone, abs=1e-5)
    ids = tok.apply_chat_template(short, tokenize=True, return_dict=True)["input_ids"]
    assert ids[-1] == tok.eos_token_id
    assert torch.isfinite(torch.tensor(metrics["reward_mean"]))


def test_dataset_without_pairs_names_its_columns(world_dir, pretrained, tmp_path):
    with pytest.raises(RecipeError, match=r"columns \['messages'\]; expected chosen/rejected"):
        script("reward")(reward_args(pretrained[0], world_dir / "sft", tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_pairs_all_longer_than_max_length_are_an_error(world_dir, pretrained, tmp_path):
    with pytest.raises(RecipeError, match="longer than max_length=4"):
        script("reward")(reward_args(pretrained[0], world_dir / "preferences", tmp_path / "r", "--max_length", "4"))
    assert not (tmp_path / "r").exists()
