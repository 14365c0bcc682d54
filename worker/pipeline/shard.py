"""The shard step: apply one shard's subtrees through the target's hooks, then hand over to the next wave.

A shard runs under its claim (a duplicate delivery waits), fenced (it writes only while its job holds the
target's lock, ``StepContext.fence``) and journaled (``worker.pipeline.journal``). It always ends with a
result, even when it fails or its job was stopped, so its wave ends too, and the last shard of a wave hands
over to the next wave or to the finish (``worker.pipeline.plan.next_wave``).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional

import structlog

from core.adapter import Adapter
from core.diff import Diff
from core.diff_codec import DiffCodec
from core.planner import number_elements
from core.retry import RetryBudget
from worker.errors import describe
from worker.job.spec import JobSpec
from worker.pipeline.context import DONE, Busy, StepContext
from worker.pipeline.journal import ShardSyncer
from worker.pipeline.plan import next_wave
from worker.settings import get_settings
from worker.state.base import JobState
from worker.targets.guard import TargetGuard, limits_key, limits_of

logger = structlog.get_logger("shardsync.worker")


class ShardFailed(Exception):
    """The shard's syncer stopped on an error: carries what it had done, for the shard's failed result."""

    def __init__(
        self, cause: BaseException, result: Dict[str, Any], syncer: Optional[ShardSyncer], started: float
    ) -> None:
        super().__init__(describe(cause))
        self.result = result
        self.syncer = syncer
        self.started = started


def stray_shard(job: JobState, index: Any) -> Optional[str]:
    """Why a shard message names no shard of its job's plan (then nothing runs), or None."""
    try:
        plan = job.plan_head()  # a shard reads the head and its own part of the plan, not every shard's
    except LookupError:
        return "Shard of a job without a plan (expired or finished)"
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < plan["shards"]:
        return f"Shard message names no shard of its job's plan: shard {index!r} of {plan['shards']}"
    return None


def shard_done(job: JobState, index: int) -> bool:
    """Whether the shard's result is recorded."""
    return job.shard_result(index) is not None


def retry_budget(spec: JobSpec, target: Adapter) -> RetryBudget:
    """How long the shard's hooks are called again after "try later" (``core.retry``).

    The job's fields over the target adapter's ``retry_budget``, else over the settings'
    (``SHARDSYNC_RETRY_ATTEMPTS``, ``SHARDSYNC_RETRY_SECONDS``).
    """
    settings = get_settings()
    base = getattr(target, "retry_budget", None) or RetryBudget(
        attempts=settings.retry_attempts, seconds=settings.retry_seconds
    )
    return spec.retry.budget(base) if spec.retry is not None else base


def _guard(ctx: StepContext, spec: JobSpec, target: Adapter) -> TargetGuard:
    """What holds the shard's calls to its target's limits (the job's over the adapter's) and condition."""
    limits = limits_of(spec.limits.to_limits() if spec.limits is not None else None, target)
    key = limits_key(target, spec.target_identity())
    also = tuple(getattr(target, "transient_errors", ()) or ())
    return ctx.runner.target_guard(key, limits, also, spec.outage_budget)


def _result(info: Dict[str, Any], hostname: str, error: Optional[str] = None) -> Dict[str, Any]:
    return {
        "index": info["index"],
        "wave": info["wave"],
        "type": info["type"],
        "roots": len(info["roots"]),
        "operations": info["operations"],
        "worker": hostname,
        "changed": False,
        "applied": 0,
        "replayed": 0,
        "retries": 0,
        "throttled": 0,
        "waited": 0.0,
        "paused": 0.0,
        "lowest_limit": None,
        "transient": 0,
        "stopped": error is not None,
        "error": error,
        "seconds": 0.0,
    }


