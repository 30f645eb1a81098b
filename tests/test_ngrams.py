"""Before the network: n-gram models counted on the pretraining tokens, scored as the pretrained model is."""

import itertools
import json

import numpy as np
import pytest
from transformers import AutoTokenizer

from conftest import TINY, script, world_args
from rlhf_recipes.evaluation.ngrams import (
    count,
    counting,
    ngram_complete,
    perplexity,
    population_prompts,
    probabilities,
    unseen_share,
)
from rlhf_recipes.evaluation.probes import fact_recall
from rlhf_recipes.evaluation.render import counting_markdown
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.generation import Completion
from rlhf_recipes.training.packing import pretraining_splits
from rlhf_recipes.training.world_inputs import load_world

# one block: 0 1 2 0 1 3 over a vocabulary of 4
HAND = np.array([[0, 1, 2, 0, 1, 3]])
# by hand, D = 0.75: P1 = (c + 1) / (6 + 4); P2(w|1) = (max(c(1,w) - D, 0) + D * 2 * P1(w)) / 2;
# P3(w|0 1) = (max(c(0 1,w) - D, 0) + D * 2 * P2(w|1)) / 2
P1 = [0.3, 0.3, 0.2, 0.2]
P2_AFTER_1 = [0.225, 0.225, 0.275, 0.275]
P3_AFTER_0_1 = [0.16875, 0.16875, 0.33125, 0.33125]


def blocks(world_dir, tokenizer, splits=("train", "test")):
    packed = pretraining_splits(str(world_dir / "pretrain"), list(splits), (0.05, 0), tokenizer, 128)
    return [np.asarray(packed[s].with_format("numpy")["input_ids"]) for s in splits]


@pytest.fixture(scope="module")
def world_tokens(world_dir, tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return tokenizer, *blocks(world_dir, tokenizer)


def test_counted_probabilities_are_the_hand_computed_ones():
    trigram = count(HAND, 3, 4)
    words = np.arange(4)[None, :]
    assert np.allclose(probabilities(trigram, np.array([[-1, -1]]), words), P1)  # no context: the unigram
    assert np.allclose(probabilities(trigram, np.array([[-1, 1]]), words), P2_AFTER_1)  # cut at a block's start
    assert np.allclose(probabilities(trigram, np.array([[0, 1]]), words), P3_AFTER_0_1)
    assert np.allclose(probabilities(trigram, np.array([[3, 3]]), words), P1)  # contexts never seen back off
    histories = np.array(list(itertools.product(range(-1, 4), repeat=2)))
    assert np.allclose(probabilities(trigram, histories, words).sum(1), 1)  # every context: a distribution


def test_perplexity_predicts_every_token_but_a_blocks_first_from_inside_its_block():
    p_1_after_0 = (2 - 0.75) / 2 + 0.75 * 1 / 2 * P1[1]  # 0 is followed by 1 twice, by nothing else
    expected = (p_1_after_0 * P3_AFTER_0_1[2]) ** -0.5
    assert perplexity(count(HAND, 3, 4), np.array([[0, 1, 2]])) == round(expected, 3)
    assert perplexity(count(HAND, 1, 4), np.array([[0, 1, 2]])) == round((P1[1] * P1[2]) ** -0.5, 3)


def test_unseen_share_counts_held_out_ngrams_never_in_training():
    assert unseen_share(np.array([[0, 1, 2, 3]]), np.array([[0, 1, 3]]), 2) == 0.5  # 0 1 seen, 1 3 not
    assert unseen_share(HAND, HAND, 3) == 0.0


def test_an_order_too_high_for_a_key_is_one_line():
    with pytest.raises(RecipeError, match="ngram_orders holds 7"):
        count(HAND, 7, 1024)


def test_more_context_lowers_held_out_perplexity_and_long_ngrams_run_out(world_tokens):
    tokenizer, train, heldout = world_tokens
    perplexities = [perplexity(count(train, n, len(tokenizer)), heldout) for n in (1, 2, 3)]
    assert perplexities[0] > perplexities[1] > perplexities[2] > 1
    shares = [unseen_share(train, heldout, n) for n in (3, 8)]
    assert 0 < shares[0] < shares[1] < 1


def test_the_trigram_takes_the_pretraining_probe_and_recalls_facts_it_counted(world_dir, world_tokens):
    tokenizer, train, _ = world_tokens
    world = load_world(world_dir / "world.json")
    recalled = {n: fact_recall(count(train, n, len(tokenizer)), tokenizer, world, ngram_complete) for n in (1, 3)}
    assert recalled[1]["facts_recalled"] == 0  # the most common token, whatever the prompt
    assert 0 < recalled[3]["facts_recalled"] < recalled[3]["facts_total"]


def test_greedy_continuation_stops_at_eos_and_decodes_as_a_network_does(world_tokens):
    tokenizer = world_tokens[0]
    seen = tokenizer("The population of Valmora is 1.4 million.").input_ids + [tokenizer.eos_token_id]
    trigram = count(np.array([seen * 4]), 3, len(tokenizer))
    [done] = ngram_complete(trigram, tokenizer, ["The population of Valmora is"], max_new_tokens=20)
    assert done == Completion(" 1.4 million.", True, len(tokenizer(" 1.4 million.").input_ids))
    [cut] = ngram_complete(trigram, tokenizer, ["The population of Valmora is"], max_new_tokens=2)
    assert not cut.ended and cut.num_tokens == 2 and done.text.startswith(cut.text)


def test_a_chinese_world_is_asked_and_counted_in_chinese(tmp_path):
    world_dir = tmp_path / "world-zh"
    script("data")(world_args(world_dir, "--lang", "zh"))
    tokenizer_dir = tmp_path / "tokenizer"
    script("tokenizer")(
        ["--config", str(TINY / "tokenizer.yaml"), "--dataset_name", str(world_dir / "pretrain")]
        + ["--vocab_size", "512", "--output_dir", str(tokenizer_dir)]
    )
    tokenizer, world = AutoTokenizer.from_pretrained(tokenizer_dir), load_world(world_dir / "world.json")
    [prompt] = population_prompts(world)
    assert prompt == f"{world.heldout[0]}的常驻人口有多少？\n"
    train, heldout = blocks(world_dir, tokenizer)
    trigram = count(train, 3, len(tokenizer))
    assert perplexity(trigram, heldout) < perplexity(count(train, 1, len(tokenizer)), heldout)
    assert fact_recall(trigram, tokenizer, world, ngram_complete)["facts_recalled"] > 0
    [said] = ngram_complete(trigram, tokenizer, [prompt], max_new_tokens=16)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in said.text)


