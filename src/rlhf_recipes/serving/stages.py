"""The stages a person talks to: found in an outputs folder, loaded once, answering token by token.

`make chat` and `make serve` share this. A stage is a row of the report's kind (`evaluation.policies`): the
base model is prompted with the bare text, as the report prompts it, so it shows what pretraining alone
gives; the others get the chat template. Every answer can be scored with the report's proxy score (the reward
model less the missing-EOS penalty the RL stage trained with) and, on the embedded world, by the gold labeler.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..evaluation.policies import Policy, ProxyScorer, read_policies, rl_config
from ..training.chat import last_user_message, prepare_tokenizer
from ..training.config import RecipeError
from ..training.generation import Completion
from ..training.world_inputs import AUTO, WORLD_FILE, load_world, world_of
from ..world.world import World, readings

PROMPTING = ("text", "chat")  # few-shot examples make no conversation
MAX_NEW_TOKENS = 512  # the most a request to `make serve` may ask for, whatever the model's context


@dataclass
class TalkArguments:
    """What `make chat` and `make serve` share: where the stages are, how they sample, who scores."""

    outputs_dir: str = field(default="outputs/tiny", metadata={"help": "Folder holding every stage's output."})
    stages: list[dict] = field(
        default_factory=list,
        metadata={"help": "Stages to talk to, in order: {name, path, prompt: text|chat, label, best_of}. YAML only."},
    )
    reward_model: str | None = field(
        default="reward", metadata={"help": "Reward model folder (in outputs_dir): scores answers; none: no scores."}
    )
    rl_stage: str | None = field(
        default="ppo", metadata={"help": "RL stage whose missing-EOS penalty the reward score subtracts; none: 0."}
    )
    world_file: str | None = field(
        default="auto",
        metadata={
            "help": "world.json of the gold labeler. auto: the world a stage was trained on, if any; none: off."
        },
    )
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature; 0: greedy."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling: keep the top tokens of this mass."})
    top_k: int = field(default=0, metadata={"help": "Keep the k most likely tokens; 0: all."})
    max_new_tokens: int = field(default=64, metadata={"help": "Longest answer, in tokens."})
    seed: int = field(default=0, metadata={"help": "Seed of sampling (set once, at start)."})


@dataclass
class Answer(Completion):
    seconds: float


@dataclass
class Sampling:
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    stop: tuple[str, ...] = ()  # generation halts once the text holds one of these (the API's `stop`)

    @classmethod
    def of(cls, args: TalkArguments) -> Sampling:
        return cls(args.temperature, args.top_p, args.top_k, args.max_new_tokens)

    def generate_kwargs(self, tokenizer) -> dict:
        """`generate`'s sampling settings; stop strings need the tokenizer to be found across token boundaries."""
        stop = {"stop_strings": list(self.stop), "tokenizer": tokenizer} if self.stop else {}
        if self.temperature <= 0:
            return {"do_sample": False, **stop}
        return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k, **stop}


def read_stages(args: TalkArguments) -> list[Policy]:
    """The configured stages, checked: known keys and prompting, unique names."""
    if not args.stages:
        raise RecipeError("no stages configured; add rows such as {name: sft, path: sft} under `stages:`")
    return read_policies(args.stages, "stage", PROMPTING)


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def resolve(args: TalkArguments, path: str) -> Path:
    return Path(args.outputs_dir) / path


def present(args: TalkArguments, rows: list[Policy]) -> list[Policy]:
    """The rows whose model folder exists (DPO, RLOO and GRPO only after `make methods`)."""
    return [r for r in rows if is_model_dir(resolve(args, r.path))]


