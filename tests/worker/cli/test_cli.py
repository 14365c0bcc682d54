"""The ``shardsync`` command line: the demo runs end to end and bad input is reported, not half-applied."""

import json
import shutil
import subprocess
import sys

import pytest
from rich.console import Console

from worker.cli.display import Follower, print_jobs
from worker.cli.main import main


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


def test_sync_batch_size_reaches_the_job(capsys):
    """``--batch-size`` as one number or MODEL=N pairs; the embedded runner carries it."""
    args = ["sync", "--local", "--source", "demo", "--target", "demo", "--json"]
    args += ["--source-kwargs", '{"sites": 3}', "--target-kwargs", '{"sites": 2}']
    assert main([*args, "--batch-size", "site=2", "--batch-size", "device=5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "success" and report["operations"] > 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["3", "site=2"], "one number or MODEL=N pairs"),
        (["sitee=2"], "names 'sitee', which is no model of"),
    ],
)
def test_sync_bad_batch_size_is_named(capsys, values, message):
    args = ["sync", "--local", "--source", "demo", "--target", "demo"]
    for value in values:
        args += ["--batch-size", value]
    assert main(args) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "x", "=3", "site=-1"])
def test_sync_batch_size_that_is_no_number_is_refused(capsys, value):
    with pytest.raises(SystemExit) as raised:
        main(["sync", "--local", "--source", "demo", "--target", "demo", "--batch-size", value])
    assert raised.value.code == 2
    assert "--batch-size" in capsys.readouterr().err


def test_the_job_list_says_what_each_job_did() -> None:
    """A job with failed operations is not listed as a success; a job that ended before its diff says so."""
    jobs = [
        {"job_id": "a", "source": "s", "target": "t", "state": "success", "summary": {"create": 2}, "failures": 1},
        {"job_id": "b", "source": "s", "target": "t", "state": "failed", "summary": None, "failures": 0},
        {"job_id": "c", "source": "s", "target": "t", "state": "success", "summary": {"create": 0}, "failures": 0,
         "schedule": "nightly"},
    ]  # fmt: skip
    console = Console(record=True, width=200)
    print_jobs(console, jobs)
    lines = console.export_text().splitlines()
    assert "partial" in lines[0] and "create 2, 1 failed" in lines[0] and "success" not in lines[0]
    assert "failed" in lines[1] and "no diff" in lines[1]
    assert "success" in lines[2] and "no changes" in lines[2]
    assert lines[2].endswith("schedule nightly") and "schedule" not in lines[0]  # which schedule started it


def test_version_a_misspelled_status_and_the_command_named_in_errors(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("shardsync, version ")
    with pytest.raises(SystemExit) as bad:
        main(["log", "0123456789abcdef0123456789abcdef", "--status", "errror"])
    assert bad.value.code == 2 and "'errror' is not one of" in capsys.readouterr().err
    assert main(["show", "0123456789abcdef0123456789abcdef"]) == 2
    assert capsys.readouterr().err.startswith("shardsync show: job 0123456789abcdef0123456789abcdef is unknown")


def test_the_engine_log_into_a_pipe_has_no_colour_codes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "-vv"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Beginning diff calculation" in done.stderr  # the engine's events are shown...
    assert "\x1b[" not in done.stderr  # ...as plain text into a pipe


def test_the_live_display_ends_on_what_happened() -> None:
    """Not on "queued 1/1", not on "sync (shards 0/16)": the last frame shows every stage done."""
    console = Console(record=True, width=120, force_terminal=True)
    with Follower(console, "live", "job") as follower:
        follower.update("queued", 0, 1)
        follower.update("sync", 300, 444, (5, 16))
        follower.update("sync", 444, 444, (5, 16))  # the last progress seen before the end
        follower.update("done", 1, 1)
    assert follower._progress is not None  # what the last frame shows
    shown = [(task.description, task.completed, task.total) for task in follower._progress.tasks]
    assert shown == [("sync (shards 16/16)", 444, 444)]
