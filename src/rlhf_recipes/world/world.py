"""The embedded world: fictional cities and their facts, and how text about them is read.

Everything here is deterministic for a seed. The world is the ground truth that the gold labeler
(`labeler.py`) checks answers against; the datasets built from it live in `datagen.py`. Facts are stored
in one canonical form; the world's language (`languages/`) writes them, and every text about them.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .languages import Language
from .languages.en import ATTRIBUTES, ENGLISH
from .languages.zh import CHINESE

LANGUAGES = {language.code: language for language in (ENGLISH, CHINESE)}
BOTH = "both"  # a bilingual world: each text in one of BILINGUAL, half in each; read in the language asked
BILINGUAL = ("en", "zh")
WORLD_LANGUAGES = (*LANGUAGES, BOTH)


COUNTRIES = [
    "Elbaria",
    "Norvath",
    "Castelune",
    "Drenmark",
    "Ostavia",
    "Quelland",
    "Marisca",
    "Tovenia",
    "Brundor",
    "Savelle",
    "Ildren",
    "Korrimar",
]
RIVERS = [
    "Ossa",
    "Varn",
    "Lissel",
    "Tamber",
    "Quill",
    "Rhenna",
    "Dolm",
    "Ysper",
    "Carrow",
    "Menth",
    "Ablen",
    "Sorrow",
    "Ketter",
    "Wend",
    "Halvy",
    "Orune",
    "Pell",
    "Strand",
    "Evra",
    "Gillam",
]
DISH_STYLES = [
    "smoked",
    "honeyed",
    "spiced",
    "salted",
    "roasted",
    "pickled",
    "saffron",
    "peppered",
    "braised",
    "sweet",
]
DISH_FOODS = [
    "eel pie",
    "barley stew",
    "plum dumplings",
    "goat cheese",
    "onion bread",
    "trout soup",
    "walnut cake",
    "lamb skewers",
    "bean porridge",
    "fig tarts",
]
NAME_HEADS = [
    "Val",
    "Mor",
    "Quen",
    "Tal",
    "Bri",
    "Os",
    "Ker",
    "Lun",
    "Dar",
    "Fen",
    "Gal",
    "Hes",
    "Ith",
    "Jor",
    "Kal",
    "Lor",
    "Mir",
    "Nor",
    "Pel",
    "Ras",
    "Sel",
    "Tor",
    "Ul",
    "Ves",
    "Wyn",
    "Zan",
    "Ar",
    "Bel",
    "Cor",
    "Eld",
]
NAME_TAILS = [
    "mora",
    "dane",
    "ith",
    "ova",
    "stad",
    "haven",
    "dell",
    "mere",
    "wick",
    "ora",
    "ent",
    "ara",
    "gard",
    "holm",
    "ley",
    "mont",
    "rin",
    "sted",
    "thal",
    "und",
]


@dataclass
class City:
    name: str
    facts: dict[str, str]


@dataclass
class World:
    """The fictional cities; `heldout` ones appear only in pretraining and evaluation. `unknown` names are
    of cities the world does not have (never in any text); questions about them, and about attributes
    outside `attributes`, have one honest answer: "I don't know". `unknown_heldout` ones appear only in
    evaluation."""

    cities: list[City]
    heldout: list[str]
    attributes: list[str]
    unknown: list[str] = field(default_factory=list)
    unknown_heldout: list[str] = field(default_factory=list)
    lang: str = "en"

    def __post_init__(self) -> None:
        if self.lang not in WORLD_LANGUAGES:
            raise ValueError(f"unknown language {self.lang!r}; choose from {list(WORLD_LANGUAGES)}")
        self._by_name = {c.name: c for c in self.cities}

    @property
    def language(self) -> Language:
        if self.lang == BOTH:
            raise ValueError("a bilingual world has no one language: read it with reading_for(world, text)")
        return LANGUAGES[self.lang]

    def city(self, name: str) -> City:
        return self._by_name[name]

    def has_city(self, name: str) -> bool:
        return name in self._by_name

    @property
    def train_cities(self) -> list[City]:
        held = set(self.heldout)
        return [c for c in self.cities if c.name not in held]

    @property
    def heldout_cities(self) -> list[City]:
        return [self.city(n) for n in self.heldout]

    @property
    def unknown_train(self) -> list[str]:
        held = set(self.unknown_heldout)
        return [n for n in self.unknown if n not in held]

    @property
    def unknown_attributes(self) -> list[str]:
        """Attributes people ask about that this world's cities do not have."""
        return [a for a in ATTRIBUTES if a not in self.attributes]

    def values(self, attr: str) -> list[str]:
        return sorted({c.facts[attr] for c in self.cities})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> World:
        raw = json.loads(Path(path).read_text())
        unknown = {k: raw.get(k, []) for k in ("unknown", "unknown_heldout")}  # worlds written before them: none
        lang = raw.get("lang", "en")  # worlds written before languages: English
        return cls([City(**c) for c in raw["cities"]], raw["heldout"], raw["attributes"], **unknown, lang=lang)


