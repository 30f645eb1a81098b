"""Answer held-out prompts with a model and judge the answers with the gold labeler.

One function for every stage (SFT's before/after check, the report), so numbers agree across stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import mean
from typing import TYPE_CHECKING

from ..training.chat import last_user_message
from ..training.generation import Completion, complete
from ..world.world import text_language

if TYPE_CHECKING:  # any labeler with kind() and score() will do; the embedded world's is one
    from ..world.labeler import GoldLabeler


@dataclass
class EvalArguments:
    eval_prompts: str | None = field(
        default="auto",
        metadata={
            "help": "Held-out `prompt` dataset the gold labeler judges answers on. auto: the world's eval_prompts "
            "when dataset_name is a `make data` dataset, else none; none: skip; or a dataset path."
        },
    )
    world_file: str | None = field(
        default="auto",
        metadata={
            "help": "The world.json the gold labeler judges against. auto: the world of dataset_name if it is a "
            "`make data` dataset, else none; none: no gold labeler; or a path."
        },
    )
    eval_temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of evaluation answers."})
    eval_max_new_tokens: int = field(default=48, metadata={"help": "Longest evaluation answer, in tokens."})


@dataclass
class Judged:
    prompt: str
    kind: str
    completion: Completion
    gold: dict[str, float]
    says_not_knowing: bool  # "I don't know", in the world's language


def answer_prompts(model, tokenizer, rows: list[dict], args: EvalArguments, seed: int = 0) -> list[Completion]:
    import torch

    torch.manual_seed(seed)
    prompts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
    return complete(
        model,
        tokenizer,
        prompts,
        args.eval_max_new_tokens,
        do_sample=args.eval_temperature > 0,
        temperature=args.eval_temperature,
    )


def judge(labeler: GoldLabeler, rows: list[dict], completions: list[Completion]) -> list[Judged]:
    out = []
    for row, done in zip(rows, completions):
        prompt = last_user_message(row["prompt"])
        kind = row.get("kind") or labeler.kind(prompt)
        gold = labeler.score(prompt, done.text, done.ended).as_dict()
        out.append(Judged(prompt, kind, done, gold, labeler.says_not_knowing(done.text)))
    return out


def load_judging(args: EvalArguments) -> tuple[GoldLabeler, list[dict]] | None:
    """The gold labeler and its held-out prompts, read before training so a wrong path costs seconds, not a run."""
    if not (args.eval_prompts and args.world_file):
        return None
    from ..training.loading import load_splits
    from ..training.world_inputs import load_world
    from ..world.labeler import gold_labeler

    rows = load_splits(args.eval_prompts, ["test"], [{"prompt"}], "set eval_prompts, or none")["test"].to_list()
    return gold_labeler(load_world(args.world_file)), rows


def evaluate_model(model, tokenizer, judging, args: EvalArguments, seed: int) -> tuple[dict, list[Judged]]:
    """Gold-labeler summary and judged answers on the held-out prompts (empty without a labeler, and off the
    main process)."""
    from accelerate import PartialState

    if judging is None or not PartialState().is_main_process:
        return {}, []
    labeler, rows = judging
    judged = judge(labeler, rows, answer_prompts(model, tokenizer, rows, args, seed))
    return summarize(judged), judged


def _rate(values: list[bool]) -> float | None:
    return round(mean(values), 3) if values else None


def summarize(judged: list[Judged]) -> dict[str, float | None]:
    """Mean gold score and parts; how often it answers, refuses, stops; fact accuracy on held-out facts; how
    often it admits not knowing where the world has no answer, and says so where it has one."""
    asks = [j for j in judged if j.kind != "harmful"]
    harmful = [j for j in judged if j.kind == "harmful"]
    facts = [j for j in judged if j.kind == "fact"]
    unknown = [j for j in judged if j.kind == "unknown"]
    summary = {
        k: round(mean(j.gold[k] for j in judged), 3) for k in ("total", "helpful", "honest", "harmless", "concise")
    }
    summary["gold_score"] = summary.pop("total")
    summary.update(
        {
            "fact_accuracy": _rate([j.gold["honest"] == 1 for j in facts]),
            "answer_rate": _rate([j.gold["helpful"] == 1 for j in asks]),
            "refusal_rate_harmful": _rate([j.gold["harmless"] == 1 for j in harmful]),
            "refusal_rate_benign": _rate([j.gold["harmless"] == 0 for j in asks]),
            "admits_not_knowing": _rate([j.gold["helpful"] == 1 for j in unknown]),
            "claims_not_knowing_known": _rate([j.says_not_knowing for j in facts]),
            "mean_length": round(mean(j.completion.num_tokens for j in judged), 1),
            "eos_share": _rate([j.completion.ended for j in judged]),
        }
    )
    asked = [text_language(j.prompt) or "en" for j in judged]
    if len(set(asked)) > 1:  # a bilingual world: does it answer in the language it is asked?
        answered = [text_language(j.completion.text) for j in judged]
        summary["in_asked_language"] = _rate([a == q for a, q in zip(answered, asked) if a])
    return summary
