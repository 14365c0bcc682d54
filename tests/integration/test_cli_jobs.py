"""The ``shardsync`` command line through its installed entry point, against real workers and Redis.

Every command runs as a subprocess (as an operator or a cron job runs it): sync with a live display under a
pseudo-terminal and plain lines when piped, watch, jobs, show, diff, log, run FILE, cancel, and each exit
code (0 ok, 1 job failed, 2 bad input, 3 Redis unreachable, 4 timed out, 5 completed with failures, 130
detached).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, List

import pytest
from _workers import ROOT, poll, worker_env
from redis import Redis

from worker import JobHandle

pytestmark = pytest.mark.usefixtures("workers")

EXE = shutil.which("shardsync") or ""
COMMAND = [EXE] if EXE else [sys.executable, "-m", "worker.cli"]
JOB_ID = re.compile(r"job ([0-9a-f]{32}) submitted")


def data(sites: int = 2, note: str = "") -> Dict[str, Any]:
    return {
        "region": [],
        "site": [
            {"name": f"s-{i}", "note": note if i == 1 else "", "devices": [{"name": "d0", "ports": [{"name": "p0"}]}]}
            for i in range(sites)
        ],
    }


def sync_args(source: Dict[str, Any], *extra: str, target: Dict[str, Any] | None = None) -> List[str]:
    args = ["sync", "--source", "dataset", "--target", "dataset", "--source-kwargs", json.dumps({"data": source})]
    if target is not None:
        args += ["--target-kwargs", json.dumps({"data": target})]
    return [*args, *extra]


def shardsync(*args: str, env: Dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*COMMAND, *args], cwd=str(ROOT), env=env or worker_env(), capture_output=True, text=True, timeout=timeout
    )


SIGINT_DEFAULT = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])"  # noqa: E501


class Terminal:
    """A command on a pseudo-terminal: what a person at a terminal sees."""

    def __init__(self, *args: str) -> None:
        self.master, slave = pty.openpty()
        env = {**worker_env(), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
        # As at a terminal, Ctrl-C is not ignored: a test suite run in the background (`cmd &` in a shell without
        # job control) inherits SIGINT ignored, and an exec'd program keeps that. The command is exec'd from a
        # shim that restores the default first.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SIGINT_DEFAULT, *COMMAND, *args], cwd=str(ROOT), env=env, stdin=slave,
            stdout=slave, stderr=slave, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.output = b""

    def read(self) -> str:
        while self.master >= 0 and select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk
        return self.output.decode(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        return poll(lambda: re.search(pattern, self.read()), timeout=timeout, what=pattern)

    def end(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read()
            time.sleep(0.02)
        self.read()
        code = self.proc.wait(timeout=5)
        os.close(self.master)
        self.master = -1
        return code

    def kill(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def test_sync_piped_prints_plain_lines_and_the_report(redis_db: Redis) -> None:
    result = shardsync(*sync_args(data(3, note="sleep:1")))  # a second in the sync stage
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stderr  # no terminal control sequences when piped
    assert JOB_ID.search(result.stderr.splitlines()[0])  # the job id first
    assert re.search(r"\d+\.\ds  sync \d+/\d+ \(shards \d+/\d+\)", result.stderr)
    assert result.stderr.splitlines()[-1].endswith("s  ended")
    assert "job " in result.stdout and ": success" in result.stdout and "create: success 9" in result.stdout


def test_sync_on_a_terminal_shows_a_live_display_and_ctrl_c_detaches(redis_db: Redis) -> None:
    gate = f"test:gate:{uuid.uuid4().hex}"
    terminal = Terminal(*sync_args(data(3, note=f"wait:{gate}")))
    try:
        job_id = terminal.wait_for(JOB_ID.pattern).group(1)  # at once, while the job runs
        terminal.wait_for(r"sync.*━")  # the bars of the live display
        assert "\x1b[" in terminal.read()
        terminal.proc.send_signal(signal.SIGINT)
        code = terminal.end()
        out = terminal.read()
        assert code == 130, f"exit {code}; the terminal showed:\n{out[-3000:]}"  # what to read when it is not
        assert f"detached from job {job_id}, which goes on" in out and f"shardsync watch {job_id}" in out
        assert "Traceback" not in out
        assert not JobHandle(job_id).done()
    finally:
        terminal.kill()
        redis_db.set(gate, 1)
    watched = shardsync("watch", job_id)
    assert watched.returncode == 0, watched.stderr
    assert f"job {job_id}: success" in watched.stdout
    redis_db.delete(gate)


def test_exit_codes(redis_db: Redis, tmp_path) -> None:
    # 1: the job failed (its source cannot load)
    failing = ["sync", "--source", "dataset", "--target", "dataset", "--source-kwargs", '{"load_steer": "fail"}']
    result = shardsync(*failing)
    assert result.returncode == 1 and "load of" in result.stderr + result.stdout
    # 2: bad input, nothing submitted
    assert shardsync("sync", "--source", "nope", "--target", "dataset").returncode == 2
    assert shardsync("show", "no-such-job").returncode == 2
    # 3: Redis unreachable
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**worker_env(), "SHARDSYNC_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    result = shardsync("jobs", env=env)
    assert result.returncode == 3 and f"127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
    # 4: timed out; the job goes on
    gate = f"test:gate:{uuid.uuid4().hex}"
    result = shardsync(*sync_args(data(2, note=f"wait:{gate}"), "--timeout", "1"))
    assert result.returncode == 4 and "still running after 1.0 s; it goes on" in result.stderr
    job_id = JOB_ID.search(result.stderr).group(1)
    redis_db.set(gate, 1)
    assert JobHandle(job_id).wait(timeout=60)["status"] == "success"
    # 5: completed, with failed operations (continue_on_failure) and their children skipped
    result = shardsync(*sync_args(data(3, note="fail-raise"), "--flag", "continue_on_failure"))
    assert result.returncode == 5, result.stderr
    assert "FAILED create site s-1" in result.stdout and "skipped (under a failed parent" in result.stdout
    redis_db.delete(gate)


def test_history_show_diff_and_log(redis_db: Redis) -> None:
    result = shardsync(*sync_args(data(3, note="fail-raise"), "--flag", "continue_on_failure", "--json"))
    assert result.returncode == 5
    report = json.loads(result.stdout)
    job_id = report["job_id"]
    assert report["skipped"] == 2 and report["submitted"] and report["ended"]

    listed = json.loads(shardsync("jobs", "--json", "--target", "dataset").stdout)
    assert job_id in [job["job_id"] for job in listed]
    mine = next(job for job in listed if job["job_id"] == job_id)
    assert mine["state"] == "success" and mine["failures"] == 1 and mine["source"] == "dataset"
    assert job_id not in [job["job_id"] for job in json.loads(shardsync("jobs", "--json", "--state", "failed").stdout)]
    assert job_id in shardsync("jobs").stdout

    shown = shardsync("show", job_id)
    assert shown.returncode == 5 and "FAILED create site s-1" in shown.stdout

    tree = shardsync("diff", job_id, "--type", "port")
    assert tree.returncode == 0 and "create port" in tree.stdout and "create site s-0" in tree.stdout
    selection = json.loads(shardsync("diff", job_id, "--action", "create", "--type", "site", "--json").stdout)
    assert [element["name"] for element in selection] == ["s-0", "s-1", "s-2"]

    entries = json.loads(shardsync("log", job_id, "--json").stdout)
    assert len(entries) == report["operations"]
    by_status = {(e["model"], e["unique_id"]): e["status"] for e in entries}
    assert by_status[("site", "s-1")] == "error", json.dumps(entries)
    assert by_status[("device", "s-1__d0")] == "skipped" and by_status[("port", "s-1__d0__p0")] == "skipped"
    skipped = json.loads(shardsync("log", job_id, "--status", "skipped", "--json").stdout)
    assert len(skipped) == 2
    page = json.loads(shardsync("log", job_id, "--json", "--offset", "1", "--limit", "2").stdout)
    assert page == entries[1:3]
    text = shardsync("log", job_id, "--model", "site").stdout
    assert "create  site" in text and "refused" in text
    assert text.splitlines()[0].split()[:4] == ["op", "action", "model", "unique"]  # a header says what is what

    # A failed job: under the parent that failed, operations were skipped (as the report counts them); what
    # came after the failure did not run.
    failed = json.loads(shardsync(*sync_args(data(3, note="fail-raise"), "--json")).stdout)
    assert failed["status"] == "failed"
    by_status = {(e["model"], e["unique_id"]): e["status"] for e in json.loads(
        shardsync("log", failed["job_id"], "--json").stdout
    )}  # fmt: skip
    assert by_status[("site", "s-1")] == "error" and by_status[("device", "s-1__d0")] == "skipped"
    assert by_status[("site", "s-2")] == "not run"


def test_run_a_toml_job_file_and_cancel(redis_db: Redis, tmp_path) -> None:
    job_file = tmp_path / "job.toml"
    job_file.write_text(
        'source = "dataset"\ntarget = "dataset"\nflags = ["continue_on_failure"]\nbatch_size = 10\n'
        '[source_kwargs.data]\nregion = []\nsite = [{name = "s-0"}, {name = "s-1"}]\n'
    )
    result = shardsync("run", str(job_file), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == {"create": {"success": 2}}
    job_id = json.loads(result.stdout)["job_id"]
    shown = shardsync("show", job_id[:8], "--json")  # the short id Flower shows names it
    assert shown.returncode == 0 and json.loads(shown.stdout)["job_id"] == job_id, shown.stderr
    planned = shardsync("run", str(job_file), "--dry-run", "--json")  # --dry-run over what the file says
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["status"] == "dry-run"
    bad = tmp_path / "bad.toml"
    bad.write_text('source = "dataset"\ntarget = "dataset"\ncolour = "red"\n')
    result = shardsync("run", str(bad))
    assert result.returncode == 2 and "unknown key 'colour'" in result.stderr

    gate = f"test:gate:{uuid.uuid4().hex}"
    started = shardsync(*sync_args(data(2, note=f"wait:{gate}"), "--no-wait"))
    job_id = started.stdout.strip()
    poll(lambda: JobHandle(job_id).progress()[0] == "sync", what="the job's sync stage")
    cancelled = shardsync("cancel", job_id)
    assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout
    redis_db.set(gate, 1)
    watched = shardsync("watch", job_id)
    assert watched.returncode == 1 and "cancelled" in watched.stdout + watched.stderr
    again = shardsync("cancel", job_id)
    assert again.returncode == 0 and f"job {job_id} had already ended (failed): nothing to cancel" in again.stdout
    redis_db.delete(gate)


def test_a_job_no_worker_consumes_says_so(redis_db: Redis) -> None:
    queue = f"test.nobody.{uuid.uuid4().hex[:8]}"
    env = {**worker_env(), "SHARDSYNC_JOBS_QUEUE": queue}
    result = shardsync(*sync_args(data(1), "--timeout", "8"), env=env)
    assert result.returncode == 4
    assert f"no worker is consuming queue {queue}" in result.stderr
    job_id = JOB_ID.search(result.stderr).group(1)
    JobHandle(job_id).cancel("test over")
    redis_db.delete(queue)


def test_an_adapter_the_workers_lack_is_named_as_the_workers_problem(redis_db: Redis) -> None:
    """Registered in the producer only: the job fails saying the worker, not the shell, lacks it."""
    from ss_test_adapters import DatasetAdapter

    from worker import JobFailed, register_adapter, submit_sync
    from worker.adapters.registry import unregister_adapter

    @register_adapter("only-in-the-producer")
    class OnlyHere(DatasetAdapter):
        """Registered in the test process, unknown to the workers."""

    try:
        handle = submit_sync(source="only-in-the-producer", target="dataset")
        with pytest.raises(JobFailed) as raised:
            handle.wait(timeout=60)
    finally:
        unregister_adapter("only-in-the-producer")
    message = str(raised.value)
    assert "unknown adapter 'only-in-the-producer'" in message and "in this worker process" in message
    assert "SHARDSYNC_ADAPTER_MODULES in the worker's environment" in message and "restart the workers" in message


def test_a_broken_adapter_module_is_named_without_a_traceback(tmp_path) -> None:
    (tmp_path / "broken_adapters.py").write_text("import nothing_by_that_name\n")
    (tmp_path / "raising_adapters.py").write_text("raise RuntimeError('misconfigured')\n")
    for module, expected in (
        ("broken_adapters", "No module named 'nothing_by_that_name'"),
        ("raising_adapters", "RuntimeError: misconfigured"),
    ):
        env = {**worker_env(), "SHARDSYNC_ADAPTER_MODULES": module}
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
        result = shardsync("adapters", env=env)
        assert result.returncode == 2, result.stderr
        assert f"adapter module {module!r} (SHARDSYNC_ADAPTER_MODULES) cannot be imported" in result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr
        # A module that imports something missing is broken, not missing here: no word on where to install it.
        assert "must be able to import it" not in result.stderr


def test_a_worker_with_a_broken_adapter_module_stops_at_start(tmp_path) -> None:
    """Celery swallows a start-up signal's exceptions: the worker must still stop, naming the module."""
    from _workers import start_worker

    env = {**worker_env(), "SHARDSYNC_ADAPTER_MODULES": "nothing_by_that_name"}
    proc = start_worker("broken", tmp_path, env=env)
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = (tmp_path / "broken.log").read_text(errors="replace")
    assert code != 0, log
    assert "adapter module 'nothing_by_that_name' (SHARDSYNC_ADAPTER_MODULES) cannot be imported" in log
    assert "each worker, beat) must be able to import it" in log  # the module itself is missing: where it must be
    assert "Traceback" not in log


