"""The schedule file is read by beat and by ``shardsync check-schedule``, never by importing ``worker``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from worker.cli.main import main

ROOT = Path(__file__).resolve().parents[3]
BROKEN = '{"syncs": [{"name": "bad", "every": -5, "job": {"source": "demo", "target": "demo"}}]}'
BROKEN_TOML = '[[syncs]]\nname = "bad"\nevery = -5\njob = { source = "demo", target = "demo" }\n'


def run(args, schedule_file, timeout=60):
    env = dict(os.environ, SHARDSYNC_SCHEDULE_FILE=str(schedule_file))
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_a_broken_schedule_file_does_not_break_import_or_demo(tmp_path) -> None:
    path = tmp_path / "schedule.json"
    path.write_text(BROKEN)
    code = "import worker, worker.runners.celery.tasks; print(worker.app.conf.beat_schedule)"
    imported = run([sys.executable, "-c", code], path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "{}"
    demo = run([sys.executable, "-m", "worker.cli", "demo", "--json"], path)
    assert demo.returncode == 0, demo.stderr
    assert json.loads(demo.stdout)["after_sync"]["create"] == 0


def test_check_schedule_validates_on_request(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(BROKEN)
    assert main(["check-schedule", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "entry 'bad'" in err and "'every' must be a positive number" in err
    good = tmp_path / "good.json"
    entry = {"name": "hourly", "every": 3600, "job": {"source": "demo", "target": "demo"}}
    cron = {"name": "fives", "cron": "*/5 * * * *", "job": {"source": "demo", "target": "demo"}}
    good.write_text(json.dumps({"syncs": [entry, cron]}))
    assert main(["check-schedule", str(good)]) == 0
    out = capsys.readouterr().out
    # As written, with its next run: never Celery's repr ("<crontab: ... (m/h/dM/MY/d)>").
    assert re.search(r"^hourly\tevery 3600 s\tnext \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\tdemo -> demo$", out, re.M)
    fives = re.search(r"^fives\tcron '\*/5 \* \* \* \*'\tnext \S+:(\d\d):00\+00:00\tdemo -> demo$", out, re.M)
    assert fives and int(fives.group(1)) % 5 == 0, out
    assert "2 scheduled syncs, all valid" in out and "<crontab" not in out
    missing = tmp_path / "missing.json"
    assert main(["check-schedule", str(missing)]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_check_schedule_validates_toml(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(BROKEN_TOML)
    assert main(["check-schedule", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"schedule file {bad}, entry 'bad'" in err and "'every' must be a positive number" in err
    good = tmp_path / "good.toml"
    good.write_text('[[syncs]]\nname = "nightly"\ncron = "0 2 * * *"\njob = { source = "demo", target = "demo" }\n')
    assert main(["check-schedule", str(good)]) == 0
    out = capsys.readouterr().out
    assert "nightly\t" in out and "demo -> demo" in out and "1 scheduled syncs, all valid" in out
    odd = tmp_path / "schedule.yaml"
    odd.write_text("syncs: []")
    assert main(["check-schedule", str(odd)]) == 2
    assert "unknown format '.yaml'; name it *.toml or *.json" in capsys.readouterr().err


def test_check_schedule_without_a_file(capsys) -> None:
    from worker.settings import get_settings

    if get_settings().schedule_file:
        pytest.skip("SHARDSYNC_SCHEDULE_FILE is set in this environment")
    assert main(["check-schedule"]) == 2
    assert "SHARDSYNC_SCHEDULE_FILE is not set" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "text"), [("schedule.json", BROKEN), ("schedule.toml", BROKEN_TOML)])
def test_beat_refuses_a_broken_schedule_at_start(tmp_path, name, text) -> None:
    path = tmp_path / name
    path.write_text(text)
    env = dict(os.environ, SHARDSYNC_SCHEDULE_FILE=str(path))
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "worker", "beat", "-s", str(tmp_path / "beat-state"), "-l", "info"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = beat.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(beat.pid, signal.SIGKILL)
        beat.wait(timeout=10)
        raise AssertionError("beat kept running with a broken schedule file") from None
    assert beat.returncode != 0
    assert f"schedule file {path}, entry 'bad': 'every' must be a positive number" in output