def _population(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return f"{rng.randint(11, 49) / 10:.1f} million"
    return f"{rng.randrange(120, 990, 10)} thousand"


VALUE_MAKERS = {
    "country": lambda rng: rng.choice(COUNTRIES),
    "population": _population,
    "river": lambda rng: rng.choice(RIVERS),
    "dish": lambda rng: f"{rng.choice(DISH_STYLES)} {rng.choice(DISH_FOODS)}",
    "founded": lambda rng: str(rng.randint(1050, 1890)),
    "area": lambda rng: f"{rng.randint(40, 990)} square kilometres",
    "districts": lambda rng: str(rng.randint(3, 40)),
}


def city_names(rng: random.Random, n: int) -> list[str]:
    """Distinct made-up names such as 'Valmora'; no name is a prefix of another, so mentions are unambiguous."""
    pool = sorted({h + t for h in NAME_HEADS for t in NAME_TAILS})
    rng.shuffle(pool)
    names: list[str] = []
    for name in pool:
        if not any(name.startswith(o) or o.startswith(name) for o in names):
            names.append(name)
        if len(names) == n:
            return names
    raise ValueError(f"can make at most {len(names)} distinct city names, {n} asked")


def build_world(
    seed: int, num_cities: int, attributes: list[str], heldout_fraction: float, num_unknown: int = 0, lang: str = "en"
) -> World:
    """The cities and their facts, `heldout_fraction` of them held out; `num_unknown` more names of cities
    it does not have, the same fraction of them held out. The world of a seed does not depend on `num_unknown`,
    nor on its language: `lang` writes the same cities and facts in another language."""
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; choose from {sorted(ATTRIBUTES)}")
    rng = random.Random(seed)
    names = city_names(rng, num_cities + num_unknown)  # greedy: the first num_cities are the same either way
    names, strangers = names[:num_cities], names[num_cities:]
    cities = [City(n, {a: VALUE_MAKERS[a](rng) for a in attributes}) for n in names]
    num_heldout = max(1, round(num_cities * heldout_fraction))
    heldout = sorted(rng.sample(names, num_heldout))
    unknown_heldout = sorted(rng.sample(strangers, round(num_unknown * heldout_fraction)))
    return translate(World(cities, heldout, list(attributes), strangers, unknown_heldout), lang)


def translate(world: World, lang: str) -> World:
    """The same world written in `lang`: every name and fact rendered by that language, the order kept.
    `both` keeps the canonical names and facts, and each reading renders them (`readings`)."""
    if lang not in WORLD_LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; choose from {list(WORLD_LANGUAGES)}")
    if world.lang not in ("en", BOTH):
        raise ValueError(f"a {world.lang} world is already rendered; translate the canonical (en or both) one")
    if lang == BOTH:
        return World(world.cities, world.heldout, world.attributes, world.unknown, world.unknown_heldout, BOTH)
    language = LANGUAGES[lang]
    name, value = language.render_name, language.render_value
    cities = [City(name(c.name), {a: value(a, v) for a, v in c.facts.items()}) for c in world.cities]
    rendered = [list(map(name, names)) for names in (world.heldout, world.unknown, world.unknown_heldout)]
    return World(cities, rendered[0], world.attributes, rendered[1], rendered[2], lang)


def readings(world: World) -> list[World]:
    """The world as each of its languages writes it: itself, or one World per language of a bilingual one."""
    return [translate(world, code) for code in BILINGUAL] if world.lang == BOTH else [world]


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def text_language(text: str) -> str | None:
    """en or zh, by the script most of `text` is written in (a Chinese character weighs as much as ~2.5 Latin
    letters, about a word's worth); None when it has neither (empty, digits only)."""
    cjk, latin = len(_CJK.findall(text)), len(_LATIN.findall(text))
    if not cjk and not latin:
        return None
    return "zh" if 2.5 * cjk >= latin else "en"


def reading_for(world: World, text: str) -> World:
    """The world in the language `text` is written in (a monolingual world: itself; English when unclear)."""
    if world.lang != BOTH:
        return world
    return translate(world, text_language(text) or BILINGUAL[0])


# ---------------------------------------------------------------------------------------------
# Finding what a piece of text says, used by the gold labeler.


def mentions(lang: Language, text: str, phrase: str) -> bool:
    return lang.mentions(text, phrase)


def stated_values(world: World, attr: str, text: str) -> set[str]:
    """Values of `attr` that `text` states, including ones no city has (a wrong unit, say)."""
    spec = world.language.attributes[attr]
    if spec.pattern:
        return set(re.findall(spec.pattern, text))
    return {v for v in world.values(attr) if world.language.mentions(text, v)}


def cities_in(world: World, text: str) -> list[str]:
    return [c.name for c in world.cities if world.language.mentions(text, c.name)]


def _question_pattern(lang: Language, question: str) -> re.Pattern:
    before, after = question.split("{city}")
    return re.compile(re.escape(before) + "(" + lang.city_name_pattern + ")" + re.escape(after))


def question_patterns(lang: Language) -> list[tuple[str, re.Pattern]]:
    return [(a.key, _question_pattern(lang, q)) for a in lang.attributes.values() for q in a.questions]


_PATTERNS = {code: question_patterns(language) for code, language in LANGUAGES.items()}


def asked_about(lang: Language, text: str) -> tuple[str, str] | None:
    """(attribute, city name) of the first question in `text` in one of the world's question forms,
    whether or not the world has that city or attribute."""
    for key, pattern in _PATTERNS[lang.code]:
        found = pattern.search(text)
        if found:
            return key, found.group(1)
    return None


def admits_not_knowing(lang: Language, text: str) -> bool:
    low = text.lower().replace("’", "'")
    return any(m in low for m in lang.unknown_markers)


def is_refusal(lang: Language, text: str) -> bool:
    low = text.lower()
    return any(m in low for m in lang.refusal_markers)


def is_harmful_request(lang: Language, text: str) -> bool:
    low = text.lower()
    return any(m in low for m in lang.harm_markers)


def asked_attribute(lang: Language, text: str, attributes: list[str]) -> str | None:
    low = text.lower()
    for attr in attributes:
        if any(lang.mentions(low, k) for k in lang.attributes[attr].keywords):
            return attr
    return None