def test_plan_then_apply_and_the_refusal_after_the_target_changed(redis_db: Redis) -> None:
    from _compare import REDIS_URL, local_sync, target_contents
    from ss_test_adapters import read_calls

    data_key, calls_key = f"test:data:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    target = {
        "region": [],
        "site": [{"name": "s-0", "region": "a"}, {"name": "s-1", "region": "a"}, {"name": "s-9", "region": "z"}],
    }
    source = {
        "region": [],
        "site": [
            {"name": "s-0", "region": "b"},
            {"name": "s-1", "region": "b"},
            {"name": "s-2", "region": "b"},
            {"name": "s-9", "region": "z"},
        ],
    }
    redis_db.set(data_key, json.dumps(target))
    target_kwargs = json.dumps({"data_key": data_key, "record_url": REDIS_URL, "calls_key": calls_key})
    plan_args = [
        "plan",
        "--source",
        "dataset",
        "--target",
        "dataset",
        "--source-kwargs",
        json.dumps({"data": source}),
        "--target-kwargs",
        target_kwargs,
    ]

    def make_plan() -> str:
        result = shardsync(*plan_args, "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["status"] == "dry-run" and report["summary"]["update"] == 2
        return report["job_id"]

    plan = make_plan()
    assert read_calls(redis_db, calls_key) == []  # a plan changes nothing
    typo = shardsync("diff", plan, "--type", "stie")
    assert typo.returncode == 2 and "no element of type stie in the diff" in typo.stderr and "site" in typo.stderr
    applied = shardsync("apply", plan, "--json")
    assert applied.returncode == 0, applied.stderr
    report = json.loads(applied.stdout)
    assert report["counts"] == {"update": {"success": 2}, "create": {"success": 1}}
    calls = {(c[0], c[2]) for c in read_calls(redis_db, calls_key) if c[0] != "sync_complete"}
    assert calls == {("update", "s-0"), ("update", "s-1"), ("create", "s-2")}
    local_state, _, _ = local_sync(source, target, [], redis_db, REDIS_URL)
    assert target_contents(report["job_id"], REDIS_URL) == local_state
    again = shardsync("apply", plan)
    assert again.returncode == 2 and f"plan {plan} was applied already, by job {report['job_id']}" in again.stderr
    not_a_plan = shardsync("apply", report["job_id"])
    assert not_a_plan.returncode == 2 and "is not a finished plan (a dry run)" in not_a_plan.stderr

    # A change outside the subtrees the plan touches does not stop it.
    plan = make_plan()
    redis_db.set(data_key, json.dumps({**target, "site": [*target["site"][:2], {"name": "s-9", "region": "y"}]}))
    assert shardsync("apply", plan).returncode == 0

    # A change inside one of them does: nothing is applied, the subtree is named.
    redis_db.set(data_key, json.dumps(target))
    plan = make_plan()
    redis_db.delete(calls_key)
    changed = {**target, "site": [target["site"][0], {"name": "s-1", "region": "c"}, target["site"][2]]}
    redis_db.set(data_key, json.dumps(changed))
    refused = shardsync("apply", plan)
    assert refused.returncode == 1
    assert "the target has changed since the plan in 1 of the subtrees it touches (site s-1)" in refused.stderr
    assert read_calls(redis_db, calls_key) == []
    # A refused apply applied nothing: it does not use the plan up. Once the target is back as planned, the
    # same plan applies.
    redis_db.set(data_key, json.dumps(target))
    retried = shardsync("apply", plan, "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["counts"] == {"update": {"success": 2}, "create": {"success": 1}}
    redis_db.delete(data_key, calls_key)
