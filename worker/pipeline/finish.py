"""The finish step: the one owner of a job's end, whatever ended it.

It builds the report, calls ``sync_complete`` when something changed, releases the lock and the scratch
data, and publishes the end.

Every path through the pipeline ends here: a job that completed, failed, was refused, cancelled or overdue.
A finish delivered again after the report exists publishes the end again if it was not (the first delivery may
have died between the two); the job-level hooks (``worker.hooks``) run around it, in the dispatcher.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

import structlog

from core.adapter import Adapter
from core.diff_codec import DiffCodec
from worker.adapters.registry import get_adapter
from worker.errors import describe
from worker.job.history import record_line
from worker.job.report import assemble_report, rebuild_diff
from worker.job.spec import JobSpec
from worker.pairs.runs import advance_pair, pair_part
from worker.pipeline.context import DONE, StepContext
from worker.settings import get_settings
from worker.state.base import JobState
from worker.targets.timeout import time_limit

logger = structlog.get_logger("shardsync.worker")


def reported(job: JobState) -> bool:
    """Whether the job's report is saved (then the job has ended)."""
    return job.report() is not None


def _overrides_sync_complete(spec: JobSpec) -> bool:
    """Whether the target adapter class has a ``sync_complete`` of its own (the default does nothing)."""
    return getattr(get_adapter(spec.target), "sync_complete", None) is not Adapter.sync_complete


def still_running(ctx: StepContext) -> list:
    """The job's other steps that hold their claims now (running somewhere, or dead within a claim's expiry)."""
    job = ctx.job
    return sorted(key for key in job.running_steps() if key != ctx.claim and job.claim_held(key))


def finish(ctx: StepContext) -> Optional[Dict[str, Any]]:
    """Build and save the report, release the lock, drop what only the running job needed; returns the report.

    Not while another step of the job holds its claim (a late load, diff or join of a stopped job hands over
    to the finish while shards still run): then it does nothing and returns None. Each running step hands
    over to the finish when it ends, a dead one is run again by the watchdog (and hands over), and one that
    never returns is ended around by the watchdog's ``end``; so the report never undercounts and no claim
    or scratch key is deleted under a step that runs.
    """
    job = ctx.job
    others = still_running(ctx)
    if others:
        logger.info("Finish waits: steps of the job still run; the last of them hands over", steps=others)
        return None
    started = time.perf_counter()
    ctx.runner.progress(job.job_id, "finish", 0, 1)
    spec: Optional[JobSpec] = None
    error = job.aborted()
    try:
        spec = ctx.spec
    except Exception as err:  # noqa: BLE001 - the report says so
        error = error or f"invalid job: {describe(err)}"
    changed = any(result.get("changed") for result in job.shard_results().values())
    sync_complete = False
    if spec is not None and not error and not spec.dry_run and changed and not _overrides_sync_complete(spec):
        sync_complete = True  # Adapter.sync_complete does nothing: no adapter to attach, no diff to rebuild
    elif spec is not None and not error and not spec.dry_run and changed:
        error, sync_complete = _sync_complete(ctx)
    hung = job.info().get("hung") or []
    if hung:
        error = (
            f"{error or 'the job was stopped'}; {', '.join(hung)} had not returned "
            f"{get_settings().watchdog_interval:g} s later (a call that hangs?) and was ended by the watchdog; "
            "whatever it does now is discarded"
        )
    report = assemble_report(
        job, error=error, changed=changed, sync_complete=sync_complete, hostname=ctx.hostname, started=started
    )
    report["hung"] = list(hung)
    if spec is not None and spec.pair is not None:  # a successful run moves its pair's cursors on
        report["pair"] = pair_part(job, spec, report["status"])
    keep_stores = _keeps_stores(spec) or (spec is not None and spec.pair is not None)  # a pair's are kept
    if not keep_stores:
        report["stores"] = {}  # removed below: the report names no store that is gone
    if not job.save_report(report, get_settings().store_ttl):
        return job.report()  # type: ignore[return-value]  # another end came first (the watchdog's, say)
    job.set_info(status=report["status"], finished=time.time())
    if spec is not None and spec.pair is not None and report["status"] == "success":
        advance_pair(job, spec)  # before the lock goes: the pair's next run reads what this one kept
    if spec is not None and job.info().get("lock") == "held":
        job.release_lock(spec.target_identity())
    job.drop_scratch()
    if not keep_stores:
        job.drop_stores()
    # The history last, once the lock is free and memory given back (a Redis out of memory refuses its writes).
    try:
        job.keep_history()
    except Exception as err:  # noqa: BLE001 - the records keep their store TTL: the job's end stands
        logger.warning("Job history not extended", job_id=job.job_id, error=describe(err))
    record_line(job)
    ctx.runner.progress(job.job_id, "finish", 1, 1)
    return report


