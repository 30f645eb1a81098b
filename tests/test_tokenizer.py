"""The tokenizer stage: a standard directory with distinct EOS and PAD and the repo's chat template."""

import json

from transformers import AutoTokenizer

from rlhf_recipes.training.chat import EOS_TOKEN, PAD_TOKEN


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
