"""The job pipeline's steps as plain functions: start, load one side, diff and plan, apply one shard, finish.

Each step reads and writes the job only through a ``JobState`` and hands over to the next step through a
``Runner``: Celery tasks on workers (``worker.tasks``) or a queue in this process (``worker.local``) carry the
very same functions. No step waits for another: the step that completes a stage enqueues the next one (the
second load the diff, the last shard of a wave the next wave or the finish). Every step is safe to run again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import structlog

from core.adapter import Adapter
from core.diff import Diff, DiffElement
from core.diff_codec import DiffCodec
from core.enum import DiffSyncModelFlags
from core.planner import plan_sync
from worker.apply import ShardSyncer, number_elements
from worker.errors import JobFailed, describe
from worker.report import assemble_report, rebuild_diff
from worker.settings import get_settings
from worker.spec import JobSpec
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")

SIDES = ("source", "target")
STEPS = ("start", "load", "diff", "shard", "finish")
"""Step names a runner enqueues (with the job id and the step's own arguments)."""


class Runner(Protocol):
    """What carries the steps: how the next step is enqueued and where progress and the job's end are shown."""

    def enqueue(self, step: str, job_id: str, *args: Any) -> None:
        """Run ``step`` of the job later (once, even if asked twice for the same step and arguments)."""

    def progress(self, job_id: str, stage: str, current: int, total: int) -> None:
        """Show the job's progress."""

    def publish_end(self, job_id: str, report: Dict[str, Any]) -> None:
        """Show that the job has ended, with its report (may be called again for the same report)."""

    def end_published(self, job_id: str) -> bool:
        """Whether the job's end has been shown already."""


@dataclass(frozen=True)
class Delivery:
    """What a step knows of the run carrying it: where it runs, and whether an error will be retried."""

    hostname: str = ""
    redelivered: bool = False
    will_retry: Callable[[BaseException], bool] = lambda err: False


class Busy(Exception):
    """Another delivery of this step holds its claim: run this one again in ``countdown`` seconds."""

    def __init__(self, what: str, countdown: int) -> None:
        super().__init__(f"{what} is running in another delivery")
        self.countdown = countdown


def _claim_wait() -> int:
    return max(5, get_settings().lock_ttl // 3)


def spec_of(job: JobState) -> JobSpec:
    """The job's validated spec.

    Raises:
        JobFailed: if the job is unknown or its record expired.
    """
    data = job.spec_data()
    if data is None:
        raise JobFailed(f"job {job.job_id} is unknown or expired")
    return JobSpec.from_data(data)


def attach_adapters(job: JobState, spec: JobSpec, lazy: bool = False) -> Tuple[Adapter, Adapter]:
    """Source and target adapters attached to the job's loaded stores (their ``on_attach`` hooks run)."""
    adapters = []
    for side in SIDES:
        adapter = spec.build_adapter(side)
        adapter.attach_store(job.open_store(side, lazy=lazy))
        adapters.append(adapter)
    return adapters[0], adapters[1]


def element_flags(adapter: Adapter, element: DiffElement) -> DiffSyncModelFlags:
    """The target model's flags for an element (they decide where a delete's children go)."""
    obj = getattr(element, "_dst_obj", None)
    if obj is None:
        model_class = getattr(adapter, element.type, None)
        if model_class is None:
            return DiffSyncModelFlags.NONE
        obj = adapter.get_or_none(model_class, element.keys)
    return obj.model_flags if obj is not None else DiffSyncModelFlags.NONE


def fail(job: JobState, runner: Runner, stage: str, err: BaseException) -> None:
    """Stop the job after an error in one of its steps, and let the finish report it."""
    logger.error("Job step failed", job_id=job.job_id, stage=stage, error=describe(err))
    job.abort(f"{stage} failed: {describe(err)}")
    runner.enqueue("finish", job.job_id)


# ----------------------------------------------------------------------------------------------------
# start, load, diff
# ----------------------------------------------------------------------------------------------------


def start(job: JobState, runner: Runner, delivery: Delivery) -> None:
    """Take the lock on the job's target, then enqueue both loads (they run in parallel)."""
    try:
        spec = spec_of(job)
    except Exception as err:  # noqa: BLE001 - reported as the job's failure
        job.abort(f"invalid job: {describe(err)}")
        finish(job, runner, delivery)
        return
    holder = job.acquire_lock(spec.target_identity(), get_settings().lock_ttl)  # idempotent for this job
    if holder is not None:
        job.abort(f"target {spec.target} is being synced by job {holder}; one sync into a target at a time")
        job.set_info(lock="not held")
        finish(job, runner, delivery)
        return
    if not job.once("started"):
        return  # a redelivered start: the pipeline runs already
    job.set_info(lock="held")
    if job.aborted():  # cancelled before it started
        finish(job, runner, delivery)
        return
    job.set_info(status="running", started=time.time(), worker=delivery.hostname)
    runner.progress(job.job_id, "load-source", 0, 2)
    for side in SIDES:
        runner.enqueue("load", job.job_id, side)


def load(job: JobState, runner: Runner, delivery: Delivery, side: str) -> None:
    """Load one side's adapter into the job's store of that side; the second load to end enqueues the diff."""
    stage = f"load-{side}"
    if job.report() is not None:
        return  # the job has ended (a late duplicate)
    if job.aborted():
        runner.enqueue("finish", job.job_id)  # stopped (an error elsewhere, or cancelled): the finish reports it
        return
    try:
        if job.loads().get(side) is None:
            spec = spec_of(job)
            with job.heartbeat(spec.target_identity(), get_settings().lock_ttl):
                started = time.perf_counter()
                runner.progress(job.job_id, stage, len(job.loads()), 2)
                store = job.fresh_store(side)
                adapter = spec.build_adapter(side)
                adapter.store = store
                store.adapter = adapter
                adapter.load()
                flush = getattr(store, "flush", None)
                if flush is not None:
                    flush()
                seconds = time.perf_counter() - started
                count = store.count()
            job.record_time(stage, seconds)
            job.record_worker(stage, delivery.hostname)
            loaded = job.record_load(side, {"objects": count, "seconds": seconds, "worker": delivery.hostname})
            logger.info("Loaded", objects=count, seconds=round(seconds, 3))
        else:
            loaded = len(job.loads())
        runner.progress(job.job_id, stage, loaded, 2)
        if loaded == len(SIDES):
            runner.enqueue("finish" if job.aborted() else "diff", job.job_id)
    except Exception as err:  # noqa: BLE001 - any failure of a load ends the job with a report
        if delivery.will_retry(err):
            raise
        fail(job, runner, stage, err)


def diff(job: JobState, runner: Runner, delivery: Delivery) -> None:
    """Diff the two loaded stores, keep the diff with the job, plan the shards and start the first wave."""
    if job.report() is not None:
        return  # the job has ended (a late duplicate)
    if job.aborted():
        runner.enqueue("finish", job.job_id)
        return
    try:
        spec = spec_of(job)
        try:
            saved: Optional[Dict[str, Any]] = job.plan()
        except LookupError:
            saved = None
        if saved is None:
            token = job.claim("claim:diff", get_settings().lock_ttl)
            if token is None:  # a duplicate is diffing now: come back when it has saved the plan
                raise Busy("the diff", _claim_wait())
            try:
                saved = _diff_and_plan(job, runner, delivery, spec, token)
            finally:
                job.release_claim("claim:diff", token)
            if not spec.dry_run and saved["shards"]:
                runner.progress(job.job_id, "sync", 0, saved["operations"])
        # Also for a diff delivered again after its plan was saved: shards may have changed the target store
        # since, so the diff is never computed twice; only the next step is enqueued again (that is safe).
        if spec.dry_run or not saved["shards"]:
            runner.enqueue("finish", job.job_id)
        else:
            _start_wave(job, runner, saved["waves"][0])
    except Busy:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the diff ends the job with a report
        if delivery.will_retry(err):
            raise
        fail(job, runner, "diff", err)


def _diff_and_plan(job: JobState, runner: Runner, delivery: Delivery, spec: JobSpec, token: str) -> Dict[str, Any]:
    """Diff the loaded stores, keep the diff and the plan with the job; returns the saved plan."""
    job_id = job.job_id
    with job.heartbeat(spec.target_identity(), get_settings().lock_ttl, claim="claim:diff", token=token):
        source, target = attach_adapters(job, spec)
        started = time.perf_counter()
        last = [0.0]

        def on_progress(stage: str, current: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.5 or current == total:
                last[0] = now
                runner.progress(job_id, "diff", current, total)

        runner.progress(job_id, "diff", 0, 0)
        the_diff = target.diff_from(source, flags=spec.diffsync_flags, callback=on_progress)
        job.record_time("diff", time.perf_counter() - started)
        job.record_worker("diff", delivery.hostname)

        structlog.contextvars.bind_contextvars(stage="plan")
        started = time.perf_counter()
        runner.progress(job_id, "plan", 0, 1)
        plan = plan_sync(
            the_diff,
            shard_size=spec.shard_size,
            barrier=spec.top_level_barrier,
            model_flags=lambda element: element_flags(target, element),
        )
        codec = DiffCodec(source, target)
        job.save_diff([codec.encode(element) for element in the_diff.get_children()], the_diff.summary())
        shards = [
            {"index": s.index, "wave": s.wave, "type": s.type, "roots": s.roots, "operations": len(s.operations)}
            for s in plan.shards
        ]
        saved = {"waves": plan.waves, "operations": plan.operations, "shards": shards}
        job.save_plan(saved)  # last: a saved plan means the diff is complete and must never be computed again
        job.record_time("plan", time.perf_counter() - started)
        runner.progress(job_id, "plan", 1, 1)
        logger.info("Planned", shards=len(plan.shards), waves=len(plan.waves), operations=plan.operations)
    return saved


# ----------------------------------------------------------------------------------------------------
# shards
# ----------------------------------------------------------------------------------------------------


def _start_wave(job: JobState, runner: Runner, shard_indexes: List[int]) -> None:
    for index in shard_indexes:
        runner.enqueue("shard", job.job_id, index)


def _advance(job: JobState, runner: Runner, plan: Dict[str, Any], wave: int, finished_in_wave: int) -> None:
    """After a shard: if its wave is complete, start the next wave, or the finish when none is left."""
    waves = plan["waves"]
    if finished_in_wave < len(waves[wave]):
        return
    if wave + 1 < len(waves) and not job.aborted():
        if job.once(f"wave-{wave + 1}"):
            _start_wave(job, runner, waves[wave + 1])
        return
    runner.enqueue("finish", job.job_id)


def shard(job: JobState, runner: Runner, delivery: Delivery, index: int) -> None:
    """Apply one shard (its top-level subtrees, in order, through the target models' hooks), then advance."""
    if job.report() is not None:
        return  # a late duplicate of a job that has finished
    try:
        plan = job.plan()
    except LookupError:
        logger.warning("Shard of a job without a plan (expired or finished)")
        return
    info = plan["shards"][index]
    wave = info["wave"]
    if job.shard_result(index) is not None:
        # A duplicate delivery of a finished shard (the first may have died before advancing).
        _advance(job, runner, plan, wave, job.finished_in_wave(wave))
        return
    token = job.claim(f"claim:{index}", get_settings().lock_ttl)
    if token is None:
        # Another delivery of this shard is running (or died and its claim has not expired yet).
        raise Busy(f"shard {index}", _claim_wait())
    try:
        result = _apply_shard(job, runner, delivery, info, plan["operations"], token)
    finally:
        try:
            job.release_claim(f"claim:{index}", token)
        except Exception:  # noqa: BLE001 - an unreleased claim expires by itself
            logger.warning("Shard claim not released", shard=index)
    _advance(job, runner, plan, wave, job.record_shard(index, wave, result))


def _apply_shard(
    job: JobState, runner: Runner, delivery: Delivery, info: Dict[str, Any], total: int, token: str
) -> Dict[str, Any]:
    index = info["index"]
    result: Dict[str, Any] = {
        "index": index,
        "wave": info["wave"],
        "type": info["type"],
        "roots": len(info["roots"]),
        "operations": info["operations"],
        "worker": delivery.hostname,
        "changed": False,
        "applied": 0,
        "replayed": 0,
        "stopped": False,
        "error": None,
        "seconds": 0.0,
    }
    started = time.perf_counter()
    job.mark_sync_started(time.time())
    if job.aborted():
        result["stopped"] = True
        job.write_journal({}, info["operations"])
        return result
    spec = spec_of(job)
    settings = get_settings()
    syncer: Optional[ShardSyncer] = None
    with job.heartbeat(spec.target_identity(), settings.lock_ttl, claim=f"claim:{index}", token=token):
        try:
            source, target = attach_adapters(job, spec, lazy=True)
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
                on_checkpoint=lambda current: runner.progress(job.job_id, "sync", current, total),
                checkpoint_every=settings.journal_batch,
            )
            result["changed"], result["stopped"] = syncer.run()
        except Exception as err:  # noqa: BLE001 - a failed shard stops the job; the report names the error
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
            runner.progress(job.job_id, "sync", job.write_journal({}, remainder), total)
    result["seconds"] = time.perf_counter() - started
    job.mark_sync_ended(time.time())
    return result


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
        if not runner.end_published(job.job_id):
            runner.publish_end(job.job_id, existing)
        return existing
    token = job.claim("claim:finish", get_settings().lock_ttl)
    if token is None:
        raise Busy("the finish", _claim_wait())  # another delivery is finishing
    try:
        return _finish(job, runner, delivery)
    finally:
        job.release_claim("claim:finish", token)


def _finish(job: JobState, runner: Runner, delivery: Delivery) -> Dict[str, Any]:
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
    if spec is not None and not error and not spec.dry_run and changed:
        try:
            source, target = attach_adapters(job, spec)
            records = job.diff_records(list(range(job.diff_size())))
            full = rebuild_diff(records, DiffCodec(source, target), source.name, target.name, job.summary())
            target.sync_complete(source, full, spec.diffsync_flags, structlog.get_logger().new(job_id=job.job_id))
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
    job.save_report(report, get_settings().store_ttl)
    if spec is not None and job.info().get("lock") == "held":
        job.release_lock(spec.target_identity())
    job.set_info(status=report["status"], finished=time.time())
    job.drop_scratch()
    runner.progress(job.job_id, "finish", 1, 1)
    runner.publish_end(job.job_id, report)
    logger.info("Job finished", status=report["status"], operations=report["operations"])
    return report


def run_step(step: str, job: JobState, runner: Runner, delivery: Delivery, *args: Any) -> Any:
    """Run one step by name, with the job id and stage bound to every log event it makes."""
    context: Dict[str, Any] = {"job_id": job.job_id, "stage": step}
    if step == "load":
        context["stage"] = f"load-{args[0]}"
    elif step == "shard":
        context.update(stage="sync", shard=args[0])
    structlog.contextvars.bind_contextvars(**context)
    try:
        return STEP_FUNCTIONS[step](job, runner, delivery, *args)
    finally:
        structlog.contextvars.unbind_contextvars(*context)


STEP_FUNCTIONS: Dict[str, Callable[..., Any]] = {
    "start": start,
    "load": load,
    "diff": diff,
    "shard": shard,
    "finish": finish,
}
"""Every step by name: ``STEP_FUNCTIONS[step](job, runner, delivery, *args)``."""
