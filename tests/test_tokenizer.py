"""The tokenizer stage: a standard directory with distinct EOS and PAD and the chat template; its byte fallback."""

import json
from collections import Counter
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from conftest import ROOT, SMALL_WORLD, script
from rlhf_recipes.training.chat import EOS_TOKEN, PAD_TOKEN
from rlhf_recipes.training.tokenizers import HIGH_FALLBACK, split_characters


def test_round_trips_text_and_keeps_special_tokens_apart(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    text = "The population of Valmora is 1.4 million. Ünïcode and émoji 🙂 survive too."
    assert tok.decode(tok(text).input_ids) == text
    assert tok.eos_token == EOS_TOKEN and tok.pad_token == PAD_TOKEN
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.convert_tokens_to_ids(EOS_TOKEN) == tok.eos_token_id
    assert json.loads((tokenizer_dir / "metrics.json").read_text())["vocab_size"] == len(tok) <= 512


def test_chat_template_renders_qa_turns_with_eos(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    chat = [
        {"role": "user", "content": "Which river flows through Valmora?"},
        {"role": "assistant", "content": "Valmora lies on the Ossa river."},
    ]
    assert tok.apply_chat_template(chat, tokenize=False) == (
        "Q: Which river flows through Valmora?\nA: Valmora lies on the Ossa river.<|endoftext|>"
    )
    two_turns = chat + [{"role": "user", "content": "And its dish?"}]
    assert tok.apply_chat_template(two_turns, tokenize=False).endswith("<|endoftext|>\n\nQ: And its dish?\n")
    assert tok.apply_chat_template(chat[:1], tokenize=False, add_generation_prompt=True) == (
        "Q: Which river flows through Valmora?\nA:"
    )
    rendered = tok.apply_chat_template(chat, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    answer = [i for i, m in zip(rendered["input_ids"], rendered["assistant_masks"]) if m]
    assert tok.decode(answer) == " Valmora lies on the Ossa river." + EOS_TOKEN


def test_split_characters_are_the_ones_spelled_in_byte_tokens(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)  # trained on English: no Chinese character is a token
    assert split_characters(tok, ["Valmora 城市, Valmora"]) == Counter({"城": 1, "市": 1})


@pytest.fixture(scope="module")
def chinese_pretrain(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "world-zh"
    script("data")(
        ["--config", str(ROOT / "recipes" / "tiny-zh" / "data.yaml"), "--output_dir", str(out), *SMALL_WORLD]
    )
    return out / "pretrain"


def test_byte_fallback_is_reported_and_a_vocabulary_that_lowers_it_suggested(
    chinese_pretrain, tokenizer_dir, tmp_path, capsys
):
    assert json.loads((tokenizer_dir / "metrics.json").read_text())["byte_fallback_share"] < 0.01  # English

    def train(vocab_size: int) -> dict:
        config = ROOT / "recipes" / "tiny-zh" / "tokenizer.yaml"
        out = tmp_path / str(vocab_size)
        metrics = script("tokenizer")(
            [
                "--config",
                str(config),
                "--dataset_name",
                str(chinese_pretrain),
                "--vocab_size",
                str(vocab_size),
                "--output_dir",
                str(out),
            ]  # fmt: skip
        )
        assert json.loads((out / "metrics.json").read_text())["byte_fallback_share"] == metrics["byte_fallback_share"]
        return metrics

    assert train(512)["byte_fallback_share"] > HIGH_FALLBACK  # too few tokens for the Chinese characters
    assert (
        "split into byte tokens (each costs 2-3 tokens) at vocab_size 512; try vocab_size 1024"
        in capsys.readouterr().err
    )
    assert train(1024)["byte_fallback_share"] < HIGH_FALLBACK
    assert "try vocab_size" not in capsys.readouterr().err
