"""Guards of the pipeline's tasks, called in this process against the suite's test Redis, no worker needed."""

from __future__ import annotations

import os
import uuid

import pytest
from kombu.exceptions import OperationalError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from core.exceptions import ObjectCrudException, ObjectStoreException
from worker.errors import LockLost
from worker.job.spec import JobSpec
from worker.runners.celery.tasks import shard, transient
from worker.state import RedisJobState as JobState


@pytest.fixture
def job():
    state = JobState(f"test-{uuid.uuid4().hex}", Redis.from_url(os.environ["SHARDSYNC_BROKER_URL"]))
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


def test_the_lock_is_fenced(job) -> None:
    # A job may take its expired lock back only while no other job has taken it since, and never after it
    # released it: an old step can never write over a newer job's changes.
    other = JobState(f"test-{uuid.uuid4().hex}", job.client)
    target = f"test-target-{uuid.uuid4().hex}"
    lock, holder = f"shardsync:~lock:{target}", f"shardsync:~lock-holder:{target}"
    try:
        assert job.acquire_lock(target, 30) is None and job.holds_lock(target)
        job.client.delete(lock)  # expired (a paused worker, no step running)
        assert not job.holds_lock(target)
        assert job.renew_lock(target, 30) and job.holds_lock(target)  # nobody took it since: taken back
        job.client.delete(lock)
        assert other.acquire_lock(target, 30) is None  # another job takes it...
        other.release_lock(target)  # ...and is done with it
        assert not job.renew_lock(target, 30)  # the first job never gets it back
        with pytest.raises(LockLost, match="lost the lock on target"):
            with job.heartbeat(target, 30):
                pass
        assert not other.renew_lock(target, 30)  # nor the other, after its release
        assert other.acquire_lock(target, 30) is None  # a new start may take a free lock
    finally:
        job.client.delete(lock, holder)


def test_canonical_lock_identity() -> None:
    def identity(kwargs):
        return JobSpec.from_data({"source": "demo", "target": "demo", "target_kwargs": kwargs}).target_identity()

    assert identity({"sites": 3, "variant": 1}) == identity({"variant": 1, "sites": 3})
    assert identity({"hook_latency": 1}) == identity({"hook_latency": 1.0})  # a float parameter: the same value
    assert identity({"sites": 3}) != identity({"sites": 4})


def test_deaths_count_claims_never_released(job) -> None:
    token = job.claim("shard-0", 30, "shard", [0])
    job.release_claim("shard-0", token)
    token = job.claim("shard-0", 30, "shard", [0])
    assert job.deaths("shard-0") == 0  # one delivery ended normally, this one holds the claim
    job.client.delete(job.key("claim:shard-0"))  # its worker died: the claim expires, never released
    job.claim("shard-0", 30, "shard", [0])
    assert job.deaths("shard-0") == 1
    assert job.running_steps()["shard-0"][:2] == ["shard", [0]]


def test_a_start_delivered_again_after_its_job_ended_does_nothing(job) -> None:
    """Its "started" marker went with the scratch data: the report alone must stop it retaking the lock."""
    from worker.runners.celery.tasks import run_job

    spec = JobSpec.from_data({"source": "demo", "target": "demo", "job_id": job.job_id})
    job.create(spec.to_message(), 60)
    job.set_info(status="success")
    job.save_report({"status": "success"}, ttl=60)
    run_job.apply(task_id=job.job_id)  # the start task, in this process
    assert job.info()["status"] == "success"
    assert not job.holds_lock(spec.target_identity())


def test_a_redis_outage_is_waited_out_for_its_budget_not_a_count() -> None:
    from worker.runners.celery.tasks import outage_backoff, outage_waited

    assert [outage_backoff(retry) for retry in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert outage_waited(0) == 0 and outage_waited(3) == 7
    # An hour (the default budget) is 63 + 60 per retry after the sixth: about 65 sends, not 20 (~15 minutes).
    assert max(retries for retries in range(200) if outage_waited(retries) < 3600) > 60


def test_deliveries_ended_by_an_outage_are_no_worker_deaths(job) -> None:
    from worker.pipeline.dispatch import poisoned

    for _ in range(7):  # seven deliveries took the claim, none released it: their releases failed in an outage
        assert job.claim("shard-0", 30, "shard", [0]) is not None
        job.client.delete(job.key("claim:shard-0"))
    assert job.claim("shard-0", 30, "shard", [0]) is not None  # this delivery
    assert "SHARDSYNC_MAX_DELIVERIES" in (poisoned(job, "shard-0") or "")
    assert poisoned(job, "shard-0", outage_retries=7) is None  # all seven were sent again after the outage
