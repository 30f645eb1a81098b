"""Recipe folders: each names its data and outputs roots once, in `recipe.yaml`; a folder with a `base` holds
only what differs from it.

    recipes/tiny/recipe.yaml      data_root: data/world     outputs_root: outputs/tiny
    recipes/tiny-zh/recipe.yaml   base: tiny   data_root: data/world-zh   outputs_root: outputs/tiny-zh

Stage `S` of a folder with a base is the base's `S.yaml` with every path under the base's roots moved to this
folder's roots, and then this folder's own `S.yaml` (if any: only the keys that differ) laid over it, key by key.
A path into the base folder itself (`recipes/tiny/x.jinja`) is left as it is: it names a file of the base, which
exists; a folder that has its own version of that file names it in its overlay. One step only: a base that has
a base itself is refused, so every stage is at most two files to read. A folder without a base (or without a
recipe.yaml: a user's own YAMLs anywhere) is read as it is.
"""

from __future__ import annotations

import atexit
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import RecipeError


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a recipe that sets a key twice is a mistake."""

    def construct_mapping(self, node, deep=False):
        lines = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in lines:
                raise _DuplicateKey(problem=f"{key} is set twice (first on line {lines[key]})",
                                    problem_mark=key_node.start_mark)  # fmt: skip
            lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_config(path: Path) -> dict:
    """A recipe YAML read strictly: a directory, a tab, a repeated key or a non-mapping is one line naming it."""
    if path.is_dir():
        examples = sorted(p.name for p in path.glob("*.yaml"))[:3] or ["<stage>.yaml"]
        raise RecipeError(f"config {path} is a directory; pass a YAML file in it, e.g. {path / examples[0]}")
    if not path.is_file():
        raise RecipeError(f"config file {path} not found; pass --config recipes/<model>/<stage>.yaml")
    try:
        text = path.read_text(encoding="utf-8")
        config = yaml.load(text, Loader=_StrictLoader)
    except UnicodeDecodeError as e:
        raise RecipeError(f"config {path} is not UTF-8 text; save it as UTF-8") from e
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = text.split("\n")[mark.line] if mark else ""
        if isinstance(e, _DuplicateKey):
            fix = "keep one of them"
        elif "\t" in line:
            fix = "indent with spaces: YAML does not allow tabs"
        else:
            fix = "fix the YAML syntax there"
        raise RecipeError(f"config {path} line {mark.line + 1 if mark else '?'}: {e.problem}; {fix}") from e
    if not isinstance(config, dict):
        what = "nothing" if config is None else f"a {type(config).__name__}"
        raise RecipeError(f"config {path} holds {what}, not `key: value` settings; write one setting per line")
    return config


RECIPES = Path("recipes")  # the recipe folders, from the repository root (where make and the CLI run)
RECIPE_FILE = "recipe.yaml"
KEYS = ("base", "data_root", "outputs_root")


@dataclass(frozen=True)
class Recipe:
    """A folder's recipe.yaml: its base (another folder of the same parent) and the roots its paths start with."""

    folder: Path
    base: str | None = None
    data_root: str | None = None
    outputs_root: str | None = None

    def roots(self) -> dict[str, str]:
        return {key: getattr(self, key) for key in KEYS[1:] if getattr(self, key) is not None}


def read_recipe(folder: Path) -> Recipe:
    """`folder/recipe.yaml`, checked, with its base checked too; a folder without one has no base and no roots."""
    recipe = _read(folder)
    if recipe.base is not None:
        _check_base(recipe)
    return recipe


def _read(folder: Path) -> Recipe:
    """`folder/recipe.yaml` as written: only the known keys, each a non-empty string."""
    path = folder / RECIPE_FILE
    if not path.is_file():
        return Recipe(folder)
    raw = read_config(path)
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise RecipeError(f"{path}: unknown key {unknown[0]}; a recipe.yaml holds only {', '.join(KEYS)}")
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip():
            raise RecipeError(f"{path}: {key} is {value!r}, not a name or path; write e.g. {key}: {EXAMPLES[key]}")
    return Recipe(folder, **{key: value.rstrip("/") for key, value in raw.items()})


EXAMPLES = {"base": "tiny", "data_root": "data/world", "outputs_root": "outputs/tiny"}


def _check_base(recipe: Recipe) -> None:
    """The base: a sibling folder with a recipe.yaml, no base of its own, naming every root this one moves."""
    path, base = recipe.folder / RECIPE_FILE, recipe.folder.parent / recipe.base
    if "/" in recipe.base or recipe.base in (".", "..", recipe.folder.name):
        raise RecipeError(f"{path}: base {recipe.base} is not another recipe folder; name one, e.g. base: tiny")
    if not (base / RECIPE_FILE).is_file():
        folders = sorted(
            p.parent.name for p in recipe.folder.parent.glob(f"*/{RECIPE_FILE}") if p.parent != recipe.folder
        )
        what = "does not exist" if not base.is_dir() else f"has no {RECIPE_FILE} naming its roots"
        raise RecipeError(f"{path}: base {recipe.base} {what}; choose one of {', '.join(folders) or 'none'}")
    if recipe.outputs_root is None:
        raise RecipeError(f"{path}: a folder with a base needs its own outputs_root, or it would overwrite the base's")
    parent = _read(base)
    if parent.base is not None:
        raise RecipeError(
            f"{path}: base {recipe.base} has a base itself ({parent.base}); name {parent.base} as the base: "
            "a recipe folder is at most one step from its base"
        )
    missing = sorted(recipe.roots().keys() - parent.roots().keys())
    if missing:
        raise RecipeError(f"{path}: sets {missing[0]} but its base's {base / RECIPE_FILE} does not; add it there")


