"""The pipeline's steps as Celery tasks: one task per step of the table, each adding only what a queue needs.

The work is in ``worker.pipeline``; a task builds the job's Redis state and the delivery it runs in, runs its
step through the dispatcher, and turns what the dispatcher asks for into Celery terms: ``Busy`` (a duplicate
holds the claim) and Redis or broker outages become retries with backoff, a bounded number of times. Task
names, ids, routes and what monitors show of the arguments all come from the steps' declarations
(``worker.pipeline.step``): a step added to the table gets its task here (``define_tasks``).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import structlog
from celery import Task, signals
from celery.exceptions import Ignore

from core import keys
from core.limits import Limits
from worker.connection import redis_client, unreachable
from worker.errors import InvalidJob, RedisOutage, describe
from worker.hooks import DEFAULT_HOOKS
from worker.job.spec import JobSpec
from worker.pipeline.context import Busy, Delivery
from worker.pipeline.dispatch import run_step
from worker.pipeline.step import STEPS, Step, step_named
from worker.runners.celery.app import app
from worker.runners.celery.events import end_published, publish_end, publish_progress
from worker.runners.celery.slots import live_slots
from worker.runners.celery.submit import enqueue_job
from worker.schedule.entries import SCHEDULED_TASK, entry_name
from worker.schedule.ticks import TickSkipped, admit_run, confirm_run, marker_ttl, record_skip, release_run
from worker.settings import get_settings
from worker.state.base import unpack
from worker.state.redis import RedisJobState
from worker.targets.guard import TargetGuard, runner_guard
from worker.targets.timeout import allow_replacing

logger = structlog.get_logger("shardsync.worker")


def outage_backoff(retry: int) -> int:
    """Seconds before the ``retry``-th sending again of a step after a Redis error: doubling, up to a minute."""
    return min(60, 2 ** min(retry, 6))


def outage_waited(retries: int) -> int:
    """Seconds the step's earlier deliveries have waited for Redis, by the backoff above (``retries`` sent)."""
    return sum(outage_backoff(retry) for retry in range(retries))


transient = unreachable
"""Whether an error is Redis (or the broker) not answering for now, rather than a fault of the job: what a step
is run again after (``worker.connection.unreachable``, named here for what it decides)."""


class CeleryRunner:
    """Carries the steps as Celery tasks; each step of a job has a task id of its own (``{job}.diff``...)."""

    hooks = DEFAULT_HOOKS

    def enqueue(self, step: str, job_id: str, *args: Any) -> None:
        """Send the step's task (its id names the step, so Flower and the result backend tell them apart)."""
        declared = step_named(step)
        app.send_task(
            declared.task,
            args=() if declared.job_task else (job_id, *args),
            task_id=declared.task_id(job_id, args),
            argsrepr=declared.argsrepr(job_id, args),  # what monitors show: "job 3f2a... shard 3", not a tuple
        )

    def progress(
        self, job_id: str, stage: str, current: int, total: int, extra: Optional[Dict[str, Any]] = None
    ) -> None:
        """The job's Celery state: PROGRESS with ``{job_id, stage, current, total}`` and ``extra``."""
        publish_progress(job_id, stage, current, total, extra)

    def publish_end(self, job_id: str, report: Dict[str, Any]) -> None:
        """The job's final Celery state."""
        publish_end(job_id, report)

    def end_published(self, job_id: str) -> bool:
        """Whether the job's Celery state is final."""
        return end_published(job_id)

    def live_slots(self) -> Optional[int]:
        """The pool slots the live workers announced (``worker.runners.celery.slots``); None when none did."""
        return live_slots(redis_client()) or None

    def target_guard(
        self, key: str, limits: Optional[Limits], also: tuple, outage_budget: Optional[float] = None
    ) -> TargetGuard:
        """The target's limits and condition held by every worker, through the job-state Redis."""
        return runner_guard(key, limits, redis_client(), also, outage_budget)


RUNNER = CeleryRunner()


OUTAGES = "shardsync_outages"
"""The task keyword carrying how many times a step was sent again after a Redis outage (and none else)."""


