"""The report: every policy of the ChatGPT story judged on the same held-out prompts.

    accelerate launch --config_file accelerate_configs/cpu.yaml recipes/report.py --config recipes/tiny/report.yaml

`report.yaml` lists the rows (`policies`): a name, a model folder, and how to prompt it -- `text` (the bare
question, as one would prompt a base model), `fewshot` (Q:/A: examples first, the answer cut at the next
"Q:", as a few-shot user would) or `chat` (the chat template) -- and `best_of: n` for a row that samples
n answers and lets the reward model pick one. Adding a method is one more line. Every row samples at the
temperature the RL stage trained at, and is scored by the reward model less that stage's missing-EOS
penalty (both read from the RL stage's metrics.json, so they cannot drift from what it used).

On the embedded world (the RL stage trained on `make data` prompts) the gold labeler judges every answer:
its score and parts, answer and refusal rates, and the win rate against the reference row with a bootstrap
interval. On a user's data there is no labeler: the prompts are those the RL stage held out, the reward
model is the judge of the win rate, and the gold columns are left out. Either way: length, EOS share, the
reward model's score, the KL to the reference per answer, held-out loss and perplexity per stage, the
reward model's accuracy, wall time per stage, training curves and side-by-side samples. Numbers go to
`report.json`; `report.md` and the PNG figures are drawn from it.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from statistics import mean

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import TrlParser

from rlhf_recipes.evaluation import overoptimization
from rlhf_recipes.evaluation.diversity import diversity
from rlhf_recipes.evaluation.generation import Completion, complete
from rlhf_recipes.evaluation.judging import EvalArguments, answer_prompts, judge
from rlhf_recipes.evaluation.metrics import load_metric
from rlhf_recipes.evaluation.report import write_figures, write_markdown
from rlhf_recipes.training.chat import last_user_message, prepare_tokenizer
from rlhf_recipes.training.config import RecipeError, cli, parse
from rlhf_recipes.training.launch import apply_launch
from rlhf_recipes.training.loading import load_pretrained, load_raw, load_splits
from rlhf_recipes.training.outputs import (
    HELDOUT_PROMPTS,
    SNAPSHOTS,
    OutputArguments,
    Stopwatch,
    input_paths,
    staged_output,
    write_json,
)
from rlhf_recipes.training.rewards import rewards
from rlhf_recipes.training.world_inputs import WORLD_FILE, follow_world, load_world
from rlhf_recipes.world.labeler import gold_labeler
from rlhf_recipes.world.metrics import load_gold_score
from rlhf_recipes.world.world import LANGUAGES, World, reading_for, readings, text_language

PROMPTING = ("text", "fewshot", "chat")
CURVES = ("pretrain", "sft", "reward", "ppo")  # the stages whose training curves are drawn, when present


@dataclass
class Policy:
    """One row of the report."""

    name: str
    path: str  # relative to outputs_dir (or absolute)
    prompt: str = "chat"  # text | fewshot | chat
    label: str | None = None  # shown in the table and figures; the name if unset
    best_of: int = 1  # n > 1: n answers, the reward model picks one (best-of-n)


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
    seed: int = field(default=0, metadata={"help": "Seed of sampling and bootstrap."})
    output_dir: str = field(default="outputs/tiny/report", metadata={"help": "Where the report is written."})


WORLD_OPTIONS = {"eval_prompts": "eval_prompts", "world_file": WORLD_FILE}  # `auto` follows the RL stage's world


def make_parser() -> TrlParser:
    return TrlParser((ReportArguments, OutputArguments))


def stage_dir(args: ReportArguments, path: str) -> Path:
    """A finished stage's output under outputs_dir, or a one-line error naming the command that writes it."""
    full = Path(args.outputs_dir) / path
    if not (full / "metrics.json").is_file():
        raise RecipeError(f"{full} is not a finished stage; run `make {full.name}` first")
    return full


