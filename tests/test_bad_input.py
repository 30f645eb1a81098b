"""Bad input through the real commands (issue #13): one line naming the problem and its fix, nothing left behind.

Each case runs a stage as a user does: `python recipes/<stage>.py ...`, and the first SFT case as
`accelerate launch --quiet --config_file accelerate_configs/cpu.yaml recipes/sft.py ...`, proving the launcher
passes the one line and the exit status on (it does so alike for every script; `make <stage>` on one CPU
process runs the script in its own process, stages/in_process.py). Each must exit non-zero, print exactly one
`error: ...` line on stderr (and no traceback) holding every needle of the case, which name the problem and
its fix, and leave no output directory and no `<output_dir>.partial` (no case gets as far as a checkpoint).
A fresh interpreter costs seconds of imports, so one module fixture runs them all, two at a time, and the
tests check the results: the launched case through `accelerate launch`, the rest as scripts forked from a warm
interpreter (`forkserver.py`, under the case's environment) or, where a command needs a wrapper, in a fresh one.

A full disk is a real one: a 16 KiB tmpfs mounted in a private mount namespace (`unshare --user
--map-root-user --mount`, no root needed where user namespaces are on); where that is not allowed, a file size
limit (RLIMIT_FSIZE, EFBIG) stands in.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import (
    AutoTokenizer,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
)

from conftest import ROOT, SMALL_WORLD, TINY, warm_server

pytestmark = pytest.mark.slow  # ~30 subprocesses: `make test`, not `make test-fast`

LAUNCHED = {"sft"}  # the stages whose first case goes through `accelerate launch`
WORKERS = 2  # commands at a time: a fresh interpreter's imports beside the forked cases (one at a time)
DISK_SIZE = 16 * 1024  # fills up while the tokenizer stage saves its tokenizer.json (~22 KB)


@dataclass
class Case:
    stage: str
    args: list
    needles: tuple  # what the one error line must say: the problem and the fix
    output_dir: Path
    unchanged: Path | None = None  # an input named as output_dir: it must be left exactly as it was
    wrap: list = field(default_factory=list)  # runs the command inside this (the full disk)
    env: dict = field(default_factory=dict)
    listing: Path | None = None  # what the full disk held when the command ended (it vanishes with it)


def message(role: str, content) -> dict:
    return {"role": role, "content": content}


def qa(question: str, answer: str) -> list[dict]:
    return [message("user", question), message("assistant", answer)]


def write_jsonl(path: Path, rows: list, raw_lines: dict | None = None) -> Path:
    """Rows as JSON lines; `raw_lines` replaces some lines (numbered from 1) with raw bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row).encode() for row in rows]
    for number, raw in (raw_lines or {}).items():
        lines[number - 1] = raw
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def pair(chosen, rejected, prompt="What country is Valmora part of?") -> dict:
    return {"prompt": [message("user", prompt)], "chosen": chosen, "rejected": rejected}


GOOD_PAIR = pair([message("assistant", "Valmora is in Brundor.")], [message("assistant", "Valmora is nice.")])


