"""The pipeline's steps as Celery tasks: each adds only what a queue needs (task ids, retries, redelivery).

The work is in ``worker.pipeline.dispatch``; a task builds the job's Redis state and the delivery it runs in, calls its
step, and turns what the step asks for into Celery terms: ``Busy`` (a duplicate holds the claim) and Redis
or broker outages become retries with backoff, a bounded number of times.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import structlog
from celery import Task
from celery.exceptions import Ignore
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core import keys
from worker.api import submit_spec
from worker.connection import redis_client
from worker.errors import InvalidJob, describe
from worker.job.spec import JobSpec
from worker.pipeline.dispatch import Busy, Delivery, run_step
from worker.runners.celery.app import app
from worker.runners.celery.events import end_published, publish_end, publish_progress
from worker.schedule.entries import entry_name
from worker.schedule.ticks import TickSkipped, admit_run, confirm_run, marker_ttl, record_skip, release_run
from worker.settings import get_settings
from worker.state.base import unpack
from worker.state.redis import RedisJobState

logger = structlog.get_logger("shardsync.worker")

MAX_TRANSIENT_RETRIES = 20
"""Retries of a step after Redis errors (backing off up to a minute each) before the job is failed."""


def transient(err: BaseException) -> bool:
    """Whether an error is Redis (or the broker) being unreachable for a while, rather than a fault of the job.

    Looks through the chain of causes: the stores wrap Redis errors in ObjectStoreException.
    """
    seen: Optional[BaseException] = err
    depth = 0
    while seen is not None and depth < 10:
        if isinstance(seen, (RedisConnectionError, RedisTimeoutError, KombuOperationalError)):
            return True
        seen = seen.__cause__ or seen.__context__
        depth += 1
    return False


class CeleryRunner:
    """Carries the steps as Celery tasks; each step of a job has a task id of its own (``{job}.diff``...)."""

    def enqueue(self, step: str, job_id: str, *args: Any) -> None:
        """Send the step's task (its id names the step, so Flower and the result backend tell them apart)."""
        # argsrepr: what monitors show as the task's arguments ("job 3f2a... shard 3", not a tuple).
        if step == "load":
            load.apply_async((job_id, *args), task_id=f"{job_id}.load-{args[0]}", argsrepr=f"job {job_id} {args[0]}")
        elif step == "part":
            side, index = args
            load_part.apply_async(
                (job_id, side, index),
                task_id=f"{job_id}.load-{side}-{index}",
                argsrepr=f"job {job_id} {side} partition {index}",
            )
        elif step == "diff":
            diff.apply_async((job_id,), task_id=f"{job_id}.diff", argsrepr=f"job {job_id}")
        elif step == "diffpart":
            diff_part.apply_async(
                (job_id, args[0]), task_id=f"{job_id}.diff-{args[0]}", argsrepr=f"job {job_id} range {args[0]}"
            )
        elif step == "join":
            join.apply_async((job_id,), task_id=f"{job_id}.join", argsrepr=f"job {job_id}")
        elif step == "shard":
            shard.apply_async(
                (job_id, *args), task_id=f"{job_id}.shard-{args[0]}", argsrepr=f"job {job_id} shard {args[0]}"
            )
        elif step == "finish":
            finish.apply_async((job_id,), task_id=f"{job_id}.finish", argsrepr=f"job {job_id}")
        else:
            raise ValueError(f"no task for step {step!r}")

    def progress(self, job_id: str, stage: str, current: int, total: int) -> None:
        """The job's Celery state: PROGRESS with ``{job_id, stage, current, total}``."""
        publish_progress(job_id, stage, current, total)

    def publish_end(self, job_id: str, report: Dict[str, Any]) -> None:
        """The job's final Celery state."""
        publish_end(job_id, report)

    def end_published(self, job_id: str) -> bool:
        """Whether the job's Celery state is final."""
        return end_published(job_id)


RUNNER = CeleryRunner()


def _run(task: Task, step: str, job_id: str, *args: Any) -> Any:
    request = task.request

    def will_retry(err: BaseException) -> bool:
        return transient(err) and request.retries < MAX_TRANSIENT_RETRIES

    delivery = Delivery(
        hostname=request.hostname or "",
        redelivered=bool((request.delivery_info or {}).get("redelivered")),
        will_retry=will_retry,
    )
    job = RedisJobState(job_id)
    try:
        return run_step(step, job, RUNNER, delivery, *args)
    except Busy as busy:
        raise task.retry(countdown=busy.countdown) from None
    except Exception as err:
        if will_retry(err):  # a shard run again replays its journal; every other step is idempotent
            logger.warning("Step retried after a Redis error", task=task.name, job_id=job_id, error=describe(err))
            raise task.retry(exc=err, countdown=min(60, 2 ** min(request.retries, 6))) from err
        raise


