"""Every stage side by side in the browser (`make serve`, http://127.0.0.1:8000 by default).

    python recipes/serve.py --config recipes/tiny/serve.yaml --port 8000

One prompt goes to every stage present in outputs_dir (base, SFT, best-of-n, PPO, and DPO/RLOO/GRPO after
`make methods`); the answers stream into columns side by side, each with its reward-model and gold score.
Under http://127.0.0.1:8000/v1 the same stages answer OpenAI's Chat Completions API, for any OpenAI client.
FastAPI on uvicorn: typed request checking and streaming responses from a well-kept library, and a bad
request gets a 4xx with a message. It listens on loopback only, unless `host` says otherwise.
"""

from __future__ import annotations

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from collections.abc import Sequence

from trl import TrlParser

from rlhf_recipes.serving.app import ServeArguments, serve
from rlhf_recipes.serving.stages import TalkArguments
from rlhf_recipes.training.config import cli, parse


def main(argv: Sequence[str] | None = None) -> None:
    serve(*parse(TrlParser((TalkArguments, ServeArguments)), argv))


if __name__ == "__main__":
    cli(main)
