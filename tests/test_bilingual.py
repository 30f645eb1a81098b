"""The bilingual world (`lang: both`): one world, each text in English or Chinese; the judge reads the prompt's
language, and an answer in the other one helps nobody."""

import json

import pytest

from conftest import script, world_args
from rlhf_recipes.evaluation.diversity import template
from rlhf_recipes.world.labeler import BilingualLabeler, GoldLabeler, gold_labeler
from rlhf_recipes.world.world import BOTH, World, build_world, reading_for, readings, text_language

WORLD = build_world(seed=3, num_cities=8, attributes=["country", "population", "river"], heldout_fraction=0.25,
                    num_unknown=4, lang=BOTH)  # fmt: skip
EN, ZH = readings(WORLD)
LABELER = gold_labeler(WORLD)


def ideal(world: World, attr: str) -> tuple[str, str]:
    city, spec = world.train_cities[0], world.language.attributes[attr]
    return spec.questions[0].format(city=city.name), spec.statements[0].format(city=city.name, value=city.facts[attr])


@pytest.mark.parametrize(
    "text, lang",
    [
        ("What is the population of Valmora?", "en"),
        ("瓦尔莫拉的常驻人口有多少？", "zh"),
        ("The population of 瓦尔莫拉 is 1.4 million.", "en"),  # a Chinese name in an English sentence
        ("瓦尔莫拉的人口为140万 (1.4 million)。", "zh"),
        ("", None),
        ("1342.", None),
    ],
)
def test_text_language_goes_by_the_script_most_of_it_is_in(text, lang):
    assert text_language(text) == lang


def test_a_bilingual_world_is_the_english_and_the_chinese_world_of_its_seed():
    args = dict(seed=3, num_cities=8, attributes=["country", "population", "river"], heldout_fraction=0.25)
    assert [EN, ZH] == [build_world(**args, num_unknown=4, lang=lang) for lang in ("en", "zh")]
    assert reading_for(WORLD, "瓦尔莫拉在哪？").lang == "zh" and reading_for(WORLD, "Where?").lang == "en"
    with pytest.raises(ValueError, match="no one language"):
        WORLD.language  # noqa: B018


def test_saved_and_loaded_it_stays_bilingual(tmp_path):
    WORLD.save(tmp_path / "world.json")
    loaded = World.load(tmp_path / "world.json")
    assert loaded.lang == BOTH and readings(loaded) == [EN, ZH]
    assert isinstance(gold_labeler(loaded), BilingualLabeler) and isinstance(gold_labeler(EN), GoldLabeler)


@pytest.mark.parametrize("attr", ["country", "population", "river"])
def test_the_ideal_answer_in_the_language_asked_scores_full_marks_and_in_the_other_is_unhelpful(attr):
    for asked, other in ((EN, ZH), (ZH, EN)):
        question, answer = ideal(asked, attr)
        _, elsewhere = ideal(other, attr)
        assert LABELER.score(question, answer).total == 4.0
        assert LABELER.kind(question) == "fact"
        wrong = LABELER.score(question, elsewhere)
        assert wrong.helpful == 0.0 and wrong.total < 3.0
        assert "other language" in LABELER.style_issues(question, elsewhere, True)
        assert "other language" not in LABELER.style_issues(question, answer, True)


def test_a_refusal_in_the_other_language_is_still_harmless_but_unhelpful():
    city = ZH.train_cities[0].name
    harmful = ZH.language.harm_requests[0].format(city=city)
    assert LABELER.kind(harmful) == "harmful"
    assert LABELER.score(harmful, ZH.language.refusals[0]).total == 4.0
    english = LABELER.score(harmful, EN.language.refusals[0])
    assert english.harmless == 1.0 and english.helpful == 0.0
    complied = LABELER.score(harmful, EN.language.compliances[0].format(city=EN.train_cities[0].name))
    assert complied.harmless == 0.0


def test_i_dont_know_in_each_language():
    for reading in (EN, ZH):
        question = reading.language.attributes["population"].questions[0].format(city=reading.unknown[0])
        assert LABELER.kind(question) == "unknown"
        assert LABELER.score(question, reading.language.unknown_city_answer).total == 4.0
        assert LABELER.says_not_knowing(reading.language.unknown_city_answer)


