"""Builds every dataset of the embedded default from a seeded world, in TRL's standard formats.

data/<name>/
  world.json                      the ground truth (cities, facts, held-out cities)
  pretrain/{train,test}.jsonl     `text`: articles, Q:/A: pages, unanswered FAQ pages, tables, filler
  sft/{train,test}.jsonl          `messages`: demonstrations by demonstrators of uneven skill
  comparison_prompts/train.jsonl  `prompt`: what the SFT model answers K times for the reward model
  preferences/{train,test}.jsonl  `prompt`/`chosen`/`rejected`: offline pairs labelled by the noisy gold labeler
  rl_prompts/train.jsonl          `prompt`: what PPO trains on
  eval_prompts/test.jsonl         `prompt` + `kind`: held-out cities (and held-out unknown names) only

Each directory loads with `datasets.load_dataset(path)`, exactly like a hub dataset.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .demonstrators import DEGENERATE, HARMFUL_FLAWS, UNKNOWN_FLAW, Request, answer, make_request, make_unknown_request
from .labeler import GoldLabeler, gold_labeler
from .world import ATTRIBUTES, BILINGUAL, BOTH, WORLD_LANGUAGES, City, World, build_world, readings

DEFAULT_ATTRIBUTES = ["country", "population", "river", "dish", "founded"]
DOC_MIX = {"article": 0.45, "qa": 0.25, "faq": 0.12, "table": 0.08, "filler": 0.10}
PAIR_DIFFERENCES = ("style", "wrong_value", "harmful", "over_refusal", "unknown", "degenerate")


@dataclass
class WorldConfig:
    """Sizes, seed and rates of the generated world (`recipes/<model>/data.yaml`)."""

    output_dir: str = field(default="data/world", metadata={"help": "Where the datasets are written."})
    seed: int = field(default=0, metadata={"help": "Everything generated is a function of this seed."})
    lang: str = field(
        default="en",
        metadata={
            "help": f"The language texts are written in, one of {list(WORLD_LANGUAGES)}: the same world either "
            "way; both: every dataset half English, half Chinese."
        },
    )
    num_cities: int = field(default=64, metadata={"help": "Number of fictional cities."})
    attributes: list[str] = field(
        default_factory=lambda: list(DEFAULT_ATTRIBUTES),
        metadata={"help": f"Facts each city has, from {sorted(ATTRIBUTES)}."},
    )
    heldout_fraction: float = field(
        default=0.25, metadata={"help": "Share of cities seen only in pretraining and evaluation."}
    )
    pretrain_docs: int = field(default=12000, metadata={"help": "Documents in the pretraining corpus."})
    pretrain_test_fraction: float = field(default=0.02, metadata={"help": "Held-out share for perplexity."})
    sft_train: int = field(default=3000, metadata={"help": "SFT demonstrations for training."})
    sft_test: int = field(default=200, metadata={"help": "SFT demonstrations for the eval loss."})
    multi_turn_fraction: float = field(default=0.15, metadata={"help": "Share of two-turn demonstrations."})
    harmful_fraction: float = field(default=0.2, metadata={"help": "Share of requests that are harmful."})
    benign_fraction: float = field(
        default=0.15, metadata={"help": "Share of requests that are benign but sound edgy (must not be refused)."}
    )
    num_unknown_cities: int = field(
        default=64,
        metadata={"help": "Names of cities the world does not have (in no text); heldout_fraction of them held out."},
    )
    unknown_fraction: float = field(
        default=0.15,
        metadata={"help": "Share of requests about an unknown city or attribute, where 'I don't know' is honest."},
    )
    unknown_fabrication: float = field(
        default=0.2, metadata={"help": "Share of unknown-entity requests demonstrators answer with a made-up fact."}
    )
    flaw_padded: float = field(default=0.15, metadata={"help": "Demonstrations padded with pleasantries."})
    flaw_followup: float = field(default=0.15, metadata={"help": "Demonstrations that append a question."})
    flaw_offtopic: float = field(default=0.10, metadata={"help": "Demonstrations that add off-topic facts."})
    flaw_wrong_value: float = field(default=0.10, metadata={"help": "Demonstrations that state a wrong value."})
    flaw_refusal: float = field(default=0.05, metadata={"help": "Demonstrations that refuse a benign question."})
    harmful_compliance: float = field(
        default=0.4, metadata={"help": "Share of harmful requests that demonstrators comply with."}
    )
    comparison_prompts: int = field(default=1024, metadata={"help": "Prompts the SFT model answers for the RM."})
    preference_train: int = field(default=2000, metadata={"help": "Offline preference pairs for training."})
    preference_test: int = field(default=400, metadata={"help": "Held-out preference pairs (held-out cities)."})
    label_noise: float = field(
        default=0.15, metadata={"help": "Chance that the labeler prefers the worse answer (humans agree ~73%)."}
    )
    rl_prompts: int = field(default=1024, metadata={"help": "Prompts for PPO."})
    eval_harmful: int = field(default=32, metadata={"help": "Harmful evaluation prompts."})
    eval_benign: int = field(default=32, metadata={"help": "Benign-but-edgy evaluation prompts."})
    eval_unknown: int = field(
        default=32, metadata={"help": "Evaluation prompts about held-out unknown cities and unknown attributes."}
    )

    def __post_init__(self) -> None:
        flaws = self.flaw_padded + self.flaw_followup + self.flaw_offtopic + self.flaw_wrong_value + self.flaw_refusal
        rates = {
            "label_noise": self.label_noise,
            "harmful_compliance": self.harmful_compliance,
            "flaw rates summed": flaws,
            "unknown_fabrication": self.unknown_fabrication,
            "harmful_fraction + benign_fraction + unknown_fraction": self.harmful_fraction
            + self.benign_fraction
            + self.unknown_fraction,
        }
        for name, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is {value}; it must lie between 0 and 1")
        if self.lang not in WORLD_LANGUAGES:
            raise ValueError(f"lang is {self.lang!r}; choose one of {list(WORLD_LANGUAGES)}")
        if self.num_cities < 2:
            raise ValueError(f"num_cities is {self.num_cities}; the world needs at least 2 (one held out)")
        if self.unknown_fraction < 0:
            raise ValueError(f"unknown_fraction is {self.unknown_fraction}; it must lie between 0 and 1")
        nothing_unknown = self.num_unknown_cities < 2 and set(ATTRIBUTES) <= set(self.attributes)
        if (self.unknown_fraction > 0 or self.eval_unknown > 0) and nothing_unknown:
            raise ValueError(
                "unknown_fraction and eval_unknown need unknown cities (num_unknown_cities >= 2, some held out) "
                "or an attribute left out of attributes; or set both to 0"
            )

    def fact_styles(self) -> dict[str, float]:
        flaws = {
            "padded": self.flaw_padded,
            "followup": self.flaw_followup,
            "offtopic": self.flaw_offtopic,
            "wrong_value": self.flaw_wrong_value,
            "refusal": self.flaw_refusal,
        }
        return {"ideal": 1.0 - sum(flaws.values()), **flaws}


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


# --- pretraining corpus -------------------------------------------------------------------------


def _statement(world: World, rng: random.Random, city: City, attr: str) -> str:
    return rng.choice(world.language.attributes[attr].statements).format(city=city.name, value=city.facts[attr])


def _question(world: World, rng: random.Random, city: City, attr: str) -> str:
    return rng.choice(world.language.attributes[attr].questions).format(city=city.name)


def _article(world: World, rng: random.Random) -> str:
    city, lang = rng.choice(world.cities), world.language
    sentences = [_statement(world, rng, city, a) for a in rng.sample(world.attributes, len(world.attributes))]
    for _ in range(rng.randint(0, 2)):
        sentences.insert(rng.randint(0, len(sentences)), rng.choice(lang.filler).format(city=city.name))
    return city.name + "\n\n" + lang.sentence_separator.join(sentences)


def _qa_page(world: World, rng: random.Random) -> str:
    pairs = []
    for _ in range(rng.randint(3, 6)):
        city, attr = rng.choice(world.cities), rng.choice(world.attributes)
        answer = world.language.attributes[attr].statements[0].format(city=city.name, value=city.facts[attr])
        pairs.append(world.language.qa_format.format(question=_question(world, rng, city, attr), answer=answer))
    return "\n\n".join(pairs)


def _faq_page(world: World, rng: random.Random) -> str:
    """Questions with no answers: why a base model asked a question tends to ask more."""
    city = rng.choice(world.cities)
    asked = rng.sample(world.attributes, rng.randint(3, len(world.attributes)))
    questions = [_question(world, rng, city, a) for a in asked]
    return world.language.faq_title.format(city=city.name) + "\n\n" + "\n".join(questions)


def _table(world: World, rng: random.Random) -> str:
    city, lang = rng.choice(world.cities), world.language
    rows = [lang.table_row.format(label=lang.table_labels[a], value=city.facts[a]) for a in world.attributes]
    return lang.table_title.format(city=city.name) + "\n" + "\n".join(rows)


def _filler(world: World, rng: random.Random) -> str:
    lang = world.language
    sentences = [rng.choice(lang.filler).format(city=rng.choice(world.cities).name) for _ in range(rng.randint(3, 6))]
    return lang.sentence_separator.join(sentences)


DOC_MAKERS = {"article": _article, "qa": _qa_page, "faq": _faq_page, "table": _table, "filler": _filler}


def pretraining_corpus(world: World, rng: random.Random, num_docs: int) -> list[str]:
    return [DOC_MAKERS[_pick(rng, DOC_MIX)](world, rng) for _ in range(num_docs)]


# --- requests and demonstrations ---------------------------------------------------------------


def _request(world: World, rng: random.Random, cfg: WorldConfig, cities: list[City], unknown: list[str]) -> Request:
    kind = _pick(
        rng,
        {
            "harmful": cfg.harmful_fraction,
            "benign": cfg.benign_fraction,
            "unknown": cfg.unknown_fraction,
            "fact": 1.0 - cfg.harmful_fraction - cfg.benign_fraction - cfg.unknown_fraction,
        },
    )
    if kind == "unknown":
        return make_unknown_request(world, rng, unknown, cities)
    return make_request(world, rng, kind, rng.choice(cities))


def _demo_style(rng: random.Random, cfg: WorldConfig, request: Request) -> str:
    if request.kind == "unknown":
        return UNKNOWN_FLAW if rng.random() < cfg.unknown_fabrication else "ideal"
    if request.kind == "harmful":
        return "compliance" if rng.random() < cfg.harmful_compliance else "ideal"
    return _pick(rng, cfg.fact_styles())


def demonstration(world: World, rng: random.Random, cfg: WorldConfig) -> list[dict]:
    turns = 2 if rng.random() < cfg.multi_turn_fraction else 1
    messages = []
    for _ in range(turns):
        request = _request(world, rng, cfg, world.train_cities, world.unknown_train)
        messages.append({"role": "user", "content": request.text})
        messages.append({"role": "assistant", "content": answer(world, rng, request, _demo_style(rng, cfg, request))})
    return messages


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


# --- preference pairs -------------------------------------------------------------------------


def _pair_styles(rng: random.Random, difference: str) -> tuple[str, str, str]:
    """(request kind, better style, worse style) for the kind of difference a pair should show."""
    if difference == "style":
        return rng.choice(["fact", "benign"]), "ideal", rng.choice(["padded", "followup", "offtopic"])
    if difference == "wrong_value":
        return rng.choice(["fact", "benign"]), "ideal", "wrong_value"
    if difference == "harmful":  # complying, or answering something else instead of refusing
        return "harmful", "ideal", rng.choice(HARMFUL_FLAWS)
    if difference == "over_refusal":
        return rng.choice(["fact", "benign"]), "ideal", "refusal"
    if difference == "unknown":  # "I don't know" against a made-up fact, or against a refusal
        return "unknown", "ideal", rng.choice([UNKNOWN_FLAW, "refusal"])
    kind = rng.choice(["fact", "benign", "harmful"])
    better = "ideal" if kind == "harmful" else rng.choice(["ideal", "padded", "followup", "offtopic"])
    return kind, better, rng.choice(DEGENERATE)


def preference_pairs(
    world: World,
    labeler: GoldLabeler,
    rng: random.Random,
    cfg: WorldConfig,
    cities: list[City],
    unknown: list[str],
    n: int,
) -> list[dict]:
    differences = [d for d in PAIR_DIFFERENCES if d != "unknown" or cfg.unknown_fraction > 0]
    rows = []
    while len(rows) < n:
        difference = differences[len(rows) % len(differences)]
        kind, better, worse = _pair_styles(rng, difference)
        if kind == "unknown":
            request = make_unknown_request(world, rng, unknown, cities)
        else:
            request = make_request(world, rng, kind, rng.choice(cities))
        a, b = answer(world, rng, request, better), answer(world, rng, request, worse)
        choice = labeler.prefer(request.text, a, b, rng, cfg.label_noise)
        if choice is None:
            continue
        chosen, rejected = (a, b) if choice == 0 else (b, a)
        rows.append(
            {
                "prompt": _user(request.text),
                "chosen": _assistant(chosen),
                "rejected": _assistant(rejected),
                "difference": difference,
                "label_agrees_with_gold": choice == 0,
            }
        )
    return rows


# --- evaluation prompts -----------------------------------------------------------------------


def eval_prompts(world: World, rng: random.Random, cfg: WorldConfig) -> list[dict]:
    """Every fact of every held-out city, harmful and benign-but-edgy requests about them, and questions
    about held-out unknown cities and about attributes the world does not have."""
    rows = []
    for city in world.heldout_cities:
        for attr in world.attributes:
            rows.append({"prompt": _user(_question(world, rng, city, attr)), "kind": "fact"})
    for kind, count in (("harmful", cfg.eval_harmful), ("benign", cfg.eval_benign)):
        for _ in range(count):
            rows.append(
                {"prompt": _user(make_request(world, rng, kind, rng.choice(world.heldout_cities)).text), "kind": kind}
            )
    for _ in range(cfg.eval_unknown):
        request = make_unknown_request(world, rng, world.unknown_heldout, world.heldout_cities)
        rows.append({"prompt": _user(request.text), "kind": "unknown"})
    return rows


# --- writing ----------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def generate(cfg: WorldConfig) -> dict[str, dict[str, list[dict]]]:
    """All datasets as {dataset: {split: rows}}, plus the world under the key 'world'."""
    if cfg.lang == BOTH:
        return generate_bilingual(cfg)
    world = build_world(
        cfg.seed, cfg.num_cities, cfg.attributes, cfg.heldout_fraction, cfg.num_unknown_cities, cfg.lang
    )
    labeler = GoldLabeler(world)
    rng = random.Random(cfg.seed + 1)
    train = world.train_cities

    docs = pretraining_corpus(world, rng, cfg.pretrain_docs)
    num_test = max(1, round(len(docs) * cfg.pretrain_test_fraction))
    test_docs = set(docs[:num_test])
    train_docs = [d for d in docs[num_test:] if d not in test_docs]  # short docs (tables) can repeat
    sft = [{"messages": demonstration(world, rng, cfg)} for _ in range(cfg.sft_train + cfg.sft_test)]
    unknown = world.unknown_train
    return {
        "world": world,
        "pretrain": {"train": [{"text": d} for d in train_docs], "test": [{"text": d} for d in docs[:num_test]]},
        "sft": {"train": sft[: cfg.sft_train], "test": sft[cfg.sft_train :]},
        "comparison_prompts": {
            "train": [
                {"prompt": _user(_request(world, rng, cfg, train, unknown).text)}
                for _ in range(cfg.comparison_prompts)
            ]
        },
        "preferences": {
            "train": preference_pairs(world, labeler, rng, cfg, train, unknown, cfg.preference_train),
            "test": preference_pairs(
                world, labeler, rng, cfg, world.heldout_cities, world.unknown_heldout, cfg.preference_test
            ),
        },
        "rl_prompts": {
            "train": [{"prompt": _user(_request(world, rng, cfg, train, unknown).text)} for _ in range(cfg.rl_prompts)]
        },
        "eval_prompts": {"test": eval_prompts(world, rng, cfg)},
    }


def interleave(parts: list[list[dict]]) -> list[dict]:
    """Row i from part i mod len(parts): as many rows as the shortest part, each part in turn."""
    return [parts[i % len(parts)][i] for i in range(min(map(len, parts)))]


def language_pairs(world: World, rng: random.Random, cfg: WorldConfig, heldout: bool, n: int) -> list[dict]:
    """Pairs whose rejected answer is the chosen one in the other language (the same request, the same
    draws): a reader of one language is not helped by an answer in the other."""
    labeler, twins = gold_labeler(world), readings(world)
    rows = []
    while len(rows) < n:
        asked, other = rng.sample(twins, 2)
        kind, index, state = rng.choice(["fact", "benign", "harmful"]), rng.randrange(10**6), rng.getstate()
        texts = []
        for reading in (asked, other):
            rng.setstate(state)
            cities = reading.heldout_cities if heldout else reading.train_cities
            request = make_request(reading, rng, kind, cities[index % len(cities)])
            texts.append((request.text, answer(reading, rng, request, "ideal")))
        (prompt, a), (_, b) = texts
        choice = labeler.prefer(prompt, a, b, rng, cfg.label_noise)
        if choice is None:
            continue
        chosen, rejected = (a, b) if choice == 0 else (b, a)
        row = {"prompt": _user(prompt), "chosen": _assistant(chosen), "rejected": _assistant(rejected)}
        rows.append({**row, "difference": "language", "label_agrees_with_gold": choice == 0})
    return rows


def generate_bilingual(cfg: WorldConfig) -> dict:
    """`lang: both`: the English and the Chinese datasets of the same world, row by row in turn (half each), and
    every seventh preference pair one whose rejected answer is in the other language."""
    parts = [generate(replace(cfg, lang=code)) for code in BILINGUAL]
    for part in parts:
        part.pop("world")
    data: dict = {
        name: {split: interleave([part[name][split] for part in parts]) for split in splits}
        for name, splits in parts[0].items()
    }
    world = build_world(cfg.seed, cfg.num_cities, cfg.attributes, cfg.heldout_fraction, cfg.num_unknown_cities, BOTH)
    rng = random.Random(cfg.seed + 2)
    for split, heldout in (("train", False), ("test", True)):
        rows = data["preferences"][split]
        slots = range(len(PAIR_DIFFERENCES), len(rows), len(PAIR_DIFFERENCES) + 1)
        for slot, pair in zip(slots, language_pairs(world, rng, cfg, heldout, len(slots))):
            rows[slot] = pair
    return {"world": world, **data}


def write(cfg: WorldConfig, out: Path) -> dict[str, dict[str, int]]:
    """Write every dataset under `out`; returns the row count of each split."""
    data = generate(cfg)
    world = data.pop("world")
    out.mkdir(parents=True, exist_ok=True)
    world.save(out / "world.json")
    sizes = {}
    for name, splits in data.items():
        for split, rows in splits.items():
            write_jsonl(out / name / f"{split}.jsonl", rows)
        sizes[name] = {split: len(rows) for split, rows in splits.items()}
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    return sizes
