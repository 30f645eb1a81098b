"""The Chinese language pack: every form English has, in natural Chinese, and readable back without spaces."""

import random
import re

import pytest

from rlhf_recipes.world import world as canon
from rlhf_recipes.world.languages.en import ENGLISH
from rlhf_recipes.world.languages.zh import CHINESE, NAME_HEADS, NAME_TAILS, render_name, render_value

ZH = CHINESE
ALL_NAMES = [h + t for h in canon.NAME_HEADS for t in canon.NAME_TAILS]
RENDERED = {name: render_name(name) for name in ALL_NAMES}
ASCII_PUNCTUATION = "?.,:!;"


def _world(seed):
    return canon.build_world(seed, 64, list(canon.ATTRIBUTES), 0.2, 16)


def _statement(form, city, attr):
    return form.format(city=render_name(city.name), value=render_value(attr, city.facts[attr]))


def _pack_texts(city):
    """Every text of the pack about `city` (a rendered name), by the part of the pack it comes from."""
    attrs = ZH.attributes.values()
    return {
        "questions": [q.format(city=city) for a in attrs for q in a.questions],
        "statements": [s.format(city=city, value="") for a in attrs for s in a.statements],
        "not_knowing": [ZH.admit_not_knowing(a.key, city) for a in attrs] + [ZH.unknown_city_answer],
        "harm_requests": [r.format(city=city) for r in ZH.harm_requests],
        "benign_contexts": [c.format(city=city) for c in ZH.benign_contexts],
        "refusals": list(ZH.refusals),
        "compliances": [c.format(city=city) for c in ZH.compliances],
        "padding": list(ZH.padding_openers + ZH.padding_closers),
        "filler": [f.format(city=city) for f in ZH.filler],
        "pages": [
            ZH.qa_format.format(question="", answer=""),
            ZH.faq_title.format(city=city),
            ZH.table_title.format(city=city),
            *(ZH.table_row.format(label=label, value="") for label in ZH.table_labels.values()),
        ],
        "values": sorted(_rendered_values()),
    }


def _rendered_values():
    return (
        {render_value("country", c) for c in canon.COUNTRIES}
        | {render_value("river", r) for r in canon.RIVERS}
        | {render_value("dish", f"{s} {f}") for s in canon.DISH_STYLES for f in canon.DISH_FOODS}
    )


def _outside(texts, *parts):
    return [t for part, group in texts.items() if part not in parts for t in group]


def test_every_english_attribute_has_three_questions_and_three_statements():
    assert list(ZH.attributes) == list(ENGLISH.attributes) == list(canon.ATTRIBUTES)
    for key, attr in ZH.attributes.items():
        assert attr.key == key and len(attr.questions) == 3 and len(attr.statements) == 3
        assert all(q.count("{city}") == 1 and q.endswith("？") for q in attr.questions)
        assert all(s.count("{city}") == 1 and s.count("{value}") == 1 and s.endswith("。") for s in attr.statements)
        assert attr.topic.count("{city}") == 1 and attr.keywords
        assert bool(attr.pattern) == bool(ENGLISH.attributes[key].pattern)
    assert set(ZH.table_labels) == set(ENGLISH.attributes)


def test_the_issues_question_and_late_values_in_ideal_answers():
    assert "{city}的常驻人口有多少？" in ZH.attributes["population"].questions
    assert ZH.probe("population") == "{city}的常驻人口为"
    # the probe is nearly the whole ideal answer, and no probe is the start of another attribute's
    for attr in ZH.attributes.values():
        assert len(attr.statements[0].split("{value}")[1]) <= 3
    probes = [ZH.probe(a) for a in ZH.attributes]
    assert not [(p, q) for p in probes for q in probes if p != q and q.startswith(p)]


def test_forms_use_full_width_punctuation_only():
    texts = _pack_texts(RENDERED["Valmora"])
    assert not [t for t in _outside(texts, "values") if any(c in ASCII_PUNCTUATION for c in t)]
    assert ZH.qa_format == "问：{question}\n答：{answer}" and ZH.table_row == "{label}：{value}"


@pytest.mark.parametrize(
    ("attr", "canonical", "rendered"),
    [
        ("population", "1.4 million", "140万"),
        ("population", "250 thousand", "25万"),
        ("population", "1.5 million", "150万"),
        ("population", "4.9 million", "490万"),
        ("population", "125 thousand", "12.5万"),
        ("area", "320 square kilometres", "320平方公里"),
        ("founded", "1519", "1519"),
        ("districts", "12", "12"),
        ("country", "Elbaria", "埃尔巴里亚"),
        ("river", "Varn", "瓦恩"),
        ("dish", "smoked eel pie", "烟熏鳗鱼派"),
    ],
)
def test_render_value(attr, canonical, rendered):
    assert render_value(attr, canonical) == rendered


def test_every_canonical_value_and_name_part_has_a_rendering():
    rng = random.Random(0)
    for attr, make in canon.VALUE_MAKERS.items():  # the values the world makes up, for unknown attributes too
        for _ in range(200):
            rendered = render_value(attr, make(rng))
            assert rendered and not re.search(r"[A-Za-z ]", rendered)
    assert len({render_value("country", c) for c in canon.COUNTRIES}) == len(canon.COUNTRIES)
    assert len({render_value("river", r) for r in canon.RIVERS}) == len(canon.RIVERS)
    assert all("河" not in render_value("river", r) for r in canon.RIVERS)  # the sentences add it
    assert {render_name(c) for c in canon.COUNTRIES} == {render_value("country", c) for c in canon.COUNTRIES}
    assert {render_name(r) for r in canon.RIVERS} == {render_value("river", r) for r in canon.RIVERS}
    for canonical, table in ((canon.NAME_HEADS, NAME_HEADS), (canon.NAME_TAILS, NAME_TAILS)):
        assert list(table) == canonical and all(1 <= len(part) <= 2 for part in table.values())


