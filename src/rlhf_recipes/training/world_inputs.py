"""A stage's embedded-world extras follow its main dataset: on with the world's data, off with a user's.

`make data` writes each dataset of a world into a folder beside that world's `world.json`, and a stage
whose output is built from one (the comparisons) names that world in its `metrics.json`. A world option
left at `auto` becomes the world's file when the stage's main dataset is a world's, and nothing
otherwise, so a run on a user's data never opens `data/world/`. `none` turns an option off; any other
value is a path, used as given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from accelerate import PartialState

from .outputs import MANIFEST

AUTO = "auto"
WORLD_FILE = "world.json"
WORLD_KEY = "world"  # in a stage's metrics.json: its world, relative to the stage's output folder


def world_of(dataset: str | None) -> Path | None:
    """The world folder a local dataset folder was generated from, or None (a file, a hub id, a user's data)."""
    folder = Path(dataset) if dataset else None
    if folder is None or not folder.is_dir():
        return None
    home, manifest = folder.parent, folder.parent / MANIFEST
    written_by_data = manifest.is_file() and json.loads(manifest.read_text()).get("stage") == "data"
    if written_by_data and (home / WORLD_FILE).is_file():
        return home
    metrics = folder / "metrics.json"
    recorded = json.loads(metrics.read_text()).get(WORLD_KEY) if metrics.is_file() else None
    # recorded against the folder's real location (world_record resolves it): a linked stage folder follows too
    return Path(os.path.relpath(os.path.normpath(folder.resolve() / recorded))) if recorded else None


def world_record(world: Path | None, out: str | Path) -> dict:
    """`{"world": <world relative to out>}` for a stage's metrics.json, so stages reading `out` follow it too."""
    return {WORLD_KEY: os.path.relpath(world.resolve(), Path(out).resolve()) if world else None}


def follow_world(args, dataset: str | None, **options: str) -> Path | None:
    """Resolve each `auto` option of `args` (name=file in the world) against `dataset`'s world; return the world.

    Prints one line saying which world extras the run uses, so a user's run shows that the toy world is off.
    """
    world = world_of(dataset)
    for name, file in options.items():
        if getattr(args, name) == AUTO:
            setattr(args, name, str(world / file) if world else None)
    used = {name: getattr(args, name) for name in options if getattr(args, name)}
    if used:
        PartialState().print("embedded-world extras: " + ", ".join(f"{name} {value}" for name, value in used.items()))
    else:
        PartialState().print(f"no embedded-world extras: {dataset} is not a `make data` dataset")
    return world


def load_world(path: str | Path):
    """The World in a world.json, or a one-line error naming the option."""
    from ..world.world import World
    from .config import RecipeError

    if not Path(path).is_file():
        raise RecipeError(f"world file {path} not found; set world_file to a world.json `make data` wrote, or none")
    return World.load(path)
