"""`make serve` speaks OpenAI's Chat Completions API too, so any OpenAI client can talk to the stages:

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(model="sft", messages=[{"role": "user", "content": "Hi"}])

`GET /v1/models` lists the stages present. `POST /v1/chat/completions` answers with one of them: the messages are
rendered as the page renders them (the stage's chat template; for the base model the bare text, a line per
message), and the answer comes whole or, with `stream`, as server-sent events. Errors take OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`. The page and the API share each model's lock, its queue.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError
from starlette.exceptions import HTTPException

from ..training.config import RecipeError
from .stages import MAX_NEW_TOKENS, Answer, Sampling, Scorer, Speaker, pieces

MAX_CHOICES = 8  # `n`: the choices are generated one after another, each in the model's queue
MAX_STOPS = 4  # as OpenAI's API
EXAMPLE = '{"model": STAGE, "messages": [{"role": "user", "content": "..."}]}'
ENDPOINTS = "GET /v1/models, GET /v1/models/STAGE and POST /v1/chat/completions"


def text_of(content: object) -> object:
    """A message's content as one string: OpenAI's list of text parts is joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        return "".join(p["text"] for p in content)
    raise PydanticCustomError("content_type", "Input should be a string or a list of parts of type text")


def one_or_many(stop: object) -> object:
    """`stop` as a list: OpenAI's API takes one string or several."""
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return stop
    raise PydanticCustomError("stop_type", "Input should be a string or a list of strings")


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: Annotated[str, BeforeValidator(text_of)]

    def turn(self) -> dict:
        """The message as the chat templates read it: a developer message is the system message."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.content}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The part of OpenAI's request these models can honour; any other parameter is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)
    stop: Annotated[list[Annotated[str, Field(min_length=1)]], BeforeValidator(one_or_many)] | None = Field(
        default=None, max_length=MAX_STOPS
    )
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stream: bool | None = None
    stream_options: StreamOptions | None = None

    def sampling(self, defaults: Sampling) -> Sampling:
        """The request's settings; those it leaves out take the served defaults (serve.yaml)."""
        return Sampling(
            temperature=defaults.temperature if self.temperature is None else self.temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            top_k=defaults.top_k,
            max_new_tokens=self.max_completion_tokens or self.max_tokens or defaults.max_new_tokens,
            stop=tuple(self.stop or ()),
        )


class ApiError(Exception):
    """A refused request, answered in OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None):
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def parameter(loc: tuple) -> str:
    """pydantic's location of an error as OpenAI names a parameter: ("body", "messages", 0, "role") ->
    messages[0].role."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:]).lstrip(".")


def describe(errors: list[dict]) -> tuple[str, str | None]:
    """pydantic's errors as one line, and the parameter at fault (the first)."""
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"the body is not valid JSON (at character {first['loc'][-1]}); send {EXAMPLE}", None
    if not parameter(first["loc"]):
        return f"the body must be a JSON object, sent as Content-Type: application/json; send {EXAMPLE}", None
    if first["type"] == "extra_forbidden":
        known = ", ".join(ChatRequest.model_fields)
        return f"unknown parameter {parameter(first['loc'])!r}; this server takes {known}", parameter(first["loc"])
    return "; ".join(f"{parameter(e['loc'])}: {e['msg']}" for e in errors), parameter(first["loc"])


class StopCut:
    """One choice's text as it streams: cut before the first stop string and trimmed at both ends. Text is
    released only once what follows cannot change it: a tail that may begin a stop string, or that may turn out
    to be trailing whitespace, is held back."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops, self.hold = stops, max(map(len, stops), default=1) - 1
        self.raw, self.sent, self.stopped = "", 0, False

    @property
    def text(self) -> str:
        return self.raw.strip()

    def feed(self, piece: str) -> str:
        """What of the text can be sent now that `piece` came."""
        if self.stopped:
            return ""
        self.raw += piece
        hits = [at for at in (self.raw.find(s) for s in self.stops) if at >= 0]
        if hits:
            self.raw, self.stopped = self.raw[: min(hits)], True
            return self.finish()
        return self._release(self.raw[: len(self.raw) - self.hold])

    def finish(self) -> str:
        """The rest of the text, once generation has ended."""
        return self._release(self.raw)

    def _release(self, settled: str) -> str:
        ready = settled.strip()
        delta, self.sent = ready[self.sent :], max(self.sent, len(ready))
        return delta


@dataclass
class Choice:
    text: str
    finish_reason: str  # "stop": EOS or a stop string; "length": max_tokens or the context ran out
    tokens: int


def choice(speaker: Speaker, scorer: Scorer, messages: list[dict], sampling: Sampling) -> Iterator[str | Choice]:
    """One choice's text in pieces as it is generated, then the whole Choice."""
    text = StopCut(sampling.stop)
    for piece in pieces(speaker, scorer, messages, sampling):
        if isinstance(piece, Answer):
            done = piece
        elif delta := text.feed(piece):
            yield delta
    if rest := text.finish():
        yield rest
    yield Choice(text.text, "stop" if done.ended or text.stopped else "length", done.num_tokens)


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


