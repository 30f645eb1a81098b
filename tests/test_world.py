"""The embedded world: deterministic, disjoint where it must be, loadable as standard datasets."""

import json
from dataclasses import replace

import pytest
from datasets import load_dataset

from rlhf_recipes.world.datagen import WorldConfig, generate
from rlhf_recipes.world.labeler import GoldLabeler
from rlhf_recipes.world.languages.en import ATTRIBUTES, ENGLISH, PADDING_OPENERS
from rlhf_recipes.world.world import admits_not_knowing, cities_in

SMALL = WorldConfig(
    num_cities=12,
    pretrain_docs=300,
    sft_train=200,
    sft_test=20,
    comparison_prompts=20,
    preference_train=400,
    preference_test=100,
    rl_prompts=40,
    eval_harmful=4,
    eval_benign=4,
    num_unknown_cities=12,
    eval_unknown=6,
)


def _rows_as_json(data):
    return json.dumps({k: v for k, v in data.items() if k != "world"}, sort_keys=True)


def test_same_seed_same_world_other_seed_other_world():
    assert _rows_as_json(generate(SMALL)) == _rows_as_json(generate(SMALL))
    assert _rows_as_json(generate(SMALL)) != _rows_as_json(generate(replace(SMALL, seed=1)))


def _prompt_cities(world, rows, column):
    return {c for row in rows for m in row[column] for c in cities_in(world, m["content"])}


def test_heldout_cities_never_reach_training_splits():
    data = generate(SMALL)
    world = data["world"]
    held = set(world.heldout)
    assert held and held < {c.name for c in world.cities}
    assert not _prompt_cities(world, data["sft"]["train"], "messages") & held
    assert not _prompt_cities(world, data["preferences"]["train"], "prompt") & held
    assert not _prompt_cities(world, data["rl_prompts"]["train"], "prompt") & held
    assert not _prompt_cities(world, data["comparison_prompts"]["train"], "prompt") & held
    assert _prompt_cities(world, data["eval_prompts"]["test"], "prompt") <= held
    assert _prompt_cities(world, data["preferences"]["test"], "prompt") <= held
    # every held-out city is still described in the pretraining text
    corpus = " ".join(r["text"] for r in data["pretrain"]["train"])
    assert all(name in corpus for name in held)
    assert not {r["text"] for r in data["pretrain"]["train"]} & {r["text"] for r in data["pretrain"]["test"]}


def test_flaws_and_label_noise_follow_the_config():
    cfg = replace(SMALL, sft_train=2000, preference_train=3000, label_noise=0.2, multi_turn_fraction=0.0)
    data = generate(cfg)
    pairs = data["preferences"]["train"]
    agree = sum(p["label_agrees_with_gold"] for p in pairs) / len(pairs)
    assert agree == pytest.approx(0.8, abs=0.03)
    assert {p["difference"] for p in pairs} == {
        "style",
        "wrong_value",
        "harmful",
        "over_refusal",
        "unknown",
        "degenerate",
    }
    demos = data["sft"]["train"]
    padded = sum(any(m in r["messages"][-1]["content"] for m in PADDING_OPENERS) for r in demos)
    fact_share = 1 - cfg.harmful_fraction - cfg.unknown_fraction
    assert padded / len(demos) == pytest.approx(cfg.flaw_padded * fact_share, abs=0.03)
    admitted = sum(admits_not_knowing(ENGLISH, r["messages"][-1]["content"]) for r in demos)
    assert admitted / len(demos) == pytest.approx(cfg.unknown_fraction * (1 - cfg.unknown_fabrication), abs=0.02)


def test_unknown_cities_are_in_no_text_and_held_out_ones_only_in_evaluation():
    data = generate(SMALL)
    world = data["world"]
    assert len(world.unknown) == 12 and len(world.unknown_heldout) == 3
    assert not set(world.unknown) & {c.name for c in world.cities}
    assert generate(replace(SMALL, num_unknown_cities=0, unknown_fraction=0, eval_unknown=0))["world"].cities == (
        world.cities
    )  # the known world does not depend on how many unknown names there are
    corpus = " ".join(r["text"] for r in data["pretrain"]["train"] + data["pretrain"]["test"])
    assert not any(name in corpus for name in world.unknown)
    train_text = json.dumps([data[k]["train"] for k in ("sft", "preferences", "rl_prompts", "comparison_prompts")])
    assert not any(name in train_text for name in world.unknown_heldout)
    assert any(name in train_text for name in world.unknown_train)
    labeler = GoldLabeler(world)
    unknown = [r for r in data["eval_prompts"]["test"] if r["kind"] == "unknown"]
    assert len(unknown) == 6
    assert all(labeler.kind(r["prompt"][0]["content"]) == "unknown" for r in unknown)


def test_written_datasets_load_in_trl_formats(world_dir):
    expected = {
        "pretrain": {"text"},
        "sft": {"messages"},
        "comparison_prompts": {"prompt"},
        "preferences": {"prompt", "chosen", "rejected"},
        "rl_prompts": {"prompt"},
        "eval_prompts": {"prompt", "kind"},
    }
    for name, columns in expected.items():
        ds = load_dataset(str(world_dir / name))
        for split in ds.values():
            assert columns <= set(split.column_names), name
            assert len(split) > 0, name
    assert load_dataset(str(world_dir / "sft"))["train"][0]["messages"][0]["role"] == "user"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"label_noise": 1.5}, "label_noise"),
        ({"attributes": ["country", "weather"]}, "unknown attributes"),
        ({"num_cities": 1}, "at least 2"),
        ({"num_unknown_cities": 0, "attributes": sorted(ATTRIBUTES)}, "unknown cities"),
    ],
)
def test_bad_world_configs_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        generate(replace(SMALL, **override))
