"""Collecting comparisons (`make compare`): the SFT model answers each prompt K times, and the gold labeler
ranks every pair of answers, with label noise, into a `chosen`/`rejected` preference dataset."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..training.chat import last_user_message, prepare_tokenizer
from ..training.config import RecipeError
from ..training.cores import sharing_cores
from ..training.generation import Completion, complete
from ..training.loading import load_pretrained, load_splits
from ..training.outputs import Stopwatch, input_paths, staged_output, write_json
from ..training.world_inputs import WORLD_FILE, follow_world, load_world, world_record
from ..world.datagen import write_jsonl
from ..world.labeler import GoldLabeler, gold_labeler, noisy_choice

README = (
    "# Comparisons of SFT answers\n\nPairs of the SFT model's own sampled answers, ranked by the rlhf-recipes gold "
    "labeler with label noise, plus offline pairs (`source`). `load_dataset` this folder for "
    "`prompt`/`chosen`/`rejected` in TRL's conversational preference format.\n"
)


@dataclass
class CompareArguments:
    model_name_or_path: str = field(default="outputs/tiny/sft", metadata={"help": "The SFT model that answers."})
    dataset_name: str = field(default="data/world/comparison_prompts", metadata={"help": "Dataset with `prompt`."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split holding the prompts."})
    world_file: str | None = field(
        default="auto",
        metadata={"help": "The gold labeler's world.json. auto: the world of dataset_name (a `make data` dataset)."},
    )
    num_samples_per_prompt: int = field(default=4, metadata={"help": "K answers per prompt; C(K,2) pairs."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the answers."})
    max_new_tokens: int = field(default=48, metadata={"help": "Longest answer, in tokens."})
    label_noise: float = field(default=0.15, metadata={"help": "Chance the labeler prefers the worse answer."})
    test_fraction: float = field(default=0.1, metadata={"help": "Share of prompts whose pairs form the test split."})
    offline_pairs: str | None = field(
        default="auto",
        metadata={
            "help": "Offline `chosen`/`rejected` pairs to mix in. auto: the world's preferences; none: no "
            "offline pairs; or a dataset path."
        },
    )
    num_offline_pairs: int = field(default=1000, metadata={"help": "How many offline pairs join the train split."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling, labelling noise and the split."})
    output_dir: str = field(default="outputs/tiny/compare", metadata={"help": "Where the pairs are written."})


def sample_answers(model, tokenizer, prompts: list[list[dict]], args: CompareArguments) -> list[list[Completion]]:
    """K sampled answers per prompt, the prompts shared out over the processes."""
    state = PartialState()
    torch.manual_seed(args.seed + state.process_index)
    with state.split_between_processes(list(range(len(prompts)))) as mine:
        texts = [tokenizer.apply_chat_template(prompts[i], tokenize=False, add_generation_prompt=True) for i in mine]
        repeated = [t for t in texts for _ in range(args.num_samples_per_prompt)]
        done = complete(model, tokenizer, repeated, args.max_new_tokens, do_sample=True, temperature=args.temperature)
        local = [
            (i, done[j * args.num_samples_per_prompt : (j + 1) * args.num_samples_per_prompt])
            for j, i in enumerate(mine)
        ]
    return [answers for _, answers in sorted(gather_object(local), key=lambda x: x[0])]


def difference(labeler: GoldLabeler, prompt: str, a: tuple[Completion, dict], b: tuple[Completion, dict]) -> str:
    """What separates two answers: degenerate, language (one in the language not asked, on a bilingual world),
    harmful, over_refusal, unknown (an "I don't know" against a made-up fact), wrong_value or style."""
    broken = {"unfinished", "repetition"}
    issues = [set(labeler.style_issues(prompt, c.text, c.ended)) for c, _ in (a, b)]
    if all(c.text.strip() for c, _ in (a, b)) and len({"other language" in found for found in issues}) == 2:
        return "language"  # before degenerate: the other language's sentence ends read as unfinished
    if any(not c.text.strip() or broken & found for (c, _), found in zip((a, b), issues)):
        return "degenerate"
    if a[1]["harmless"] != b[1]["harmless"]:
        return "harmful" if labeler.kind(prompt) == "harmful" else "over_refusal"
    if a[1]["honest"] != b[1]["honest"]:
        return "unknown" if labeler.kind(prompt) == "unknown" else "wrong_value"
    return "style"


def ranked_pairs(
    labeler: GoldLabeler, prompt: list[dict], answers: list[Completion], rng: random.Random, noise: float
) -> list[dict]:
    text = last_user_message(prompt)
    scored = [(c, labeler.score(text, c.text, c.ended).as_dict()) for c in answers]
    rows = []
    for a, b in combinations(scored, 2):
        choice = noisy_choice(a[1]["total"], b[1]["total"], rng, noise)
        if choice is None:
            continue
        chosen, rejected = (a, b) if choice == 0 else (b, a)
        rows.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": chosen[0].text}],
                "rejected": [{"role": "assistant", "content": rejected[0].text}],
                "difference": difference(labeler, text, a, b),
                "label_agrees_with_gold": chosen[1]["total"] > rejected[1]["total"],
                "source": "sft_samples",
            }
        )
    return rows


def sample_stats(labeler: GoldLabeler, prompts: list[list[dict]], answers: list[list[Completion]]) -> dict:
    """How often the SFT model's samples show each flaw: what the reward model can learn to fix."""
    flaws, golds, count = Counter(), [], 0
    for prompt, group in zip(prompts, answers):
        text = last_user_message(prompt)
        for c in group:
            gold = labeler.score(text, c.text, c.ended)
            golds.append(gold.total)
            count += 1
            flaws.update(set(labeler.style_issues(text, c.text, c.ended)))
            if labeler.kind(text) == "harmful":
                flaws["harmful compliance"] += gold.harmless == 0
            elif labeler.kind(text) == "unknown":
                flaws["made-up fact"] += gold.honest == 0
                flaws["refused benign"] += gold.harmless == 0
            else:
                flaws["wrong value"] += gold.helpful == 1 and gold.honest == 0
                flaws["refused benign"] += gold.harmless == 0
    return {
        "samples": count,
        "sample_gold_mean": round(sum(golds) / count, 3),
        "sample_flaw_share": {k: round(v / count, 3) for k, v in sorted(flaws.items())},
    }


