"""Strict config parsing and one-line errors: what every stage's `main()` starts and ends with."""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import RecipeError, first_line  # noqa: F401  (re-exported: every stage raises them)
from .recipes import config_file


def parse(parser, argv: Sequence[str] | None) -> tuple:
    """Parse `--config x.yaml` plus command-line overrides, refusing unknown keys, wrong types and bad values."""
    argv = list(sys.argv[1:] if argv is None else argv)
    where = "the command line"
    if "--config" in argv:
        if argv.index("--config") + 1 == len(argv):
            raise RecipeError("--config needs a path; pass --config recipes/<model>/<stage>.yaml")
        path = Path(argv[argv.index("--config") + 1])
        argv[argv.index("--config") + 1] = str(config_file(path))  # TRL's parser opens it; messages name `path`
        where = f"{path} or on the command line"
    parser.error = lambda message: _usage_error(message, where)  # argparse would print usage and exit
    try:
        configs = parser.parse_args_and_config(argv, fail_with_unknown_args=True)
    except ValueError as e:
        message = first_line(e)
        if "Unknown arguments from config file" in message or "not used by the HfArgumentParser" in message:
            raise RecipeError(f"{message.split('. Please')[0]}; check the spelling or run with --help") from e
        raise RecipeError(message) from e
    finally:
        del parser.error
    if any(getattr(c, "dataset_streaming", False) for c in configs):
        raise RecipeError(
            "dataset_streaming is not supported: the stages split, count and shuffle whole datasets; "
            "set dataset_streaming: false"
        )
    for config in configs:
        turn_off_none(config)
        check_values(config, where)
    return configs


OFF = "none"  # the one documented way to turn an optional input off, in YAML and on the command line alike


def turn_off_none(config) -> None:
    """An optional text option set to `none` (or YAML's null, or '') is unset: argparse would keep the word."""
    for name, kind in _field_types(type(config), optional_only=True).items():
        value = getattr(config, name)
        if kind is str and isinstance(value, str) and value.strip().lower() in (OFF, "null", ""):
            setattr(config, name, None)


def _usage_error(message: str, where: str) -> typing.NoReturn:
    raise RecipeError(f"{message}; correct it in {where}")


