"""The shard step: apply one shard's subtrees through the target's hooks, then advance its wave.

A shard is claimed (a duplicate delivery waits), fenced (it writes only while its job holds the target's
lock) and journaled (``worker.pipeline.journal``); it always ends with a result, so its wave ends too, and the last
shard of a wave enqueues the next wave or the finish.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

import structlog

from core.diff import Diff
from core.diff_codec import DiffCodec
from worker.errors import LockLost, describe, lock_lost_message
from worker.pipeline.context import (
    Busy,
    ClaimLost,
    Delivery,
    Runner,
    attach_adapters,
    claim_ttl,
    claim_wait,
    forget_attached,
    poisoned,
    show_progress,
    spec_of,
)
from worker.pipeline.journal import ShardSyncer, number_elements
from worker.settings import get_settings
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")


def start_wave(job: JobState, runner: Runner, shard_indexes: List[int]) -> None:
    """Enqueue the shards of one wave (they may run in parallel)."""
    for index in shard_indexes:
        runner.enqueue("shard", job.job_id, index)


def _advance(job: JobState, runner: Runner, plan: Dict[str, Any], wave: int, finished_in_wave: int) -> None:
    """After a shard: if its wave is complete, start the next wave, or the finish when none is left."""
    waves = plan["waves"]
    if finished_in_wave < len(waves[wave]):
        return
    if wave + 1 < len(waves) and not job.aborted():
        marker = f"wave-{wave + 1}"
        if not job.marked(marker):
            start_wave(job, runner, waves[wave + 1])
            job.mark(marker)  # after the enqueues: a crash in between sends the wave again (shards are claimed)
        return
    runner.enqueue("finish", job.job_id)


def shard(job: JobState, runner: Runner, delivery: Delivery, index: int) -> Optional[Dict[str, Any]]:
    """Apply one shard (its top-level subtrees, in order, through the target models' hooks), then advance.

    Returns the shard's outcome for monitors (operations, applied, replayed, seconds, error), or None when
    this delivery had nothing to do.
    """
    if job.report() is not None:
        return None  # a late duplicate of a job that has finished
    try:
        plan = job.plan_head()  # a shard reads the head and its own part of the plan, not every shard's
    except LookupError:
        logger.warning("Shard of a job without a plan (expired or finished)")
        return None
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < plan["shards"]:
        logger.error("Shard message names no shard of its job's plan", shard=index, shards=plan["shards"])
        return None
    info = job.shard_plan(index)
    wave = info["wave"]
    if job.shard_result(index) is not None:
        # A duplicate delivery of a finished shard (the first may have died before advancing).
        _advance(job, runner, plan, wave, job.finished_in_wave(wave))
        return None
    token = job.claim(f"shard-{index}", claim_ttl(), "shard", [index])
    if token is None:
        # Another delivery of this shard is running (or died and its claim has not expired yet).
        raise Busy(f"shard {index}", claim_wait())
    try:
        if job.report() is not None:  # the job ended between the look before the claim and the claim
            return None
        reason = poisoned(job, f"shard-{index}")
        if reason is not None:
            job.abort(reason)
            result = _result(info, delivery, error=reason)
        else:
            result = _apply_shard(job, runner, delivery, info, plan["operations"], token)
    except Busy:
        forget_attached()
        raise  # ClaimLost: another delivery has the shard now
    except Exception as err:  # noqa: BLE001 - outside the syncer: the shard still ends, and its wave with it
        forget_attached()
        if delivery.will_retry(err):
            raise
        job.abort(f"shard {index} failed: {describe(err)}")
        logger.error("Shard failed", error=describe(err))
        result = _result(info, delivery, error=describe(err))
    finally:
        try:
            job.release_claim(f"shard-{index}", token)
        except Exception:  # noqa: BLE001 - an unreleased claim expires by itself
            logger.warning("Shard claim not released", shard=index)
    _advance(job, runner, plan, wave, job.record_shard(index, wave, result))
    return {key: result[key] for key in ("index", "operations", "applied", "replayed", "seconds", "error")}


def _result(info: Dict[str, Any], delivery: Delivery, error: Optional[str] = None) -> Dict[str, Any]:
    return {
        "index": info["index"],
        "wave": info["wave"],
        "type": info["type"],
        "roots": len(info["roots"]),
        "operations": info["operations"],
        "worker": delivery.hostname,
        "changed": False,
        "applied": 0,
        "replayed": 0,
        "stopped": error is not None,
        "error": error,
        "seconds": 0.0,
    }


def _apply_shard(
    job: JobState, runner: Runner, delivery: Delivery, info: Dict[str, Any], total: int, token: str
) -> Dict[str, Any]:
    index = info["index"]
    result = _result(info, delivery)
    started = time.perf_counter()
    job.mark_sync_started(time.time())
    if job.aborted():
        result["stopped"] = True
        job.write_journal({}, info["operations"])
        return result
    spec = spec_of(job)
    settings = get_settings()
    syncer: Optional[ShardSyncer] = None
    target_id = spec.target_identity()
    with (
        job.heartbeat(target_id, settings.lock_ttl, claim=f"shard-{index}", token=token) as beat,
        job.watch_lock(target_id) as holds_lock,
    ):
        checked = [float("-inf")]

        def fence() -> None:
            # Before every hook: the lock is this job's (or is taken back while no other job took it since),
            # as read at most SHARDSYNC_FENCE_INTERVAL ago; the heartbeat's findings count at once.
            if beat.claim_lost.is_set():
                raise ClaimLost(f"shard {index}", claim_wait())
            if not beat.lost.is_set() and time.monotonic() - checked[0] < settings.fence_interval:
                return
            if beat.lost.is_set() or not (holds_lock() or job.renew_lock(target_id, settings.lock_ttl)):
                beat.lost.set()
                raise LockLost(lock_lost_message(job.job_id, target_id))
            checked[0] = time.monotonic()

        try:
            source, target = attach_adapters(job, spec, lazy=True, reuse=True)
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
                redelivered=bool(done) or delivery.redelivered,
                on_checkpoint=lambda current: show_progress(job, runner, "sync", current, total),
                checkpoint_every=settings.journal_batch,
                fence=fence,
                batch_size=spec.batch_size,
            )
            result["changed"], result["stopped"] = syncer.run()
        except Busy:
            raise  # ClaimLost: stand down (shard() lets its adapters go); the next delivery replays the journal
        except Exception as err:  # noqa: BLE001 - a failed shard stops the job; the report names the error
            forget_attached()  # the next shard in this process attaches fresh adapters
            if delivery.will_retry(err):
                raise  # run again as a whole: its journal replays; nothing of this run is counted
            result["error"] = describe(err)
            job.abort(f"shard {index} failed: {describe(err)}")
            logger.error("Shard failed", error=describe(err))
        # The bookkeeping of a shard that ran to its end, or stopped on an error of its own.
        remainder = info["operations"]
        if syncer is not None:
            syncer.finish()
            result["changed"] = result["changed"] or syncer.attempted
            result["applied"] = syncer.applied
            result["replayed"] = syncer.replayed
            remainder -= syncer.applied + syncer.replayed
        if remainder > 0:  # operations skipped under a failed parent still count as dealt with
            show_progress(job, runner, "sync", job.write_journal({}, remainder), total)
    result["seconds"] = time.perf_counter() - started
    job.mark_sync_ended(time.time())
    return result
