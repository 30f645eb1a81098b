"""The stage-by-stage report: every stage of the ChatGPT story judged on the same held-out prompts.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/report.py --config recipes/tiny/report.yaml

Stages: the base model asked zero-shot (the bare question), the base model with a few-shot Q:/A:
prompt (cut at the next "Q:", as a few-shot user would), SFT, best-of-n (n SFT answers reranked by
the reward model) and PPO, all sampled at the same temperature. For each: the gold labeler's score
and parts, answer and refusal rates, length, EOS share, the reward model's score (proxy vs gold) and
the gold win rate against SFT with a bootstrap interval. Plus KL(PPO || SFT), the base model's
perplexity, the reward model's accuracy, wall time per stage, training curves and side-by-side
samples. Numbers go to `report.json`; `report.md` and the PNG figures are drawn from it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import TrlParser

from rlhf_recipes.evaluation.generation import Completion, complete
from rlhf_recipes.evaluation.judging import EvalArguments, answer_prompts, judge, summarize
from rlhf_recipes.evaluation.report import write_figures, write_markdown
from rlhf_recipes.training.chat import last_user_message, prepare_tokenizer
from rlhf_recipes.training.config import RecipeError, cli, parse
from rlhf_recipes.training.launch import apply_launch
from rlhf_recipes.training.loading import load_pretrained, load_splits
from rlhf_recipes.training.outputs import OutputArguments, Stopwatch, input_paths, staged_output, write_json
from rlhf_recipes.training.rewards import rewards
from rlhf_recipes.world.labeler import GoldLabeler
from rlhf_recipes.world.world import ATTRIBUTES, World

STAGES = ("base", "base_fewshot", "sft", "best_of_n", "ppo")
TRAINED = ("data", "tokenizer", "pretrain", "sft", "compare", "reward", "ppo")


@dataclass
class ReportArguments(EvalArguments):
    outputs_dir: str = field(default="outputs/tiny", metadata={"help": "Folder holding every stage's output."})
    data_dir: str = field(default="data/world", metadata={"help": "The generated world (for its wall time)."})
    best_of_n: int = field(default=4, metadata={"help": "SFT answers the reward model picks from."})
    missing_eos_penalty: float = field(
        default=1.0, metadata={"help": "Taken off the RM score of answers that never end, as in PPO."}
    )
    fewshot_examples: int = field(default=3, metadata={"help": "Q:/A: examples in the base model's few-shot prompt."})
    num_side_by_side: int = field(default=6, metadata={"help": "Prompts shown with every stage's answer."})
    bootstrap_samples: int = field(default=2000, metadata={"help": "Resamples for the win-rate interval."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling and bootstrap."})
    output_dir: str = field(default="outputs/tiny/report", metadata={"help": "Where the report is written."})


def make_parser() -> TrlParser:
    return TrlParser((ReportArguments, OutputArguments))


def stage_dir(args: ReportArguments, stage: str) -> Path:
    path = Path(args.outputs_dir) / stage
    if not (path / "metrics.json").is_file():
        raise RecipeError(f"{path} is not a finished stage; run `make {stage}` first")
    return path


def fewshot_prefix(world: World, count: int, rng: random.Random) -> str:
    """Q:/A: examples about training cities, in the format of the pretraining Q:/A: pages."""
    lines = []
    for city in rng.sample(world.train_cities, count):
        attr = rng.choice(world.attributes)
        spec = ATTRIBUTES[attr]
        lines.append(
            f"Q: {spec.questions[0].format(city=city.name)}\nA: "
            f"{spec.statements[0].format(city=city.name, value=city.facts[attr])}"
        )
    return "\n\n".join(lines) + "\n\n"


def cut_at_next_question(done: Completion) -> Completion:
    for stop in ("\nQ:", "\n\n"):
        if stop in done.text:
            return Completion(done.text.split(stop)[0], True, done.num_tokens)
    return done


def answer_all(args: ReportArguments, rows: list[dict], world: World, rm, rm_tok) -> dict[str, list[Completion]]:
    base_dir, sft_dir, ppo_dir = (stage_dir(args, s) for s in ("pretrain", "sft", "ppo"))
    questions = [last_user_message(r["prompt"]) for r in rows]
    answers = {}
    base, base_tok = load_causal(base_dir)
    torch.manual_seed(args.seed)
    sampling = {
        "max_new_tokens": args.eval_max_new_tokens,
        "do_sample": args.eval_temperature > 0,
        "temperature": args.eval_temperature,
    }
    answers["base"] = complete(base, base_tok, [q + "\n" for q in questions], **sampling)
    prefix = fewshot_prefix(world, args.fewshot_examples, random.Random(args.seed))
    raw = complete(base, base_tok, [f"{prefix}Q: {q}\nA:" for q in questions], **sampling)
    answers["base_fewshot"] = [cut_at_next_question(c) for c in raw]
    sft, sft_tok = load_causal(sft_dir)
    samples = [answer_prompts(sft, sft_tok, rows, args, seed=args.seed + k) for k in range(args.best_of_n)]
    answers["sft"] = samples[0]
    scores = [reward_scores(rm, rm_tok, rows, s, args.missing_eos_penalty) for s in samples]
    answers["best_of_n"] = [
        samples[max(range(args.best_of_n), key=lambda k: scores[k][i])][i] for i in range(len(rows))
    ]
    ppo, ppo_tok = load_causal(ppo_dir)
    answers["ppo"] = answer_prompts(ppo, ppo_tok, rows, args, seed=args.seed)
    return answers


def load_causal(path: Path):
    model = load_pretrained(AutoModelForCausalLM, str(path))
    return model, prepare_tokenizer(load_pretrained(AutoTokenizer, str(path)), model)


def load_reward(args: ReportArguments):
    path = stage_dir(args, "reward")
    return load_pretrained(AutoModelForSequenceClassification, str(path)), load_pretrained(AutoTokenizer, str(path))


def reward_scores(
    model, tokenizer, rows: list[dict], answers: list[Completion], missing_eos_penalty: float
) -> list[float]:
    """The reward model's score, less PPO's missing-EOS penalty for answers cut at the token limit
    (the chat template closes every answer with EOS, so the reward model alone cannot tell)."""
    scores = rewards(
        model, tokenizer, [r["prompt"] for r in rows], [[{"role": "assistant", "content": a.text}] for a in answers]
    )
    return [s - (0.0 if a.ended else missing_eos_penalty) for s, a in zip(scores, answers)]


@torch.no_grad()
def kl_to_sft(args: ReportArguments, rows: list[dict], ppo_answers: list[Completion]) -> float:
    """Mean over prompts of sum over answer tokens of log pi_ppo - log pi_sft, on PPO's own samples."""
    logps = {}
    for stage in ("ppo", "sft"):
        model, tok = load_causal(stage_dir(args, stage))
        model.eval()
        totals = []
        for row, answer in zip(rows, ppo_answers):
            prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
            prompt_ids = tok(prompt, add_special_tokens=False).input_ids
            answer_ids = tok(answer.text, add_special_tokens=False).input_ids + (
                [tok.eos_token_id] if answer.ended else []
            )
            ids = torch.tensor([prompt_ids + answer_ids])
            logits = model(ids).logits[0, len(prompt_ids) - 1 : -1] / max(args.eval_temperature, 1e-6)
            totals.append(torch.log_softmax(logits, -1).gather(1, torch.tensor(answer_ids)[:, None]).sum().item())
        logps[stage] = totals
    return round(mean(p - s for p, s in zip(logps["ppo"], logps["sft"])), 3)


