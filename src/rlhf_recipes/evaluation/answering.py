"""How the report's rows answer: each prompted its own way (bare text, few-shot, chat template), best-of-n
picked by the reward model, and the log-probabilities the KL and entropy columns are read from."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..training.chat import last_user_message, prepare_tokenizer
from ..training.generation import Completion, complete
from ..training.loading import load_pretrained
from ..world.world import World, reading_for, readings
from .judging import answer_prompts
from .policies import Policy, ProxyScorer


def load_causal(path: Path):
    model = load_pretrained(AutoModelForCausalLM, str(path))
    return model, prepare_tokenizer(load_pretrained(AutoTokenizer, str(path)), model)


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

    def __init__(self, args, rows: list[dict], world: World | None, proxy: ProxyScorer):
        """`args`: the report's ReportArguments (its seed and sampling settings); this module sits below it."""
        self.args, self.rows, self.world, self.proxy = args, rows, world, proxy
        self.cache: dict[tuple, list[Completion]] = {}
        self.loaded: tuple[str, tuple] | None = None

    def __call__(self, policy: Policy) -> list[Completion]:
        samples = [self.sample(policy, self.args.seed + k) for k in range(policy.best_of)]
        if policy.best_of == 1:
            return samples[0]
        prompts = [r["prompt"] for r in self.rows]
        scores = [self.proxy(prompts, s) for s in samples]
        return [samples[max(range(policy.best_of), key=lambda k: scores[k][i])][i] for i in range(len(self.rows))]

    def sample(self, policy: Policy, seed: int) -> list[Completion]:
        key = (policy.path, policy.prompt, seed)
        if key not in self.cache:
            if self.loaded is None or self.loaded[0] != policy.path:
                self.loaded = (policy.path, load_causal(Path(self.args.outputs_dir) / policy.path))
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


@torch.no_grad()
def answer_logprobs(
    path: Path,
    rows: list[dict],
    answers: list[Completion],
    temperature: float,
    entropy: bool = False,
    batch_size: int = 64,
) -> list[float] | tuple[list[float], list[float]]:
    """Sum over each answer's tokens of log pi(token) under the chat-prompted model at `path`; with
    `entropy`, also the sum of the entropies of pi at those positions (nats per answer). Right-padded
    batches: positions and the causal mask of every real token are those of the answer alone."""
    model, tok = load_causal(path)
    model.eval()
    pieces = [answer_tokens(tok, row, answer) for row, answer in zip(rows, answers)]
    totals, entropies = [], []
    for i in range(0, len(pieces), batch_size):
        batch = pieces[i : i + batch_size]
        width = max(len(p) + len(a) for p, a in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        mask = torch.zeros_like(ids)
        for row, (prompt_ids, answer_ids) in enumerate(batch):
            ids[row, : len(prompt_ids) + len(answer_ids)] = torch.tensor(prompt_ids + answer_ids)
            mask[row, : len(prompt_ids) + len(answer_ids)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits
        for row, (prompt_ids, answer_ids) in enumerate(batch):
            at = slice(len(prompt_ids) - 1, len(prompt_ids) + len(answer_ids) - 1)
            logps = torch.log_softmax(logits[row, at] / max(temperature, 1e-6), -1)
            totals.append(logps.gather(1, torch.tensor(answer_ids)[:, None]).sum().item())
            entropies.append(-(logps.exp() * logps).sum().item())
    return (totals, entropies) if entropy else totals


def answer_tokens(tok, row: dict, answer: Completion) -> tuple[list[int], list[int]]:
    """The chat-templated prompt's tokens and the answer's (with its EOS when it ended)."""
    prompt = tok.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    answer_ids = tok(answer.text, add_special_tokens=False).input_ids + ([tok.eos_token_id] if answer.ended else [])
    return tok(prompt, add_special_tokens=False).input_ids, answer_ids
