"""`make serve`: one prompt to every stage at once, the answers streaming side by side with their scores.

FastAPI (on uvicorn) checks each request against a typed model and streams the answers; nothing here parses
HTTP by hand. `POST /api/answer` streams one stage's answer as JSON lines: `{"token": ...}` as it is
generated, then `{"done": true, "answer", "ended", "num_tokens", "seconds", "reward", "gold", "kind"}`.
The page asks every stage at once; each model answers one request at a time (its lock is its queue), so
many users are served in turn and a slow model does not hold up the others. Under /v1 the same stages answer
OpenAI's Chat Completions API (openai_api.py), in the same queues.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from importlib.resources import files

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from ..training.config import RecipeError
from .openai_api import openai_app
from .stages import (
    MAX_NEW_TOKENS,
    Answer,
    Sampling,
    Scorer,
    TalkArguments,
    load_speakers,
    pieces,
    present,
    read_stages,
)


@dataclass
class ServeArguments:
    host: str = field(
        default="127.0.0.1", metadata={"help": "Address to listen on; 0.0.0.0 shares the page with your network."}
    )
    port: int = field(default=8000, metadata={"help": "Port to listen on."})
    max_prompt_chars: int = field(default=1000, metadata={"help": "Longer prompts are refused (413)."})


class AnswerRequest(BaseModel):
    """One stage's answer to one prompt; sampling settings left out take the served defaults."""

    model_config = ConfigDict(extra="forbid")
    prompt: str
    stage: str
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_new_tokens: int | None = Field(default=None, ge=1, le=MAX_NEW_TOKENS)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def describe(errors: list[dict]) -> str:
    """pydantic's errors as one line: `stage: Field required; temperature: Input should be ...`."""
    parts = []
    for e in errors:
        if e["type"] == "json_invalid":
            return f'the body is not valid JSON (at character {e["loc"][-1]}); send {{"prompt": ..., "stage": ...}}'
        where = ".".join(str(p) for p in e["loc"] if p != "body")
        parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    return "; ".join(parts)


def create_app(args: TalkArguments, max_prompt_chars: int) -> FastAPI:
    """The app over every configured stage present in outputs_dir, its models loaded now."""
    rows = present(args, read_stages(args))
    if not rows:
        raise RecipeError(f"no stage of serve.yaml has a model in {args.outputs_dir}; run `make all` first")
    speakers = load_speakers(args, rows)
    scorer = Scorer(args, rows)
    defaults = Sampling.of(args)
    page = files("rlhf_recipes.serving").joinpath("page.html").read_text()
    app = FastAPI(title="rlhf-recipes: every stage side by side", docs_url=None, redoc_url=None)
    app.mount("/v1", openai_app(speakers, scorer, defaults))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(400, describe(exc.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:  # most likely an OpenAI client whose base_url lacks /v1
            return error(404, f"no page {request.url.path}; the page is /, the OpenAI-compatible API is under /v1/")
        return error(exc.status_code, str(exc.detail))

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/api/stages")
    def stages() -> dict:
        return {
            "stages": [
                {"name": s.row.name, "label": s.label, "prompt": s.row.prompt, "best_of": s.row.best_of}
                for s in speakers.values()
            ],
            "temperature": defaults.temperature,
            "max_new_tokens": defaults.max_new_tokens,
            "max_prompt_chars": max_prompt_chars,
            "examples": scorer.examples(),
            "scores": {"reward": scorer.proxy is not None, "gold": scorer.labeler is not None},
        }

    @app.post("/api/answer")
    def answer(request: AnswerRequest):
        if request.stage not in speakers:
            return error(404, f"unknown stage {request.stage!r}; stages: {', '.join(speakers)}")
        prompt = request.prompt.strip()
        if not prompt:
            return error(400, "the prompt is empty; type a question")
        if len(prompt) > max_prompt_chars:
            return error(413, f"the prompt is {len(prompt)} characters; the limit is {max_prompt_chars}")
        speaker = speakers[request.stage]
        messages = [{"role": "user", "content": prompt}]
        try:
            speaker.prompt_ids(messages)
        except RecipeError as e:
            return error(413, str(e))
        sampling = Sampling(
            temperature=defaults.temperature if request.temperature is None else request.temperature,
            top_p=defaults.top_p,
            top_k=defaults.top_k,
            max_new_tokens=request.max_new_tokens or defaults.max_new_tokens,
        )

        def lines():
            """JSON lines: tokens as they come, then the answer and its scores (or an error)."""
            try:
                for piece in pieces(speaker, scorer, messages, sampling):
                    if isinstance(piece, Answer):
                        done = piece
                    else:
                        yield json.dumps({"token": piece}) + "\n"
                scores = scorer.score(messages, done)
                yield (
                    json.dumps(
                        {
                            "done": True,
                            "answer": done.text,
                            "ended": done.ended,
                            "num_tokens": done.num_tokens,
                            "seconds": round(done.seconds, 2),
                            **scores,
                        }
                    )
                    + "\n"
                )
            except Exception as e:  # noqa: BLE001 - the stream has started: report in it, keep serving
                yield json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(args: TalkArguments, serve_args: ServeArguments) -> None:
    """The app on uvicorn until Ctrl-C, its models loaded first; a warning when it is not on loopback."""
    if not 0 < serve_args.port < 65536 or serve_args.max_prompt_chars < 1:
        raise RecipeError("port must be 1-65535 and max_prompt_chars at least 1")
    torch.manual_seed(args.seed)
    app = create_app(args, serve_args.max_prompt_chars)
    if not is_loopback(serve_args.host):
        print(f"warning: listening on {serve_args.host}: anyone who can reach this machine can use the models")
    print(f"every stage side by side: http://{serve_args.host}:{serve_args.port}  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=serve_args.host, port=serve_args.port, log_level="warning")
