"""A worker process killed in the middle of a shard loses no operation and repeats none it had finished."""

from __future__ import annotations

import os
import signal
import uuid

import pytest
from _compare import REDIS_URL, local_sync, target_contents
from _workers import poll
from ss_test_adapters import read_calls

from core import keys
from worker import app, submit_sync

pytestmark = pytest.mark.usefixtures("workers")


def test_killed_worker_process_shard_is_redelivered_and_finished(redis_db) -> None:
    gate = f"test:gate:{uuid.uuid4().hex}"
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    sites = [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0", "note": ""}]} for i in range(6)]
    sites[4]["note"] = f"wait:{gate}"  # the fifth site's create blocks: the four before it are done
    source = {"region": [], "site": sites}
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": source},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls_key},
        shard_size=1000,  # one shard holds every site
    )
    blocked = poll(
        lambda: next((c for c in read_calls(redis_db, calls_key) if c[2] == "s-4"), None), what="the blocked hook"
    )
    # What the shard finished before the blocked hook is in the journal (reported before a hook starts).
    journal = poll(lambda: redis_db.hlen(keys.job_key(handle.id, "journal")) == 8, what="journal entries")
    assert journal
    os.kill(blocked[4], signal.SIGKILL)  # the pool process running the shard dies mid-hook
    redis_db.set(gate, 1)
    report = handle.wait(timeout=120)

    calls = read_calls(redis_db, calls_key)
    per_object = {}
    for action, model, uid, _, _ in calls:
        if action != "sync_complete":
            per_object[(action, model, uid)] = per_object.get((action, model, uid), 0) + 1
    # Finished operations ran once; only the one in flight when the process died ran again.
    assert per_object.pop(("create", "site", "s-4")) == 2
    assert set(per_object.values()) == {1}
    assert len(per_object) == 11
    assert report["status"] == "success" and report["failures"] == []
    assert report["counts"] == {"create": {"success": 12}}
    (shard,) = report["shards"]
    assert shard["replayed"] >= 8 and shard["applied"] + shard["replayed"] == 12
    local_state, _, _ = local_sync(source, {}, [], redis_db, REDIS_URL)
    assert target_contents(handle.id, REDIS_URL) == local_state
    redis_db.delete(gate, calls_key)


def _busy(pid: int) -> bool:
    """Whether a pool process still runs a task (Celery's own view of its workers' active tasks)."""
    active = app.control.inspect(timeout=1.0).active() or {}
    return any(task.get("worker_pid") == pid for tasks in active.values() for task in tasks)


def test_a_paused_pool_process_stands_down_when_it_resumes(redis_db) -> None:
    """A pool process paused (SIGSTOP) mid-hook past its claim: the watchdog gives the shard to another delivery;
    resumed, the paused one knows from its lease alone that it may no longer write: no hook and no store write
    of it after its in-flight call, and the job equals a local sync."""
    gate = f"test:gate:{uuid.uuid4().hex}"
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    sites = [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0", "note": ""}]} for i in range(6)]
    sites[4]["note"] = f"wait:{gate}"
    source = {"region": [], "site": sites}
    handle = submit_sync(
        source="dataset", target="dataset", source_kwargs={"data": source},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls_key}, shard_size=1000,
    )  # fmt: skip
    blocked = poll(
        lambda: next((c for c in read_calls(redis_db, calls_key) if c[2] == "s-4"), None), what="the blocked hook"
    )
    stale = blocked[4]
    os.kill(stale, signal.SIGSTOP)
    try:
        claims = keys.job_key(handle.id, "claims")
        poll(lambda: int(redis_db.hget(claims, "shard-0") or 0) >= 2, timeout=90, what="a replacement delivery")
        redis_db.set(gate, 1)
        report = handle.wait(timeout=120)
    finally:
        os.kill(stale, signal.SIGCONT)
    poll(lambda: not _busy(stale), timeout=60, what="the resumed process to stand down")

    calls = read_calls(redis_db, calls_key)
    stale_calls = [call for call in calls if call[4] == stale]
    assert stale_calls[-1][:3] == ["create", "site", "s-4"], "the resumed delivery called a hook after standing down"
    assert report["status"] == "success" and report["failures"] == []
    local_state, _, _ = local_sync(source, {}, [], redis_db, REDIS_URL)
    assert target_contents(handle.id, REDIS_URL) == local_state
    redis_db.delete(gate, calls_key)
