"""The answers the over-optimisation curves are drawn from (see `overoptimization`): the reference model's
samples for best-of-n, and every snapshot an RL run saved, each scored by the proxy and the gold labeler."""

from __future__ import annotations

import random
from pathlib import Path
from statistics import mean

import torch

from ..training.chat import last_user_message
from ..training.generation import Completion, complete
from ..training.outputs import SNAPSHOTS
from ..world.labeler import gold_labeler
from ..world.world import World
from . import overoptimization
from .answering import answer_logprobs, load_causal
from .policies import ProxyScorer


class OverOptimization:
    """Gao et al.'s two curves on a fixed sample of held-out prompts: best-of-n from the reference (SFT)
    model's samples, and every snapshot an RL run saved. Proxy: the reward model less the missing-EOS
    penalty, as the RL stage saw it; gold: the labeler's total."""

    def __init__(self, args, rows: list[dict], world: World, proxy: ProxyScorer):
        """`args`: the report's ReportArguments (its seed and sampling settings); this module sits below it."""
        self.args, self.proxy = args, proxy
        self.rows = random.Random(args.seed).sample(rows, min(len(rows), args.overopt_prompts))
        self.labeler = gold_labeler(world)

    def sample(self, path: Path, per_prompt: int) -> tuple[list[dict], list[Completion]]:
        """`per_prompt` answers to each prompt, prompt by prompt: (the row of each answer, the answers)."""
        model, tok = load_causal(path)
        rows = [row for row in self.rows for _ in range(per_prompt)]
        prompts = [tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in rows]
        torch.manual_seed(self.args.seed)
        temperature = self.args.eval_temperature
        done = complete(model, tok, prompts, self.args.eval_max_new_tokens, temperature > 0, temperature, 512)
        return rows, done

    def scores(self, rows: list[dict], done: list[Completion]) -> tuple[list[float], list[float]]:
        proxy = self.proxy([r["prompt"] for r in rows], done)
        gold = [self.labeler.score(last_user_message(r["prompt"]), c.text, c.ended).total for r, c in zip(rows, done)]
        return proxy, gold

    def curves(self, reference: Path, runs: dict[str, Path]) -> dict:
        """Best-of-n from the reference's samples, and each RL run (name: its output folder) along training."""
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
        along = {name: [origin, *self.along(name, path, reference)] for name, path in runs.items()}
        return {"prompts": len(self.rows), "samples_per_prompt": k, "best_of_n": bon, "runs": along}

    def along(self, stage: str, run: Path, reference: Path) -> list[dict]:
        snapshots = sorted((run / SNAPSHOTS).glob("update-*"))
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