def read_policies(args: ReportArguments) -> list[Policy]:
    """The rows of report.yaml, checked before any work: known keys, known prompting, the reference present."""
    if not args.policies:
        raise RecipeError("report.yaml lists no policies; add rows such as {name: sft, path: sft, prompt: chat}")
    known = {f.name for f in fields(Policy)}
    policies = []
    for row in args.policies:
        if not isinstance(row, dict) or not {"name", "path"} <= set(row) or set(row) - known:
            raise RecipeError(
                f"policy {row!r}: a row has name and path, and optionally {sorted(known - {'name', 'path'})}"
            )
        policy = Policy(**row)
        if policy.prompt not in PROMPTING or policy.best_of < 1:
            raise RecipeError(f"policy {policy.name}: prompt must be one of {PROMPTING} and best_of at least 1")
        stage_dir(args, policy.path)
        policies.append(policy)
    names = [p.name for p in policies]
    if len(set(names)) != len(names) or args.reference not in names:
        raise RecipeError(f"policy names must be unique and include the reference {args.reference!r}; got {names}")
    return policies


def rl_settings(args: ReportArguments) -> tuple[float, float]:
    """The sampling temperature and missing-EOS penalty the RL stage trained with (its metrics.json owns them)."""
    config = json.loads((stage_dir(args, args.rl_stage) / "metrics.json").read_text()).get("config", {})
    if "temperature" not in config or "missing_eos_penalty" not in config:
        raise RecipeError(
            f"{args.rl_stage}'s metrics.json records no sampling config; run `make {args.rl_stage}` again"
        )
    temperature = config["temperature"] if args.eval_temperature is None else args.eval_temperature
    return temperature, config["missing_eos_penalty"] or 0.0


def fewshot_prefix(world: World, count: int, rng: random.Random) -> str:
    """Q:/A: examples about training cities, in the format of the pretraining Q:/A: pages."""
    lines = []
    for city in rng.sample(world.train_cities, count):
        attr = rng.choice(world.attributes)
        spec = world.language.attributes[attr]
        question = spec.questions[0].format(city=city.name)
        answer = spec.statements[0].format(city=city.name, value=city.facts[attr])
        lines.append(world.language.qa_format.format(question=question, answer=answer))
    return "\n\n".join(lines) + "\n\n"


def fewshot_prompt(world: World, prefix: str, question: str) -> str:
    """The examples, then the question in the same format, left for the model to answer."""
    return prefix + world.language.qa_format.format(question=question, answer="").rstrip()


def cut_at_next_question(world: World, done: Completion) -> Completion:
    next_question = "\n" + world.language.qa_format.split("{question}")[0].strip()
    for stop in (next_question, "\n\n"):
        if stop in done.text:
            return Completion(done.text.split(stop)[0], True, done.num_tokens)
    return done


class Answerer:
    """Answers of every row to the held-out prompts, sampling each (model, prompting, seed) once and keeping
    one model loaded at a time (rows of the same model follow each other in the usual list)."""

    def __init__(self, args: ReportArguments, rows: list[dict], world: World | None, rm, rm_tok, penalty: float):
        self.args, self.rows, self.world, self.rm, self.rm_tok, self.penalty = args, rows, world, rm, rm_tok, penalty
        self.cache: dict[tuple, list[Completion]] = {}
        self.loaded: tuple[str, tuple] | None = None

    def __call__(self, policy: Policy) -> list[Completion]:
        samples = [self.sample(policy, self.args.seed + k) for k in range(policy.best_of)]
        if policy.best_of == 1:
            return samples[0]
        scores = [reward_scores(self.rm, self.rm_tok, self.rows, s, self.penalty) for s in samples]
        return [samples[max(range(policy.best_of), key=lambda k: scores[k][i])][i] for i in range(len(self.rows))]

    def sample(self, policy: Policy, seed: int) -> list[Completion]:
        key = (policy.path, policy.prompt, seed)
        if key not in self.cache:
            if self.loaded is None or self.loaded[0] != policy.path:
                self.loaded = (policy.path, load_causal(stage_dir(self.args, policy.path)))
            self.cache[key] = self.generate(*self.loaded[1], policy.prompt, seed)
        return self.cache[key]

    def generate(self, model, tokenizer, prompting: str, seed: int) -> list[Completion]:
        args = self.args
        if prompting == "chat":
            return answer_prompts(model, tokenizer, self.rows, args, seed=seed)
        questions = [last_user_message(r["prompt"]) for r in self.rows]
        torch.manual_seed(seed)
        sampling = {"do_sample": args.eval_temperature > 0, "temperature": args.eval_temperature}
        if prompting == "text":
            return complete(model, tokenizer, [q + "\n" for q in questions], args.eval_max_new_tokens, **sampling)
        asked = [reading_for(self.world, q) for q in questions]  # a bilingual world: the question's language
        prefixes = {
            r.lang: fewshot_prefix(r, args.fewshot_examples, random.Random(seed)) for r in readings(self.world)
        }
        raw = complete(
            model,
            tokenizer,
            [fewshot_prompt(r, prefixes[r.lang], q) for r, q in zip(asked, questions)],
            args.eval_max_new_tokens,
            **sampling,
        )
        return [cut_at_next_question(r, c) for r, c in zip(asked, raw)]