def apply_shard(ctx: StepContext, index: int) -> Dict[str, Any]:
    """Apply one shard (its top-level subtrees, in order, through the target models' hooks); returns its result.

    Raises:
        ShardFailed: if its syncer stopped on an error (from the error, as its cause).
    """
    job = ctx.job
    info = job.shard_plan(index)
    total = job.plan_head()["operations"]
    result = _result(info, ctx.hostname)
    started = time.perf_counter()
    job.mark_sync_started(time.time())
    if job.aborted():
        result["stopped"] = True
        job.write_journal({}, info["operations"])
        return result
    spec = ctx.spec
    syncer: Optional[ShardSyncer] = None
    guard: Optional[TargetGuard] = None
    with ctx.kept_alive(), ctx.fence() as fence:
        try:
            source, target = ctx.adapters(lazy=True, reuse=True)
            if hasattr(target.store, "write_guard"):
                target.store.write_guard = fence  # this delivery's fence (lease, claim, lock) before its writes
            codec = DiffCodec(source, target)
            sub_diff = Diff()
            op_ids: Dict[int, str] = {}
            for root, record in zip(info["roots"], job.diff_records(info["roots"]), strict=True):
                element = codec.decode(record, source.name, target.name)
                number_elements(root, element, op_ids)
                sub_diff.add(element)
            done = job.journal_entries(sorted(set(op_ids.values())))
            syncer = ShardSyncer(
                diff=sub_diff,
                src=source,
                dst=target,
                flags=spec.diffsync_flags,
                job=job,
                op_ids=op_ids,
                done=done,
                redelivered=bool(done) or ctx.redelivered,
                on_checkpoint=lambda current, target=None: ctx.progress("sync", current, total, target),
                checkpoint_every=get_settings().journal_batch,
                fence=fence,
                batch_size=spec.batch_size,
                retry=retry_budget(spec, target),
                guard=(guard := _guard(ctx, spec, target)),
                claim=(ctx.claim, ctx.token) if ctx.claim else None,
            )
            syncer.confirm = get_settings().journal_confirm
            result["changed"], result["stopped"] = syncer.run()
        except Busy:
            raise  # ClaimLost: stand down; the next delivery replays the journal
        except Exception as err:
            raise ShardFailed(err, result, syncer, started) from err
        finally:
            if guard is not None:
                guard.close()  # its slot renewer, however the shard ends (its figures stay readable)
        _account(ctx, result, syncer, info["operations"], total)
    result["seconds"] = time.perf_counter() - started
    job.mark_sync_ended(time.time())
    return result


def _account(
    ctx: StepContext,
    result: Dict[str, Any],
    syncer: Optional[ShardSyncer],
    operations: int,
    total: int,
    fenced: bool = True,
) -> None:
    """The bookkeeping of a shard that ran to its end (fenced), or stopped on an error of its own."""
    remainder = operations
    if syncer is not None:
        syncer.finish(fenced)
        result.update(syncer.guard_figures())
        result["changed"] = result["changed"] or syncer.attempted
        result["applied"] = syncer.applied
        result["replayed"] = syncer.replayed
        result["retries"] = syncer.retries
        remainder -= syncer.applied + syncer.replayed
    if remainder > 0:  # operations skipped under a failed parent still count as dealt with
        ctx.progress("sync", ctx.job.write_journal({}, remainder), total)


def shard_failed(ctx: StepContext, err: BaseException, index: int) -> Dict[str, Any]:
    """A shard that failed stops its job, and still ends with a result (naming the error), so its wave ends."""
    job = ctx.job
    cause = err.__cause__ if isinstance(err, ShardFailed) and err.__cause__ is not None else err
    message = describe(cause)
    job.abort(f"shard {index} failed: {message}")
    logger.error("Shard failed", error=message)
    if not isinstance(err, ShardFailed):  # outside the syncer: nothing of the shard ran
        return _result(job.shard_plan(index), ctx.hostname, error=message)
    result = err.result
    result["error"] = message
    _account(ctx, result, err.syncer, result["operations"], job.plan_head()["operations"], fenced=False)
    result["seconds"] = time.perf_counter() - err.started
    job.mark_sync_ended(time.time())
    return result


def shard_ended(ctx: StepContext, result: Any, index: int) -> Optional[Dict[str, Any]]:
    """Record the shard's result and hand over to the next wave when its wave is complete.

    Returns the shard's outcome for monitors (operations, applied, replayed, seconds, error), or None when
    this delivery found it done by an earlier one.
    """
    job = ctx.job
    plan = job.plan_head()
    wave = job.shard_plan(index)["wave"]
    if result is DONE:
        # A duplicate delivery of a finished shard (the first may have died before handing over).
        next_wave(ctx, plan, wave, job.finished_in_wave(wave))
        return None
    next_wave(ctx, plan, wave, job.record_shard(index, wave, result))
    shown = ("index", "operations", "applied", "replayed", "retries", "seconds", "error")
    return {key: result.get(key) for key in shown}
