"""What a running job must survive from outside its own steps, on the suite's real workers: step messages
with bad arguments, a producer whose clock is off, and a mass failure whose error bodies carry a credential."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import msgpack
import pytest
from _compare import REDIS_URL, local_sync, target_contents
from _workers import ROOT, poll, worker_env
from ss_test_adapters import read_calls

from core import keys
from worker import app, submit_sync
from worker.errors import JobFailed

pytestmark = pytest.mark.usefixtures("workers")


def test_step_messages_with_bad_arguments_are_dropped_and_the_job_is_unharmed(redis_db, worker_logs: Path) -> None:
    """Every kind of bad argument, sent while the job's shard waits in a hook: each is logged, acknowledged
    and does nothing; the job then ends equal to a local sync, each hook run once."""
    gate, calls_key = f"test:gate:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    sites = [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0", "note": ""}]} for i in range(4)]
    sites[2]["note"] = f"wait:{gate}"
    source = {"region": [], "site": sites}
    other = submit_sync(
        source="dataset", target="dataset", source_kwargs={"data": {"site": [{"name": "x"}]}},
        target_kwargs={"name": f"other-{gate}"},
    )  # fmt: skip
    other.wait(timeout=60)
    handle = submit_sync(
        source="dataset", target="dataset", source_kwargs={"data": source},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls_key}, shard_size=1000,
    )  # fmt: skip
    poll(lambda: any(c[2] == "s-2" for c in read_calls(redis_db, calls_key)), what="the gated hook")
    job = handle.id
    strays = {
        "load side bogus": ("shardsync.load", (job, "bogus")),
        "load side None": ("shardsync.load", (job, None)),
        "load side 1": ("shardsync.load", (job, 1)),
        "shard index '0'": ("shardsync.shard", (job, "0")),
        "shard index True": ("shardsync.shard", (job, True)),
        "shard index -1": ("shardsync.shard", (job, -1)),
        "shard index 7 (no such shard)": ("shardsync.shard", (job, 7)),
        "20 MB side": ("shardsync.load", (job, "s" * 20_000_000)),
        "range of a diff that is done": ("shardsync.diff_part", (job, 0)),
        "another job's shard": ("shardsync.shard", (other.id, 0)),
        "too many arguments": ("shardsync.shard", (job, 0, 1)),
    }
    sent = {
        what: app.send_task(task, args=args, task_id=f"{job}.stray-{index}")
        for index, (what, (task, args)) in enumerate(strays.items())
    }
    poll(lambda: all(result.ready() for result in sent.values()), timeout=60, what="every stray to be acknowledged")
    assert len(read_calls(redis_db, calls_key)) == 5, "a stray ran a hook"  # 2 sites and their devices, and s-2
    redis_db.set(gate, 1)
    report = handle.wait(timeout=60)
    assert report["status"] == "success" and report["failures"] == []
    calls = [c for c in read_calls(redis_db, calls_key) if c[0] != "sync_complete"]
    assert len(calls) == len({(c[0], c[1], c[2]) for c in calls}) == 8, "a hook ran twice"
    local_state, _, _ = local_sync(source, {}, [], redis_db, REDIS_URL)
    assert target_contents(job, REDIS_URL) == local_state
    logs = "".join(path.read_text(errors="replace") for path in worker_logs.glob("*.log"))
    for what, result in sent.items():
        assert result.id in logs or "Step message dropped" in logs, f"{what}: not logged"
    assert "s" * 10_000 not in logs, "a 20 MB argument was logged whole"
    redis_db.delete(gate, calls_key)


@pytest.mark.parametrize("offset", [-600, 600])
def test_a_producer_whose_clock_is_ten_minutes_off_submits_a_job_that_runs_normally(
    redis_db, tmp_path: Path, offset: int
) -> None:
    """The producer's clock never decides: its job, with a 300 s deadline, is neither overdue nor late."""
    shim = tmp_path / "skewed"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import time\n_real = time.time\n"
        f"time.time = lambda: _real() + {offset}\n"
        f"time.time_ns = lambda: int((_real() + {offset}) * 1e9)\n"
    )
    env = worker_env()
    env["PYTHONPATH"] = f"{shim}:{env['PYTHONPATH']}"
    name = f"skew-{uuid.uuid4().hex}"
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "sync", "--deadline", "300", "--json",
         "--source", "dataset", "--target", "dataset",
         "--source-kwargs", json.dumps({"data": {"site": [{"name": "s-1"}, {"name": "s-2"}]}}),
         "--target-kwargs", json.dumps({"name": name})],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "success" and report["counts"] == {"create": {"success": 2}}


def test_a_mass_failure_with_long_bodies_makes_a_bounded_report_without_the_token(redis_db, worker_logs: Path) -> None:
    """2,000 failing creates, each error 10 KiB and ending with a token: the report stays under 512 KiB (the
    first 100 failures in full, each message at most 2,000 characters, then counts) and the token is nowhere:
    not in the report, the job's Celery result, the per-object log nor the workers' logs."""
    token, token_key = f"SEKRET{uuid.uuid4().hex}", f"test:token:{uuid.uuid4().hex}"
    redis_db.set(token_key, token)  # the remote echoes it; no kwarg, record or message of the job holds it
    sites = [{"name": f"s-{i:04}", "note": f"fail-body:{token_key}"} for i in range(2000)]
    handle = submit_sync(
        source="dataset", target="dataset", source_kwargs={"data": {"site": sites}},
        target_kwargs={"name": f"mass-{token_key}", "record_url": REDIS_URL}, flags=["CONTINUE_ON_FAILURE"],
    )  # fmt: skip
    try:
        handle.wait(timeout=180)  # a job with failed operations ends (the report says which)
    except JobFailed:
        pass
    raw = redis_db.get(keys.job_key(handle.id, "report"))
    report = msgpack.unpackb(raw, raw=False)
    assert len(raw) < 512 * 1024, f"report of {len(raw)} bytes"
    assert report["failures_total"] == 2000 and len(report["failures"]) <= 100
    result = redis_db.get(f"celery-task-meta-{handle.id}") or b""
    journal = b"".join(redis_db.hvals(keys.job_key(handle.id, "journal")))
    logs = "".join(path.read_text(errors="replace") for path in worker_logs.glob("*.log"))
    for where, text in (("report", raw), ("Celery result", result), ("per-object log", journal)):
        assert token.encode() not in text, f"the token is in the {where}"
    assert token not in logs, "the token is in a worker's log"
    assert len(result) < 512 * 1024, f"the job's Celery result is {len(result)} bytes"
    redis_db.delete(token_key)