TRAINED_ON = {"episodes": "sampled_answers", "completions": "sampled_answers", "pairs_seen": "pairs_seen"}


def training_cost(args: ReportArguments, policy: Policy) -> dict:
    """What the row's stage cost: its wall time, and the answers it sampled (online RL) or pairs it read (DPO)."""
    metrics = json.loads((stage_dir(args, policy.path) / "metrics.json").read_text())
    cost = {"stage_wall_time_s": metrics.get("wall_time_s"), "sampled_answers": None, "pairs_seen": None}
    cost |= {column: metrics[key] for key, column in TRAINED_ON.items() if key in metrics}
    return cost


def load_causal(path: Path):
    model = load_pretrained(AutoModelForCausalLM, str(path))
    return model, prepare_tokenizer(load_pretrained(AutoTokenizer, str(path)), model)


def load_reward(args: ReportArguments):
    path = str(stage_dir(args, args.reward_model))
    return load_pretrained(AutoModelForSequenceClassification, path), load_pretrained(AutoTokenizer, path)


def reward_scores(
    model, tokenizer, rows: list[dict], answers: list[Completion], missing_eos_penalty: float
) -> list[float]:
    """The reward model's score, less the RL stage's missing-EOS penalty for answers cut at the token limit
    (the chat template closes every answer with EOS, so the reward model alone cannot tell)."""
    scores = rewards(
        model, tokenizer, [r["prompt"] for r in rows], [[{"role": "assistant", "content": a.text}] for a in answers]
    )
    return [s - (0.0 if a.ended else missing_eos_penalty) for s, a in zip(scores, answers)]


@torch.no_grad()
def answer_logprobs(
    path: Path, rows: list[dict], answers: list[Completion], temperature: float, entropy: bool = False
) -> list[float] | tuple[list[float], list[float]]:
    """Sum over each answer's tokens of log pi(token) under the chat-prompted model at `path`; with
    `entropy`, also the sum of the entropies of pi at those positions (nats per answer)."""
    model, tok = load_causal(path)
    model.eval()
    totals, entropies = [], []
    for row, answer in zip(rows, answers):
        prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        prompt_ids = tok(prompt, add_special_tokens=False).input_ids
        answer_ids = tok(answer.text, add_special_tokens=False).input_ids + (
            [tok.eos_token_id] if answer.ended else []
        )
        logits = model(torch.tensor([prompt_ids + answer_ids])).logits[0, len(prompt_ids) - 1 : -1]
        logps = torch.log_softmax(logits / max(temperature, 1e-6), -1)
        totals.append(logps.gather(1, torch.tensor(answer_ids)[:, None]).sum().item())
        entropies.append(-(logps.exp() * logps).sum().item())
    return (totals, entropies) if entropy else totals


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


