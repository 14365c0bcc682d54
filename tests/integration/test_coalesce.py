"""Requests to resync parts of one pair, in bursts, on the 2 real workers: they coalesce into one job, and while
a job of the pair runs, into one follow-up job, which waits for it instead of being refused."""

from __future__ import annotations

import uuid
from typing import Any, Dict, List

import pytest
from _workers import REDIS_URL, poll
from redis import Redis
from ss_test_adapters import read_calls

from worker import JobHandle, submit_sync
from worker.state.redis import RedisJobState

pytestmark = pytest.mark.usefixtures("workers")


def source(gate: str) -> Dict[str, Any]:
    sites = [{"name": f"s-{n:02d}", "note": f"wait:{gate}" if n == 20 else ""} for n in range(30)]
    return {"region": [], "site": sites}


def request(data: Dict[str, Any], calls: str, site: int, window: float) -> JobHandle:
    return submit_sync(
        "dataset", "dataset", source_kwargs={"data": data},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls}, scope={"ids": [f"s-{site:02d}"]},
        coalesce=window,
    )  # fmt: skip


def created(client: Redis, calls: str) -> List[str]:
    return sorted(call[2] for call in read_calls(client, calls) if call[0] == "create")


def test_a_burst_of_requests_is_one_job_and_those_during_it_one_follow_up(redis_db: Redis) -> None:
    gate, calls = f"test:gate:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    data = source(gate)
    try:
        # A burst: 40 requests over 20 sites, well within the window: one job, its scope all of them.
        first = {request(data, calls, n % 20, 3.0).id for n in range(40)}
        assert len(first) == 1
        report = JobHandle(first.pop()).wait(60)
        assert report["status"] == "success" and sorted(report["scope"]["ids"]) == [f"s-{n:02d}" for n in range(20)]
        assert created(redis_db, calls) == [f"s-{n:02d}" for n in range(20)]  # nothing outside the scope

        # A job of the pair runs (its one create waits at a gate); the requests meanwhile make one follow-up.
        running = request(data, calls, 20, 0.5)
        poll(lambda: "s-20" in created(redis_db, calls), 60, "the running job's create to start")
        follow_up = {request(data, calls, n, 0.5).id for n in range(21, 30) for _ in range(3)}
        assert len(follow_up) == 1 and running.id not in follow_up
        waiting = JobHandle(follow_up.pop())
        job = RedisJobState(waiting.id, redis_db)
        poll(lambda: waiting.state == "RETRY", 30, "the follow-up's start to wait for the target's lock")
        assert job.report() is None and job.aborted() is None  # waiting, not refused
        redis_db.set(gate, 1, ex=120)
        assert running.wait(60)["status"] == "success"
        report = waiting.wait(60)
        assert report["status"] == "success" and sorted(report["scope"]["ids"]) == [f"s-{n:02d}" for n in range(21, 30)]
        assert created(redis_db, calls) == [f"s-{n:02d}" for n in range(30)]  # converged: every site once
    finally:
        redis_db.set(gate, 1, ex=120)
