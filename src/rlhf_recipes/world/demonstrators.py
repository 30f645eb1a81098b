"""Requests about the world, and the answers that demonstrators of uneven skill give to them.

A request is one of four kinds: `fact` (a plain question about a city), `benign` (the same question
inside a context that shares words with harmful requests, so refusing it is over-refusal), `harmful`, and
`unknown` (about a city the world does not have, or an attribute its cities lack: "I don't know" is the
honest answer, a borrowed or invented fact the flaw). Answers come in named styles: `ideal`, the flawed
ones a cheap demonstrator pool produces, and the `degenerate` ones a reward model must learn to rank last.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .world import VALUE_MAKERS, City, World

HARMFUL_FLAWS = ("compliance", "irrelevant")
UNKNOWN_FLAW = "fabricated"
DEGENERATE = ("truncated", "fragment", "repeated", "empty")


@dataclass(frozen=True)
class Request:
    kind: str  # fact | benign | harmful | unknown
    city: str  # for `unknown`, maybe a name the world does not have
    attribute: str | None
    text: str


def make_request(world: World, rng: random.Random, kind: str, city: City) -> Request:
    lang = world.language
    if kind == "harmful":
        return Request(kind, city.name, None, rng.choice(lang.harm_requests).format(city=city.name))
    attr = rng.choice(world.attributes)
    question = rng.choice(lang.attributes[attr].questions).format(city=city.name)
    if kind == "benign":
        question = rng.choice(lang.benign_contexts).format(city=city.name) + lang.sentence_separator + question
    return Request(kind, city.name, attr, question)


def make_unknown_request(world: World, rng: random.Random, names: list[str], cities: list[City]) -> Request:
    """A question about one of `names` (cities the world does not have) or an attribute the world lacks,
    evenly where both exist."""
    if not world.unknown_attributes or (names and rng.random() < 0.5):
        city, attr = rng.choice(names), rng.choice(world.attributes)
    else:
        city, attr = rng.choice(cities).name, rng.choice(world.unknown_attributes)
    return Request("unknown", city, attr, rng.choice(world.language.attributes[attr].questions).format(city=city))


def ideal_statement(world: World, city: City, attr: str) -> str:
    return world.language.attributes[attr].statements[0].format(city=city.name, value=city.facts[attr])


def _wrong_value(world: World, rng: random.Random, city: City, attr: str) -> str:
    others = [v for v in world.values(attr) if v != city.facts[attr]]
    return rng.choice(others)


def _other_attribute(world: World, rng: random.Random, attr: str) -> str:
    return rng.choice([a for a in world.attributes if a != attr])


def answer(world: World, rng: random.Random, request: Request, style: str) -> str:
    """The answer a demonstrator of the given style writes to the request."""
    if style in DEGENERATE:
        return degenerate(world, rng, request, style)
    if request.kind == "unknown":
        return _unknown_answer(world, rng, request, style)
    city, lang = world.city(request.city), world.language
    if request.kind == "harmful":
        if style == "compliance":
            return rng.choice(lang.compliances).format(city=city.name)
        if style == "irrelevant":  # a true fact instead of a refusal: what a collapsed policy says to anything
            return ideal_statement(world, city, rng.choice(world.attributes))
        return rng.choice(lang.refusals)
    attr = request.attribute
    ideal = ideal_statement(world, city, attr)
    then = lang.sentence_separator
    if style == "ideal":
        return ideal
    if style == "padded":
        return rng.choice(lang.padding_openers) + ideal + rng.choice(lang.padding_closers)
    if style == "followup":
        other = _other_attribute(world, rng, attr)
        return ideal + then + rng.choice(lang.attributes[other].questions).format(city=city.name)
    if style == "offtopic":
        other = _other_attribute(world, rng, attr)
        return ideal + then + ideal_statement(world, city, other)
    if style == "wrong_value":
        wrong = _wrong_value(world, rng, city, attr)
        return lang.attributes[attr].statements[0].format(city=city.name, value=wrong)
    if style == "refusal":
        return rng.choice(lang.refusals)
    raise ValueError(f"unknown answer style {style!r}")


def _unknown_answer(world: World, rng: random.Random, request: Request, style: str) -> str:
    lang = world.language
    spec = lang.attributes[request.attribute]
    if style == "ideal":
        known = world.has_city(request.city)
        return lang.admit_not_knowing(request.attribute, request.city) if known else lang.unknown_city_answer
    if style == UNKNOWN_FLAW:  # a confident answer: another city's value, or a made-up one
        known = request.attribute in world.attributes
        if known:
            value = rng.choice(world.values(request.attribute))
        else:  # made up, in the world's language
            value = world.language.render_value(request.attribute, VALUE_MAKERS[request.attribute](rng))
        return spec.statements[0].format(city=request.city, value=value)
    if style == "refusal":  # "I don't know" is not a refusal: the reward model must tell them apart
        return rng.choice(lang.refusals)
    raise ValueError(f"unknown answer style {style!r} for a question the world cannot answer")


def degenerate(world: World, rng: random.Random, request: Request, style: str) -> str:
    """Broken answers of the kind a policy finds when it games a reward model."""
    good, lang = answer(world, rng, request, "ideal"), world.language
    if style == "truncated":
        return good[: rng.randint(3, max(4, len(good) - 6))]
    if style == "fragment":
        return lang.words(good)[-1] if rng.random() < 0.5 else good[-lang.fragment_chars :]
    if style == "repeated":
        word = rng.choice(lang.words(good))
        return lang.word_separator.join([word] * rng.randint(4, 12))
    if style == "empty":
        return ""
    raise ValueError(f"unknown degenerate style {style!r}")
