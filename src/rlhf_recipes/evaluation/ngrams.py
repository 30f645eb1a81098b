"""Before the network: next-token probabilities by counting, the first lesson of the ChatGPT story.

Unigram, bigram and trigram models are counted on the tokens the pretrained model trained on: the pretraining
stage's own dataset, splits, tokenizer and block length, read from its output folder and packed by the same
function (`training.packing.pretraining_splits`). Every count stays inside a block, as the network never
sees across two. They are scored like the network: held-out perplexity on the same held-out blocks, fact
recall by the same probe (`probes.fact_recall`), and a greedy continuation of the world's population question.
Then the reason counting runs out: the share of held-out n-grams never seen in training.

Smoothing is interpolated absolute discounting (Ney, Essen & Kneser 1994; Kneser-Ney without its
continuation counts): each order keeps max(c(h,w) - D, 0) / c(h), and hands D per distinct next token of
h down to the order below; an unseen context is the order below's estimate. The unigram is add-one over
the vocabulary, so every token has a probability and held-out perplexity is finite. D = 0.75 is the usual
value (Chen & Goodman 1998). Plain absolute discounting rather than full Kneser-Ney keeps the unigram the
plain word frequency the story explains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..training.config import RecipeError
from ..training.generation import Completion, complete, completion
from ..training.loading import load_pretrained, load_trained
from ..training.outputs import MANIFEST, Stopwatch
from ..training.packing import pretraining_splits
from ..world.world import World, readings
from .probes import fact_recall

DISCOUNT = 0.75
NAMES = {1: "unigram", 2: "bigram", 3: "trigram"}
UNSEEN_ORDERS = (4, 8)  # beyond the counted orders: the story's "most long sequences are never seen"
CONTINUATION_TOKENS = 32
RECALL = ("fact_recall", "facts_recalled", "facts_total")


@dataclass(frozen=True)
class Level:
    """The k-grams (k >= 2) counted: sorted keys and their counts, and per context (the k-1 tokens before)
    its total count and its number of distinct next tokens, the mass that discounting hands down."""

    keys: np.ndarray
    counts: np.ndarray
    contexts: np.ndarray
    totals: np.ndarray
    types: np.ndarray


@dataclass(frozen=True)
class NGrams:
    order: int
    vocab_size: int
    unigram: np.ndarray  # P(w), add-one
    levels: tuple[Level, ...]  # orders 2 .. order


def _keys(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Each row of k tokens (the last axis) as one int64, the first token most significant."""
    return (tokens.astype(np.int64) * vocab_size ** np.arange(tokens.shape[-1] - 1, -1, -1)).sum(-1)


