"""The core's layers, read from the code: every import runs downward, no circle, and nothing imports a script.

Imports are read with the AST (module level and inside functions alike: a lazy import is still an edge).
"""

import ast
from pathlib import Path

import pytest

from conftest import ROOT

SRC = ROOT / "src"
PACKAGE = "rlhf_recipes"
# bottom first: a module may import its own layer and the layers below it, never one above
LAYERS = [("compat",), ("world",), ("training",), ("evaluation",), ("stages",), ("bench", "serving")]
SCRIPTS = {p.stem for p in (ROOT / "recipes").glob("*.py")}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """The absolute names of everything `path` imports (for `from x import y`, both `x.y` and `x`)."""
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found |= {origin} | {f"{origin}.{alias.name}" for alias in node.names}
    return found


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def edges() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name that is not a module counts as its module)."""
    known = modules()
    graph = {}
    for name, path in known.items():
        targets = set()
        for target in imported(path):
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != PACKAGE:
                targets.add(target)
        graph[name] = targets
    return graph


def layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def test_every_module_of_the_core_is_in_a_layer():
    unplaced = [m for m in modules() if m != PACKAGE and layer(m) is None]
    assert not unplaced, f"{unplaced}: add their folder to LAYERS (and to the package docstring)"


def test_no_import_runs_upward():
    upward = [
        f"{modules()[a].relative_to(ROOT)} imports {modules()[b].relative_to(ROOT)}"
        for a, targets in edges().items()
        for b in targets
        if layer(a) is not None and layer(b) is not None and layer(b) > layer(a)
    ]
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as the list of its modules (first repeated at the end), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (circle := visit(nxt)):
                return circle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (circle := visit(node)):
            return circle
    return None


def test_no_import_circle():
    circle = find_circle(edges())
    assert circle is None, "import circle: " + " -> ".join(str(modules()[m].relative_to(ROOT)) for m in circle)


def test_the_circle_finder_finds_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set()}) is None


def test_layers_see_a_relative_import_upward(tmp_path, monkeypatch):
    """The reader resolves `from ..stages import x` in training/ to rlhf_recipes.stages (an upward edge)."""
    module = SRC / PACKAGE / "training" / "config.py"
    assert "rlhf_recipes.training.config" == module_name(module)
    fake = tmp_path / "src" / PACKAGE / "training" / "fake.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..stages.runner import Stage\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path / "src")
    assert "rlhf_recipes.stages.runner" in imported(fake)


@pytest.mark.parametrize("folder", ["src", "tests", "recipes"])
def test_nothing_imports_a_script(folder):
    """Scripts are reached by running them (`declared`, `stage_of`), never imported as modules."""
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in imported_top_level(path)
        if name in SCRIPTS
    ]
    assert not offenders, "\n".join(offenders)


def imported_top_level(path: Path) -> set[str]:
    """The top-level names `path` imports absolutely (`import sft`, `from sft import x`)."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def first_import(path: Path) -> ast.stmt:
    imports = [n for n in ast.parse(path.read_text(), str(path)).body if isinstance(n, ast.Import | ast.ImportFrom)]
    return next(n for n in imports if getattr(n, "module", "") != "__future__")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_script_imports_the_core_first(name):
    """Before any library: the core defers bitsandbytes before peft can import it (compat.defer_bitsandbytes)."""
    first = first_import(ROOT / "recipes" / f"{name}.py")
    assert isinstance(first, ast.Import) and [a.name for a in first.names] == [PACKAGE]
