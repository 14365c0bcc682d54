"""The watchdog's scan on the real Redis: a step whose claim expired is sent again, then forgotten, never lost."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any, Iterator, List, Tuple

import pytest
from redis import Redis

from core import keys
from worker.runners.celery.watchdog import scan
from worker.state.redis import RedisJobState

URL = os.environ["SHARDSYNC_BROKER_URL"]


class Sender:
    """The runner's enqueue, failing for ``job_id`` as a broker that is down would, ``failures`` times first."""

    hooks = ()

    def __init__(self, job_id: str, failures: int = 0) -> None:
        self.job_id = job_id
        self.failures = failures
        self.sent: List[Tuple[Any, ...]] = []

    def enqueue(self, step: str, job_id: str, *args: Any) -> None:
        if job_id == self.job_id and self.failures:
            self.failures -= 1
            raise ConnectionError("the broker is down")
        self.sent.append((step, job_id, *args))


@pytest.fixture
def job() -> Iterator[RedisJobState]:
    state = RedisJobState(f"test-watchdog-{uuid.uuid4().hex}", Redis.from_url(URL))
    state.create({"source": "demo", "target": "demo-api", "deadline": 0}, 600, info={"submitted": time.time()})
    yield state
    state.client.srem(keys.RUNNING_JOBS, state.job_id)
    for key in state.client.scan_iter(match=state.key("*")):
        state.client.delete(key)


def died(job: RedisJobState, step: str, *args: Any) -> str:
    """A delivery that claimed the step and died: its claim gone, its running record left."""
    key = f"{step}-{args[0]}" if args else step
    assert job.claim(key, 30, step, list(args)) is not None
    job.client.delete(job.key(f"claim:{key}"))
    return key


def test_a_step_whose_send_failed_is_sent_at_the_next_scan(job) -> None:
    key = died(job, "shard", 0)
    runner = Sender(job.job_id, failures=1)
    mine = [pair for pair in scan(job.client, runner, interval=1) if pair[0] == job.job_id]
    assert mine == []  # the scan's send failed: the job is skipped this time
    assert key in job.running_steps()  # still recorded: not forgotten before it was sent
    assert [pair for pair in scan(job.client, runner, interval=1) if pair[0] == job.job_id] == [(job.job_id, key)]
    assert ("shard", job.job_id, 0) in runner.sent and key not in job.running_steps()


def test_a_new_delivery_recorded_meanwhile_stays_recorded(job) -> None:
    key = died(job, "shard", 1)
    seen = job.running_steps()[key]
    assert job.claim(key, 30, "shard", [1]) is not None  # the step's new delivery, recorded as it starts
    job.forget_running(key, seen)  # the scan that sent it forgets only what it saw
    assert key in job.running_steps()
