"""The pair's entry of coalesced requests (``worker.state.coalesce``) against the suite's real Redis."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from redis import Redis

from core import keys
from core.scope import Scope
from worker.state import coalesce
from worker.state.codec import pack


@pytest.fixture
def client():
    client = Redis.from_url(os.environ["SHARDSYNC_BROKER_URL"])
    pair = "test-pair-" + uuid.uuid4().hex
    yield client, pair
    client.delete(keys.coalesce_key(pair))
    for key in client.scan_iter(match=f"{keys.job_key('t-coal-', '')}*", count=1000):
        client.delete(key)


def recorded(client: Redis, job_id: str) -> None:
    client.set(keys.job_key(job_id, "spec"), pack({"job_id": job_id}), ex=60)


def test_requests_join_the_waiting_job_until_it_starts_then_make_the_next(client) -> None:
    client, pair = client
    first = "t-coal-" + uuid.uuid4().hex
    assert coalesce.join_or_reserve(client, pair, first, Scope(ids=("a",)), 60) is None  # reserved: make it
    recorded(client, first)
    assert coalesce.join_or_reserve(client, pair, "t-coal-other", Scope(ids=("b",)), 60) == first
    assert coalesce.join_or_reserve(client, pair, "t-coal-other", Scope(ids=("a", "c")), 60) == first
    kept: list = []
    assert coalesce.take(client, pair, "t-coal-nobody", kept.append) is False  # not its entry: nothing changes
    assert coalesce.take(client, pair, first, kept.append) is True and kept == [{"ids": ["a", "b", "c"]}]
    assert coalesce.take(client, pair, first, kept.append) is False  # a start delivered again: taken already
    second = "t-coal-" + uuid.uuid4().hex
    assert coalesce.join_or_reserve(client, pair, second, None, 60) is None  # it runs: the next job
    recorded(client, second)
    assert coalesce.join_or_reserve(client, pair, "t-coal-x", Scope(ids=("z",)), 60) == second
    assert coalesce.take(client, pair, second, kept.append) is True and kept[-1] is None  # everything


def test_a_job_that_ended_or_was_never_recorded_is_not_joined(client) -> None:
    client, pair = client
    first = "t-coal-" + uuid.uuid4().hex
    coalesce.join_or_reserve(client, pair, first, None, 60)
    recorded(client, first)
    client.set(keys.job_key(first, "report"), pack({"status": "failed"}), ex=60)  # cancelled before it started
    assert coalesce.join_or_reserve(client, pair, "t-coal-new", None, 60) is None
    client.hset(keys.coalesce_key(pair), "reserved", repr(time.time() - coalesce.RESERVED - 1))
    assert coalesce.join_or_reserve(client, pair, "t-coal-newer", None, 60) is None  # never recorded, too old
    coalesce.release(client, pair, "t-coal-someone-else")
    assert client.hget(keys.coalesce_key(pair), "job") == b"t-coal-newer"
    coalesce.release(client, pair, "t-coal-newer")
    assert not client.exists(keys.coalesce_key(pair))
