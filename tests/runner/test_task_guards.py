"""Guards of the pipeline's tasks, called in this process against the test Redis (db 13), no worker needed."""

from __future__ import annotations

import uuid

import pytest
from kombu.exceptions import OperationalError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from core.exceptions import ObjectCrudException, ObjectStoreException
from worker.state import RedisJobState as JobState
from worker.tasks import shard, transient


@pytest.fixture
def job():
    state = JobState(f"test-{uuid.uuid4().hex}", Redis.from_url("redis://127.0.0.1:6379/13"))
    yield state
    for key in state.client.scan_iter(match=state.key("*")):
        state.client.delete(key)


def test_transient_errors_are_told_apart() -> None:
    try:
        try:
            raise RedisConnectionError("Connection refused")
        except RedisConnectionError as inner:
            raise ObjectStoreException("Redis store x failed to write") from inner
    except ObjectStoreException as wrapped:
        assert transient(wrapped)
    assert transient(OperationalError("broker gone"))
    assert not transient(ResponseError("WRONGTYPE"))
    assert not transient(ObjectCrudException("create refused"))
    assert not transient(ValueError("bad data"))


def test_a_late_shard_of_a_finished_job_does_nothing(job) -> None:
    job.save_report({"status": "success"}, ttl=60)
    assert shard.run(job.job_id, 0) is None
    assert job.shard_result(0) is None


def test_a_shard_of_an_unknown_job_does_nothing(job) -> None:
    assert shard.run(job.job_id, 3) is None


def test_lock_is_exclusive_and_kept_by_its_holder(job) -> None:
    other = JobState(f"test-{uuid.uuid4().hex}", job.client)
    target = f"test-target-{uuid.uuid4().hex}"
    try:
        assert job.acquire_lock(target, 30) is None
        assert job.acquire_lock(target, 30) is None  # its own: renewed
        assert other.acquire_lock(target, 30) == job.job_id
        assert other.renew_lock(target, 30) is False
        other.release_lock(target)  # not its lock: nothing happens
        assert other.acquire_lock(target, 30) == job.job_id
        job.release_lock(target)
        assert other.acquire_lock(target, 30) is None
        job.client.delete(f"shardsync:~lock:{target}")
        assert other.renew_lock(target, 30) is True  # expired meanwhile: taken back by its holder
    finally:
        job.client.delete(f"shardsync:~lock:{target}")
