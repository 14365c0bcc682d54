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


def test_a_hook_holding_the_interpreter_past_its_claim_stands_down_after_it(redis_db) -> None:
    """A hook keeps the GIL for 12 s (a C call): its process's heartbeat cannot renew the claim (10 s), so the
    watchdog gives the shard to the other worker. Back from the hook, the stale delivery knows from its lease
    alone that it may not go on: no further hook, no journal or store write; the job equals a local sync, and
    only the hook in flight ran twice."""
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    sites = [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0", "note": ""}]} for i in range(6)]
    held_key = f"test:gil:{uuid.uuid4().hex}"
    sites[4]["note"] = f"gil-once:{held_key}:12"
    source = {"region": [], "site": sites}
    handle = submit_sync(
        source="dataset", target="dataset", source_kwargs={"data": source},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls_key}, shard_size=1000,
    )  # fmt: skip
    report = handle.wait(timeout=120)
    assert report["status"] == "success" and report["failures"] == [], report.get("error")
    calls = read_calls(redis_db, calls_key)
    held = int(redis_db.get(held_key))
    stale_calls = [call for call in calls if call[4] == held]
    assert stale_calls[-1][:3] == ["create", "site", "s-4"], "the stale delivery called a hook after the held one"
    runs = {}
    for action, model, uid, _, _ in calls:
        runs[(action, model, uid)] = runs.get((action, model, uid), 0) + 1
    runs.pop(("sync_complete", "", ""), None)
    # Twice: by the held delivery, then by its replacement (the claim lapsed while the interpreter was held).
    assert runs.pop(("create", "site", "s-4")) == 2 and set(runs.values()) == {1}, runs
    local_state, _, _ = local_sync(source, {}, [], redis_db, REDIS_URL)
    assert target_contents(handle.id, REDIS_URL) == local_state
    redis_db.delete(calls_key, held_key)


def test_a_paused_load_writes_nothing_once_replaced(redis_db) -> None:
    """The process loading the source is paused (SIGSTOP) past its claim; the watchdog runs the load elsewhere,
    which empties the store and loads it. Resumed after the job ended, the stale load stands down at its first
    store write: the source store holds each object once (its insertion counter says no write landed twice)."""
    gate = f"test:gate:{uuid.uuid4().hex}"
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    source = {"region": [], "site": [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0"}]} for i in range(5)]}
    handle = submit_sync(
        source="dataset", target="dataset",
        source_kwargs={"data": source, "load_steer": f"wait:{gate}", "record_url": REDIS_URL,
                       "calls_key": calls_key},
        target_kwargs={"name": "paused-load"}, shard_size=1000,
    )  # fmt: skip
    first = poll(lambda: next((c for c in read_calls(redis_db, calls_key) if c[0] == "load"), None), what="the load")
    stale = first[4]
    os.kill(stale, signal.SIGSTOP)
    try:
        claims = keys.job_key(handle.id, "claims")
        poll(lambda: int(redis_db.hget(claims, "load-source") or 0) >= 2, timeout=90, what="a replacement load")
        redis_db.set(gate, 1)
        report = handle.wait(timeout=120)
    finally:
        os.kill(stale, signal.SIGCONT)
    poll(lambda: not _busy(stale), timeout=60, what="the resumed load to stand down")
    assert report["status"] == "success" and report["counts"] == {"create": {"success": 10}}, report.get("error")
    seq = redis_db.get(keys.seq_key(keys.job_store_id(handle.id, "source")))
    assert int(seq) == 10, f"the source store's objects were written {seq} times over, not 10: a stale load wrote"
    redis_db.delete(gate, calls_key)
