"""One contract for both job-state implementations: Redis and memory, the same answers to the same calls."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from redis import Redis

from core import keys
from core.store.local import LocalStore
from core.store.redis import RedisStore
from worker.state import MemoryJobState, RedisJobState

URL = os.environ["SHARDSYNC_BROKER_URL"]  # the suite's database (tests/conftest.py, SHARDSYNC_TEST_REDIS_URL)


@pytest.fixture(params=["redis", "memory"])
def job(request):
    job_id = f"test-state-{uuid.uuid4().hex}"
    if request.param == "memory":
        yield MemoryJobState(job_id)
        return
    state = RedisJobState(job_id, Redis.from_url(URL))
    yield state
    for key in state.client.scan_iter(match=state.key("*")):
        state.client.delete(key)
    for store_id in state.store_ids().values():
        RedisStore(url=URL, store_id=store_id).clear()


def sibling(job):
    """Another job on the same kind of state (and, for Redis, the same server)."""
    job_id = f"other-{uuid.uuid4().hex}"
    return RedisJobState(job_id, job.client) if isinstance(job, RedisJobState) else MemoryJobState(job_id)


def test_create_once_and_forget(job) -> None:
    assert job.spec_data() is None
    assert job.create({"source": "a", "target": "b"}, ttl=60)
    assert not job.create({"source": "x", "target": "y"}, ttl=60)
    assert job.spec_data() == {"source": "a", "target": "b"}
    assert job.info()["status"] == "queued" and "submitted" in job.info()
    job.forget()
    assert job.spec_data() is None
    assert job.create({"source": "c", "target": "d"}, ttl=60)


def test_info_marks_and_once(job) -> None:
    job.set_info(status="running", worker="w1")
    job.mark_sync_started(10.0)
    job.mark_sync_started(20.0)  # the first shard's start stays
    job.mark_sync_ended(30.0)
    job.mark_sync_ended(40.0)  # the last shard's end wins
    info = job.info()
    assert (info["status"], info["worker"], info["sync_started"], info["sync_ended"]) == ("running", "w1", 10.0, 40.0)
    assert not job.marked("wave-1")
    job.mark("wave-1")
    job.mark("wave-1")
    assert job.marked("wave-1") and not job.marked("wave-2")
    job.record_time("diff", 1.5)
    job.record_worker("diff", "w2")
    assert job.times() == {"diff": 1.5} and job.workers() == {"diff": "w2"}


def test_abort_first_error_wins(job) -> None:
    assert job.aborted() is None
    job.abort("shard 1 failed")
    job.abort("shard 2 failed")
    assert job.aborted() == "shard 1 failed"


def test_claims_exclude_duplicates(job) -> None:
    token = job.claim("claim:3", ttl=30)
    assert token and job.claim("claim:3", ttl=30) is None
    job.release_claim("claim:3", "not-the-token")
    assert job.claim("claim:3", ttl=30) is None
    job.release_claim("claim:3", token)
    assert job.claim("claim:3", ttl=30)


def test_lock_is_exclusive_between_jobs(job) -> None:
    other = sibling(job)
    target = f"test-target-{uuid.uuid4().hex}"
    try:
        assert job.acquire_lock(target, 30) is None
        assert job.acquire_lock(target, 30) is None
        assert other.acquire_lock(target, 30) == job.job_id
        assert other.renew_lock(target, 30) is False and job.renew_lock(target, 30) is True
        other.release_lock(target)
        assert other.acquire_lock(target, 30) == job.job_id
        with job.heartbeat(target, 30):
            assert other.acquire_lock(target, 30) == job.job_id
        job.release_lock(target)
        assert other.acquire_lock(target, 30) is None
    finally:
        other.release_lock(target)
        job.release_lock(target)


def test_stores_loads_diff_and_plan(job) -> None:
    store = job.fresh_store("source")
    assert isinstance(store, (RedisStore, LocalStore)) and store.count() == 0
    assert job.record_load("source", {"objects": 3}) == 1
    assert job.record_load("target", {"objects": 4}) == 2
    assert job.record_load("target", {"objects": 4}) == 2  # a load recorded twice counts once
    assert job.loads() == {"source": {"objects": 3}, "target": {"objects": 4}}
    records = [["site", {"name": "s1"}, [1, 2]], ["site", {"name": "s2"}, None]]
    job.save_diff(records, {"create": 2})
    assert job.diff_size() == 2 and job.summary() == {"create": 2}
    assert job.diff_records([1, 0]) == [records[1], records[0]]
    with pytest.raises(LookupError, match=r"positions \[5\]"):
        job.diff_records([0, 5])
    with pytest.raises(LookupError):
        job.plan()
    job.save_plan({"waves": [[0, 1]], "operations": 2, "shards": []})
    assert job.plan()["waves"] == [[0, 1]]


def test_journal_progress_and_shards(job) -> None:
    entry = ["create", "success", "", "site", "s1", 0]
    assert job.write_journal({"0:0": entry}, 1) == 1
    assert job.checkpoint(job.fresh_store("target"), {"0:1": entry}, 2) == 3
    assert job.journal_entries(["0:0", "0:1", "9:9"]) == {"0:0": entry, "0:1": entry}
    assert job.progress_count() == 3 and set(job.journal()) == {"0:0", "0:1"}
    assert job.record_shard(0, 0, {"index": 0}) == 1
    assert job.record_shard(0, 0, {"index": 0}) == 1  # a shard recorded twice counts once in its wave
    assert job.record_shard(1, 0, {"index": 1}) == 2
    assert job.finished_in_wave(0) == 2 and job.finished_in_wave(1) == 0
    assert job.shard_result(1) == {"index": 1} and job.shard_result(7) is None
    assert sorted(job.shard_results()) == [0, 1]


def test_report_outlives_scratch(job) -> None:
    job.create({"source": "a"}, ttl=60)
    job.save_diff([["site", {}, None]], {"create": 1})
    job.save_plan({"waves": [], "operations": 0, "shards": []})
    job.write_journal({"0:0": ["create", "success", "", "site", "s", 0]}, 1)
    job.save_report({"status": "success"}, ttl=60)
    job.drop_scratch()
    assert job.report() == {"status": "success"}
    assert job.spec_data() == {"source": "a"} and job.diff_size() == 1  # JobHandle.diff() reads these
    with pytest.raises(LookupError):
        job.plan()
    # the journal is the per-object log (JobHandle.log): kept with the report
    assert job.journal() == {"0:0": ["create", "success", "", "site", "s", 0]} and job.progress_count() == 0


def test_a_shard_reads_its_own_part_of_the_plan(job) -> None:
    shards = [
        {"index": i, "wave": 0, "type": "site", "roots": list(range(i * 3, i * 3 + 3)), "operations": 3}
        for i in range(2500)
    ]
    with pytest.raises(LookupError):
        job.plan_head()
    job.save_plan({"waves": [list(range(2500))], "operations": 7500, "shards": shards})
    assert job.plan_head() == {"waves": [list(range(2500))], "operations": 7500, "shards": 2500}
    assert job.shard_plan(1234) == shards[1234]
    assert job.plan()["shards"] == shards  # the whole plan still reads back, in order
    for bad in (-1, 2500):
        with pytest.raises(LookupError, match=f"no shard {bad}"):
            job.shard_plan(bad)
    if isinstance(job, RedisJobState):  # the head is one small record: no shard's roots in it
        assert len(job.client.get(job.key("plan"))) < 20_000


def test_deadlines_are_judged_by_redis_clock_not_the_hosts(monkeypatch) -> None:
    """A producer (or worker) whose clock is 10 minutes ahead: a 300 s deadline has not passed."""
    from worker.pipeline.dispatch import overdue

    state = RedisJobState(f"test-state-{uuid.uuid4().hex}", Redis.from_url(URL))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 600)
    try:
        assert state.create({"source": "demo", "target": "demo"}, 60)
        assert abs(float(state.info()["submitted"]) - state.now()) < 5
        assert overdue(state, {"deadline": 300}) is None
        state.set_info(submitted=state.now() - 301)
        assert overdue(state, {"deadline": 300}) is not None
    finally:
        monkeypatch.undo()
        for key in state.client.scan_iter(match=state.key("*")):
            state.client.delete(key)
        state.client.zrem(keys.JOB_INDEX, state.job_id)


def test_no_write_leaves_a_key_that_never_expires() -> None:
    """A step still running when Redis came back empty writes into nothing: whatever it writes expires."""
    state = RedisJobState(f"test-state-{uuid.uuid4().hex}", Redis.from_url(URL))
    try:
        state.set_info(status="running")
        state.mark_sync_started(1.0)
        state.mark_sync_ended(2.0)
        state.mark("started")
        state.record_time("load-source", 0.5)
        state.record_worker("load-source", "w1")
        state.abort("stopped")
        state.record_load("source", {"objects": 1})
        state.save_diff([{"a": 1}], {"create": 1})
        state.save_plan({"waves": [[0]], "operations": 1, "shards": [{"index": 0, "wave": 0, "roots": [0]}]})
        state.write_journal({"0": ["create", "success", "", "site", "s1", 0]}, 1)
        state.record_shard(0, 0, {"index": 0})
        state.add_target_figures({"retries": 1})
        state.claim_apply("other-job")
        state.save_partitions("source", ["a"], 1.0)
        state.record_partition("source", 0, {"objects": 1})
        state.save_ranges({"parts": [[0, 1]]})
        state.save_range(0, [{"a": 1}], {"records": 1})
        state.join_range(0, 0)
        state.save_summary({"create": 1})
        written = {key: state.client.ttl(key) for key in state.client.scan_iter(match=state.key("*"))}
        assert len(written) > 15
        assert not [key for key, ttl in written.items() if ttl == -1], written
    finally:
        for key in state.client.scan_iter(match=state.key("*")):
            state.client.delete(key)


def test_a_claims_lease_runs_short_without_renewals_and_is_known_without_redis(monkeypatch) -> None:
    from worker.state.base import Heartbeat

    beat = Heartbeat(claim_ttl=30)
    now = time.monotonic()
    assert not beat.lease_short()
    monkeypatch.setattr(time, "monotonic", lambda: now + 21)  # two renewals (every 10 s) missed: a pause, a stall
    assert beat.lease_short()
    beat.renewed(now + 20)  # a renewal sent at +20 s came back
    assert not beat.lease_short()
    assert not Heartbeat().lease_short()  # no claim (the embedded runner's): no lease to run out


def test_a_store_writes_nothing_its_write_guard_refuses() -> None:
    from core.store.redis import RedisStore
    from worker.adapters.demo import Site

    client = Redis.from_url(URL)
    store = RedisStore(client=client, store_id=f"test-guard-{uuid.uuid4().hex}")
    refused = []

    def guard() -> None:
        if refused:
            raise RuntimeError("lease ran short")

    try:
        store.write_guard = guard
        refused.append(True)
        store.add(obj=Site(name="a", region="emea", status="active"))
        with pytest.raises(RuntimeError, match="lease ran short"):
            store.flush()
        written = [key for key in client.scan_iter(match=f"*{store._store_id}*") if not key.endswith(b":meta")]
        assert not written  # no object written (the namespace's meta is written as it opens)
        refused.clear()
        store.flush()  # the buffer was kept: written once the guard allows it
        assert store.count() == 1
    finally:
        store.clear()