@app.task(name="shardsync.job", bind=True, max_retries=None)
def run_job(self: Task, *legacy: Any) -> None:
    """Start a job: take the lock on its target, then load both sides in parallel.

    The message carries the job id only (the task id): the spec, adapter kwargs included, stays in the job
    state, out of the broker, the result backend and monitors. A message of an earlier release carrying
    the spec as its argument is still started, from that spec, when the job state has none.
    """
    job = RedisJobState(self.request.id)
    if legacy and isinstance(legacy[0], dict) and job.spec_data() is None:
        job.create(legacy[0], get_settings().store_ttl)
    _run(self, "start", self.request.id)
    raise Ignore()  # the job's Celery state is written by its steps; its result by the finish


@app.task(name="shardsync.load", bind=True, max_retries=None)
def load(self: Task, job_id: str, side: str) -> None:
    """Load one side's adapter into the job's store of that side."""
    _run(self, "load", job_id, side)


@app.task(name="shardsync.load_part", bind=True, max_retries=None)
def load_part(self: Task, job_id: str, side: str, index: int) -> None:
    """Load one partition of a side whose adapter declares partitions."""
    _run(self, "part", job_id, side, index)


@app.task(name="shardsync.diff", bind=True, max_retries=None)
def diff(self: Task, job_id: str) -> None:
    """Diff the two loaded stores, keep the diff with the job, plan the shards and start the first wave."""
    _run(self, "diff", job_id)


@app.task(name="shardsync.diff_part", bind=True, max_retries=None)
def diff_part(self: Task, job_id: str, index: int) -> None:
    """Diff one range of top-level elements of both stores."""
    _run(self, "diffpart", job_id, index)


@app.task(name="shardsync.join", bind=True, max_retries=None)
def join(self: Task, job_id: str) -> None:
    """Join the diff's ranges into the job's diff and plan, then start the first wave."""
    _run(self, "join", job_id)


@app.task(name="shardsync.shard", bind=True, max_retries=None)
def shard(self: Task, job_id: str, index: int) -> Optional[Dict[str, Any]]:
    """Apply one shard: its top-level subtrees, in order, through the target models' hooks.

    Returns what monitors show as its result: operations, applied, replayed, seconds, error.
    """
    return _run(self, "shard", job_id, index)  # type: ignore[no-any-return]


@app.task(name="shardsync.finish", bind=True, max_retries=None)
def finish(self: Task, job_id: str) -> Optional[Dict[str, Any]]:
    """Gather the report, call ``sync_complete`` when something changed, release the lock and scratch data."""
    return _run(self, "finish", job_id)  # type: ignore[no-any-return]


@app.task(name="shardsync.scheduled", bind=True)
def scheduled(self: Task, entry: Any) -> Optional[str]:
    """Start one run of a scheduled sync (from beat); returns the new job's id, or None for a skipped tick.

    ``entry`` names the schedule entry whose job beat published in Redis as it started (a job mapping, from
    an earlier release's beat, is still taken as it is, without the one-run-at-a-time guard: it names no
    entry). A tick that finds the entry's previous run still running starts nothing (``worker.schedule.ticks``).
    """
    name: Optional[str] = None
    if isinstance(entry, dict):
        job = entry
    else:
        job = unpack(redis_client().get(keys.schedule_key(str(entry))))
        if not isinstance(job, dict):
            raise InvalidJob(f"scheduled sync {entry!r} is not published in Redis (restart beat to publish it)")
        name = entry_name(str(entry))
    spec = JobSpec.from_data({key: value for key, value in job.items() if key != "job_id"})
    if name is None:
        handle = submit_spec(spec)
    else:
        try:
            admit_run(name, spec.job_id)  # before anything is recorded: a skipped tick leaves no job behind
        except TickSkipped as skipped:
            record_skip(skipped)
            return None
        try:
            handle = submit_spec(spec, info={"schedule": name})
        except Exception:
            try:  # not enqueued: the entry's next tick may start a run
                release_run(name, spec.job_id)
            except Exception as err:  # noqa: BLE001 - Redis may be what failed; the reservation expires soon
                logger.warning("Schedule marker not released", schedule=name, job_id=spec.job_id, error=describe(err))
            raise
        confirm_run(name, spec.job_id, marker_ttl(spec.deadline))
    logger.info("Scheduled sync submitted", job_id=handle.id, schedule=name, source=spec.source, target=spec.target)
    return handle.id