@pytest.fixture(scope="module")
def assets(world_dir, tokenizer_dir, tmp_path_factory) -> SimpleNamespace:
    """Tiny models (one layer, the test tokenizer) and small bad files: built in about a second."""
    root = tmp_path_factory.mktemp("bad_input")
    a = SimpleNamespace(root=root, world=world_dir, data=root / "data", configs=root / "configs")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    shape = {"vocab_size": len(tok), "n_positions": 128, "n_layer": 1, "n_embd": 16, "n_head": 2}
    shape |= {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.eos_token_id}
    models = {
        "lm": GPT2LMHeadModel(GPT2Config(**shape)),  # the SFT model
        "rm": GPT2ForSequenceClassification(GPT2Config(**shape, num_labels=1)),  # a reward model
        "rm2": GPT2ForSequenceClassification(GPT2Config(**shape, num_labels=2)),  # a two-class classifier
    }
    for name, model in models.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        setattr(a, name, root / name)
    a.truncated = root / "truncated"  # a copy cut short, as an interrupted download or copy leaves it
    shutil.copytree(a.lm, a.truncated)
    weights = (a.lm / "model.safetensors").read_bytes()
    (a.truncated / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    a.no_tokenizer = root / "no-tokenizer"  # weights and config, but the tokenizer was never saved
    a.no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(a.lm / name, a.no_tokenizer / name)
    write_bad_data(a)
    write_bad_configs(a)
    return a


def write_bad_data(a: SimpleNamespace) -> None:
    d = a.data
    texts = [{"text": f"Valmora is a city in Brundor. Page {i}."} for i in range(6)]
    write_jsonl(d / "text-bad-json" / "train.jsonl", texts, {3: b'{"text": "Valmora lies on the Sel river."'})
    write_jsonl(d / "text-bad-json" / "test.jsonl", texts)
    write_jsonl(d / "latin-1.jsonl", texts, {2: '{"text": "Caf\xe9 Valmora"}'.encode("latin-1")})
    write_jsonl(d / "numbers.jsonl", [{"text": i} for i in range(6)])
    sft = [{"messages": qa("What country is Valmora part of?", "Valmora is in Brundor.")}] * 4
    write_jsonl(d / "no-assistant.jsonl", sft[:2] + [{"messages": [message("user", "Where is Valmora?")]}] + sft)
    write_jsonl(d / "messages-string.jsonl", [{"messages": "Q: Where is Valmora?\nA: In Brundor."}] * 4)
    plain = [{"prompt": "Q: Where is Valmora?\nA:", "completion": " In Brundor."}] * 4
    write_jsonl(d / "empty-completion.jsonl", plain[:3] + [{"prompt": "Q: Where is Valmora?\nA:", "completion": ""}])
    pairs = [GOOD_PAIR] * 4
    for name, bad in {
        "pairs-bad-json": None,
        "pairs-no-content": pair([{"role": "assistant"}], [message("assistant", "Valmora is nice.")]),
        "pairs-strings-in-list": pair(["Valmora is in Brundor."], ["Valmora is nice."]),
    }.items():
        raw = {2: b'{"prompt": [{"role": "user", "content": "Where is Valmora?"}], "chosen": [{"role": "assis'}
        write_jsonl(d / name / "train.jsonl", pairs + [bad] if bad else pairs, None if bad else raw)
        write_jsonl(d / name / "test.jsonl", pairs)
    same = pair([message("assistant", "")], [message("assistant", "")])  # a few such pairs are dropped; all, refused
    write_jsonl(d / "pairs-same.jsonl", [same] * 3)
    prompts = [{"prompt": [message("user", "What country is Valmora part of?")]}] * 4
    long = " ".join(["Tell me everything about Valmora, its river, its dish and its founding."] * 30)
    write_jsonl(d / "long-prompt.jsonl", prompts + [{"prompt": [message("user", long)]}])
    write_jsonl(d / "sharegpt-roles.jsonl", prompts + [{"prompt": [message("human", "Where is Valmora?")]}])
    write_jsonl(d / "mixed" / "pages.jsonl", texts)  # a folder of files whose columns differ
    write_jsonl(d / "mixed" / "chats.jsonl", sft)
    write_jsonl(d / "train-only.jsonl", texts * 4)


def write_bad_configs(a: SimpleNamespace) -> None:
    a.configs.mkdir()
    data = (TINY / "data.yaml").read_text()
    lists = data.replace(
        "attributes: [country, population, river, dish, founded]", "attributes:\n\t- country\n\t- river"
    )
    assert lists != data
    (a.configs / "data-tab.yaml").write_text(lists)
    (a.configs / "data-duplicate.yaml").write_text(data + "num_cities: 12\n")
    (a.configs / "data-word.yaml").write_text(data.replace("seed: 0", "seed: zero"))
    (a.configs / "data-list.yaml").write_text(data.replace("heldout_fraction: 0.25", "heldout_fraction: [0.25]"))


def line_of(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def command(stage: str, config: Path, a, name: str, *args, out: Path | None = None) -> tuple[Path, list]:
    """`--config <config> ... --output_dir <out>` for `stage`; out defaults to a fresh folder named after the case."""
    out = out or a.root / "out" / name
    return out, ["--config", str(config), *map(str, args), "--output_dir", str(out)]


def data_args(a, name, *extra, config=TINY / "data.yaml", **kw):
    return command("data", config, a, name, *SMALL_WORLD, *extra, **kw)


def tokenizer_args(a, name, dataset, *extra, **kw):
    return command(
        "tokenizer", TINY / "tokenizer.yaml", a, name, "--dataset_name", dataset, "--vocab_size", "300", *extra, **kw
    )


def pretrain_args(a, name, *extra, **kw):
    return command(
        "pretrain",
        TINY / "pretrain.yaml",
        a,
        name,
        "--dataset_name",
        a.world / "pretrain",
        "--world_file",
        "",
        "--n_layer",
        "1",
        "--n_embd",
        "16",
        "--n_head",
        "2",
        "--max_steps",
        "1",
        "--save_strategy",
        "no",
        *extra,
        **kw,
    )


def sft_args(a, name, dataset, *extra, model=None, **kw):
    """SFT on `dataset` capped at one step, so a check that does not fire costs seconds, not minutes."""
    return command(
        "sft",
        TINY / "sft.yaml",
        a,
        name,
        "--model_name_or_path",
        model or a.lm,
        "--dataset_name",
        dataset,
        "--replay_dataset",
        "",
        "--eval_prompts",
        "",
        "--world_file",
        "",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--max_steps",
        "1",
        *extra,
        **kw,
    )


def compare_args(a, name, *extra, **kw):
    return command(
        "compare",
        TINY / "compare.yaml",
        a,
        name,
        "--model_name_or_path",
        a.lm,
        "--dataset_name",
        a.world / "comparison_prompts",
        "--world_file",
        a.world / "world.json",
        "--offline_pairs",
        "",
        "--max_new_tokens",
        "4",
        *extra,
        **kw,
    )


def reward_args(a, name, dataset, *extra, config=TINY / "reward.yaml", **kw):
    return command(
        "reward",
        config,
        a,
        name,
        "--model_name_or_path",
        a.lm,
        "--dataset_name",
        dataset,
        "--heldout_pairs",
        "",
        "--normalize_rewards",
        "false",
        "--max_steps",
        "1",
        *extra,
        **kw,
    )


def ppo_args(a, name, *extra, dataset=None, policy=None, reward=None, **kw):
    """Two updates' worth of PPO on the tiny models, so a check that does not fire costs seconds."""
    return command(
        "ppo",
        TINY / "ppo.yaml",
        a,
        name,
        "--sft_model_path",
        policy or a.lm,
        "--reward_model_path",
        reward or a.rm,
        "--dataset_name",
        dataset or a.world / "rl_prompts",
        "--eval_prompts",
        "",
        "--world_file",
        "",
        "--total_episodes",
        "8",
        "--per_device_train_batch_size",
        "8",
        "--num_ppo_epochs",
        "1",
        "--response_length",
        "16",
        "--max_prompt_length",
        "48",
        *extra,
        **kw,
    )


def case(stage: str, args: tuple[Path, list], *needles: str, **extra) -> Case:
    out, argv = args
    return Case(stage, argv, needles, out, **extra)


def disk_full_case(a) -> Case:
    """The tokenizer stage saving onto a disk with 16 KiB free: a tmpfs that only this command sees."""
    mount = a.root / "full-disk"
    mount.mkdir()
    out, argv = tokenizer_args(a, "", a.world / "pretrain", out=mount / "tokenizer")
    probe = ["unshare", "--user", "--map-root-user", "--mount", "mount", "-t", "tmpfs", "tmpfs", str(mount)]
    if shutil.which("unshare") and subprocess.run(probe, capture_output=True).returncode == 0:
        listing = a.root / "full-disk-listing.txt"
        script = 'mount -t tmpfs -o size="$SIZE" tmpfs "$MOUNT" || exit 97; "$@"; rc=$?; ls -A "$MOUNT" > "$LISTING"'
        script += "; exit $rc"
        return Case(
            "tokenizer",
            argv,
            ("No space left on device", "free some space", "output_dir on a disk with room"),
            out,
            wrap=["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh"],
            env={"MOUNT": str(mount), "LISTING": str(listing), "SIZE": str(DISK_SIZE)},
            listing=listing,
        )
    limit = (
        "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2); "
        "os.execv(sys.argv[2], sys.argv[2:])"
    )
    return Case(
        "tokenizer",
        argv,
        ("File too large", "raise the file size limit"),
        out,
        wrap=[sys.executable, "-c", limit, str(DISK_SIZE)],
    )


TAB = "\t- country"


def dup_line(a) -> int:
    return line_of(a.configs / "data-duplicate.yaml", "num_cities: 12")


CASES = {
    # configs, through the data stage: the cheapest command that parses a YAML
    "data: YAML indented with a tab": lambda a: case(
        "data",
        data_args(a, "tab", config=a.configs / "data-tab.yaml"),
        f"data-tab.yaml line {line_of(a.configs / 'data-tab.yaml', TAB)}:",
        "'\\t'",
        "indent with spaces",
    ),
    "data: YAML with a key set twice": lambda a: case(
        "data",
        data_args(a, "dup", config=a.configs / "data-duplicate.yaml"),
        f"data-duplicate.yaml line {line_of(a.configs / 'data-duplicate.yaml', 'num_cities: 12')}",
        f"num_cities is set twice (first on line {line_of(TINY / 'data.yaml', 'num_cities')})",
        "keep one",
    ),
    "data: a word where a number belongs": lambda a: case(
        "data",
        data_args(a, "word", config=a.configs / "data-word.yaml"),
        "--seed",
        "invalid int value: 'zero'",
        "correct it in",
        "data-word.yaml",
    ),
    "data: a list where a number belongs": lambda a: case(
        "data",
        data_args(a, "list", config=a.configs / "data-list.yaml"),
        "heldout_fraction is [0.25], not a number",
        "set it in",
        "data-list.yaml",
    ),
    "data: label_noise above 0.5": lambda a: case(
        "data", data_args(a, "noise", "--label_noise", "0.7"), "label_noise is 0.7", "[0, 0.5)", "set it in"
    ),
    "data: the config path is a directory": lambda a: case(
        "data", data_args(a, "dir", config=TINY), f"config {TINY} is a directory", "pass a YAML file in it"
    ),
    # data files, through the tokenizer stage: the cheapest command that reads a dataset
    "tokenizer: a malformed JSONL line": lambda a: case(
        "tokenizer",
        tokenizer_args(a, "bad-json", a.data / "text-bad-json"),
        f"{a.data / 'text-bad-json' / 'train.jsonl'} line 3 is not valid JSON",
        "fix or delete that line",
    ),
    "tokenizer: text that is not UTF-8 (a .jsonl file path)": lambda a: case(
        "tokenizer",
        tokenizer_args(a, "latin-1", a.data / "latin-1.jsonl"),
        f"{a.data / 'latin-1.jsonl'} line 2 is not UTF-8",
        "0xe9",
        "re-save the file as UTF-8",
    ),
    "tokenizer: a text column of numbers": lambda a: case(
        "tokenizer",
        tokenizer_args(a, "numbers", a.data / "numbers.jsonl"),
        f"{a.data / 'numbers.jsonl'} line 1",
        "`text` is the number 0",
        "it must be a string",
    ),
    # a user's data (issue #12): files, folders, a train split alone, side inputs checked before training
    "tokenizer: a data file that does not exist": lambda a: case(
        "tokenizer",
        tokenizer_args(a, "no-file", a.data / "nope.jsonl"),
        f"dataset file {a.data / 'nope.jsonl'} not found",
        "check the path",
    ),
    "tokenizer: a folder of files whose columns differ": lambda a: case(
        "tokenizer",
        tokenizer_args(a, "mixed", a.data / "mixed"),
        f"cannot load the 2 files of {a.data / 'mixed'} as one dataset",
        "their columns must match",
        "name one file",
    ),
    "pretrain: a train split alone with eval_split_ratio 0": lambda a: case(
        "pretrain",
        pretrain_args(
            a,
            "train-only",
            "--dataset_name",
            a.data / "train-only.jsonl",
            "--eval_split_ratio",
            "0",
            "--tokenizer_name_or_path",
            a.lm,
        ),
        "has splits ['train'], not 'test'",
        "eval_split_ratio above 0",
    ),
    "pretrain: a world file that does not exist": lambda a: case(
        "pretrain",
        pretrain_args(
            a, "no-world", "--world_file", a.root / "nowhere" / "world.json", "--tokenizer_name_or_path", a.lm
        ),
        f"world file {a.root / 'nowhere' / 'world.json'} not found",
        "or none",
    ),
    "ppo: eval prompts that do not exist, found before training": lambda a: case(
        "ppo",
        ppo_args(
            a, "no-eval-prompts", "--eval_prompts", a.data / "no-prompts", "--world_file", a.world / "world.json"
        ),
        f"dataset {a.data / 'no-prompts'} not found",
        "set eval_prompts, or none",
    ),
    "tokenizer: the output_dir is its input": lambda a: case(
        "tokenizer",
        tokenizer_args(a, "", a.world / "pretrain", out=a.world / "pretrain"),
        "refusing output_dir",
        "input dataset_name",
        "write the output somewhere else",
        unchanged=a.world / "pretrain",
    ),
    "tokenizer: the disk fills up while saving": disk_full_case,
    # models and tokenizers
    "pretrain: a tokenizer folder without its files": lambda a: case(
        "pretrain",
        pretrain_args(a, "no-tokenizer", "--tokenizer_name_or_path", a.no_tokenizer),
        f"tokenizer {a.no_tokenizer} has no tokenizer files",
        "tokenizer.save_pretrained",
        "make tokenizer",
    ),
    "sft: a truncated safetensors file": lambda a: case(
        "sft",
        sft_args(a, "truncated", a.world / "sft", model=a.truncated),
        f"cannot load {a.truncated}",
        "safetensors weights are damaged",
        "save or copy the model again",
    ),
    "ppo: a reward model with two outputs": lambda a: case(
        "ppo",
        ppo_args(a, "two-outputs", reward=a.rm2),
        f"{a.rm2} is a GPT2ForSequenceClassification with 2 outputs",
        "scores with one",
        "make reward",
    ),
    "ppo: a sequence classifier (the reward model) as the policy": lambda a: case(
        "ppo",
        ppo_args(a, "classifier", policy=a.rm),
        f"{a.rm} holds a GPT2ForSequenceClassification, not a causal language model",
        "make sft",
    ),
    # settings out of range
    "sft: a negative learning rate": lambda a: case(
        "sft",
        sft_args(a, "lr", a.world / "sft", "--learning_rate", "-0.001"),
        "learning_rate is -0.001",
        "above 0",
        "set it in",
    ),
    "sft: a batch size of zero": lambda a: case(
        "sft",
        sft_args(a, "batch", a.world / "sft", "--per_device_train_batch_size", "0"),
        "per_device_train_batch_size is 0",
        "at least 1",
        "set it in",
    ),
    "compare: label_noise above 0.5": lambda a: case(
        "compare",
        compare_args(a, "compare-noise", "--label_noise", "0.6"),
        "label_noise is 0.6",
        "[0, 0.5)",
        "set it in",
    ),
    "ppo: batch sizes that do not divide": lambda a: case(
        "ppo",
        ppo_args(a, "mini", "--num_mini_batches", "3"),
        "num_mini_batches 3 does not divide the 8 rollouts",
        "set num_mini_batches to a divisor of 8, e.g. 2",
    ),
    "ppo: minibatches and gradient accumulation both above 1": lambda a: case(
        "ppo",
        ppo_args(a, "mini-accum", "--num_mini_batches", "2", "--gradient_accumulation_steps", "2"),
        "num_mini_batches 2 and gradient_accumulation_steps 2",
        "set one of them to 1",
    ),
    "ppo: a field PPO does not have (TRL 0.x's kl_penalty)": lambda a: case(
        "ppo", ppo_args(a, "unknown-field", "--kl_penalty", "k3"), "kl_penalty", "check the spelling"
    ),
    "ppo: a KL estimator the trainer does not know": lambda a: case(
        "ppo", ppo_args(a, "k2", "--kl_estimator", "k2"), "kl_estimator", "'k2'", "k1"
    ),
    "ppo: a stop token the trainer does not know": lambda a: case(
        "ppo", ppo_args(a, "eot", "--stop_token", "eot"), "stop_token", "'eot'", "eos"
    ),
    "ppo: total_episodes 0 (it once trained nothing and saved the SFT model as PPO's)": lambda a: case(
        "ppo", ppo_args(a, "no-episodes", "--total_episodes", "0"), "total_episodes is 0", "at least one batch"
    ),
    "ppo: total_episodes smaller than one batch": lambda a: case(
        "ppo",
        ppo_args(a, "few-episodes", "--total_episodes", "4"),
        "total_episodes 4 is less than one batch of 8",
        "per_device_train_batch_size",
    ),
    # SFT data: `messages`, and plain prompt/completion
    "sft: messages with no assistant turn": lambda a: case(
        "sft",
        sft_args(a, "no-assistant", a.data / "no-assistant.jsonl"),
        f"{a.data / 'no-assistant.jsonl'} line 3",
        "`messages` has no assistant turn",
        "add the answer or drop the row",
    ),
    "sft: an empty completion": lambda a: case(
        "sft",
        sft_args(a, "empty", a.data / "empty-completion.jsonl"),
        f"{a.data / 'empty-completion.jsonl'} line 4",
        "`completion` is empty",
        "fill it in or drop the row",
    ),
    # conversational pairs of the reward model
    "reward: a malformed JSONL line in conversational pairs": lambda a: case(
        "reward",
        reward_args(a, "bad-json-pairs", a.data / "pairs-bad-json"),
        f"{a.data / 'pairs-bad-json' / 'train.jsonl'} line 2 is not valid JSON",
        "fix or delete that line",
    ),
    "reward: a chosen message without content": lambda a: case(
        "reward",
        reward_args(a, "no-content", a.data / "pairs-no-content"),
        "split 'train' row 5",
        "`chosen` message 1 has content null",
        "it must be a string",
    ),
    "reward: chosen/rejected lists of strings, not messages": lambda a: case(
        "reward",
        reward_args(a, "strings", a.data / "pairs-strings-in-list"),
        "row 5",
        "`chosen` is a list of string values",
        "a list of {role, content} messages",
    ),
    "reward: empty chosen and rejected answers in every pair": lambda a: case(
        "reward",
        reward_args(a, "same", a.data / "pairs-same.jsonl"),
        "`chosen` and `rejected` are the same answer in all 3 pairs",
        "check that the two columns hold different answers",
    ),
    # conversational prompts of PPO
    "ppo: a prompt longer than the context": lambda a: case(
        "ppo",
        ppo_args(a, "long", dataset=a.data / "long-prompt.jsonl"),
        "longer than max_prompt_length 48",
        "raise it (within the context) or shorten the prompts",
    ),
    "ppo: a prompt message with a ShareGPT role": lambda a: case(
        "ppo",
        ppo_args(a, "roles", dataset=a.data / "sharegpt-roles.jsonl"),
        f"{a.data / 'sharegpt-roles.jsonl'} line 5",
        "`prompt` message 1 has role 'human'",
        "use one of system, user, assistant",
    ),
}
COST = {"ppo": 0, "reward": 1, "sft": 1, "compare": 1, "pretrain": 1, "tokenizer": 2, "data": 2}  # slowest first


ENV = {
    "PYTHONWARNINGS": "ignore",
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRL_EXPERIMENTAL_SILENCE": "1",
}


def run(case: Case, launched: bool) -> subprocess.CompletedProcess:
    """The stage's real command: through `accelerate launch --quiet` as `make` runs it, or the script alone
    (in a fork of this worker's warm interpreter, `tests/forkserver.py`, unless it needs its own wrapper)."""
    script = f"recipes/{case.stage}.py"
    env = {**os.environ, **ENV, **case.env}
    if not launched and not case.wrap:
        return warm_server().run(script, case.args, ROOT, env=env)
    if launched:
        accelerate = str(Path(sys.executable).with_name("accelerate"))
        cmd = [accelerate, "launch", "--quiet", "--config_file", "accelerate_configs/cpu.yaml", script]
    else:
        cmd = [sys.executable, script]
    return subprocess.run(
        [*case.wrap, *cmd, *case.args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def snapshot(path: Path | None) -> dict | None:
    return None if path is None else {p.name: p.stat().st_size for p in path.iterdir()}


@pytest.fixture(scope="module")
def results(assets) -> dict:
    """Every case's command run once, WORKERS at a time: {case id: (case, result, leftovers)}."""
    cases = {name: build(assets) for name, build in CASES.items()}
    before = {name: snapshot(c.unchanged) for name, c in cases.items()}
    order = sorted(cases, key=lambda name: COST[cases[name].stage])
    firsts = {c.stage: name for name, c in reversed(cases.items()) if c.stage in LAUNCHED}
    launched = set(firsts.values())  # the first case of each launched stage goes through the launcher
    start = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        done = dict(zip(order, pool.map(lambda name: run(cases[name], name in launched), order)))
    print(f"\n{len(cases)} bad-input commands in {time.perf_counter() - start:.0f} s with {WORKERS} workers")
    return {name: (cases[name], done[name], leftovers(cases[name], before[name])) for name in CASES}


def leftovers(case: Case, before: dict | None) -> list[str]:
    """What the failed command left where a finished output, or its partial directory, belongs."""
    if case.listing is not None:
        return case.listing.read_text().split()
    partial = case.output_dir.with_name(case.output_dir.name + ".partial")
    found = [str(partial)] if partial.exists() else []
    if case.unchanged is not None:
        return found + ([f"{case.unchanged} changed"] if snapshot(case.unchanged) != before else [])
    return found + ([str(case.output_dir)] if case.output_dir.exists() else [])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("name", CASES)
def test_fails_with_a_nonzero_exit(results, name):
    _, result, _ = results[name]
    assert result.returncode != 0, result.stdout[-2000:]


@pytest.mark.parametrize("name", CASES)
def test_prints_one_line_naming_the_problem_and_the_fix(results, name):
    case, result, _ = results[name]
    errors = error_lines(result)
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    missing = [needle for needle in case.needles if needle not in errors[0]]
    assert not missing, f"{errors[0]!r} lacks {missing}"


@pytest.mark.parametrize("name", CASES)
def test_leaves_nothing_where_the_output_belongs(results, name):
    _, result, left = results[name]
    assert left == [], (left, result.stderr[-2000:])
