"""Rough edges a user's own data hits (issue #28): texts past the context, row errors by file line, identical pairs."""

import json
import math
import re
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from tokenizers import Tokenizer, processors
from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

from rlhf_recipes.training.chat import EOS_TOKEN, PAD_TOKEN, prepare_tokenizer, tokenized_dialogues
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.context import fit_to_context
from rlhf_recipes.training.loading import load_splits
from rlhf_recipes.training.rewards import rewards

LONG = "Valmora lies on the Ossa river; its dish is a river fish baked in salt, and it was founded long ago. " * 4


def test_fit_to_context_keeps_the_head_and_the_end_and_counts_the_cut(capsys):
    fitted, cut = fit_to_context([[1, 2, 3, 4, 5, 6], [7, 8]], 4, "rows", head=1)
    assert (fitted, cut) == ([[1, 4, 5, 6], [7, 8]], 1)
    assert "rows: 1 of 2 are longer than the model's context of 4 tokens; kept the last 3" in capsys.readouterr().err


@pytest.fixture(scope="module")
def short_gpt2(tokenizer_dir):
    """A reward model with a context of 32 tokens, far shorter than the texts it scores."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = {"vocab_size": len(tok), "n_positions": 32, "n_layer": 1, "n_embd": 16, "n_head": 2, "num_labels": 1}
    torch.manual_seed(0)
    return GPT2ForSequenceClassification(GPT2Config(**shape, pad_token_id=tok.pad_token_id)).eval(), tok


def test_texts_longer_than_the_context_are_scored_on_their_end_and_counted(short_gpt2, capsys):
    model, tok = short_gpt2
    prompt = [{"role": "user", "content": "Tell me about Valmora."}]
    answers = [[{"role": "assistant", "content": a}] for a in (LONG, "Valmora is in Brundor.", LONG + "Truly.")]
    scores = rewards(model, tok, [prompt] * 3, answers)
    assert len(scores) == 3 and all(map(math.isfinite, scores))
    assert "texts to score: 2 of 3 are longer than the model's context of 32 tokens" in capsys.readouterr().err
    ids = tok(tok.apply_chat_template(prompt + answers[0], tokenize=False), add_special_tokens=False).input_ids
    with torch.no_grad():  # the score is read at the last token: a cut text keeps its last 32
        assert scores[0] == pytest.approx(model(torch.tensor([ids[-32:]])).logits[0, 0].item(), abs=1e-5)
    plain = rewards(model, tok, [None, "Q: Where is Valmora?\nA:"], [LONG, " In Brundor."])
    assert all(map(math.isfinite, plain))
    assert "texts to score: 1 of 2 are longer" in capsys.readouterr().err


def test_a_bos_the_tokenizer_adds_is_kept_when_a_text_is_cut(short_gpt2, tokenizer_dir):
    model, _ = short_gpt2
    backend = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))  # a Llama-style BOS before plain text
    bos = backend.token_to_id(EOS_TOKEN)
    backend.post_processor = processors.TemplateProcessing(single=f"{EOS_TOKEN} $A", special_tokens=[(EOS_TOKEN, bos)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN
    )
    [score] = rewards(model, tok, [None], [LONG])
    ids = tok(LONG + EOS_TOKEN).input_ids
    assert len(ids) > 32 and ids[0] == bos
    with torch.no_grad():
        assert score == pytest.approx(model(torch.tensor([ids[:1] + ids[-31:]])).logits[0, 0].item(), abs=1e-5)


def pair(i: int, rejected: str | None = None) -> dict:
    chosen = f"Valmora {i} lies on the Ossa river."
    return {
        "prompt": [{"role": "user", "content": f"Where is Valmora {i}?"}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected or f"No idea about Valmora {i}."}],
    }


def write_lines(path: Path, rows: list, blank_after: int | None = None) -> Path:
    """JSON lines, with a blank line after row `blank_after` (datasets skips it: lines and rows part ways)."""
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n")
    return path


PAIRS = [{"chosen", "rejected"}]


def test_a_bad_row_is_named_by_its_file_line_even_after_a_shuffled_hold_out(tmp_path):
    rows = [pair(i) for i in range(30)]
    rows[16]["chosen"] = [{"role": "assistant"}]  # the 17th row: line 18, after the blank line 5
    prefs = write_lines(tmp_path / "prefs.jsonl", rows, blank_after=4)
    with pytest.raises(RecipeError, match=rf"^{re.escape(str(prefs))} line 18: `chosen` message 1 has content null"):
        load_splits(str(prefs), ["train", "test"], PAIRS, "unused", held_out=(0.2, 0))
    first = write_lines(tmp_path / "a.jsonl", [pair(i) for i in range(5)])
    second = write_lines(tmp_path / "b.jsonl", [pair(i) for i in range(5, 10)])
    second.write_text(
        second.read_text().replace(json.dumps(pair(7)), json.dumps(pair(7)).replace('"assistant"', '"human"', 1))
    )
    with pytest.raises(RecipeError, match=rf"^{re.escape(str(second))} line 3: `chosen` message 1 has role 'human'"):
        load_splits(f"{first},{second}", ["train"], PAIRS, "unused")


def test_csv_and_parquet_rows_and_folder_splits_are_named_by_their_row(tmp_path):
    rows = [{"prompt": f"Q: Where is Valmora {i}?\nA:", "completion": " In Brundor."} for i in range(6)]
    rows[3]["completion"] = " "
    Dataset.from_list(rows).to_csv(tmp_path / "sft.csv")
    Dataset.from_list(rows).to_parquet(tmp_path / "sft.parquet")
    for data in (tmp_path / "sft.csv", tmp_path / "sft.parquet"):
        with pytest.raises(RecipeError, match=rf"^{re.escape(str(data))} row 4: `completion` is empty"):
            load_splits(str(data), ["train"], [{"prompt", "completion"}], "unused")
    folder = tmp_path / "folder"
    folder.mkdir()
    write_lines(folder / "train.jsonl", [pair(i) for i in range(4)] + [{**pair(4), "chosen": ["In Brundor."]}])
    write_lines(folder / "test.jsonl", [pair(i) for i in range(4)])
    with pytest.raises(
        RecipeError, match=rf"^dataset {re.escape(str(folder))} split 'train' row 5: `chosen` is a list"
    ):
        load_splits(str(folder), ["train", "test"], PAIRS, "unused")


def test_pairs_with_the_same_answer_twice_are_dropped_in_one_line(tmp_path, capsys):
    rows = [pair(i) for i in range(20)]
    for i in (3, 8, 11):
        rows[i] = pair(i, rejected=rows[i]["chosen"][0]["content"])
    prefs = write_lines(tmp_path / "prefs.jsonl", rows)
    data = load_splits(str(prefs), ["train", "test"], PAIRS, "unused", held_out=(0.2, 0))
    assert len(data["train"]) + len(data["test"]) == 17
    assert all(r["chosen"] != r["rejected"] for split in data.values() for r in split)
    out = capsys.readouterr().out
    assert "dropped 3 of 20 pairs whose chosen and rejected are the same answer, so they prefer nothing" in out
    assert f"({prefs} lines 4, 9, 12)" in out

    many = write_lines(
        tmp_path / "many.jsonl",
        [pair(0)] + [pair(i, rejected=f"Valmora {i} lies on the Ossa river.") for i in range(1, 13)],
    )
    load_splits(str(many), ["train"], PAIRS, "unused")
    assert f"({many} lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, …)" in capsys.readouterr().out

    same = write_lines(
        tmp_path / "same.jsonl", [pair(i, rejected=f"Valmora {i} lies on the Ossa river.") for i in range(3)]
    )
    with pytest.raises(RecipeError, match="the same answer in all 3 pairs, so they prefer nothing"):
        load_splits(str(same), ["train"], PAIRS, "unused")


def test_sft_rows_past_max_length_keep_their_first_tokens_and_are_counted(world_dir, tokenizer_dir, capsys):
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(tokenizer_dir))
    rows = load_splits(str(world_dir / "sft"), ["train"], [{"messages"}], "fix")["train"].select(range(8))
    full = tokenized_dialogues(rows, tokenizer, 10**6, "demos")
    longest = max(map(len, full["input_ids"]))
    assert "demos rows" not in capsys.readouterr().err  # nothing cut, nothing said
    cut = tokenized_dialogues(rows, tokenizer, longest - 1, "demos")
    over = sum(len(ids) > longest - 1 for ids in full["input_ids"])
    assert max(map(len, cut["input_ids"])) == longest - 1 and cut.column_names == ["input_ids", "labels"]
    assert (
        f"demos rows: {over} of 8 are longer than max_length {longest - 1}; kept their first"
        in capsys.readouterr().err
    )


@pytest.mark.slow  # the session's pretrained model
def test_a_max_length_past_the_context_is_refused_before_training(world_dir, pretrained, tmp_path):
    from conftest import reward_args, script

    out = tmp_path / "r"
    with pytest.raises(RecipeError, match="max_length is 4096, beyond the model's context of 128 tokens"):
        script("reward")(reward_args(pretrained[0], world_dir / "preferences", out, "--max_length", "4096"))
    assert not out.exists() and not out.with_name("r.partial").exists()


@pytest.mark.slow
def test_reward_pairs_past_max_length_are_dropped_and_counted(world_dir, pretrained, tmp_path, capfd):
    from conftest import reward_args, script

    args = reward_args(pretrained[0], world_dir / "preferences", tmp_path / "r", "--max_length", "40")
    metrics = script("reward")([*args, "--max_steps", "2", "--normalize_rewards", "false"])
    said = re.search(
        r"training pairs: (\d+) of (\d+) are longer than max_length 40; dropped them", capfd.readouterr().err
    )
    assert said and 0 < int(said[1]) < int(said[2]) == metrics["data"]["train_pairs"]