def _run(task: Task, step: str, job_id: str, *args: Any, **options: Any) -> Any:
    request = task.request
    outages = options.get(OUTAGES)
    outages = outages if isinstance(outages, int) and not isinstance(outages, bool) and outages >= 0 else 0

    def will_retry(err: BaseException) -> bool:
        return transient(err) and outage_waited(outages) < get_settings().redis_outage_budget

    delivery = Delivery(
        hostname=request.hostname or "",
        redelivered=bool((request.delivery_info or {}).get("redelivered")),
        will_retry=will_retry,
        outage_retries=outages,
    )
    job = RedisJobState(job_id)
    try:
        return run_step(step, job, RUNNER, delivery, *args)
    except Busy as busy:
        raise task.retry(countdown=busy.countdown) from None
    except Exception as err:
        if will_retry(err):  # a shard run again replays its journal; every other step is idempotent
            logger.warning("Step retried after a Redis error", task=task.name, job_id=job_id, error=describe(err))
            raise task.retry(
                exc=err, countdown=outage_backoff(outages), kwargs={**(request.kwargs or {}), OUTAGES: outages + 1}
            ) from err
        if transient(err):
            raise RedisOutage(
                f"Redis (or the broker) did not answer for about {outage_waited(outages)} s, longer than "
                f"SHARDSYNC_REDIS_OUTAGE_BUDGET ({get_settings().redis_outage_budget:g} s): {describe(err)}"
            ) from err
        raise


def _step_task(step: Step) -> Task:
    """The Celery task that runs one step of a job: ``(job_id, *args)`` in its message."""
    name = step.name

    def run(self: Task, job_id: str, *args: Any, **options: Any) -> Any:
        return _run(self, name, job_id, *args, **options)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = (step.work.__doc__ or f"The {name} step of a job.").strip().splitlines()[0]
    return app.task(name=step.task, bind=True, max_retries=None)(run)  # type: ignore[no-any-return]


def _job_task(step: Step) -> Task:
    """The job's own task (its id is the job's): its Celery state is the job's, written by the steps."""
    name = step.name

    def run_job(self: Task, *legacy: Any, **options: Any) -> None:
        """Start a job: take the lock on its target, then load both sides in parallel.

        The message carries the job id only (the task id): the spec, adapter kwargs included, stays in the job
        state, out of the broker, the result backend and monitors. A message of an earlier release carrying the
        spec as its argument is still started, from that spec, when the job state has none.
        """
        job = RedisJobState(self.request.id)
        if legacy and isinstance(legacy[0], dict) and job.spec_data() is None:
            job.create(legacy[0], get_settings().store_ttl)
        _run(self, name, self.request.id, **options)
        raise Ignore()  # the job's Celery state is written by its steps; its result by the finish

    return app.task(name=step.task, bind=True, max_retries=None)(run_job)  # type: ignore[no-any-return]


def define_tasks() -> Dict[str, Task]:
    """A Celery task for every step of the table that has none yet (steps registered later get theirs here).

    Called at import, and again by a worker as it starts, after the modules that may register steps.
    """
    for step in list(STEPS.values()):
        if step.task not in app.tasks:
            (_job_task if step.job_task else _step_task)(step)
    return {step.name: app.tasks[step.task] for step in STEPS.values()}


@signals.worker_init.connect
def _define_late_steps(**_: Any) -> None:
    """Tasks for steps the worker's adapter modules registered (imported as it started, before its pool)."""
    define_tasks()


@signals.worker_process_init.connect
def _pool_child(**_: Any) -> None:
    """A prefork pool's child: its pool replaces it when it exits, so a call's hard time limit may end it."""
    allow_replacing()


TASKS = define_tasks()
"""The step tasks by step name, as of this module's import."""
run_job = TASKS["start"]
shard = TASKS["shard"]


@app.task(name=SCHEDULED_TASK, bind=True)
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
    if spec.coalesce is not None:
        raise InvalidJob(f"scheduled sync {entry!r}: coalesce is for requests that come in bursts, not for ticks")
    if name is None:
        enqueue_job(spec)
    else:
        try:
            admit_run(name, spec.job_id)  # before anything is recorded: a skipped tick leaves no job behind
        except TickSkipped as skipped:
            record_skip(skipped)
            return None
        try:
            enqueue_job(spec, info={"schedule": name})
        except Exception:
            try:  # not enqueued: the entry's next tick may start a run
                release_run(name, spec.job_id)
            except Exception as err:  # noqa: BLE001 - Redis may be what failed; the reservation expires soon
                logger.warning("Schedule marker not released", schedule=name, job_id=spec.job_id, error=describe(err))
            raise
        confirm_run(name, spec.job_id, marker_ttl(spec.deadline))
    logger.info("Scheduled sync submitted", job_id=spec.job_id, schedule=name, source=spec.source, target=spec.target)
    return spec.job_id
