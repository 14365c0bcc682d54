"""What README.md shows works as shown: its Python examples define what they use, the quick start and the first
own adapter run (in processes of their own, as a newcomer runs them), every command it names exists, the
settings table lists every setting, and its links lead somewhere."""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from worker.cli.main import cli
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language: str, text: str = README) -> List[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.S | re.M)


def section(heading: str) -> str:
    start = README.index(f"\n{heading}\n")
    following = README.find("\n## ", start + len(heading) + 2)
    return README[start : following if following > 0 else None]


def test_every_python_example_defines_what_it_uses(tmp_path) -> None:
    found = blocks("python")
    assert len(found) >= 5
    for number, code in enumerate(found):
        (tmp_path / f"example_{number}.py").write_text(code)
    ruff = [
        sys.executable,
        "-m",
        "ruff",
        "check",
        "--isolated",
        "--select",
        "F821,F811",
        "--output-format",
        "concise",
    ]
    result = subprocess.run([*ruff, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_quick_start_runs_quietly(tmp_path) -> None:
    code = blocks("python", section("## Quick start"))[0]
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "{'create': 2, 'update': 0, 'delete': 0, 'no-change': 0, 'skip': 0}" in result.stdout
    assert "Attempting model create" not in result.stdout + result.stderr  # the engine's debug events: quiet


def test_the_first_own_adapter_syncs_a_json_file_into_sqlite(tmp_path) -> None:
    part = section("## Your own adapters, on workers")
    (tmp_path / "myinventory.py").write_text(blocks("python", part)[0])
    (tmp_path / "inventory.json").write_text(blocks("json", part)[0])
    command = re.search(r"^shardsync sync --local .*?(?<!\\)$", part.replace("\\\n    ", ""), re.M).group(0)
    args = shlex.split(command)[1:]
    driver = f"""
import sys
from worker.cli.main import main
args = {args!r} + ["--json"]
codes = [main(args)]
import json
data = json.load(open("inventory.json"))
data["sites"][0]["devices"][0]["role"] = "border"
del data["sites"][1]
json.dump(data, open("inventory.json", "w"))
codes.append(main(args))
sys.exit(max(codes))
"""
    env = {**os.environ, "SHARDSYNC_ADAPTER_MODULES": "myinventory", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", driver], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    first, second = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert first["status"] == "success" and first["counts"] == {"create": {"success": 5}}
    assert second["counts"] == {"update": {"success": 1}, "delete": {"success": 2}}
    db = sqlite3.connect(tmp_path / "inventory.db")
    assert db.execute("SELECT * FROM site").fetchall() == [("ams1", "emea")]
    assert sorted(db.execute("SELECT * FROM device").fetchall()) == [
        ("ams1", "leaf1", "border"),
        ("ams1", "spine1", "spine"),
    ]


def test_every_command_the_readme_names_exists() -> None:
    named = set()
    for code in blocks("sh"):
        for line in code.splitlines():
            words = line.strip().split()
            if len(words) > 1 and words[0] == "shardsync" and re.fullmatch(r"[a-z-]+", words[1]):
                named.add(tuple(words[1:3]))
    assert ("web", "token") in named and len(named) >= 10
    for command, *rest in named:
        assert command in cli.commands, f"README names `shardsync {command}`, which does not exist"
        sub = cli.commands[command]
        if rest and hasattr(sub, "commands") and re.fullmatch(r"[a-z][a-z-]*", rest[0]):
            assert rest[0] in sub.commands, f"README names `shardsync {command} {rest[0]}`"


def test_the_settings_table_lists_every_setting_and_nothing_else() -> None:
    table = section("## Operators' guide").split("### Settings", 1)[1]
    listed = set()
    for first, second in re.findall(r"^\| `([A-Z_]+)`(?:, `([A-Z_]+)`)? \|", table, re.M):
        listed |= {first, second} - {""}
    assert listed == {name.upper() for name in Settings.model_fields}


def test_links_lead_somewhere() -> None:
    headings = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.*)$", README, re.M)
    }
    for anchor in re.findall(r"\]\(#([^)]+)\)", README):
        assert anchor in headings, f"README links to #{anchor}, which no heading makes"
    for target in re.findall(r"\]\(((?!http|#)[^)]+)\)", README):
        assert (ROOT / target).exists(), f"README links to {target}, which is not in the repository"
    assert "../shared" not in README and "ARCHITECTURE.md" not in README


@pytest.mark.parametrize("path", ["LICENSE", "worker/INTERNALS.md", "deploy/README.md"])
def test_the_documents_it_points_to_exist(path: str) -> None:
    assert (ROOT / path).is_file()
    if path == "LICENSE":
        assert "Apache License" in (ROOT / path).read_text() and "Version 2.0" in (ROOT / path).read_text()
