"""The job pipeline's steps as plain functions: start, load, diff (``worker.pipeline.load``, ``worker.pipeline.diff``), finish.

Each step reads and writes the job only through a ``JobState`` and hands over to the next step through a
``Runner``: Celery tasks on workers (``worker.runners.celery.tasks``) or a queue in this process (``worker.runners.local``) carry the
very same functions. No step waits for another: the step that completes a stage enqueues the next one (the
second load the diff, the last shard of a wave the next wave or the finish). Every step is safe to run again.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional

import structlog

from core.adapter import Adapter
from core.diff_codec import DiffCodec
from worker.adapters.registry import get_adapter
from worker.errors import describe
from worker.job.report import assemble_report, rebuild_diff
from worker.job.spec import JobSpec
from worker.pipeline.context import (
    SIDES,
    Busy,
    Delivery,
    Runner,
    attach_adapters,
    claim_ttl,
    claim_wait,
    fail,
    overdue,
    poisoned,
    show_progress,
    spec_of,
)
from worker.pipeline.diff import diff
from worker.pipeline.load import load, part
from worker.pipeline.ranges import diff_part, join
from worker.pipeline.shard import shard
from worker.settings import get_settings
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")

# ----------------------------------------------------------------------------------------------------
# start, load, diff
# ----------------------------------------------------------------------------------------------------


def start(job: JobState, runner: Runner, delivery: Delivery) -> None:
    """Take the lock on the job's target, then enqueue both loads (they run in parallel)."""
    if job.report() is not None:
        return  # a start delivered again after its job ended (its markers went with the scratch data)
    try:
        spec = spec_of(job)
    except Exception as err:  # noqa: BLE001 - reported as the job's failure
        job.abort(f"invalid job: {describe(err)}")
        finish(job, runner, delivery)
        return
    if job.marked("started"):
        return  # a redelivered start: the pipeline runs already
    holder = job.acquire_lock(spec.target_identity(), get_settings().lock_ttl)  # idempotent for this job
    if holder is not None:
        job.abort(f"target {spec.target} is being synced by job {holder}; one sync into a target at a time")
        job.set_info(lock="not held")
        finish(job, runner, delivery)
        return
    job.set_info(lock="held")
    if job.aborted():  # cancelled before it started
        finish(job, runner, delivery)
        return
    job.set_info(status="running", started=time.time(), worker=delivery.hostname)
    _counted(delivery, job.count_started)
    show_progress(job, runner, "load-source", 0, 2)
    for side in SIDES:
        runner.enqueue("load", job.job_id, side)
    job.mark("started")  # after the enqueues: a start that dies before this sends them again (loads are claimed)


# ----------------------------------------------------------------------------------------------------
# finish
# ----------------------------------------------------------------------------------------------------


def finish(job: JobState, runner: Runner, delivery: Delivery) -> Dict[str, Any]:
    """Build the report, call ``sync_complete`` when something changed, release the lock and scratch data.

    Returns the report (the one saved before, for a finish delivered again).
    """
    existing = job.report()
    if existing is not None:
        # Finished before: a duplicate delivery, or one whose first delivery died after saving the report.
        job.release_schedule()  # idempotent; the first delivery may have died before it
        _counted(delivery, job.count_ended, existing, get_settings().store_ttl)  # counted once per job
        if not runner.end_published(job.job_id):
            runner.publish_end(job.job_id, existing)
        return existing
    token = job.claim("finish", claim_ttl(), "finish")
    if token is None:
        raise Busy("the finish", claim_wait())  # another delivery is finishing
    try:
        existing = job.report()
        if existing is not None:  # another delivery finished between the look before the claim and the claim
            return existing
        reason = poisoned(job, "finish")
        if reason is not None:
            job.abort(reason)  # the finish still runs, without sync_complete (what killed it), to report
        return _finish(job, runner, delivery, token)
    finally:
        job.release_claim("finish", token)


def _overrides_sync_complete(spec: JobSpec) -> bool:
    """Whether the target adapter class has a ``sync_complete`` of its own (the default does nothing)."""
    return getattr(get_adapter(spec.target), "sync_complete", None) is not Adapter.sync_complete


