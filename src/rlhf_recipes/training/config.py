"""Strict config parsing and one-line errors: what every stage's `main()` starts and ends with."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path


class RecipeError(Exception):
    """A problem the user can fix; the CLI prints it as one line and exits non-zero."""


def parse(parser, argv: Sequence[str] | None) -> tuple:
    """Parse `--config x.yaml` plus command-line overrides, refusing unknown keys in either."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" in argv:
        path = Path(argv[argv.index("--config") + 1])
        if not path.is_file():
            raise RecipeError(f"config file {path} not found; pass --config recipes/<model>/<stage>.yaml")
    try:
        configs = parser.parse_args_and_config(argv, fail_with_unknown_args=True)
    except ValueError as e:
        message = first_line(e)
        if "Unknown arguments from config file" in message or "not used by the HfArgumentParser" in message:
            raise RecipeError(f"{message.split('. Please')[0]}; check the spelling or run with --help") from e
        raise RecipeError(message) from e
    if any(getattr(c, "dataset_streaming", False) for c in configs):
        raise RecipeError(
            "dataset_streaming is not supported: the stages split, count and shuffle whole datasets; "
            "set dataset_streaming: false"
        )
    return configs


def cli(main: Callable[[Sequence[str] | None], object]) -> None:
    """Run a stage's `main`, turning a `RecipeError` into one line on stderr and exit status 2."""
    try:
        main(None)
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def first_line(error: BaseException) -> str:
    """The first line of an exception's message: what a one-line error shows of a library's long one."""
    return (str(error).strip().splitlines() or [""])[0]