# Values the libraries accept and fail on later (or train nonsense with): checked before any work.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "learning_rate": (lambda v: v > 0, "above 0, e.g. 5e-5"),
    "gradient_accumulation_steps": (lambda v: v >= 1, "at least 1"),
    "num_ppo_epochs": (lambda v: v >= 1, "at least 1"),
    "num_mini_batches": (lambda v: v >= 1, "at least 1"),
    "temperature": (lambda v: v > 0, "above 0"),
    "label_noise": (
        lambda v: 0 <= v < 0.5,
        "in [0, 0.5): at 0.5 the labels are coin flips, above it the labeler prefers the worse answer",
    ),
    "test_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "eval_split_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "max_new_tokens": (lambda v: v >= 1, "at least 1"),
    "response_length": (lambda v: v >= 1, "at least 1"),
    "max_prompt_length": (lambda v: v >= 1, "at least 1"),
    "TalkArguments.temperature": (lambda v: v >= 0, "at least 0 (0: greedy)"),  # chat and serve: no training
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "top_k": (lambda v: v >= 0, "at least 0 (0: all tokens)"),
}
AT_LEAST_ONE = RANGES["gradient_accumulation_steps"]  # and every *batch_size
SIMPLE_TYPES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_values(config, where: str) -> None:
    """Refuse a field of the wrong type or out of range, naming it, before any model or data is loaded.

    argparse converts only string values, so a YAML list or number where another kind belongs gets through.
    """
    hints = _field_types(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        kind = hints.get(field.name)
        if value is None:
            continue
        if kind and not _is_a(value, kind):
            raise RecipeError(f"{field.name} is {value!r}, not {SIMPLE_TYPES[kind]}; set it in {where}")
        rule = RANGES.get(f"{type(config).__name__}.{field.name}") or RANGES.get(field.name)
        rule = rule or (AT_LEAST_ONE if field.name.endswith("batch_size") else None)
        if rule and isinstance(value, (int, float)) and not isinstance(value, bool) and not rule[0](value):
            raise RecipeError(f"{field.name} is {value}; it must be {rule[1]}: set it in {where}")
    check_mini_batches(config, where)


def check_mini_batches(config, where: str) -> None:
    """PPO cuts each rank's rollouts into `num_mini_batches` equal parts: checked before any model loads."""
    parts = getattr(config, "num_mini_batches", None)
    if not isinstance(parts, int) or parts < 1:
        return
    size, steps = config.per_device_train_batch_size, config.gradient_accumulation_steps
    if parts > 1 and steps > 1:
        raise RecipeError(
            f"num_mini_batches {parts} and gradient_accumulation_steps {steps} both split each update's rollouts "
            f"into optimizer steps; set one of them to 1 in {where}"
        )
    rollouts = size * steps
    if rollouts % parts:
        fits = max(d for d in range(1, parts + 1) if rollouts % d == 0)
        raise RecipeError(
            f"num_mini_batches {parts} does not divide the {rollouts} rollouts per update "
            f"(per_device_train_batch_size {size} x gradient_accumulation_steps {steps}); "
            f"set num_mini_batches to a divisor of {rollouts}, e.g. {fits}, in {where}"
        )


def _field_types(cls, optional_only: bool = False) -> dict[str, type]:
    """The fields of a config dataclass typed plainly int, float, bool or str (optional or not, or optional only)."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # a hint this Python cannot resolve: check nothing rather than guess
        return {}
    out = {}
    for name, hint in hints.items():
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
        if optional:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = args[0] if len(args) == 1 else None
        if hint in SIMPLE_TYPES and (optional or not optional_only):
            out[name] = hint
    return out


def _is_a(value, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def disk_full(error: BaseException | None) -> str | None:
    """Why `error` (or one it came from) is a full disk or a file-size limit, or None.

    Python raises OSError; writers in Rust (tokenizers, safetensors) raise a plain Exception with the OS's words.
    """
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return error.strerror
        for reason in map(os.strerror, DISK_FULL):
            if reason in str(error):
                return reason
        error = error.__cause__ or error.__context__
    return None


_declared: list | None = None  # set while `declared()` runs a script: its `cli(main)` hands `main` over


def cli(main: Callable[[Sequence[str] | None], object]) -> None:
    """Run a script's `main`, turning a `RecipeError` (or a full disk) into one line on stderr and exit status 2."""
    if _declared is not None:
        _declared.append(main)
        return
    try:
        main(None)
        leave_process_group()
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        if (reason := disk_full(e)) is None:
            raise
        print(
            f"error: the output could not be written: {reason}; free some space (or raise the file size limit) "
            "and run again, or set output_dir on a disk with room",
            file=sys.stderr,
        )
        sys.exit(2)


def leave_process_group() -> None:
    """End a finished multi-process run's process group while the interpreter is whole: left to interpreter exit,
    gloo's worker threads can abort a rank that has finished ("terminate called without an active exception",
    SIGABRT, pytorch/pytorch#179291). Only after success: a rank that failed must not wait on the others."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def declared(script: str | Path) -> Callable[[Sequence[str] | None], object]:
    """The `main` a script hands to `cli`, found by running the script as `python script` would, up to that call.

    This is how the tests and the bench reach a script: through its one declared entry (for a training
    script, `SomeStage.main`, whose `__self__` is the Stage), never by importing it as a module.
    """
    import runpy

    global _declared
    _declared, found = [], None
    try:
        runpy.run_path(str(script), run_name="__main__")
        found = _declared
    finally:
        _declared = None
    if len(found) != 1:
        raise RecipeError(
            f"{script} does not end with `cli(main)`; end it with `if __name__ == '__main__': cli(main)`"
        )
    return found[0]
