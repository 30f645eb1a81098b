"""Stage 0: generate the embedded world and every dataset the pipeline trains on (`make data`).

python recipes/data.py --config recipes/tiny/data.yaml
"""

from __future__ import annotations

import rlhf_recipes  # noqa: F401  # isort: skip  (first: bitsandbytes loads on use, not with peft; compat.py)
from collections.abc import Sequence
from pathlib import Path

from trl import TrlParser

from rlhf_recipes.training.config import RecipeError, cli, parse
from rlhf_recipes.training.outputs import OutputArguments, Stopwatch, staged_output, write_json
from rlhf_recipes.world.datagen import WorldConfig, write


def make_parser() -> TrlParser:
    return TrlParser((WorldConfig, OutputArguments))


def main(argv: Sequence[str] | None = None) -> dict:
    try:
        cfg, output_args = parse(make_parser(), argv)
    except ValueError as e:  # a rate out of range, an unknown attribute
        raise RecipeError(str(e)) from e
    clock = Stopwatch()
    with staged_output(cfg.output_dir, stage="data", overwrite=output_args.overwrite_output_dir) as out:
        sizes = write(cfg, Path(out))
        write_json(Path(out) / "metrics.json", {"sizes": sizes, "wall_time_s": clock.seconds})
    for name, splits in sizes.items():
        print(f"{name:>20}: " + ", ".join(f"{split} {n}" for split, n in splits.items()))
    print(f"wrote {cfg.output_dir}")
    return sizes


if __name__ == "__main__":
    cli(main)
