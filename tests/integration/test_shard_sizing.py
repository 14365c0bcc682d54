"""Shards sized for the live slots: workers announce their pool slots, a job without a shard size uses them."""

from __future__ import annotations

import time

import pytest
from _compare import REDIS_URL
from _workers import poll, start_worker, stop_workers, wait_for_workers
from redis import Redis

from core import keys
from core.planner import balanced_shard_size
from worker import submit_sync
from worker.runners.celery.slots import announce, live_slots

pytestmark = pytest.mark.usefixtures("workers")


def test_workers_announce_their_slots_and_withdraw_them_when_they_stop(redis_db: Redis, worker_logs) -> None:
    poll(lambda: live_slots(redis_db) == 2, what="the session's two workers of one slot each")
    extra = start_worker("gamma", worker_logs, concurrency=3)
    try:
        wait_for_workers(["gamma"], [extra])
        poll(lambda: live_slots(redis_db) == 5, what="gamma's three slots counted")
    finally:
        stop_workers([extra])
    poll(lambda: live_slots(redis_db) == 2, what="gamma's slots withdrawn at its warm shutdown")


def test_a_stale_or_unreadable_entry_is_not_counted_and_is_dropped(redis_db: Redis) -> None:
    announce(redis_db, "ghost@nowhere", 64, now=time.time() - 3600)  # died an hour ago without a goodbye
    redis_db.hset(keys.SLOTS, "garbled@nowhere", b"\xc1")
    poll(lambda: live_slots(redis_db) == 2, what="only the live workers counted")
    assert not redis_db.hexists(keys.SLOTS, "ghost@nowhere")
    assert not redis_db.hexists(keys.SLOTS, "garbled@nowhere")


def test_a_job_without_a_shard_size_gets_shards_for_the_live_slots(redis_db: Redis) -> None:
    poll(lambda: live_slots(redis_db) == 2, what="the session's workers announced")
    source = {"site": [{"name": f"s{n:03d}", "devices": [{"name": f"d{m}"} for m in range(4)]} for n in range(120)]}
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": source},
        target_kwargs={"record_url": REDIS_URL},
        top_level_barrier=True,
    )
    report = handle.wait(timeout=90)
    assert report["operations"] == 600
    size = balanced_shard_size(600, 2)
    assert size == 75
    assert [shard["operations"] for shard in report["shards"]] == [75] * 8  # subtrees of 5: packed to 75 each