def resolved_config(path: Path) -> dict:
    """The settings of the stage YAML at `path`: the file as it is, or (in a folder with a base) the base's
    stage moved to this folder's roots with this folder's file, if any, laid over it."""
    recipe = read_recipe(path.parent) if path.name != RECIPE_FILE else Recipe(path.parent)
    if recipe.base is None or path.is_dir():
        return read_config(path)
    base = _read(recipe.folder.parent / recipe.base)
    inherited = base.folder / path.name
    if not inherited.is_file():
        if path.is_file():
            return read_config(path)  # a stage of this folder alone: nothing to inherit
        raise RecipeError(
            f"config file {path} not found, nor {inherited} of its base; "
            f"its stages are {', '.join(_stages(recipe.folder, base.folder))}"
        )
    moves = {base.roots()[key]: root for key, root in recipe.roots().items()}
    settings = moved(read_config(inherited), moves)
    if path.is_file():
        settings.update(read_config(path))
    return settings


def moved(value, moves: dict[str, str]):
    """`value` with every string under a root of `moves` (at a path-component boundary) moved to the new root,
    in nested mappings and lists too: `outputs/tiny/sft` -> `outputs/tiny-zh/sft`, `outputs/tiny-x` untouched."""
    if isinstance(value, dict):
        return {key: moved(item, moves) for key, item in value.items()}
    if isinstance(value, list):
        return [moved(item, moves) for item in value]
    if isinstance(value, str):
        for old, new in moves.items():
            if value == old or value.startswith(old + "/"):
                return new + value[len(old) :]
    return value


def recipe_config(model: str, stage: str, recipes: Path = RECIPES) -> dict:
    """Stage `stage` of recipe folder `model` as the scripts read it: `recipes/<model>/<stage>.yaml`, resolved."""
    return resolved_config(recipes / model / f"{stage}.yaml")


def moved_settings(model: str, stage: str, roots: dict[str, str], recipes: Path = RECIPES) -> list[str]:
    """`--key path` overrides that move every path of the stage under the folder's roots to the ones in `roots`
    (`{"data_root": ..., "outputs_root": ...}`): the stage as `make` runs it, on inputs and outputs elsewhere."""
    moves = {old: roots[key] for key, old in read_recipe(recipes / model).roots().items() if key in roots}
    settings = recipe_config(model, stage, recipes)
    return [
        arg
        for key, value in settings.items()
        if isinstance(value, str) and (there := moved(value, moves)) != value
        for arg in (f"--{key}", there)
    ]


def outputs_root(model: str, recipes: Path = RECIPES) -> str:
    """Where recipe folder `model` writes its stages: its recipe.yaml's outputs_root, else outputs/<model>."""
    return read_recipe(recipes / model).outputs_root or f"outputs/{model}"


def stage_config_exists(model: str, stage: str, recipes: Path = RECIPES) -> bool:
    """Whether `--config recipes/<model>/<stage>.yaml` names a stage: the folder's own file, or its base's."""
    return stage in recipe_stages(model, recipes)


def recipe_stages(model: str, recipes: Path = RECIPES) -> list[str]:
    """The stages a folder runs: its own YAMLs and, with a base, the base's (recipe.yaml is none)."""
    folder = recipes / model
    recipe = read_recipe(folder)
    return _stages(folder, *([folder.parent / recipe.base] if recipe.base else []))


def _stages(*folders: Path) -> list[str]:
    return sorted({p.stem for f in folders for p in f.glob("*.yaml") if p.name != RECIPE_FILE})


def config_file(path: Path) -> Path:
    """The YAML for TRL's parser to open for `--config path`: `path` itself (read strictly first), or, for a
    stage of a folder with a base, a temporary file holding the resolved settings (removed at exit)."""
    settings = resolved_config(path)
    if path.name == RECIPE_FILE or read_recipe(path.parent).base is None:
        return path  # read strictly above, exactly as written: TRL's parser opens it itself
    handle, name = tempfile.mkstemp(prefix=f"{path.parent.name}-{path.stem}-", suffix=".yaml")
    with open(handle, "w", encoding="utf-8") as file:
        yaml.safe_dump(settings, file, sort_keys=False, allow_unicode=True)
    atexit.register(Path(name).unlink, missing_ok=True)
    return Path(name)