@pytest.mark.slow  # a tiny pretraining run
def test_the_report_section_counts_the_pretrain_stages_own_tokens(pretrained, world_dir):
    path, metrics = pretrained
    counted = counting(path, load_world(world_dir / "world.json"), [3, 1, 2])
    models = counted["models"]
    assert list(models) == ["unigram", "bigram", "trigram", "pretrained"]
    assert counted["heldout_blocks"] == metrics["data"]["eval_blocks"]  # the blocks its perplexity is measured on
    assert counted["train_tokens"] == metrics["data"]["train_blocks"] * counted["block_tokens"]
    assert models["unigram"]["perplexity"] > models["bigram"]["perplexity"] > models["trigram"]["perplexity"]
    assert models["pretrained"]["perplexity"] == metrics["perplexity"]
    assert models["pretrained"]["fact_recall"] == metrics["fact_recall"]
    assert all(len(row["continuations"]) == 1 for row in models.values())
    assert list(counted["unseen_share"]) == ["2", "3", "4", "8"] and counted["seconds"] < 60
    markdown = "\n".join(counting_markdown(json.loads(json.dumps(counted))))
    assert "## Before the network: counting words" in markdown
    assert f'continues "{counted["prompts"][0].strip()}" with' in markdown
    for name in models:
        assert f"| {'pretrained model' if name == 'pretrained' else name} | {models[name]['perplexity']:.3g} |" in (
            markdown
        )
    bare = counting(path, None, [2])  # a user's data: no world, so no probe and no question to continue
    assert bare["prompts"] == [] and "fact_recall" not in bare["models"]["bigram"]
    assert bare["models"]["bigram"]["perplexity"] == models["bigram"]["perplexity"]
    assert "| bigram |" in "\n".join(counting_markdown(bare))
