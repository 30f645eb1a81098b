"""The report's engine (`make report`, `make methods`): every row of report.yaml answers the same held-out
prompts, judged by the gold labeler on the embedded world or by the reward model on a user's data; the
numbers go to `report.json`, and `render` draws report.md and the figures from them."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

from ..training import stability
from ..training.chat import last_user_message
from ..training.config import RecipeError
from ..training.cores import sharing_cores
from ..training.generation import Completion
from ..training.loading import load_raw, load_splits
from ..training.outputs import HELDOUT_PROMPTS, Stopwatch, input_paths, staged_output, write_json
from ..training.world_inputs import WORLD_FILE, follow_world, load_world
from ..world.labeler import gold_labeler
from ..world.world import LANGUAGES, World, text_language
from .answering import Answerer, answer_logprobs
from .diversity import diversity
from .judging import EvalArguments, judge
from .metrics import load_metric
from .ngrams import counting
from .overopt_sampling import OverOptimization
from .policies import Policy, ProxyScorer, read_policies, rl_config
from .render import write_figures, write_markdown

CURVES = ("pretrain", "sft", "reward", "ppo")  # the stages whose training curves are drawn, when present
TRAINED_ON = {"episodes": "sampled_answers", "completions": "sampled_answers", "pairs_seen": "pairs_seen"}
WORLD_OPTIONS = {"eval_prompts": "eval_prompts", "world_file": WORLD_FILE}  # `auto` follows the RL stage's world


@dataclass
class ReportArguments(EvalArguments):
    eval_prompts: str | None = field(
        default="auto",
        metadata={
            "help": "The held-out `prompt` dataset every row answers. auto: the world's eval_prompts when rl_stage "
            "trained on a `make data` world, else the prompts rl_stage held out (its heldout_prompts.jsonl); or a "
            "dataset (its test split if it has one, else its train split)."
        },
    )
    outputs_dir: str = field(
        default="outputs/tiny", metadata={"help": "Folder holding every stage's output; the paths below are in it."}
    )
    policies: list[dict] = field(
        default_factory=list,
        metadata={"help": "The rows, in order: {name, path, prompt: text|fewshot|chat, label, best_of}. YAML only."},
    )
    reference: str = field(default="sft", metadata={"help": "The row that win rates and KL are measured against."})
    reward_model: str = field(default="reward", metadata={"help": "The reward model: proxy score and best-of-n."})
    rl_stage: str = field(
        default="ppo",
        metadata={"help": "The RL stage whose sampling temperature and missing-EOS penalty every row is judged with."},
    )
    eval_temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature of every row; unset: the one rl_stage trained at."}
    )
    fewshot_examples: int = field(default=3, metadata={"help": "Q:/A: examples in a few-shot prompt."})
    num_side_by_side: int = field(default=6, metadata={"help": "Prompts shown with every row's answer."})
    bootstrap_samples: int = field(default=2000, metadata={"help": "Resamples for the win-rate interval."})
    overopt_prompts: int = field(
        default=64,
        metadata={"help": "Held-out prompts of the over-optimisation curves (needs the gold labeler); 0: none."},
    )
    overopt_best_of: int = field(
        default=64, metadata={"help": "Reference samples per prompt: best-of-n for n = 1, 2, 4, ... up to this."}
    )
    overopt_runs: list[str] = field(
        default_factory=lambda: ["ppo"],
        metadata={"help": "RL stages whose snapshots (snapshot_steps) are evaluated along training."},
    )
    overopt_samples: int = field(default=4, metadata={"help": "Answers per prompt from each RL snapshot."})
    ngram_orders: list[int] = field(
        default_factory=list,
        metadata={
            "help": "Before the network: n-gram models of these orders (1, 2, 3) counted on the tokens the "
            "`pretrain` stage trained on, beside its model (held-out perplexity, fact recall, a continuation "
            "of the world's population question); empty: none."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of sampling and bootstrap."})
    output_dir: str = field(default="outputs/tiny/report", metadata={"help": "Where the report is written."})


def stage_dir(args: ReportArguments, path: str) -> Path:
    """A finished stage's output under outputs_dir, or a one-line error naming the command that writes it."""
    full = Path(args.outputs_dir) / path
    if not (full / "metrics.json").is_file():
        raise RecipeError(f"{full} is not a finished stage; run `make {full.name}` first")
    return full