class OverOptimization:
    """Gao et al.'s two curves on a fixed sample of held-out prompts: best-of-n from the reference (SFT)
    model's samples, and every snapshot an RL run saved. Proxy: the reward model less the missing-EOS
    penalty, as the RL stage saw it; gold: the labeler's total."""

    def __init__(self, args: ReportArguments, rows: list[dict], world: World, rm, rm_tok, penalty: float):
        self.args, self.rm, self.rm_tok, self.penalty = args, rm, rm_tok, penalty
        self.rows = random.Random(args.seed).sample(rows, min(len(rows), args.overopt_prompts))
        self.labeler = gold_labeler(world)

    def sample(self, path: Path, per_prompt: int) -> tuple[list[dict], list[Completion]]:
        """`per_prompt` answers to each prompt, prompt by prompt: (the row of each answer, the answers)."""
        model, tok = load_causal(path)
        rows = [row for row in self.rows for _ in range(per_prompt)]
        prompts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
        torch.manual_seed(self.args.seed)
        temperature = self.args.eval_temperature
        done = complete(model, tok, prompts, self.args.eval_max_new_tokens, temperature > 0, temperature, 128)
        return rows, done

    def scores(self, rows: list[dict], done: list[Completion]) -> tuple[list[float], list[float]]:
        proxy = reward_scores(self.rm, self.rm_tok, rows, done, self.penalty)
        gold = [self.labeler.score(last_user_message(r["prompt"]), c.text, c.ended).total for r, c in zip(rows, done)]
        return proxy, gold

    def curves(self, reference: Path) -> dict:
        k = self.args.overopt_best_of
        proxy, gold = self.scores(*self.sample(reference, k))
        by_prompt = [(proxy[i : i + k], gold[i : i + k]) for i in range(0, len(proxy), k)]
        bon = overoptimization.best_of_n_curve(
            [p for p, _ in by_prompt], [g for _, g in by_prompt], overoptimization.powers_of_two(k)
        )
        start = min(k, self.args.overopt_samples)  # update 0: the reference's own first samples
        origin = {
            "update": 0,
            "kl": 0.0,
            "proxy": round(mean(x for p, _ in by_prompt for x in p[:start]), 4),
            "gold": round(mean(x for _, g in by_prompt for x in g[:start]), 4),
        }
        runs = {name: [origin, *self.along(name, reference)] for name in self.args.overopt_runs}
        return {"prompts": len(self.rows), "samples_per_prompt": k, "best_of_n": bon, "runs": runs}

    def along(self, stage: str, reference: Path) -> list[dict]:
        snapshots = sorted((stage_dir(self.args, stage) / SNAPSHOTS).glob("update-*"))
        if not snapshots:
            print(f"{stage} saved no snapshots (set snapshot_steps in its YAML): its curve is its start only")
        points = []
        for path in snapshots:
            rows, done = self.sample(path, self.args.overopt_samples)
            proxy, gold = self.scores(rows, done)
            ours = answer_logprobs(path, rows, done, self.args.eval_temperature)
            theirs = answer_logprobs(reference, rows, done, self.args.eval_temperature)
            points.append(
                {
                    "update": int(path.name.split("-")[1]),
                    "kl": round(mean(a - b for a, b in zip(ours, theirs)), 4),
                    "proxy": round(mean(proxy), 4),
                    "gold": round(mean(gold), 4),
                }
            )
        return points


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
    policies = read_policies(args)  # fails on the first missing stage, before any work
    world_dir = follow_world(args, str(stage_dir(args, args.rl_stage)), **WORLD_OPTIONS)
    world = load_world(args.world_file) if args.world_file else None
    policies = usable_policies(policies, world)
    args.eval_temperature, penalty = rl_settings(args)
    rows = eval_rows(args)
    rm, rm_tok = load_reward(args)
    answer = Answerer(args, rows, world, rm, rm_tok, penalty)
    answers = {p.name: answer(p) for p in policies}
    proxy = {name: reward_scores(rm, rm_tok, rows, done, penalty) for name, done in answers.items()}
    judged = {name: judge(gold_labeler(world), rows, done) for name, done in answers.items()} if world else {}
    scores = {name: [j.gold["total"] for j in done] for name, done in judged.items()} or proxy
    reference = next(p for p in policies if p.name == args.reference)
    gold, win = load_gold_score(keep_in_memory=True), load_metric("win_rate", keep_in_memory=True)
    questions = [last_user_message(r["prompt"]) for r in rows]
    kinds = [judged[args.reference][i].kind for i in range(len(rows))] if judged else [r.get("kind") for r in rows]
    report = {"reference": args.reference, "judge": "gold labeler" if world else "reward model", "policies": {}}
    for policy in policies:
        done = answers[policy.name]
        row = {"label": policy.label or policy.name, "path": policy.path, "prompt": policy.prompt}
        row["best_of"] = policy.best_of
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
    report["rm_accuracy"] = reward_heldout.get("accuracy")
    report["rm_gold_agreement"] = reward_heldout.get("gold_agreement")
    report["rm_label_noise_ceiling"] = reward_heldout.get("label_noise_ceiling")
    report["wall_time_s"] = {name: metrics.get("wall_time_s") for name, metrics in trained.items()}
    report["eval_prompts"] = {"dataset": args.eval_prompts or f"{args.rl_stage}/{HELDOUT_PROMPTS}", "rows": len(rows)}
    report["samples"] = side_by_side(args, questions, kinds, answers, scores)
    if world and args.overopt_prompts > 0 and reference.prompt == "chat":
        curves = OverOptimization(args, rows, world, rm, rm_tok, penalty)
        report["overoptimization"] = curves.curves(stage_dir(args, reference.path))
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
