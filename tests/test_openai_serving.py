"""`make serve` as OpenAI's Chat Completions API, driven by the official `openai` client against the real server."""

import json
import threading
import urllib.error
import urllib.request

import pytest
from transformers import AutoTokenizer

from rlhf_recipes.world.world import World

pytestmark = pytest.mark.slow

STAGES = ["base", "sft", "best_of_n"]  # serve.yaml's stages that the test session trains
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def client(server):
    """The official client (imported here: ~0.7 s that every test worker's collection would pay)."""
    from openai import OpenAI

    return OpenAI(base_url=server + "/v1", api_key="any key will do", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def question(world_dir) -> str:
    return f"What is the population of {World.load(world_dir / 'world.json').train_cities[0].name}?"


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def num_tokens(folder, text: str) -> int:
    return len(AutoTokenizer.from_pretrained(folder)(text, add_special_tokens=False).input_ids)


def test_models_lists_every_stage_present(client):
    models = client.models.list().data
    assert [m.id for m in models] == STAGES  # ppo, dpo, rloo and grpo have no folder here
    assert all(m.object == "model" and m.owned_by == "rlhf-recipes" and m.created > 1_700_000_000 for m in models)
    assert client.models.retrieve("sft").id == "sft"


def test_answer_renders_the_stage_template_and_counts_tokens(client, question, outputs):
    answer = client.chat.completions.create(model="sft", messages=user(question), temperature=0)
    (choice,) = answer.choices
    assert (answer.object, answer.model, choice.message.role, choice.finish_reason) == (
        "chat.completion",
        "sft",
        "assistant",
        "stop",
    )
    assert choice.message.content
    assert answer.usage.prompt_tokens == num_tokens(outputs / "sft", f"Q: {question}\nA:")  # the repo's template
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens > 0

    cut = client.chat.completions.create(model="sft", messages=user(question), temperature=0, max_tokens=3)
    assert (cut.choices[0].finish_reason, cut.usage.completion_tokens) == ("length", 3)
    assert choice.message.content.startswith(cut.choices[0].message.content)


def test_conversations_and_the_base_model(client, question, outputs):
    """Every turn goes through the template; the base model gets the bare text, a line per message, as the page."""
    turns = user(question) + [{"role": "assistant", "content": "I do not know."}] + user(question)
    answer = client.chat.completions.create(model="sft", messages=turns, max_tokens=4)
    rendered = f"Q: {question}\nA: I do not know.<|endoftext|>\n\nQ: {question}\nA:"
    assert answer.usage.prompt_tokens == num_tokens(outputs / "sft", rendered)

    parts = [{"type": "text", "text": "The population"}, {"type": "text", "text": " of"}]
    base = client.chat.completions.create(
        model="base", messages=[{"role": "developer", "content": question}, {"role": "user", "content": parts}]
    )
    assert base.usage.prompt_tokens == num_tokens(outputs / "pretrain", f"{question}\nThe population of\n")
    assert base.choices[0].finish_reason in ("stop", "length")


def test_streamed_answer_is_the_whole_answer_in_pieces(client, question, server):
    whole = client.chat.completions.create(model="sft", messages=user(question), temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="sft", messages=user(question), temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    assert {(c.object, c.id, c.model) for c in chunks} == {("chat.completion.chunk", chunks[0].id, "sft")}
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == whole.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage

    body = json.dumps({"model": "base", "messages": user(question), "stream": True, "max_tokens": 4}).encode()
    request = urllib.request.Request(server + "/v1/chat/completions", data=body, headers=JSON, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = response.read().decode().split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""] and all(e.startswith("data: {") for e in events[:-2])


def test_n_answers(client, question):
    answer = client.chat.completions.create(model="sft", messages=user(question), n=3, temperature=1.0, max_tokens=8)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert all(c.finish_reason in ("stop", "length") for c in answer.choices)
    assert 3 <= answer.usage.completion_tokens <= 3 * 8

    stream = client.chat.completions.create(model="best_of_n", messages=user(question), n=2, stream=True)
    texts, finished = {0: "", 1: ""}, {}
    for chunk in stream:
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            if c.finish_reason:
                finished[c.index] = c.finish_reason
    assert sorted(finished) == [0, 1] and all(texts.values())


def test_a_stop_string_ends_the_answer_before_it(client, question):
    whole = client.chat.completions.create(model="sft", messages=user(question), temperature=0)
    text = whole.choices[0].message.content
    stop = " " + text.split()[len(text.split()) // 2]
    expected = text[: text.index(stop)].strip()
    for stops in (stop, ["never said", stop]):
        cut = client.chat.completions.create(model="sft", messages=user(question), temperature=0, stop=stops)
        assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == (expected, "stop")
        assert cut.usage.completion_tokens < whole.usage.completion_tokens  # generation halted, not just cut
    streamed = client.chat.completions.create(
        model="sft", messages=user(question), temperature=0, stop=stop, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected


def extra(**body) -> dict:
    """Values the client's types would not let through, sent as they are."""
    return {"extra_body": body}


BAD_REQUESTS = [  # (arguments, status, words in the message, the parameter at fault)
    ({"model": "ppo"}, 404, "the stages served are base, sft, best_of_n", "model"),
    ({"messages": []}, 400, "at least 1 item", "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, 400, "'assistant'", "messages[0].role"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, 400, "the last message must be the user's", "messages"),
    (extra(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), 400, "type text", "messages[0].content"),
    (extra(messages="Hello"), 400, "valid list", "messages"),
    ({"temperature": 7}, 400, "less than or equal to 2", "temperature"),
    (extra(temperature="hot"), 400, "valid number", "temperature"),
    ({"top_p": 0}, 400, "greater than 0", "top_p"),
    ({"max_tokens": 10_000}, 400, "less than or equal to 512", "max_tokens"),
    (extra(max_tokens=1.5), 400, "valid integer", "max_tokens"),
    ({"n": 0}, 400, "greater than or equal to 1", "n"),
    (extra(n="two"), 400, "valid integer", "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "at most 4 items", "stop"),
    (extra(stop=5), 400, "a string or a list of strings", "stop"),
    ({"seed": 1}, 400, "unknown parameter 'seed'; this server takes model, messages", "seed"),
    ({"messages": user("word " * 200)}, 413, "context is 128", "messages"),
]


@pytest.mark.parametrize("arguments,status,message,param", BAD_REQUESTS)
def test_bad_requests_get_openais_error_shape(client, arguments, status, message, param):
    from openai import APIStatusError

    with pytest.raises(APIStatusError) as refused:
        client.chat.completions.create(**{"model": "sft", "messages": user("Hello"), **arguments})
    error = refused.value
    assert (error.status_code, message in error.message, error.param) == (status, True, param), error.body
    assert set(error.body) == {"message", "type", "param", "code"} and error.type == "invalid_request_error"
    assert [m.id for m in client.models.list().data] == STAGES  # still up


ANSWER = "/v1/chat/completions"
RAW_BAD_REQUESTS = [  # what no client sends: (method, path, headers, body, status, words in the message)
    ("POST", ANSWER, JSON, b'{"model": "sft", "messages": [', 400, "not valid JSON"),
    ("POST", ANSWER, JSON, b"[1, 2]", 400, "must be a JSON object"),
    ("POST", ANSWER, JSON, b"", 400, "must be a JSON object"),
    ("POST", ANSWER, {}, json.dumps({"model": "sft", "messages": user("Hi")}).encode(), 400, "application/json"),
    ("POST", ANSWER, JSON, json.dumps({"messages": user("Hi")}).encode(), 400, "model: Field required"),
    ("POST", "/v1/completions", JSON, b"{}", 404, "POST /v1/chat/completions"),
    ("GET", ANSWER, {}, None, 405, "Method Not Allowed"),
    ("GET", "/v1/models/ppo", {}, None, 404, "the stages served are base, sft, best_of_n"),
]


@pytest.mark.parametrize("method,path,headers,body,status,message", RAW_BAD_REQUESTS)
def test_malformed_requests_get_openais_error_shape(client, server, method, path, headers, body, status, message):
    request = urllib.request.Request(server + path, data=body, headers=headers, method=method)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    error = json.loads(refused.value.read())["error"]
    assert (refused.value.code, message in error["message"]) == (status, True), error
    assert set(error) == {"message", "type", "param", "code"}
    assert [m.id for m in client.models.list().data] == STAGES  # still up


def test_concurrent_clients_on_every_stage(client, question):
    """Each model answers one request at a time; clients of several stages at once are all served."""
    results = {}

    def ask(i: int, stage: str) -> None:
        if i % 2:
            stream = client.chat.completions.create(model=stage, messages=user(question), max_tokens=16, stream=True)
            results[i] = [c.choices[0].finish_reason for c in stream if c.choices][-1]
        else:
            answer = client.chat.completions.create(model=stage, messages=user(question), max_tokens=16, n=2)
            results[i] = answer.choices[-1].finish_reason

    clients = [threading.Thread(target=ask, args=(i, stage)) for i, stage in enumerate(STAGES * 3)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(timeout=300)
    assert sorted(results) == list(range(9)) and set(results.values()) <= {"stop", "length"}


def test_a_client_leaving_mid_stream_frees_its_model(client, question):
    stream = client.chat.completions.create(model="sft", messages=user(question), stream=True, max_tokens=64)
    next(iter(stream))
    stream.close()
    answer = client.with_options(timeout=120).chat.completions.create(model="best_of_n", messages=user(question))
    assert answer.choices[0].finish_reason in ("stop", "length")  # best_of_n waits in the SFT model's queue


def test_a_base_url_without_v1_is_pointed_to_it(server):
    request = urllib.request.Request(server + "/chat/completions", data=b"{}", headers=JSON, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 404 and "API is under /v1/" in json.loads(refused.value.read())["error"]