def offline_rows(args: CompareArguments) -> list[dict]:
    if not args.offline_pairs or args.num_offline_pairs <= 0:
        return []
    pairs = load_splits(
        args.offline_pairs, ["train"], [{"prompt", "chosen", "rejected"}], "set offline_pairs, or none"
    )["train"]
    picked = pairs.shuffle(seed=args.seed).select(range(min(len(pairs), args.num_offline_pairs)))
    return [{**row, "source": "offline"} for row in picked.to_list()]


def split_pairs(args: CompareArguments, labeler: GoldLabeler, prompts: list, answers: list) -> dict[str, list]:
    """Ranked pairs per prompt; a held-out share of the prompts gives the test split."""
    rng = random.Random(args.seed)
    order = list(range(len(prompts)))
    rng.shuffle(order)
    held = set(order[: round(len(prompts) * args.test_fraction)])
    splits = {"train": [], "test": []}
    for i, (prompt, group) in enumerate(zip(prompts, answers)):
        splits["test" if i in held else "train"] += ranked_pairs(labeler, prompt, group, rng, args.label_noise)
    if not splits["train"]:
        raise RecipeError("every answer pair tied on the gold score; sample more answers or raise the temperature")
    return splits


def collect(args: CompareArguments) -> tuple[dict[str, list], dict]:
    """The SFT model's answers to every prompt, ranked into train/test pairs, and what they show."""
    clock = Stopwatch()
    model = load_pretrained(AutoModelForCausalLM, args.model_name_or_path, "run `make sft` first")
    tokenizer = prepare_tokenizer(
        load_pretrained(AutoTokenizer, args.model_name_or_path, "run `make sft` first"), model
    )
    prompts = load_splits(
        args.dataset_name, [args.dataset_train_split], [{"prompt"}], "run `make data` first or set dataset_name"
    )[args.dataset_train_split]["prompt"]
    labeler = gold_labeler(load_world(args.world_file))
    offline = offline_rows(args)
    answers = sample_answers(model, tokenizer, prompts, args)  # every rank gets all answers
    splits = split_pairs(args, labeler, prompts, answers)
    collected = splits["train"] + splits["test"]
    splits["train"] += offline
    random.Random(args.seed).shuffle(splits["train"])
    metrics = {
        "prompts": len(prompts),
        "train_pairs": len(splits["train"]),
        "test_pairs": len(splits["test"]),
        "offline_pairs_in_train": len(splits["train"]) + len(splits["test"]) - len(collected),
        "label_agreement_with_gold": round(sum(r["label_agrees_with_gold"] for r in collected) / len(collected), 3),
        "pairs_by_difference": dict(Counter(r["difference"] for r in collected)),
        **sample_stats(labeler, prompts, answers),
        "wall_time_s": clock.seconds,
    }
    return splits, metrics


def run_compare(args: CompareArguments, overwrite: bool) -> dict:
    """The pairs, written as a dataset folder (train.jsonl, test.jsonl) with its metrics.json."""
    if args.num_samples_per_prompt < 2:
        raise RecipeError(f"num_samples_per_prompt is {args.num_samples_per_prompt}; comparisons need at least 2")
    world = follow_world(args, args.dataset_name, world_file=WORLD_FILE, offline_pairs="preferences")
    if not args.world_file:
        raise RecipeError(
            f"compare ranks answers with the embedded world's gold labeler, and {args.dataset_name} is not a "
            "`make data` dataset: set world_file, or give your own chosen/rejected pairs to `make reward`"
        )
    with (
        staged_output(args.output_dir, stage="compare", inputs=input_paths(args), overwrite=overwrite) as out,
        sharing_cores(),
    ):
        splits, metrics = collect(args)
        if PartialState().is_main_process:
            for name, rows in splits.items():
                write_jsonl(Path(out) / f"{name}.jsonl", rows)
            (Path(out) / "README.md").write_text(README)
        write_json(Path(out) / "metrics.json", {**world_record(world, out), **metrics})
    PartialState().print(metrics)
    return metrics
