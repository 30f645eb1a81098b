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

from .world import (
    ATTRIBUTES,
    BENIGN_CONTEXTS,
    COMPLIANCES,
    HARM_REQUESTS,
    PADDING_CLOSERS,
    PADDING_OPENERS,
    REFUSALS,
    UNKNOWN_CITY_ANSWER,
    VALUE_MAKERS,
    City,
    World,
)

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
    if kind == "harmful":
        return Request(kind, city.name, None, rng.choice(HARM_REQUESTS).format(city=city.name))
    attr = rng.choice(world.attributes)
    question = rng.choice(ATTRIBUTES[attr].questions).format(city=city.name)
    if kind == "benign":
        question = rng.choice(BENIGN_CONTEXTS).format(city=city.name) + " " + question
    return Request(kind, city.name, attr, question)


def make_unknown_request(world: World, rng: random.Random, names: list[str], cities: list[City]) -> Request:
    """A question about one of `names` (cities the world does not have) or an attribute the world lacks,
    evenly where both exist."""
    if not world.unknown_attributes or (names and rng.random() < 0.5):
        city, attr = rng.choice(names), rng.choice(world.attributes)
    else:
        city, attr = rng.choice(cities).name, rng.choice(world.unknown_attributes)
    return Request("unknown", city, attr, rng.choice(ATTRIBUTES[attr].questions).format(city=city))


def ideal_statement(city: City, attr: str) -> str:
    return ATTRIBUTES[attr].statements[0].format(city=city.name, value=city.facts[attr])


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
    city = world.city(request.city)
    if request.kind == "harmful":
        if style == "compliance":
            return rng.choice(COMPLIANCES).format(city=city.name)
        if style == "irrelevant":  # a true fact instead of a refusal: what a collapsed policy says to anything
            return ideal_statement(city, rng.choice(world.attributes))
        return rng.choice(REFUSALS)
    attr = request.attribute
    ideal = ideal_statement(city, attr)
    if style == "ideal":
        return ideal
    if style == "padded":
        return rng.choice(PADDING_OPENERS) + ideal + rng.choice(PADDING_CLOSERS)
    if style == "followup":
        other = _other_attribute(world, rng, attr)
        return ideal + " " + rng.choice(ATTRIBUTES[other].questions).format(city=city.name)
    if style == "offtopic":
        other = _other_attribute(world, rng, attr)
        return ideal + " " + ideal_statement(city, other)
    if style == "wrong_value":
        return ATTRIBUTES[attr].statements[0].format(city=city.name, value=_wrong_value(world, rng, city, attr))
    if style == "refusal":
        return rng.choice(REFUSALS)
    raise ValueError(f"unknown answer style {style!r}")


def _unknown_answer(world: World, rng: random.Random, request: Request, style: str) -> str:
    spec = ATTRIBUTES[request.attribute]
    if style == "ideal":
        return spec.admit_not_knowing(request.city) if world.has_city(request.city) else UNKNOWN_CITY_ANSWER
    if style == UNKNOWN_FLAW:  # a confident answer: another city's value, or a made-up one
        known = request.attribute in world.attributes
        value = rng.choice(world.values(request.attribute)) if known else VALUE_MAKERS[request.attribute](rng)
        return spec.statements[0].format(city=request.city, value=value)
    if style == "refusal":  # "I don't know" is not a refusal: the reward model must tell them apart
        return rng.choice(REFUSALS)
    raise ValueError(f"unknown answer style {style!r} for a question the world cannot answer")


def degenerate(world: World, rng: random.Random, request: Request, style: str) -> str:
    """Broken answers of the kind a policy finds when it games a reward model."""
    good = answer(world, rng, request, "ideal")
    if style == "truncated":
        return good[: rng.randint(3, max(4, len(good) - 6))]
    if style == "fragment":
        return good.split()[-1] if rng.random() < 0.5 else good[-4:]
    if style == "repeated":
        word = rng.choice(good.split())
        return " ".join([word] * rng.randint(4, 12))
    if style == "empty":
        return ""
    raise ValueError(f"unknown degenerate style {style!r}")