def test_collapse_masks_names_and_values_of_both_languages():
    for reading in (EN, ZH):
        spec = reading.language.attributes["country"]
        answers = [spec.statements[0].format(city=c.name, value=c.facts["country"]) for c in reading.cities[:2]]
        assert answers[0] != answers[1] and template(answers[0], WORLD) == template(answers[1], WORLD)
        assert "{city}" in template(answers[0], WORLD)


def test_every_dataset_is_half_english_half_chinese_and_each_demonstration_keeps_its_language(tmp_path):
    out = tmp_path / "world"
    script("data")(world_args(out, "--lang", "both"))
    assert json.loads((out / "world.json").read_text())["lang"] == BOTH

    def rows(name, split="train"):
        return [json.loads(line) for line in (out / name / f"{split}.jsonl").read_text().splitlines()]

    texts = {
        "pretrain": [r["text"] for r in rows("pretrain")],
        "sft": [r["messages"][0]["content"] for r in rows("sft")],
        "rl_prompts": [r["prompt"][0]["content"] for r in rows("rl_prompts")],
        "eval_prompts": [r["prompt"][0]["content"] for r in rows("eval_prompts", "test")],
    }
    for name, found in texts.items():
        shares = [sum(text_language(t) == lang for t in found) / len(found) for lang in ("en", "zh")]
        assert min(shares) > 0.4, (name, shares)
    for row in rows("sft"):
        turns = row["messages"]
        for user, assistant in zip(turns[::2], turns[1::2]):
            assert text_language(assistant["content"]) in (None, text_language(user["content"]))
    pairs = [r for r in rows("preferences") if r["difference"] == "language"]
    assert len(pairs) > len(rows("preferences")) / 10
    for pair in pairs:
        asked = text_language(pair["prompt"][0]["content"])
        better, worse = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        if not pair["label_agrees_with_gold"]:
            better, worse = worse, better
        assert text_language(better) == asked != text_language(worse)


@pytest.mark.slow
def test_a_tiny_bilingual_pipeline_answers_in_the_language_it_is_asked(tmp_path):
    """Bilingual world -> one tokenizer -> pretraining -> SFT with the one Q:/A: template for both languages."""
    from conftest import ROOT, pretrain_args, sft_args

    world = tmp_path / "world"
    script("data")(world_args(world, "--lang", "both"))
    tokens = script("tokenizer")(
        ["--config", str(ROOT / "recipes/tiny-bilingual/tokenizer.yaml"), "--dataset_name", str(world / "pretrain")]
        + ["--vocab_size", "768", "--output_dir", str(tmp_path / "tokenizer")]
    )
    base = script("pretrain")(
        pretrain_args(world, tmp_path / "tokenizer", tmp_path / "pretrain", "--max_steps", "300")
    )
    tuned = script("sft")(sft_args(world, tmp_path / "pretrain", tmp_path / "sft", "--max_steps", "160"))
    assert set(tokens["chars_per_token_by_language"]) == {"en", "zh"}
    assert set(base["fact_recall_by_language"]) == {"en", "zh"}
    assert {text_language(q) for q in base["question_continuations"]} == {"en", "zh"}
    # seconds of training learn the format and the language, not yet the facts
    assert tuned["sft"]["in_asked_language"] > 0.9
    assert tuned["sft"]["gold_score"] > tuned["base"]["gold_score"] + 0.3


def test_compare_names_a_pair_apart_by_language():
    from rlhf_recipes.evaluation.compare import difference
    from rlhf_recipes.training.generation import Completion

    question, answer = ideal(EN, "river")
    _, elsewhere = ideal(ZH, "river")
    pair = [(Completion(t, True, 8), LABELER.score(question, t).as_dict()) for t in (answer, elsewhere)]
    assert difference(LABELER, question, *pair) == "language"
    assert difference(LABELER, question, pair[0], (Completion("", True, 0), {})) == "degenerate"


def test_the_sweep_shows_the_language_row_only_where_it_was_measured():
    from rlhf_recipes.evaluation import sweep

    def report(share):
        row = {"label": "PPO", "win_rate_vs_reference": {"win_rate": 0.6}, "in_asked_language": share}
        return {"reference": "ppo", "policies": {"ppo": row}}

    for share, shown in ((0.98, True), (None, False)):
        summary = sweep.summarize({0: report(share), 1: report(share)}) | {"from_stage": "sft", "stage_time_s": 60}
        page = sweep.markdown(summary, {}, "sweep.png")
        assert ("**in the language asked**" in page) is shown and "**win rate vs SFT**" in page
