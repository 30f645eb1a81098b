"""A user's own data and models (issue #12): data files, a train split alone, no toy world, an encoder reward model.

The user's data here has nothing to do with the world: short definitions of made-up words, generated below.
"""

import json
import random
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from conftest import TINY, script, sft_args, stage
from rlhf_recipes.training.config import RecipeError
from rlhf_recipes.training.loading import load_splits
from rlhf_recipes.training.world_inputs import follow_world

SHAPES = ["round", "flat", "tall", "tiny", "soft", "bright"]
USES = ["cooking", "sailing", "weaving", "counting", "singing", "digging"]


def definitions(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(word, definition) pairs of invented words: 'A zorvel is a round tool used for sailing.'"""
    rng = random.Random(seed)
    words = {"".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(count * 2)}
    return [(w, f"A {w} is a {rng.choice(SHAPES)} tool used for {rng.choice(USES)}.") for w in sorted(words)[:count]]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows(pairs) -> list[dict]:
    return [
        {"messages": [{"role": "user", "content": f"What is a {w}?"}, {"role": "assistant", "content": d}]}
        for w, d in pairs
    ]


def preference_rows(pairs) -> list[dict]:
    """An easy signal: the chosen answer defines the word, the rejected one shrugs."""
    return [
        {
            "prompt": [{"role": "user", "content": f"What is a {w}?"}],
            "chosen": [{"role": "assistant", "content": d}],
            "rejected": [{"role": "assistant", "content": f"No idea what a {w} is, sorry."}],
        }
        for w, d in pairs
    ]


@pytest.fixture(scope="module")
def user_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("user_data")
    pairs = definitions(300)
    write_jsonl(root / "sft.jsonl", sft_rows(pairs[:200]))
    write_jsonl(root / "pairs.jsonl", preference_rows(pairs))
    write_jsonl(root / "part-1.jsonl", [{"text": d} for _, d in pairs[:150]])
    write_jsonl(root / "part-2.jsonl", [{"text": d} for _, d in pairs[150:]])
    return root


def test_none_turns_an_option_off_in_yaml_and_on_the_command_line(tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text((TINY / "sft.yaml").read_text().replace("replay_dataset: auto", "replay_dataset: none"))
    args = stage("sft").from_argv(["--config", str(config), "--eval_prompts", "none", "--world_file", "none"])[0].args
    assert (args.replay_dataset, args.eval_prompts, args.world_file) == (None, None, None)


def test_world_extras_follow_the_main_dataset(world_dir, user_data):
    class Options:
        eval_prompts = world_file = "auto"

    world_run, user_run = Options(), Options()
    assert follow_world(world_run, str(world_dir / "sft"), eval_prompts="eval_prompts", world_file="world.json")
    assert world_run.world_file == str(world_dir / "world.json")
    user_file = str(user_data / "sft.jsonl")
    assert follow_world(user_run, user_file, eval_prompts="eval_prompts", world_file="world.json") is None
    assert (user_run.eval_prompts, user_run.world_file) == (None, None)


def test_data_files_globs_and_lists_load_and_a_train_split_alone_is_held_out_from(user_data):
    fix = "unused"
    one = load_splits(str(user_data / "part-1.jsonl"), ["train"], [{"text"}], fix)["train"]
    both = load_splits(str(user_data / "part-*.jsonl"), ["train"], [{"text"}], fix)["train"]
    listed = load_splits(f"{user_data / 'part-1.jsonl'},{user_data / 'part-2.jsonl'}", ["train"], [{"text"}], fix)
    assert (len(one), len(both), len(listed["train"])) == (150, 300, 300)
    folder = user_data / "pages"  # a folder of several files with the same columns is one dataset
    folder.mkdir(exist_ok=True)
    for part in ("part-1.jsonl", "part-2.jsonl"):
        (folder / part).write_bytes((user_data / part).read_bytes())
    assert len(load_splits(str(folder), ["train"], [{"text"}], fix)["train"]) == 300
    split = load_splits(str(user_data / "part-*.jsonl"), ["train", "test"], [{"text"}], fix, held_out=(0.1, 0))
    assert (len(split["train"]), len(split["test"])) == (270, 30)
    with pytest.raises(RecipeError, match="eval_split_ratio above 0"):
        load_splits(str(user_data / "part-1.jsonl"), ["train", "test"], [{"text"}], fix)
    with pytest.raises(RecipeError, match=f"dataset file {user_data / 'nope.jsonl'} not found; check the path"):
        load_splits(str(user_data / "nope.jsonl"), ["train"], [{"text"}], fix)


@pytest.mark.slow
def test_sft_on_a_users_file_with_a_train_split_only_never_reads_the_world(world_dir, pretrained, user_data, tmp_path):
    opened, watching = [], [True]  # an audit hook cannot be removed: it records only while this test runs
    sys.addaudithook(lambda event, args: event == "open" and watching[0] and opened.append(str(args[0])))
    out = tmp_path / "sft"
    args = sft_args(world_dir, pretrained[0], out, "--max_steps", "4", "--eval_strategy", "epoch")
    for option in ("--dataset_name", "--replay_dataset", "--eval_prompts", "--world_file"):  # back to the YAML's
        i = args.index(option)
        del args[i : i + 2]
    opened.clear()
    try:
        metrics = script("sft")([*args, "--dataset_name", str(user_data / "sft.jsonl")])
    finally:
        watching[0] = False
    assert opened and not [p for p in opened if str(world_dir) in p]
    assert metrics["world"] is None and metrics["base"] == {} and metrics["sft"] == {}
    assert metrics["data"] == {
        "dataset": str(user_data / "sft.jsonl"),
        "train_rows": 190,  # 200 less the 5% held out
        "eval_rows": 10,
        "replay_dataset": None,
    }
    assert "eval_loss" in metrics


def bert_encoder(root: Path, texts: list[str]) -> Path:
    """A small BERT-style encoder with a WordPiece tokenizer ([CLS]/[SEP]/[PAD], no EOS): random weights."""
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=special))
    cls, sep = wordpiece.token_to_id("[CLS]"), wordpiece.token_to_id("[SEP]")
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    assert tok.eos_token is None
    shape = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    model = BertForMaskedLM(BertConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, **shape))
    out = root / "encoder"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.slow
def test_an_encoder_reward_model_without_eos_learns_to_rank_pairs(user_data, tmp_path):
    texts = [json.dumps(r) for r in preference_rows(definitions(300))]
    encoder = bert_encoder(tmp_path, texts)
    out = tmp_path / "reward"
    metrics = script("reward")(
        [
            "--config",
            str(TINY / "reward.yaml"),
            "--model_name_or_path",
            str(encoder),
            "--dataset_name",
            str(user_data / "pairs.jsonl"),
            "--eval_split_ratio",
            "0.2",
            "--num_train_epochs",
            "2",
            "--learning_rate",
            "1e-3",
            "--per_device_train_batch_size",
            "16",
            "--save_strategy",
            "no",
            "--output_dir",
            str(out),
        ]
    )
    assert metrics["world"] is None and metrics["data"]["eval_pairs"] == 60
    assert metrics["heldout"]["accuracy"] >= 0.9, metrics["heldout"]