def model_card(name: str, speaker: Speaker) -> dict:
    """A stage as OpenAI lists a model; `created` is when its folder's model was written."""
    created = int((speaker.path / "config.json").stat().st_mtime)
    return {"id": name, "object": "model", "created": created, "owned_by": "rlhf-recipes"}


def openai_app(speakers: dict[str, Speaker], scorer: Scorer, defaults: Sampling) -> FastAPI:
    """The API over the loaded stages, to mount at /v1 beside the page."""
    api = FastAPI(title="rlhf-recipes: OpenAI-compatible API", docs_url=None, redoc_url=None, openapi_url=None)

    @api.exception_handler(ApiError)
    async def refused(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.message, param=exc.param, code=exc.code), status_code=exc.status)

    @api.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = describe(exc.errors())
        return JSONResponse(error_body(message, param=param), status_code=400)

    @api.exception_handler(HTTPException)
    async def no_route(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"{exc.detail}: {request.method} {request.url.path}; the API here is {ENDPOINTS}"
        return JSONResponse(error_body(message), status_code=exc.status_code)

    @api.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(f"{type(exc).__name__}: {exc}", "server_error"), status_code=500)

    def speaker_of(name: str) -> Speaker:
        if name not in speakers:
            message = f"the model {name!r} does not exist here; the stages served are {', '.join(speakers)}"
            raise ApiError(404, message, "model", "model_not_found")
        return speakers[name]

    @api.get("/models")
    def models() -> dict:
        return {"object": "list", "data": [model_card(name, s) for name, s in speakers.items()]}

    @api.get("/models/{name}")
    def model(name: str) -> dict:
        return model_card(name, speaker_of(name))

    @api.post("/chat/completions")
    def chat_completions(request: ChatRequest):
        speaker = speaker_of(request.model)
        messages = [m.turn() for m in request.messages]
        if messages[-1]["role"] != "user":
            raise ApiError(400, "the last message must be the user's: the stages answer it", "messages")
        try:
            prompt_tokens = speaker.prompt_ids(messages).shape[1]
        except RecipeError as e:
            raise ApiError(413, str(e), "messages", "context_length_exceeded") from e
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": request.model}
        ask = partial(choice, speaker, scorer, messages, request.sampling(defaults))
        n = request.n or 1
        if request.stream:
            with_usage = request.stream_options is not None and request.stream_options.include_usage
            return StreamingResponse(events(head, ask, n, prompt_tokens, with_usage), media_type="text/event-stream")
        return completion(head, ask, n, prompt_tokens)

    return api


def completion(head: dict, ask: Callable[[], Iterator[str | Choice]], n: int, prompt_tokens: int) -> dict:
    """The whole answer: a `chat.completion` object with `n` choices."""
    choices = [list(ask())[-1] for _ in range(n)]
    return {
        **head,
        "object": "chat.completion",
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
            for i, c in enumerate(choices)
        ],
        "usage": usage(prompt_tokens, sum(c.tokens for c in choices)),
    }


def events(
    head: dict, ask: Callable[[], Iterator[str | Choice]], n: int, prompt_tokens: int, with_usage: bool
) -> Iterator[str]:
    """The answer as server-sent events: `chat.completion.chunk`s, choice after choice, then `[DONE]`.
    A failure once the stream has started is sent as an error event, and the server goes on."""

    def chunk(choices: list[dict], **extra) -> str:
        return sse({**head, "object": "chat.completion.chunk", "choices": choices, **extra})

    def delta(index: int, content: dict, finish_reason: str | None = None) -> str:
        return chunk([{"index": index, "delta": content, "finish_reason": finish_reason}])

    completion_tokens = 0
    try:
        for index in range(n):
            yield delta(index, {"role": "assistant", "content": ""})
            for item in ask():
                if isinstance(item, Choice):
                    completion_tokens += item.tokens
                    yield delta(index, {}, item.finish_reason)
                else:
                    yield delta(index, {"content": item})
        if with_usage:
            yield chunk([], usage=usage(prompt_tokens, completion_tokens))
        yield "data: [DONE]\n\n"
    except Exception as e:  # noqa: BLE001 - the stream has started: report in it, keep serving
        yield sse(error_body(f"{type(e).__name__}: {e}", "server_error"))
