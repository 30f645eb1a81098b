"""`make chat`: one conversation at a time with any stage, in the terminal, the answer printed token by token;
/stage, /reset, /score and /quit at the prompt (see recipes/chat.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..evaluation.policies import Policy
from ..training.config import RecipeError
from .stages import Answer, Sampling, Scorer, Speaker, TalkArguments, is_model_dir, read_stages, resolve

HELP = """commands: /stage NAME|PATH (another stage or model folder), /reset (new conversation),
          /score (scores of the last answer), /help, /quit"""


@dataclass
class ChatArguments:
    stage: str = field(
        default="ppo", metadata={"help": "The stage to talk to: a name in `stages`, or a model folder."}
    )


class Chat:
    """One conversation with one stage at a time; models and the scorer load when first needed."""

    def __init__(self, args: TalkArguments, out=sys.stdout):
        self.args, self.out = args, out
        self.rows = {row.name: row for row in read_stages(args)}
        self.sampling = Sampling.of(args)
        self.speakers: dict[str, Speaker] = {}
        self.scorer: Scorer | None = None
        self.speaker: Speaker | None = None
        self.history: list[dict] = []
        self.last: Answer | None = None

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def switch(self, stage: str) -> None:
        """Talk to `stage` (a configured name or a model folder) from a new conversation."""
        if stage in self.rows:
            row = self.rows[stage]
        elif is_model_dir(Path(stage)):
            row = Policy(name=stage, path=str(Path(stage).resolve()))
        else:
            names = ", ".join(self.rows)
            raise RecipeError(f"no stage or model folder {stage!r}; pick one of {names}, or a folder with a model")
        path = resolve(self.args, row.path)
        if not is_model_dir(path):
            raise RecipeError(f"{row.name}: {path} holds no model yet; run `make {Path(row.path).name}` first")
        if row.name not in self.speakers:
            self.speakers[row.name] = Speaker(row, path)
        self.speaker, self.history, self.last = self.speakers[row.name], [], None
        how = "bare text, no chat template" if row.prompt == "text" else "chat template"
        extra = f", best of {row.best_of} by the reward model" if row.best_of > 1 else ""
        self.say(f"[talking to {self.speaker.label} ({path}; {how}{extra}); /help for commands]")

    def answer(self, question: str) -> None:
        """Stream the stage's answer to `question` after the conversation so far."""
        messages = self.history + [{"role": "user", "content": question}]
        self.out.write(f"{self.speaker.label}> ")
        if self.speaker.row.best_of > 1:
            answer = self.score_keeper().best(
                messages, self.speaker.sample(messages, self.sampling, self.speaker.row.best_of)
            )
            self.out.write(answer.text)
        else:
            started = False
            for piece in self.speaker.stream(messages, self.sampling):
                if isinstance(piece, Answer):
                    answer = piece
                elif started or piece.strip():
                    self.out.write(piece if started else piece.lstrip())
                    self.out.flush()
                    started = True
        self.say("" if answer.ended else " [cut at max_new_tokens]")
        self.history = messages + [{"role": "assistant", "content": answer.text}]
        self.last = answer

    def score_keeper(self) -> Scorer:
        if self.scorer is None:
            self.scorer = Scorer(self.args, list(self.rows.values()))
        return self.scorer

    def show_score(self) -> None:
        if self.last is None:
            self.say("[nothing to score yet: ask something first]")
            return
        scores = self.score_keeper().score(self.history[:-1], self.last)
        parts = []
        if scores["reward"] is not None:
            parts.append(f"reward model {scores['reward']:+.2f}")
        if scores["gold"] is not None:
            gold = scores["gold"]
            detail = ", ".join(f"{k} {v:g}" for k, v in gold.items() if k != "total")
            parts.append(f"gold {gold['total']:g}/4 ({detail}; request kind: {scores['kind']})")
        self.say("[" + ("; ".join(parts) or "no reward model or world to score with") + "]")

    def command(self, line: str) -> bool:
        """Run a /command; False when it is /quit."""
        name, _, rest = line[1:].partition(" ")
        if name in ("quit", "exit", "q"):
            return False
        if name == "stage" and rest.strip():
            self.switch(rest.strip())
        elif name == "reset":
            self.history, self.last = [], None
            self.say("[new conversation]")
        elif name == "score":
            self.show_score()
        else:
            self.say(HELP)
        return True

    def turn(self, line: str) -> bool:
        """Handle one line typed at the prompt; False to stop. A problem is shown, and the chat goes on."""
        line = line.strip()
        try:
            if line.startswith("/"):
                return self.command(line)
            if line:
                self.answer(line)
        except RecipeError as e:
            self.say(f"error: {e}")
        return True

    def run(self, lines: Iterable[str] | None = None) -> None:
        """Chat on stdin (or over `lines`, for a script) until /quit or the end of the input."""
        source = iter(lines) if lines is not None else None
        while True:
            try:
                line = next(source) if source is not None else input("you> ")
            except (EOFError, StopIteration):
                self.say()
                break
            if not self.turn(line):
                break


def chat(args: TalkArguments, chat_args: ChatArguments, lines: Iterable[str] | None = None) -> Chat:
    """A chat with `chat_args.stage`; returns it, with its history and last answer."""
    torch.manual_seed(args.seed)
    talk = Chat(args)
    talk.switch(chat_args.stage)
    talk.run(lines)
    return talk
