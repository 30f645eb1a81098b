"""Every stage side by side in the browser (`make serve`, http://127.0.0.1:8000 by default).

    python recipes/serve.py --config recipes/tiny/serve.yaml --port 8000

One prompt goes to every stage present in outputs_dir (base, SFT, best-of-n, PPO, and DPO/RLOO/GRPO after
`make methods`); the answers stream into columns side by side, each with its reward-model and gold score.
FastAPI on uvicorn: typed request checking and streaming responses from a well-kept library, and a bad
request gets a 4xx with a message. It listens on loopback only, unless `host` says otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from trl import TrlParser

from rlhf_recipes.serving.stages import TalkArguments
from rlhf_recipes.training.config import RecipeError, cli, parse


@dataclass
class ServeArguments:
    host: str = field(
        default="127.0.0.1", metadata={"help": "Address to listen on; 0.0.0.0 shares the page with your network."}
    )
    port: int = field(default=8000, metadata={"help": "Port to listen on."})
    max_prompt_chars: int = field(default=1000, metadata={"help": "Longer prompts are refused (413)."})


def make_parser() -> TrlParser:
    return TrlParser((TalkArguments, ServeArguments))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    from rlhf_recipes.serving.app import create_app

    args, serve_args = parse(make_parser(), argv)
    if not 0 < serve_args.port < 65536 or serve_args.max_prompt_chars < 1:
        raise RecipeError("port must be 1-65535 and max_prompt_chars at least 1")
    torch.manual_seed(args.seed)
    app = create_app(args, serve_args.max_prompt_chars)
    if not is_loopback(serve_args.host):
        print(f"warning: listening on {serve_args.host}: anyone who can reach this machine can use the models")
    print(f"every stage side by side: http://{serve_args.host}:{serve_args.port}  (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=serve_args.host, port=serve_args.port, log_level="warning")


if __name__ == "__main__":
    cli(main)