def _sync_complete(ctx: StepContext) -> Tuple[Optional[str], bool]:
    """Call the target adapter's ``sync_complete`` with the job's whole diff; returns (error, whether it ran).

    Its errors are the report's, not the step's: the operations themselves were applied (one the runner
    retries is raised, for the finish to run again).
    """
    job = ctx.job
    with ctx.caught() as caught:
        # Kept alive and fenced like a shard: sync_complete writes to the target, and may take long.
        with ctx.kept_alive():
            source, target = ctx.adapters()
            records = job.diff_records(list(range(job.diff_size())))
            full = rebuild_diff(records, DiffCodec(source, target), source.name, target.name, job.summary())
            with time_limit(get_settings().load_timeout, f"{type(target).__name__}.sync_complete()"):
                target.sync_complete(
                    source, full, ctx.spec.diffsync_flags, structlog.get_logger().new(job_id=job.job_id)
                )
            ctx.standing()
            flush = getattr(target.store, "flush", None)
            if flush is not None:
                flush()
    if caught.error is not None:
        return f"sync_complete failed: {caught.error}", False
    return None, True


def _keeps_stores(spec: Optional[JobSpec]) -> bool:
    if spec is not None and spec.keep_stores is not None:
        return spec.keep_stores
    return get_settings().keep_stores


def end_hung(ctx: StepContext) -> Optional[Dict[str, Any]]:
    """End a stopped job whose steps did not stop (the watchdog's ``end``): the finish, around the hung steps.

    The watchdog sends it when a job has been stopped (its deadline passed, a cancel) for a whole watchdog
    interval and some of its steps still hold their claims: a call that never returns keeps its heartbeat,
    its claim and the target's lock alive, and the job would never end. The steps' claims are taken from
    them and the lock released first, so that whatever they do when (if ever) their call returns finds its
    claim and lock gone and writes nothing (``StepContext.standing``, the shard's fence); then the job ends
    as a finish ends it, its report naming them (``hung``).
    """
    job = ctx.job
    if job.report() is not None:
        return job.report()  # type: ignore[return-value]
    hung = still_running(ctx)
    for key in hung:
        job.revoke_claim(key)
    if hung:
        job.set_info(hung=hung)
        logger.error("Job ended around steps that did not stop", steps=hung)
    try:
        target: Optional[str] = ctx.spec.target_identity()
    except Exception:  # noqa: BLE001 - an invalid job: the finish reports it
        target = None
    if target is not None and job.info().get("lock") == "held":
        job.release_lock(target)
    return finish(ctx)


def publish(ctx: StepContext, outcome: Any) -> Optional[Dict[str, Any]]:
    """Publish the job's end (again, for a finish delivered again whose first delivery died before it).

    Nothing for a finish that waited for running steps (no report yet).
    """
    if outcome is None:
        return None
    report = ctx.job.report() if outcome is DONE else outcome
    if outcome is not DONE or not ctx.runner.end_published(ctx.job_id):
        ctx.runner.publish_end(ctx.job_id, report)
    if outcome is not DONE:
        logger.info("Job finished", status=report["status"], operations=report["operations"])
    return report  # type: ignore[no-any-return]