def win_rate(ours: list[dict], theirs: list[dict], rng: random.Random, resamples: int) -> dict:
    """Gold win rate, ties counted half, with a 95% bootstrap interval over prompts."""
    wins = [1.0 if a["total"] > b["total"] else 0.5 if a["total"] == b["total"] else 0.0 for a, b in zip(ours, theirs)]
    boots = sorted(mean(rng.choices(wins, k=len(wins))) for _ in range(resamples))
    return {
        "win_rate": round(mean(wins), 3),
        "ci95": [round(boots[int(0.025 * resamples)], 3), round(boots[int(0.975 * resamples) - 1], 3)],
    }


def stage_metrics(args: ReportArguments) -> dict:
    out = {}
    for stage in TRAINED:
        path = Path(args.data_dir if stage == "data" else Path(args.outputs_dir) / stage) / "metrics.json"
        out[stage] = json.loads(path.read_text()) if path.is_file() else {}
    return out


def build_report(args: ReportArguments) -> tuple[dict, dict]:
    for stage in ("pretrain", "sft", "reward", "ppo"):  # fail on the first missing stage, before any work
        stage_dir(args, stage)
    world = World.load(args.world_file)
    labeler = GoldLabeler(world)
    rows = load_splits(args.eval_prompts, ["test"], [{"prompt"}], "run `make data` first")["test"].to_list()
    rm, rm_tok = load_reward(args)
    answers = answer_all(args, rows, world, rm, rm_tok)
    judged = {s: judge(labeler, rows, answers[s]) for s in STAGES}
    rng = random.Random(args.seed)
    report = {"stages": {}}
    for stage in STAGES:
        summary = summarize(judged[stage])
        summary["rm_score"] = round(mean(reward_scores(rm, rm_tok, rows, answers[stage], args.missing_eos_penalty)), 3)
        summary["win_rate_vs_sft"] = win_rate(
            [j.gold for j in judged[stage]], [j.gold for j in judged["sft"]], rng, args.bootstrap_samples
        )
        report["stages"][stage] = summary
    trained = stage_metrics(args)
    report["ppo_vs_sft_win_rate"] = report["stages"]["ppo"]["win_rate_vs_sft"]
    report["best_of_n_vs_sft_win_rate"] = report["stages"]["best_of_n"]["win_rate_vs_sft"]
    report["kl_ppo_sft"] = kl_to_sft(args, rows, answers["ppo"])
    report["base_perplexity"] = trained["pretrain"].get("perplexity")
    report["base_fact_recall"] = trained["pretrain"].get("fact_recall")
    report["rm_accuracy"] = trained["reward"].get("heldout", {}).get("accuracy")
    report["rm_gold_agreement"] = trained["reward"].get("heldout", {}).get("gold_agreement")
    report["rm_label_noise_ceiling"] = trained["reward"].get("heldout", {}).get("label_noise_ceiling")
    report["wall_time_s"] = {s: trained[s].get("wall_time_s") for s in TRAINED}
    report["eval_prompts"] = len(rows)
    report["samples"] = side_by_side(args, rows, judged)
    curves = {
        s: trained[s].get("log_history") or trainer_log(Path(args.outputs_dir) / s)
        for s in ("pretrain", "sft", "reward", "ppo")
    }
    return report, curves


