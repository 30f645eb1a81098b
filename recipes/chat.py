"""Talk to any stage in the terminal (`make chat`, `STAGE=ppo` by default).

    python recipes/chat.py --config recipes/tiny/chat.yaml --stage sft --temperature 0.7 --top_p 0.9

A conversation through the chat template (the base model gets the bare text, as the report prompts it),
the answer printed token by token as it is generated. Commands at the prompt:

    /stage NAME|PATH   talk to another stage of chat.yaml, or to any model folder (starts a new conversation)
    /reset             start a new conversation
    /score             the reward model's score of the last answer; on the embedded world the gold labeler's too
    /help, /quit       (Ctrl-D quits as well)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from trl import TrlParser

from rlhf_recipes.serving.stages import (
    Answer,
    Sampling,
    Scorer,
    Speaker,
    StageRow,
    TalkArguments,
    is_model_dir,
    read_rows,
    resolve,
)
from rlhf_recipes.training.config import RecipeError, cli, parse

HELP = """commands: /stage NAME|PATH (another stage or model folder), /reset (new conversation),
          /score (scores of the last answer), /help, /quit"""


@dataclass
class ChatArguments:
    stage: str = field(
        default="ppo", metadata={"help": "The stage to talk to: a name in `stages`, or a model folder."}
    )


def make_parser() -> TrlParser:
    return TrlParser((TalkArguments, ChatArguments))


class Chat:
    """One conversation with one stage at a time; models and the scorer load when first needed."""

    def __init__(self, args: TalkArguments, out=sys.stdout):
        self.args, self.out = args, out
        self.rows = {row.name: row for row in read_rows(args)}
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
            row = StageRow(name=stage, path=str(Path(stage).resolve()))
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


def main(argv: Sequence[str] | None = None, lines=None) -> Chat:
    """Chat on stdin (or over `lines`, for a script); returns the chat, its history and last answer."""
    args, chat_args = parse(make_parser(), argv)
    torch.manual_seed(args.seed)
    chat = Chat(args)
    chat.switch(chat_args.stage)
    source = iter(lines) if lines is not None else None
    while True:
        try:
            line = next(source) if source is not None else input("you> ")
        except (EOFError, StopIteration):
            chat.say()
            break
        if not chat.turn(line):
            break
    return chat


if __name__ == "__main__":
    cli(main)
