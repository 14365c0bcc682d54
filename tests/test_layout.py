"""The layout README.md describes is the tree's, and it stays one a reader can find their way in.

Every module of worker/ and core/store/ is named in README's layout and opens with a docstring; no folder of
worker/ holds more than 12 modules, no module of worker/ or core/store/ more than 400 lines; worker/ has no
import cycle; the tests mirror the code (every folder of worker/ has a folder of tests).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIZED = ["worker", "core/store"]
MAX_LINES = 400
MAX_MODULES = 12


def layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Layout")
    return text[start : text.index("```", text.index("```", start) + 3)]


def modules(folder: str) -> List[Path]:
    return sorted(path for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts)


def folders(folder: str) -> List[Path]:
    return sorted({path.parent for path in modules(folder)})


@pytest.mark.parametrize("path", modules("worker") + modules("core/store/redis"), ids=str)
def test_every_module_is_named_in_the_readme_layout(path: Path) -> None:
    if path.name == "__init__.py":
        name = f"{path.parent.name}/"
    else:
        name = path.name
    assert name in layout_block(), f"README.md's layout does not name {path.relative_to(ROOT)}"


@pytest.mark.parametrize("path", modules("worker") + modules("core"), ids=str)
def test_every_module_opens_with_a_docstring(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and docstring.strip(), f"{path.relative_to(ROOT)} has no module docstring"


@pytest.mark.parametrize("path", [p for folder in SIZED for p in modules(folder)], ids=str)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines; split it by concept"


@pytest.mark.parametrize("folder", folders("worker"), ids=str)
def test_folders_stay_small(folder: Path) -> None:
    count = len(list(folder.glob("*.py")))
    assert count <= MAX_MODULES, f"{folder.relative_to(ROOT)} holds {count} modules; give a concept a folder"


@pytest.mark.parametrize("folder", folders("worker"), ids=str)
def test_every_folder_of_the_runner_has_its_tests(folder: Path) -> None:
    mirror = ROOT / "tests" / folder.relative_to(ROOT)
    assert list(mirror.glob("test_*.py")), f"{folder.relative_to(ROOT)} has no tests in {mirror.relative_to(ROOT)}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, known: Set[str]) -> Set[str]:
    """The project modules a module imports, anywhere in it (a function's own imports too)."""
    found: Set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def test_the_runner_has_no_import_cycle() -> None:
    paths = modules("worker")
    known = {module_name(path) for path in paths}
    graph: Dict[str, Set[str]] = {module_name(path): imports_of(path, known) for path in paths}
    # A package's __init__ may name what its modules define; its modules must not import it back.
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for other in sorted(graph.get(name, ())):
            if state.get(other) == 1:
                cycle = stack[stack.index(other) :] + [other]
                pytest.fail("import cycle in worker/: " + " -> ".join(cycle))
            if other not in state:
                visit(other)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