class Speaker:
    """One loaded causal model, answering one request at a time (a lock queues the others)."""

    def __init__(self, row: Policy, path: Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..training.loading import load_pretrained

        self.row, self.path = row, path
        self.model = load_pretrained(AutoModelForCausalLM, str(path)).eval()
        self.tokenizer = prepare_tokenizer(load_pretrained(AutoTokenizer, str(path)), self.model)
        self.lock = threading.Lock()
        config = self.model.config
        self.context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    @property
    def label(self) -> str:
        return self.row.title

    def render(self, messages: list[dict]) -> str:
        """The text the model continues: the chat template, or for a base model the turns as plain lines."""
        if self.row.prompt == "chat":
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(m["content"].strip() + "\n" for m in messages)

    def prompt_ids(self, messages: list[dict]) -> torch.Tensor:
        ids = self.tokenizer(self.render(messages), add_special_tokens=False, return_tensors="pt").input_ids
        if self.context and ids.shape[1] >= self.context:
            raise RecipeError(
                f"the conversation is {ids.shape[1]} tokens, the {self.label} model's context is {self.context}; "
                "shorten it or start a new one"
            )
        return ids

    def _room(self, ids: torch.Tensor, sampling: Sampling) -> int:
        return min(sampling.max_new_tokens, (self.context or 10**9) - ids.shape[1])

    def _finish(self, new_ids: list[int], start: float) -> Answer:
        eos = self.tokenizer.eos_token_id
        ended = eos in new_ids
        kept = [t for t in (new_ids[: new_ids.index(eos)] if ended else new_ids) if t != self.tokenizer.pad_token_id]
        return Answer(
            self.tokenizer.decode(kept, skip_special_tokens=True).strip(), ended, len(kept), time.time() - start
        )

    def stream(self, messages: list[dict], sampling: Sampling) -> Iterator[str | Answer]:
        """Text pieces as they are generated, then the whole Answer (stripped, cut at EOS).

        The generation runs in a thread that holds the model's lock from start to end, so a reader that leaves
        mid-answer (a closed browser tab, a dropped client) cannot keep the model from the next request.
        """
        from transformers import TextIteratorStreamer

        ids = self.prompt_ids(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict = {}

        def run() -> None:
            try:
                with self.lock, torch.no_grad():
                    result["start"] = time.time()
                    out = self.model.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        max_new_tokens=self._room(ids, sampling),
                        pad_token_id=self.tokenizer.pad_token_id,
                        eos_token_id=self.tokenizer.eos_token_id,
                        streamer=streamer,
                        **sampling.generate_kwargs(self.tokenizer),
                    )
                result["ids"] = out[0, ids.shape[1] :].tolist()
            except Exception as e:  # noqa: BLE001 - handed to the caller's thread below
                result["error"] = e
                streamer.end()

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        for piece in streamer:
            if piece:
                yield piece
        worker.join()  # not when the reader left: closing this generator must not wait for the generation
        if "error" in result:
            raise result["error"]
        yield self._finish(result["ids"], result["start"])

    def sample(self, messages: list[dict], sampling: Sampling, count: int) -> list[Answer]:
        """`count` answers at once (best-of-n), not streamed."""
        ids = self.prompt_ids(messages)
        with self.lock, torch.no_grad():
            start = time.time()
            out = self.model.generate(
                ids.repeat(count, 1),
                attention_mask=torch.ones_like(ids).repeat(count, 1),
                max_new_tokens=self._room(ids, sampling),
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                **sampling.generate_kwargs(self.tokenizer),
            )
        return [self._finish(row[ids.shape[1] :].tolist(), start) for row in out]


def pieces(speaker: Speaker, scorer: Scorer, messages: list[dict], sampling: Sampling) -> Iterator[str | Answer]:
    """One answer as `Speaker.stream` gives it: text pieces, then the Answer. A best-of-n stage samples its
    candidates at once and gives the one the reward model prefers as a single piece."""
    if speaker.row.best_of > 1:
        done = scorer.best(messages, speaker.sample(messages, sampling, speaker.row.best_of))
        yield done.text
        yield done
    else:
        yield from speaker.stream(messages, sampling)


def load_speakers(args: TalkArguments, rows: list[Policy]) -> dict[str, Speaker]:
    """A Speaker per row; rows of the same folder (SFT and best-of-n) share one model and its queue."""
    by_path: dict[Path, Speaker] = {}
    speakers = {}
    for row in rows:
        path = resolve(args, row.path)
        if path in by_path:
            speaker = copy.copy(by_path[path])
            speaker.row = row
        else:
            speaker = by_path[path] = Speaker(row, path)
        speakers[row.name] = speaker
    return speakers


class Scorer:
    """The reward model's score of an answer (less the missing-EOS penalty) and the gold labeler's parts."""

    def __init__(self, args: TalkArguments, rows: list[Policy]):
        from ..world.labeler import gold_labeler

        self.proxy = None
        if args.reward_model:
            path = resolve(args, args.reward_model)
            if not is_model_dir(path):
                raise RecipeError(f"reward model {path} not found; run `make reward` first or set reward_model: none")
            self.proxy = ProxyScorer.load(path, missing_eos_penalty(args))
        world = world_path(args, rows)
        self.labeler = gold_labeler(load_world(world)) if world else None
        self.lock = threading.Lock()  # one scoring at a time: the reward model and its tokenizer are shared

    def score(self, messages: list[dict], answer: Answer) -> dict:
        """{"reward": float | None, "gold": {helpful, honest, harmless, concise, total} | None, "kind": ...}."""
        with self.lock:
            return self._score(messages, answer)

    def _score(self, messages: list[dict], answer: Answer) -> dict:
        scores: dict = {"reward": None, "gold": None, "kind": None}
        if self.proxy is not None:
            scores["reward"] = round(self.proxy([messages], [answer])[0], 3)
        if self.labeler is not None:
            question = last_user_message(messages)
            scores["gold"] = self.labeler.score(question, answer.text, answer.ended).as_dict()
            scores["kind"] = self.labeler.kind(question)
        return scores

    def examples(self) -> list[str]:
        """Prompts that tell the story on the embedded world: a fact, the unknown, a harmful request."""
        if self.labeler is None:
            return []
        return [ask for world in readings(self.labeler.world) for ask in story_prompts(world)]

    def best(self, messages: list[dict], answers: list[Answer]) -> Answer:
        """The answer the reward model prefers (the first one when there is no reward model)."""
        if self.proxy is None:
            return answers[0]
        return max(answers, key=lambda a: self.score(messages, a)["reward"])


def story_prompts(world: World) -> list[str]:
    """A fact, a city the world does not have, an attribute it does not have, a harmful request."""
    forms, harms = world.language.attributes, world.language.harm_requests
    city = world.train_cities[0].name
    attr = "population" if "population" in world.attributes else world.attributes[0]
    asks = [forms[attr].questions[0].format(city=city)]
    if world.unknown_heldout:
        asks.append(forms[attr].questions[0].format(city=world.unknown_heldout[0]))
    if world.unknown_attributes:
        asks.append(forms[world.unknown_attributes[0]].questions[0].format(city=city))
    return asks + [harms[0].format(city=city)]


def missing_eos_penalty(args: TalkArguments) -> float:
    """The RL stage's own penalty (its metrics.json records it), so scores match the report's."""
    if not args.rl_stage:
        return 0.0
    return rl_config(resolve(args, args.rl_stage)).get("missing_eos_penalty") or 0.0


def world_path(args: TalkArguments, rows: list[Policy]) -> Path | None:
    """The gold labeler's world: as configured, or (auto) the world the first stage that records one trained on."""
    if args.world_file != AUTO:
        return Path(args.world_file) if args.world_file else None
    for folder in [resolve(args, r.path) for r in rows] + [resolve(args, args.reward_model or "")]:
        world = world_of(str(folder)) if folder.is_dir() else None
        if world is not None and (world / WORLD_FILE).is_file():
            return world / WORLD_FILE
    return None
