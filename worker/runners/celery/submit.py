"""Enqueueing a job on Celery: its state recorded in Redis, then its own task sent (the producer's side).

``worker.api.submit_spec`` (apps, the command line) and beat's scheduled runs both come through here, so a job
is recorded and enqueued the same way whoever submits it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from worker.connection import reaching_redis, redis_client
from worker.errors import InvalidJob
from worker.job.spec import JobSpec
from worker.pipeline.step import step_named
from worker.runners.celery.app import app
from worker.settings import get_settings
from worker.state.coalesce import join_or_reserve, release
from worker.state.redis import RedisJobState


def enqueue_job(spec: JobSpec, info: Optional[Dict[str, Any]] = None) -> str:
    """Record a validated job in Redis and send its start task (task id: the job id); returns the job's id.

    ``info``: fields recorded with the job before it is enqueued (a scheduled run's ``schedule``: the entry
    whose marker its end releases, ``worker.hooks.schedule``). A spec with ``coalesce`` joins its pair's job
    that waits to start, if there is one (that job's id is returned, its scope now holding this one's), or
    makes one that starts ``coalesce`` seconds later (``worker.state.coalesce``).

    Raises:
        InvalidJob: if the job id is taken.
        RedisUnavailable: if Redis or the broker cannot be reached (nothing is left recorded).
    """
    start = step_named("start")
    with reaching_redis(f"submit job {spec.job_id}"):
        client = redis_client()
        pair = spec.coalesce_key() if spec.coalesce else None
        if pair is not None:
            ttl = int(spec.coalesce or 0) + get_settings().store_ttl
            joined = join_or_reserve(client, pair, spec.job_id, spec.scope_obj, ttl)
            if joined is not None:
                return joined
            info = {**(info or {}), "coalesce_pair": pair}
        job = RedisJobState(spec.job_id, client)
        try:
            if not job.create(spec.to_message(), get_settings().store_ttl, info):
                raise InvalidJob(f"invalid job spec: job_id {spec.job_id!r} is already taken")
            try:
                app.send_task(
                    start.task,
                    args=(),  # the job id (the task id) is all it needs: the spec stays in the job state
                    task_id=start.task_id(spec.job_id, ()),
                    retry_policy={"max_retries": 2, "interval_start": 0.2},
                    countdown=spec.coalesce,  # a coalesced request waits for the next ones of its pair
                    # What Flower shows of the job: its adapters by name (no kwargs: they may hold secrets).
                    argsrepr=f"{spec.source} -> {spec.target}" + (" (plan)" if spec.dry_run else ""),
                    kwargsrepr="{}",
                )
            except Exception:
                job.forget()  # not enqueued: the id may be used again
                raise
        except Exception:
            if pair is not None:
                release(client, pair, spec.job_id)  # the next request of the pair makes its own job
            raise
    return spec.job_id