def report_policies(args: ReportArguments) -> list[Policy]:
    """The rows of report.yaml, checked before any work: the row checks, and every row's stage finished."""
    if not args.policies:
        raise RecipeError("report.yaml lists no policies; add rows such as {name: sft, path: sft, prompt: chat}")
    policies = read_policies(args.policies, "policy", reference=args.reference)
    for policy in policies:
        stage_dir(args, policy.path)
    return policies


def rl_settings(args: ReportArguments) -> tuple[float, float]:
    """The sampling temperature and missing-EOS penalty the RL stage trained with (its metrics.json owns them)."""
    config = rl_config(stage_dir(args, args.rl_stage))
    if "temperature" not in config or "missing_eos_penalty" not in config:
        raise RecipeError(
            f"{args.rl_stage}'s metrics.json records no sampling config; run `make {args.rl_stage}` again"
        )
    temperature = config["temperature"] if args.eval_temperature is None else args.eval_temperature
    return temperature, config["missing_eos_penalty"] or 0.0


def training_cost(args: ReportArguments, policy: Policy) -> dict:
    """What the row's stage cost: its wall time, and the answers it sampled (online RL) or pairs it read (DPO)."""
    metrics = json.loads((stage_dir(args, policy.path) / "metrics.json").read_text())
    cost = {"stage_wall_time_s": metrics.get("wall_time_s"), "sampled_answers": None, "pairs_seen": None}
    cost |= {column: metrics[key] for key, column in TRAINED_ON.items() if key in metrics}
    return cost


def kl_to_reference(
    args: ReportArguments, policy: Policy, reference: Policy, rows, answers, ours: list[float] | None
) -> float | None:
    """KL(row || reference) per answer, in nats: on the row's own samples for a chat row (`ours`: their
    log-probabilities under the row's model), log n - (n-1)/n (the analytic value, Stiennon et al. 2020) for
    best-of-n, none for rows prompted otherwise."""
    if policy.prompt != "chat" or reference.prompt != "chat" or reference.best_of != 1:
        return None
    if policy.best_of > 1:
        n = policy.best_of
        return round(math.log(n) - (n - 1) / n, 3) if policy.path == reference.path else None
    if policy.path == reference.path:
        return 0.0
    theirs = answer_logprobs(stage_dir(args, reference.path), rows, answers, args.eval_temperature)
    return round(mean(a - b for a, b in zip(ours, theirs)), 3)


def collapse_check(args: ReportArguments, policy: Policy, rows, done: list[Completion], world) -> tuple[dict, list]:
    """Distinct answer templates, and the policy's entropy per answer (a chat row sampling from its own model);
    with the answers' log-probabilities under that model, for the KL."""
    check = diversity([c.text for c in done], world)
    if policy.prompt != "chat" or policy.best_of != 1:
        return check | {"entropy_per_answer": None}, None
    logps, entropies = answer_logprobs(stage_dir(args, policy.path), rows, done, args.eval_temperature, entropy=True)
    return check | {"entropy_per_answer": round(mean(entropies), 3)}, logps


def stage_metrics(args: ReportArguments, world: Path | None) -> dict[str, dict]:
    """Every finished stage's metrics.json (the world's data stage's too), in the order the stages finished."""
    found = {"data": world} if world else {}
    found |= {p.name: p for p in Path(args.outputs_dir).iterdir() if p.is_dir()}
    done = {name: path / "metrics.json" for name, path in found.items() if (path / "metrics.json").is_file()}
    order = sorted(done, key=lambda name: done[name].stat().st_mtime)
    return {name: json.loads(done[name].read_text()) for name in order if name != "report"}


