"""A step added through the table alone runs on real workers: its task, route, id, claim and phases derive from it.

The same throwaway step (``ss_test_steps``) runs on the embedded runner in tests/worker/pipeline/test_step.py.
"""

from __future__ import annotations

import uuid

import ss_test_steps  # noqa: F401 - registers the probe step in this process too (the producer's side)
from _workers import poll
from celery.result import AsyncResult
from redis import Redis

from core import keys
from worker import app
from worker.job.spec import JobSpec
from worker.runners.celery.tasks import RUNNER, define_tasks
from worker.state.redis import RedisJobState


def test_a_step_added_through_the_table_runs_on_the_workers(workers, redis_db: Redis) -> None:
    spec = JobSpec.from_data({"source": "demo", "target": "demo", "job_id": f"probe-{uuid.uuid4().hex}"})
    job = RedisJobState(spec.job_id, redis_db)
    assert job.create(spec.to_message(), ttl=300)
    target = spec.target_identity()
    assert job.acquire_lock(target, 60) is None  # its heartbeat keeps the job's lock, as every step's does
    try:
        assert (
            define_tasks()["remote_probe"].name == "shardsync.test_remote_probe"
        )  # this process's task, from the table
        RUNNER.enqueue("remote_probe", job.job_id, 21)
        poll(lambda: "probe-21" in job.info(), timeout=30, what="the probe step run by a worker")
        found = job.info()["probe-21"]
        assert found["value"] == 42 and found["claim"] == "remote-probe-21" and found["kept"]
        assert found["worker"].split("@")[0] in ("alpha", "beta")
        result = AsyncResult(f"{job.job_id}.remote-probe-21", app=app)
        poll(lambda: result.state == "SUCCESS", timeout=30, what="the probe's task to succeed")
        assert result.result == "probed 21"
        assert not job.claim_held("remote-probe-21") and "remote-probe-21" not in job.running_steps()
        RUNNER.enqueue("remote_probe", job.job_id, 21)  # delivered again: found done, its work does not run twice
        deliveries = keys.job_key(job.job_id, "probe-deliveries")
        poll(lambda: redis_db.llen(deliveries) == 2, timeout=30, what="the second delivery of the probe")
        assert redis_db.lrange(deliveries, 0, -1) == [b"ran", b"done before"]
        assert job.info()["probe-21"] == found
    finally:
        job.release_lock(target)
        for key in redis_db.scan_iter(match=keys.job_pattern(job.job_id)):
            redis_db.delete(key)
        redis_db.srem(keys.RUNNING_JOBS, job.job_id)
        redis_db.delete(keys.lock_holder_key(target))