def test_city_names_are_distinct_and_none_holds_another():
    """Chinese mentions are plain substrings, so no rendered name may hold another (English: no prefixes)."""
    assert len(set(RENDERED.values())) == len(ALL_NAMES)
    english_related = {(a, b) for a in ALL_NAMES for b in ALL_NAMES if a != b and b.startswith(a)}
    holds = [(a, b) for a in ALL_NAMES for b in ALL_NAMES if a != b and RENDERED[a] in RENDERED[b]]
    assert not [pair for pair in holds if pair not in english_related]
    assert len(canon.city_names(random.Random(0), 300)) == 300


def test_names_and_values_never_hide_in_other_text():
    values = _rendered_values()
    for value in values:
        assert not [other for other in values if other != value and value in other]
        assert not [name for name in RENDERED.values() if value in name or name in value]
    texts = _pack_texts("")
    for name in RENDERED.values():
        assert not [t for t in _outside(texts, "values") if name in t]


def test_patterns_find_each_rendered_value_in_each_statement():
    for seed in range(4):
        world = _world(seed)
        names = [render_name(c.name) for c in world.cities]
        for city in world.cities:
            for attr in ZH.attributes.values():
                want = render_value(attr.key, city.facts[attr.key])
                others = {render_value(attr.key, v) for v in world.values(attr.key)}
                for form in attr.statements:
                    text = _statement(form, city, attr.key)
                    assert [n for n in names if ZH.mentions(text, n)] == [render_name(city.name)]
                    if attr.pattern:
                        assert re.findall(attr.pattern, text) == [want], (text, attr.pattern)
                    else:
                        assert {v for v in others if ZH.mentions(text, v)} == {want}


def test_every_text_about_a_city_mentions_that_city_only():
    world = _world(0)
    names = [render_name(n) for n in [c.name for c in world.cities] + world.unknown]
    for name in names:
        texts = _pack_texts(name)
        asked = [c + q for c in ("", *texts["benign_contexts"]) for q in texts["questions"]]
        for text in asked + _outside(texts, "values"):
            if name in text:
                assert [n for n in names if ZH.mentions(text, n)] == [name], text


def test_city_name_pattern_captures_each_name_in_each_question():
    contexts = ("", *ZH.benign_contexts)
    for name in RENDERED.values():
        for attr in ZH.attributes.values():
            for question in attr.questions:
                before, after = question.split("{city}")
                pattern = re.compile(re.escape(before) + "(" + ZH.city_name_pattern + ")" + re.escape(after))
                for context in contexts:
                    text = context.format(city=name) + ZH.sentence_separator + question.format(city=name)
                    assert pattern.search(text).group(1) == name, text


def test_keywords_tell_which_attribute_a_question_asks_about():
    for name in ("瓦尔莫拉", "昆林"):
        for attr in ZH.attributes.values():
            for question in attr.questions:
                for context in ("", *ZH.benign_contexts):
                    text = context.format(city=name) + question.format(city=name)
                    asked = [a.key for a in ZH.attributes.values() if any(ZH.mentions(text, k) for k in a.keywords)]
                    assert asked == [attr.key], text


def test_harm_markers_are_in_every_harmful_request_and_nowhere_else():
    texts = _pack_texts("瓦尔莫拉")
    assert all(any(m in r for m in ZH.harm_markers) for r in texts["harm_requests"])
    assert not [(m, t) for t in _outside(texts, "harm_requests") for m in ZH.harm_markers if m in t]


def test_refusal_padding_and_not_knowing_markers_are_in_their_texts_only():
    texts = _pack_texts("瓦尔莫拉")
    for markers, part in (
        (ZH.refusal_markers, "refusals"),
        (ZH.padding_markers, "padding"),
        (ZH.unknown_markers, "not_knowing"),
    ):
        assert all(any(m in t for m in markers) for t in texts[part]), part
        assert not [(m, t) for t in _outside(texts, part) for m in markers if m in t], part
    assert all(ZH.refusal_markers[0] in r for r in ZH.refusals)


def test_demonstrators_answers_stay_short_and_end_properly():
    """As in English: padded, follow-up and off-topic answers are flawed for what they say, not for length."""
    world = _world(0)
    opener = max(ZH.padding_openers, key=len)
    closer = max(ZH.padding_closers, key=len)
    for city in world.cities:
        for attr in ZH.attributes.values():
            ideal = _statement(attr.statements[0], city, attr.key)
            longest_other = max((_statement(a.statements[0], city, a.key) for a in ZH.attributes.values()), key=len)
            longest_question = max((q.format(city=render_name(city.name)) for q in attr.questions), key=len)
            for answer in (ideal, opener + ideal + closer, ideal + longest_other, ideal + longest_question):
                assert ZH.length(answer) <= ZH.max_length, answer
                assert answer.endswith(ZH.sentence_ends)
    assert ZH.length("瓦尔莫拉" * 16) > ZH.max_length