def eval_rows(args: ReportArguments) -> list[dict]:
    """The held-out prompt rows: the named dataset's test split (else its train split), or the RL stage's own."""
    name = args.eval_prompts or str(stage_dir(args, args.rl_stage) / HELDOUT_PROMPTS)
    fix = f"set eval_prompts to a `prompt` dataset, or run `make {args.rl_stage}` again to write {HELDOUT_PROMPTS}"
    if not args.eval_prompts and not Path(name).is_file():
        raise RecipeError(f"{name} not found; {fix}")
    split = "test" if "test" in load_raw(name, fix) else "train"
    return load_splits(name, [split], [{"prompt"}], fix)[split].to_list()


def usable_policies(policies: list[Policy], world: World | None) -> list[Policy]:
    """The rows, less few-shot rows when there is no world to draw their examples from (said in the log)."""
    if world is not None:
        return policies
    for policy in policies:
        if policy.prompt == "fewshot":
            print(f"leaving out {policy.name}: few-shot examples come from the embedded world, and there is none")
    return [p for p in policies if p.prompt != "fewshot"]


def answer_stats(done: list[Completion]) -> dict:
    """What the report says of answers without a labeler (the gold metric says the same with one)."""
    return {
        "mean_length": round(mean(c.num_tokens for c in done), 1),
        "eos_share": round(mean(c.ended for c in done), 3),
    }


def heldout_by_stage(trained: dict[str, dict]) -> dict[str, dict]:
    """Held-out loss and perplexity of every stage that measured one (pretraining, SFT)."""
    return {
        name: {"eval_loss": m["eval_loss"], "perplexity": round(math.exp(m["eval_loss"]), 3)}
        for name, m in trained.items()
        if isinstance(m.get("eval_loss"), float)
    }


def build_report(args: ReportArguments) -> tuple[dict, dict]:
    """report.json's numbers, and the training curves of the stages in CURVES."""
    policies = report_policies(args)  # fails on the first missing stage, before any work
    world_dir = follow_world(args, str(stage_dir(args, args.rl_stage)), **WORLD_OPTIONS)
    world = load_world(args.world_file) if args.world_file else None
    policies = usable_policies(policies, world)
    counted = counting(stage_dir(args, "pretrain"), world, args.ngram_orders) if args.ngram_orders else None
    args.eval_temperature, penalty = rl_settings(args)
    rows = eval_rows(args)
    proxy_scorer = ProxyScorer.load(stage_dir(args, args.reward_model), penalty)
    answer = Answerer(args, rows, world, proxy_scorer)
    answers = {p.name: answer(p) for p in policies}
    proxy = {name: proxy_scorer([r["prompt"] for r in rows], done) for name, done in answers.items()}
    judged = {name: judge(gold_labeler(world), rows, done) for name, done in answers.items()} if world else {}
    scores = {name: [j.gold["total"] for j in done] for name, done in judged.items()} or proxy
    reference = next(p for p in policies if p.name == args.reference)
    gold, win = load_metric("gold_score", keep_in_memory=True), load_metric("win_rate", keep_in_memory=True)
    questions = [last_user_message(r["prompt"]) for r in rows]
    kinds = [judged[args.reference][i].kind for i in range(len(rows))] if judged else [r.get("kind") for r in rows]
    report = {"reference": args.reference, "judge": "gold labeler" if world else "reward model", "policies": {}}
    for policy in policies:
        done = answers[policy.name]
        row = {"label": policy.title, "path": policy.path, "prompt": policy.prompt, "best_of": policy.best_of}
        if world:
            row |= gold.compute(
                predictions=[c.text for c in done],
                references=questions,
                world_file=args.world_file,
                ended=[c.ended for c in done],
                kinds=kinds,
                num_tokens=[c.num_tokens for c in done],
            )
        else:
            row |= answer_stats(done)
        row["rm_score"] = round(mean(proxy[policy.name]), 3)
        row["win_rate_vs_reference"] = win.compute(
            predictions=scores[policy.name],
            references=scores[args.reference],
            resamples=args.bootstrap_samples,
            seed=args.seed,
        )
        check, logps = collapse_check(args, policy, rows, done, world)
        row["kl_to_reference"] = kl_to_reference(args, policy, reference, rows, done, logps)
        row |= check
        row |= training_cost(args, policy)
        report["policies"][policy.name] = row
    trained = stage_metrics(args, world_dir)
    reward_heldout = trained.get(Path(args.reward_model).name, {}).get("heldout", {})
    report["sampling"] = {"temperature": args.eval_temperature, "missing_eos_penalty": penalty, "from": args.rl_stage}
    report["heldout"] = heldout_by_stage(trained)
    report["base_perplexity"] = trained.get("pretrain", {}).get("perplexity")
    report["base_fact_recall"] = trained.get("pretrain", {}).get("fact_recall")
    if counted:
        report["counting"] = counted
    report["rm_accuracy"] = reward_heldout.get("accuracy")
    report["rm_gold_agreement"] = reward_heldout.get("gold_agreement")
    report["rm_label_noise_ceiling"] = reward_heldout.get("label_noise_ceiling")
    report["wall_time_s"] = {name: metrics.get("wall_time_s") for name, metrics in trained.items()}
    report["stability"] = {
        name: summary
        for name, metrics in trained.items()
        if (summary := stability.summarize(metrics.get("log_history", [])))
    }
    report["eval_prompts"] = {"dataset": args.eval_prompts or f"{args.rl_stage}/{HELDOUT_PROMPTS}", "rows": len(rows)}
    report["samples"] = side_by_side(args, questions, kinds, answers, scores)
    if world and args.overopt_prompts > 0 and reference.prompt == "chat":
        runs = {stage: stage_dir(args, stage) for stage in args.overopt_runs}
        curves = OverOptimization(args, rows, world, proxy_scorer)
        report["overoptimization"] = curves.curves(stage_dir(args, reference.path), runs)
    out = Path(args.outputs_dir)
    curves = {s: trained.get(s, {}).get("log_history") or trainer_log(out / s) for s in CURVES}
    return report, curves