def _finish(job: JobState, runner: Runner, delivery: Delivery, token: str) -> Dict[str, Any]:
    started = time.perf_counter()
    runner.progress(job.job_id, "finish", 0, 1)
    spec: Optional[JobSpec] = None
    error = job.aborted()
    try:
        spec = spec_of(job)
    except Exception as err:  # noqa: BLE001 - the report says so
        error = error or f"invalid job: {describe(err)}"
    changed = any(result.get("changed") for result in job.shard_results().values())
    sync_complete = False
    if spec is not None and not error and not spec.dry_run and changed and not _overrides_sync_complete(spec):
        sync_complete = True  # Adapter.sync_complete does nothing: no adapter to attach, no diff to rebuild
    elif spec is not None and not error and not spec.dry_run and changed:
        try:
            # Fenced and kept alive like a shard: sync_complete writes to the target, and may take long.
            with job.heartbeat(spec.target_identity(), get_settings().lock_ttl, claim="finish", token=token):
                source, target = attach_adapters(job, spec)
                records = job.diff_records(list(range(job.diff_size())))
                full = rebuild_diff(records, DiffCodec(source, target), source.name, target.name, job.summary())
                logger_ = structlog.get_logger().new(job_id=job.job_id)
                target.sync_complete(source, full, spec.diffsync_flags, logger_)
                flush = getattr(target.store, "flush", None)
                if flush is not None:
                    flush()
            sync_complete = True
        except Exception as err:  # noqa: BLE001 - reported; the operations themselves were applied
            if delivery.will_retry(err):
                raise
            error = f"sync_complete failed: {describe(err)}"
    report = assemble_report(
        job, error=error, changed=changed, sync_complete=sync_complete, hostname=delivery.hostname, started=started
    )
    keep_stores = _keeps_stores(spec)
    if not keep_stores:
        report["stores"] = {}  # removed below: the report names no store that is gone
    job.set_info(status=report["status"], finished=time.time())  # before the report, which sets its expiry
    job.save_report(report, get_settings().store_ttl)
    if spec is not None and job.info().get("lock") == "held":
        job.release_lock(spec.target_identity())
    job.release_schedule()  # after the report: however the job ended, its entry's next tick may start a run
    job.drop_scratch()
    if not keep_stores:
        job.drop_stores()
    _counted(delivery, job.count_ended, report, get_settings().store_ttl)  # before the end shows
    runner.progress(job.job_id, "finish", 1, 1)
    runner.publish_end(job.job_id, report)
    logger.info("Job finished", status=report["status"], operations=report["operations"])
    return report


def _keeps_stores(spec: Optional[JobSpec]) -> bool:
    if spec is not None and spec.keep_stores is not None:
        return spec.keep_stores
    return get_settings().keep_stores


def _counted(delivery: Delivery, count: Callable[..., None], *args: Any) -> None:
    """Count the job in the metrics (once, however often asked): an error is retried if transient, never fatal."""
    try:
        count(*args)
    except Exception as err:  # noqa: BLE001 - monitoring only
        if delivery.will_retry(err):
            raise
        logger.warning("Job metrics not counted", error=describe(err))


def run_step(step: str, job: JobState, runner: Runner, delivery: Delivery, *args: Any) -> Any:
    """Run one step by name, with the job id and stage bound to every log event it makes.

    An error a step did not handle, and that will not be retried, fails the job (the finish reports it)
    rather than leaving it waiting for a step that will never come; an error of the finish itself is raised.
    """
    context: Dict[str, Any] = {"job_id": job.job_id, "stage": step}
    if step == "load":
        context["stage"] = f"load-{args[0]}"
    elif step == "part":
        context.update(stage=f"load-{args[0]}", partition=args[1])
    elif step == "shard":
        context.update(stage="sync", shard=args[0])
    elif step == "diffpart":
        context.update(stage="diff", range=args[0])
    elif step == "join":
        context["stage"] = "diff"
    structlog.contextvars.bind_contextvars(**context)
    try:
        try:
            spec_data = job.spec_data()
        except Exception:  # noqa: BLE001 - unreadable: known, and the steps report it as an invalid job
            spec_data = {}
        if spec_data is None:
            # A stray message (an expired job, a typo): nothing runs, and nothing is written that would
            # outlive it.
            logger.warning("Step of an unknown or expired job: nothing done")
            return None
        late = overdue(job, spec_data) if step != "finish" else None
        if late and job.report() is None:
            job.abort(late)  # the step sees its job stopped, as after a cancel, and hands over to the finish
        return STEP_FUNCTIONS[step](job, runner, delivery, *args)
    except Busy:
        raise
    except Exception as err:
        if step == "finish" or delivery.will_retry(err):
            raise
        logger.exception("Step failed outside its own error handling")
        fail(job, runner, str(context["stage"]), err)
        return None
    finally:
        structlog.contextvars.unbind_contextvars(*context)


STEP_FUNCTIONS: Dict[str, Callable[..., Any]] = {
    "start": start,
    "load": load,
    "part": part,
    "diff": diff,
    "diffpart": diff_part,
    "join": join,
    "shard": shard,
    "finish": finish,
}
"""Every step by name: ``STEP_FUNCTIONS[step](job, runner, delivery, *args)``."""
