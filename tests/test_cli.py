"""The ``shardsync`` command line: the demo runs end to end and bad input is reported, not half-applied."""

import json
import shutil
import subprocess
import sys

import pytest
import structlog

from worker.cli import main


@pytest.fixture(autouse=True)
def _reset_structlog():
    """The CLI configures structlog for its process; give the next tests the defaults back."""
    yield
    structlog.reset_defaults()


def test_demo_syncs_and_converges(capsys):
    assert main(["demo", "--sites", "20", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    summary = result["summary"]
    assert summary["create"] + summary["update"] + summary["delete"] > 0
    after = result["after_sync"]
    assert after["create"] == after["update"] == after["delete"] == 0


def test_demo_dry_run_changes_nothing(capsys):
    assert main(["demo", "--sites", "5", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Summary:" in out
    assert "Synced." not in out


def test_unknown_flag_is_named(capsys):
    assert main(["demo", "--flag", "continue_on_failure", "--flag", "no_such_flag"]) == 2
    err = capsys.readouterr().err
    assert "no_such_flag" in err and "continue_on_failure" in err


def test_negative_sites_is_rejected(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--sites", "-1"])
    assert exit_info.value.code == 2
    assert "--sites" in capsys.readouterr().err


def test_console_script_runs():
    exe = shutil.which("shardsync")
    command = [exe] if exe else [sys.executable, "-m", "worker.cli"]
    out = subprocess.run([*command, "demo", "--sites", "3", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout)["after_sync"]["create"] == 0