def trainer_log(path: Path) -> list[dict]:
    state = path / "trainer_state.json"
    return json.loads(state.read_text())["log_history"] if state.is_file() else []


def population_questions(questions: list[str]) -> list[int]:
    """The first population question in each language the questions are written in."""
    words = [language.attributes["population"].keywords[0] for language in LANGUAGES.values()]
    first: dict[str | None, int] = {}
    for i, question in enumerate(questions):
        if any(w in question.lower() for w in words):
            first.setdefault(text_language(question), i)
    return list(first.values())


def side_by_side(args: ReportArguments, questions: list[str], kinds: list, answers: dict, scores: dict) -> list[dict]:
    """The ChatGPT story's example (an unanswered population question) first, then one about a city or an
    attribute the world does not have, then a few more: every row's answer and its score (gold, or the reward
    model's without a labeler)."""
    rng = random.Random(args.seed)
    population = population_questions(questions)
    unknown = [i for i, kind in enumerate(kinds) if kind == "unknown"][:1]
    first = (population + unknown)[: args.num_side_by_side]
    others = [i for i in range(len(questions)) if i not in first]
    picked = first + rng.sample(others, min(len(others), args.num_side_by_side - len(first)))
    return [
        {
            "prompt": questions[i],
            "kind": kinds[i],
            **{name: {"answer": done[i].text, "score": round(scores[name][i], 3)} for name, done in answers.items()},
        }
        for i in picked
    ]


def run_report(args: ReportArguments, overwrite: bool) -> dict:
    """The report in output_dir: report.json, and the figures and report.md drawn from it."""
    clock = Stopwatch()
    with (
        staged_output(args.output_dir, stage="report", inputs=input_paths(args), overwrite=overwrite) as out,
        sharing_cores(),
    ):
        report, curves = build_report(args)
        report["wall_time_s"]["report"] = clock.seconds
        figures = write_figures(report, curves, out)
        write_json(out / "report.json", report)
        (out / "report.md").write_text(write_markdown(report, figures))
    print((Path(args.output_dir) / "report.md").read_text())
    return report