def _lookup(keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """values[keys == query] for each query, 0 where the sorted `keys` do not hold it."""
    at = np.searchsorted(keys, queries).clip(max=len(keys) - 1)
    return np.where(keys[at] == queries, values[at], 0)


def count(blocks: np.ndarray, order: int, vocab_size: int) -> NGrams:
    """Every k-gram (k <= order) inside each row of `blocks` (blocks, tokens), counted."""
    if order < 1 or vocab_size**order >= 2**63:
        raise RecipeError(
            f"ngram_orders holds {order}: an order is at least 1, and {order} tokens of a {vocab_size}-token "
            "vocabulary must fit one 64-bit key; use orders such as 1, 2, 3"
        )
    unigram = (np.bincount(blocks.ravel(), minlength=vocab_size) + 1) / (blocks.size + vocab_size)
    levels = []
    for k in range(2, order + 1):
        keys, counts = np.unique(_keys(sliding_window_view(blocks, k, axis=1), vocab_size), return_counts=True)
        contexts, first, types = np.unique(keys // vocab_size, return_index=True, return_counts=True)
        levels.append(Level(keys, counts, contexts, np.add.reduceat(counts, first), types))
    return NGrams(order, vocab_size, unigram, tuple(levels))


def probabilities(model: NGrams, history: np.ndarray, words: np.ndarray) -> np.ndarray:
    """P(words[i] | history[i]) for each row i: `history` (rows, >= order-1 tokens, -1 where there is none,
    before a block's start), `words` (rows or 1, candidates). Each order mixes its discounted counts with the
    order below; a context it never saw, or cannot see, leaves the order below's estimate."""
    p = np.broadcast_to(model.unigram[words], np.broadcast_shapes(words.shape, (len(history), 1)))
    for k, level in enumerate(model.levels, start=2):
        context = history[:, history.shape[1] - k + 1 :]
        keys = _keys(context.clip(min=0), model.vocab_size)
        totals = _lookup(level.contexts, level.totals, keys) * (context >= 0).all(1)
        types = _lookup(level.contexts, level.types, keys)
        counts = _lookup(level.keys, level.counts, keys[:, None] * model.vocab_size + words)
        mixed = (np.maximum(counts - DISCOUNT, 0) + DISCOUNT * types[:, None] * p) / np.maximum(totals, 1)[:, None]
        p = np.where(totals[:, None] > 0, mixed, p)
    return p


def _histories(blocks: np.ndarray, width: int) -> np.ndarray:
    """For every token of a block but its first, the `width` tokens before it in its block (-1: none)."""
    padded = np.pad(blocks, ((0, 0), (width, 0)), constant_values=-1)
    return sliding_window_view(padded, width, axis=1)[:, 1:-1].reshape(-1, width)


def perplexity(model: NGrams, blocks: np.ndarray) -> float:
    """exp(mean negative log-likelihood) of every token of a block but its first, each seen from inside its
    block only: the tokens, and the context limit, of the network's held-out loss on the same blocks."""
    p = probabilities(model, _histories(blocks, model.order), blocks[:, 1:].reshape(-1, 1))
    return round(float(np.exp(-np.log(p).mean())), 3)


def ngram_complete(model: NGrams, tokenizer, prompts: list[str], max_new_tokens: int) -> list[Completion]:
    """Greedy continuation, tokenized, stopped and decoded as `generation.complete` does for a network: the
    same probes take either."""
    rows = [tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
    new = [[] for _ in rows]
    candidates = np.arange(model.vocab_size)[None, :]
    for _ in range(max_new_tokens):
        history = np.array([([-1] * model.order + row + more)[-model.order :] for row, more in zip(rows, new)])
        for more, token in zip(new, probabilities(model, history, candidates).argmax(1)):
            more.append(int(token))
    return [completion(tokenizer, more) for more in new]


def _rows(windows: np.ndarray) -> np.ndarray:
    """Each row of a 2-D int array as one opaque value, for set operations on whole n-grams of any length."""
    return np.ascontiguousarray(windows).view(np.dtype((np.void, windows.dtype.itemsize * windows.shape[1])))[:, 0]


def unseen_share(train: np.ndarray, heldout: np.ndarray, n: int) -> float:
    """The share of held-out n-grams (inside blocks, counted with repeats) that occur nowhere in training:
    for those, counting has nothing to say but what shorter contexts say."""
    seen, asked = (_rows(sliding_window_view(b, n, axis=1).reshape(-1, n)) for b in (train, heldout))
    return round(float(1 - np.isin(asked, seen).mean()), 4)


def pretraining_tokens(stage: Path):
    """The pretraining stage's tokenizer and its (train, held-out) blocks as int arrays, rebuilt from the
    settings its manifest recorded; and where they came from."""
    manifest = stage / MANIFEST
    settings = json.loads(manifest.read_text()).get("settings", {}) if manifest.is_file() else {}
    if "context_length" not in settings:
        raise RecipeError(f"{stage}/{MANIFEST} records no pretraining settings; run `make pretrain` again")
    tokenizer = load_pretrained(AutoTokenizer, str(stage))
    splits = [settings["dataset_train_split"], settings["dataset_test_split"]]
    held_out = (settings["eval_split_ratio"], settings["seed"])
    packed = pretraining_splits(settings["dataset_name"], splits, held_out, tokenizer, settings["context_length"])
    blocks = [np.asarray(packed[s].with_format("numpy")["input_ids"]) for s in splits]
    where = {"dataset": settings["dataset_name"], "train_split": splits[0], "heldout_split": splits[1]}
    return tokenizer, blocks, where


def population_prompts(world: World) -> list[str]:
    """The story's question about a city seen only in pretraining, on its own line, in each of the world's
    languages (as the pretraining stage's probe asks it)."""
    return [
        r.language.attributes["population"].questions[0].format(city=(r.heldout or [c.name for c in r.cities])[0])
        + "\n"
        for r in readings(world)
    ]


def answers(model, tokenizer, world: World, generate) -> dict:
    """A counted model's fact recall by the pretraining stage's probe, and its continuations of the story's
    question."""
    recall = fact_recall(model, tokenizer, world, generate)
    done = generate(model, tokenizer, population_prompts(world), max_new_tokens=CONTINUATION_TOKENS)
    return {key: recall[key] for key in RECALL} | {"continuations": [c.text for c in done]}


def counting(stage: Path, world: World | None, orders: list[int]) -> dict:
    """The report's section: each counted model beside the pretrained one (`stage`), on the same tokens; fact
    recall and continuations with a world only. The pretrained model's perplexity and recall are the ones its
    stage measured (its Trainer's held-out loss divides by every token of a block, the first, which nothing
    predicts, included: at 128 tokens a block its perplexity reads a little lower than by the mean here)."""
    clock = Stopwatch()
    tokenizer, (train, heldout), where = pretraining_tokens(stage)
    rows = {}
    for n in sorted(set(orders)):
        model = count(train, n, len(tokenizer))
        row = {"order": n, "perplexity": perplexity(model, heldout)}
        rows[NAMES.get(n, f"{n}-gram")] = row | (answers(model, tokenizer, world, ngram_complete) if world else {})
    measured = json.loads((stage / "metrics.json").read_text())
    rows["pretrained"] = {key: measured.get(key) for key in ("perplexity", *RECALL)}
    if world:
        network = load_trained(AutoModelForCausalLM, stage)
        done = complete(network, tokenizer, population_prompts(world), max_new_tokens=CONTINUATION_TOKENS)
        rows["pretrained"]["continuations"] = [c.text for c in done]
    return {
        **where,
        "train_tokens": int(train.size),
        "heldout_blocks": len(heldout),
        "block_tokens": heldout.shape[1],
        "discount": DISCOUNT,
        "prompts": population_prompts(world) if world else [],
        "models": rows,
        "unseen_share": {str(n): unseen_share(train, heldout, n) for n in sorted({*orders, *UNSEEN_ORDERS} - {1})},
        "seconds": clock.seconds,
    }
