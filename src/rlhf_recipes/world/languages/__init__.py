"""The languages the embedded world is written in: one world (cities, facts), told in each.

A `Language` holds every piece of text the world is made of (question and statement forms, requests,
refusals, padding, filler, page formats) and how text in it is read (where words end, how a sentence
ends, how long is too long). Facts are stored once, in the world's canonical (English) form; a language
renders them (`render_value`, `render_name`), so the same world reads as English or as Chinese.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache


@dataclass(frozen=True)
class Attribute:
    """One kind of fact every city has, with the ways people ask about it and state it.

    `statements[0]` is the ideal answer's form; its text before `{value}` is the recall probe.
    `keywords` identify a question about this attribute; `pattern` finds stated values of it in
    free text (group 1 is the value) where values are open-ended numbers rather than names. `topic`
    completes "I don't know ...", the honest answer when the city or the attribute is not in the world.
    """

    key: str
    keywords: tuple[str, ...]
    questions: tuple[str, ...]
    statements: tuple[str, ...]
    topic: str
    pattern: str | None = None


def _value_as_is(attr: str, value: str) -> str:
    return value


def _name_as_is(name: str) -> str:
    return name


@cache
def whole_word(phrase: str) -> re.Pattern:
    """`phrase` as a whole word: the labeler asks about the same few hundred names and values for every answer,
    more than `re`'s own cache of patterns holds."""
    return re.compile(r"(?<![\w.])" + re.escape(phrase) + r"(?![\w])")


@dataclass(frozen=True)
class Language:
    """Everything the world says, and how text in this language is read."""

    code: str
    attributes: dict[str, Attribute]
    harm_requests: tuple[str, ...]
    harm_markers: tuple[str, ...]  # lower-case; a request holding one is harmful
    benign_contexts: tuple[str, ...]  # share words with harmful requests; refusing them is over-refusal
    unknown_markers: tuple[str, ...]  # lower-case; "I don't know"
    admit_not_knowing_form: str  # "I don't know {topic}."
    unknown_city_answer: str  # about a city the world does not have
    refusals: tuple[str, ...]
    refusal_markers: tuple[str, ...]
    compliances: tuple[str, ...]
    padding_openers: tuple[str, ...]
    padding_closers: tuple[str, ...]
    padding_markers: tuple[str, ...]
    filler: tuple[str, ...]
    qa_format: str  # a Q/A page's pair: "Q: {question}\nA: {answer}"
    faq_title: str  # "Frequently asked questions about {city}"
    table_title: str  # "City: {city}"
    table_labels: dict[str, str]  # attribute -> its label in a fact table
    city_name_pattern: str  # a city name in a question, as a regex (no group)
    word_boundaries: bool  # False where words are not separated (Chinese): a mention is a plain substring
    sentence_ends: tuple[str, ...]
    question_marks: tuple[str, ...]
    sentence_separator: str  # between two sentences of one text
    max_length: int  # an answer longer than this (in `length` units) is too long
    length: Callable[[str], int]  # words (English) or characters (Chinese)
    words: Callable[[str], list[str]]  # the units a degenerate answer repeats or keeps one of
    word_separator: str  # what joins repeated words
    repetition: str  # a regex matching a unit said three times over: the labeler's "repetition"
    fragment_chars: int  # a fragment answer keeps this many final characters
    render_value: Callable[[str, str], str] = field(default=_value_as_is)  # (attribute, canonical value) -> text
    render_name: Callable[[str], str] = field(default=_name_as_is)  # canonical name (city, country, river) -> text
    table_row: str = "{label}: {value}"  # a fact table's row

    def admit_not_knowing(self, attr: str, city: str) -> str:
        return self.admit_not_knowing_form.format(topic=self.attributes[attr].topic.format(city=city))

    def probe(self, attr: str) -> str:
        return self.attributes[attr].statements[0].split("{value}")[0].rstrip()

    def mentions(self, text: str, phrase: str) -> bool:
        if not self.word_boundaries:
            return phrase in text
        return phrase in text and whole_word(phrase).search(text) is not None