def trainer_log(path: Path) -> list[dict]:
    state = path / "trainer_state.json"
    return json.loads(state.read_text())["log_history"] if state.is_file() else []


def side_by_side(args: ReportArguments, rows: list[dict], judged: dict) -> list[dict]:
    """The ChatGPT story's example (an unanswered population question) first, then a few more."""
    rng = random.Random(args.seed)
    population = [i for i, r in enumerate(rows) if "population" in last_user_message(r["prompt"]).lower()]
    others = [i for i in range(len(rows)) if i not in population[:1]]
    picked = population[:1] + rng.sample(others, min(len(others), args.num_side_by_side - len(population[:1])))
    return [
        {
            "prompt": last_user_message(rows[i]["prompt"]),
            "kind": judged["sft"][i].kind,
            **{s: {"answer": judged[s][i].completion.text, "gold": judged[s][i].gold["total"]} for s in STAGES},
        }
        for i in picked
    ]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = make_parser()
    args, output_args = parse(parser, apply_launch(parser, argv))  # the accelerate config picks the hardware
    clock = Stopwatch()
    with staged_output(
        args.output_dir, stage="report", inputs=input_paths(args), overwrite=output_args.overwrite_output_dir
    ) as out:
        report, curves = build_report(args)
        report["wall_time_s"]["report"] = clock.seconds
        figures = write_figures(report, curves, out)
        write_json(out / "report.json", report)
        (out / "report.md").write_text(write_markdown(report, figures))
    print((Path(args.output_dir) / "report.md").read_text())
    return report


if __name__ == "__main__":
    cli(main)
