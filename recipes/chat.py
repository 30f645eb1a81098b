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

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from collections.abc import Iterable, Sequence

from trl import TrlParser

from rlhf_recipes.serving.chat import Chat, ChatArguments, chat
from rlhf_recipes.serving.stages import TalkArguments
from rlhf_recipes.training.config import cli, parse


def main(argv: Sequence[str] | None = None, lines: Iterable[str] | None = None) -> Chat:
    """Chat on stdin (or over `lines`, for a script); returns the chat, its history and last answer."""
    return chat(*parse(TrlParser((TalkArguments, ChatArguments)), argv), lines)


if __name__ == "__main__":
    cli(main)
