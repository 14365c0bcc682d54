"""The layout README.md describes is the tree's: every module of worker/ and core/store/ is named there,
opens with a docstring, and stays a size a reader can hold (about 400 lines at most)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SIZED = ["worker", "core/store"]
MAX_LINES = 420


def layout_block() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Layout")
    return text[start : text.index("```", text.index("```", start) + 3)]


def modules(folder: str):
    return sorted(path for path in (ROOT / folder).rglob("*.py") if "__pycache__" not in path.parts)


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
