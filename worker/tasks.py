"""The job pipeline as Celery tasks: start -> load source | load target -> diff + plan -> shards in waves -> finish.

No task waits for another: each step records its result in the job's Redis state and the step that
completes a stage enqueues the next one (the second load enqueues the diff, the last shard of a wave the
next wave or the finish).  Coordination never blocks a worker slot, and a worker of any queue can die at
any point: tasks are acknowledged late, every step is safe to run again, and a shard skips the operations
its job's journal records as done.

Progress is the job task's Celery state: ``PROGRESS`` with meta ``{job_id, stage, current, total}``,
written by whichever step is running, and the report is its result (``SUCCESS``), or ``FAILURE`` with a
``JobFailed`` whose message names what went wrong.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Optional, Tuple

import msgpack
import structlog
from celery import Task, signals, states
from celery.exceptions import Ignore, Retry
from celery.result import AsyncResult
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.adapter import Adapter
from core.diff import Diff, DiffElement
from core.diff_codec import DiffCodec
from core.enum import DiffSyncModelFlags
from core.keys import job_store_id
from core.planner import Plan, plan_sync
from core.store.redis import RedisStore
from worker.apply import ShardSyncer, number_elements
from worker.celery_app import app
from worker.errors import JobFailed
from worker.registry import get_adapter, import_adapter_modules
from worker.report import compose_report, rebuild_diff
from worker.settings import get_settings
from worker.spec import JobSpec
from worker.state import JobState

logger = structlog.get_logger("shardsync.worker")
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

MAX_TRANSIENT_RETRIES = 20
"""Retries of a step after Redis errors (backing off up to a minute each) before the job is failed."""
SIDES = ("source", "target")


@signals.worker_init.connect
def _import_adapters_at_start(**_: Any) -> None:
    """Import SHARDSYNC_ADAPTER_MODULES when a worker starts, so that a bad module fails it at once."""
    import_adapter_modules(get_settings().adapter_modules)


@signals.after_setup_logger.connect
def _structlog_through_celery_logging(loglevel: Any = None, **_: Any) -> None:
    """Send structlog events (engine and runner) through the worker's logging, at the worker's level.

    Without this every engine event, debug included, would be printed and captured as a warning.
    """
    level = loglevel if isinstance(loglevel, int) else logging.getLevelName(str(loglevel or "WARNING").upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=["event", "job_id", "stage", "model", "unique_id"]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level if isinstance(level, int) else logging.WARNING),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def report_progress(job_id: str, stage: str, current: int, total: int) -> None:
    """Publish the job's progress as its Celery task state, and as a task event for Flower's task list."""
    meta = {"job_id": job_id, "stage": stage, "current": int(current), "total": int(total)}
    app.backend.store_result(job_id, meta, "PROGRESS")
    job_event("task-progress", job_id, result=f"{stage} {int(current)}/{int(total)}")


def job_event(event: str, job_id: str, **fields: Any) -> None:
    """Send a task event about the job's own task, whose body ended long before the job does.

    So monitors such as Flower show the job as PROGRESS with its stage, then as succeeded or failed.

    Events are best effort: a monitor missing one must never fail a job.
    """
    if not app.conf.worker_send_task_events:
        return
    try:
        with app.events.default_dispatcher() as dispatcher:
            dispatcher.send(event, uuid=job_id, retry=False, **fields)
    except Exception as err:  # noqa: BLE001 - monitoring only
        logger.debug("Task event not sent", event=event, job_id=job_id, error=describe(err))


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


def _retry_if_transient(task: Task, err: BaseException) -> None:
    """Run the task again later after a Redis or broker outage, a bounded number of times.

    Backs off up to a minute between runs. Returns for any other error, which the caller handles.
    """
    if transient(err) and task.request.retries < MAX_TRANSIENT_RETRIES:
        logger.warning("Step retried after a Redis error", task=task.name, error=describe(err))
        raise task.retry(exc=err, countdown=min(60, 2 ** min(task.request.retries, 6))) from err


def describe(err: BaseException) -> str:
    """An exception as one line for reports: its type and message."""
    message = str(err)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def open_store(job_id: str, side: str, lazy: bool = False) -> RedisStore:
    """The job's store of one side (created on first use, expiring ``store_ttl`` after its last write)."""
    settings = get_settings()
    return RedisStore(
        url=settings.redis_url, store_id=job_store_id(job_id, side), ttl=settings.store_ttl, lazy_reads=lazy
    )


def build_adapter(spec: JobSpec, side: str) -> Adapter:
    """Construct one side's adapter from its registered name and kwargs (with its own, unused, store)."""
    name = spec.source if side == "source" else spec.target
    kwargs = spec.source_kwargs if side == "source" else spec.target_kwargs
    cls = get_adapter(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise JobFailed(f"{side} adapter {name!r} cannot be built from its kwargs: {err}") from err


def attached_adapters(spec: JobSpec, lazy: bool = False) -> Tuple[Adapter, Adapter]:
    """Source and target adapters attached to the job's loaded stores (their ``on_attach`` hooks run)."""
    adapters = []
    for side in SIDES:
        adapter = build_adapter(spec, side)
        adapter.attach_store(open_store(spec.job_id, side, lazy=lazy))
        adapters.append(adapter)
    return adapters[0], adapters[1]


def _spec_of(job: JobState) -> JobSpec:
    data = job.spec_data()
    if data is None:
        raise JobFailed(f"job {job.job_id} is unknown or expired")
    return JobSpec.from_data(data)


def _enqueue_finish(job_id: str) -> None:
    finish.apply_async((job_id,), task_id=f"{job_id}.finish")


def _fail(job: JobState, stage: str, err: BaseException) -> None:
    """Stop the job after an error in one of its steps, and let the finish step report it."""
    message = f"{stage} failed: {describe(err)}"
    logger.error("Job step failed", job_id=job.job_id, stage=stage, error=describe(err))
    job.abort(message)
    _enqueue_finish(job.job_id)


def element_flags(adapter: Adapter, element: DiffElement) -> DiffSyncModelFlags:
    """The target model's flags for an element (they decide where a delete's children go)."""
    obj = getattr(element, "_dst_obj", None)
    if obj is None:
        model_class = getattr(adapter, element.type, None)
        if model_class is None:
            return DiffSyncModelFlags.NONE
        obj = adapter.get_or_none(model_class, element.keys)
    return obj.model_flags if obj is not None else DiffSyncModelFlags.NONE


# ----------------------------------------------------------------------------------------------------
# Tasks
# ----------------------------------------------------------------------------------------------------


@app.task(name="shardsync.job", bind=True, max_retries=None)
def run_job(self: Task, spec_data: Dict[str, Any]) -> None:
    """Start a job: take the lock on its target, then load both sides in parallel."""
    job_id = self.request.id
    job = JobState(job_id)
    try:
        spec = JobSpec.from_data(spec_data)
    except Exception as err:  # noqa: BLE001 - reported as the job's failure
        app.backend.store_result(job_id, JobFailed(f"invalid job: {describe(err)}"), states.FAILURE)
        raise Ignore() from None
    structlog.contextvars.bind_contextvars(job_id=job_id, stage="start")
    try:
        settings = get_settings()
        holder = job.acquire_lock(spec.target_identity(), settings.lock_ttl)  # idempotent for this job
        if holder is not None:
            job.abort(f"target {spec.target} is being synced by job {holder}; one sync into a target at a time")
            job.set_info(lock="not held")
            finish.run(job_id)
            raise Ignore()
        if not job.once("started"):
            raise Ignore()  # a redelivered start: the pipeline runs already
        if job.aborted():  # cancelled before it started
            job.set_info(lock="held")
            finish.run(job_id)
            raise Ignore()
        job.set_info(status="running", started=time.time(), worker=self.request.hostname, lock="held")
        report_progress(job_id, "load-source", 0, 2)
        for side in SIDES:
            load.apply_async((job_id, side), task_id=f"{job_id}.load-{side}")
    except Ignore:
        raise
    except Exception as err:
        _retry_if_transient(self, err)
        raise
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "stage")
    raise Ignore()  # the job's state is written by its steps; its result by the finish step


@app.task(name="shardsync.load", bind=True, max_retries=None)
def load(self: Task, job_id: str, side: str) -> None:
    """Load one side's adapter into the job's store of that side."""
    job = JobState(job_id)
    stage = f"load-{side}"
    structlog.contextvars.bind_contextvars(job_id=job_id, stage=stage)
    try:
        if job.report() is not None:
            return  # the job has ended (a late duplicate)
        if job.aborted():
            _enqueue_finish(job_id)  # stopped (an error elsewhere, or cancelled): the finish reports it
            return
        if job.loads().get(side) is None:
            spec = _spec_of(job)
            settings = get_settings()
            with job.heartbeat(spec.target_identity(), settings.lock_ttl):
                started = time.perf_counter()
                report_progress(job_id, stage, len(job.loads()), 2)
                store = open_store(job_id, side)
                store.clear()  # a redelivered load starts over
                adapter = build_adapter(spec, side)
                adapter.store = store
                store.adapter = adapter
                adapter.load()
                store.flush()
                seconds = time.perf_counter() - started
                count = store.count()
            job.record_time(stage, seconds)
            job.record_worker(stage, self.request.hostname or "")
            loaded = job.record_load(side, {"objects": count, "seconds": seconds, "worker": self.request.hostname})
            logger.info("Loaded", objects=count, seconds=round(seconds, 3))
        else:
            loaded = len(job.loads())
        report_progress(job_id, stage, loaded, 2)
        if loaded == len(SIDES):
            if job.aborted():
                _enqueue_finish(job_id)
            else:
                diff.apply_async((job_id,), task_id=f"{job_id}.diff")
    except Exception as err:  # noqa: BLE001 - any failure of a load ends the job with a report
        _retry_if_transient(self, err)
        _fail(job, stage, err)
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "stage")


@app.task(name="shardsync.diff", bind=True, max_retries=None)
def diff(self: Task, job_id: str) -> None:
    """Diff the two loaded stores, keep the diff with the job, plan the shards and start the first wave."""
    job = JobState(job_id)
    structlog.contextvars.bind_contextvars(job_id=job_id, stage="diff")
    try:
        if job.report() is not None:
            return  # the job has ended (a late duplicate)
        if job.aborted():
            _enqueue_finish(job_id)
            return
        spec = _spec_of(job)
        settings = get_settings()
        try:
            saved = job.plan()
        except LookupError:
            saved = None
        if saved is not None:
            # A redelivered diff after its plan was saved: shards may have changed the target store since,
            # so the diff is never computed twice; only the next step is enqueued again (that is safe).
            if spec.dry_run or not saved["shards"]:
                _enqueue_finish(job_id)
            else:
                _start_wave(job_id, saved["waves"][0])
            return
        token = job.claim("claim:diff", settings.lock_ttl)
        if token is None:  # a duplicate is diffing now: come back when it has saved the plan
            raise self.retry(countdown=max(5, settings.lock_ttl // 3))
        try:
            plan = _diff_and_plan(self, job, spec, settings, token)
        finally:
            job.release_claim("claim:diff", token)
        if spec.dry_run or not plan.shards:
            _enqueue_finish(job_id)
            return
        report_progress(job_id, "sync", 0, plan.operations)
        _start_wave(job_id, plan.waves[0])
    except Retry:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of the diff ends the job with a report
        _retry_if_transient(self, err)
        _fail(job, "diff", err)
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "stage")


def _diff_and_plan(task: Task, job: JobState, spec: JobSpec, settings: Any, token: str) -> Plan:
    """Diff the loaded stores, keep the diff and the plan with the job; returns the plan."""
    job_id = job.job_id
    with job.heartbeat(spec.target_identity(), settings.lock_ttl, claim="claim:diff", token=token):
        source, target = attached_adapters(spec)
        started = time.perf_counter()
        last = [0.0]

        def on_progress(stage: str, current: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 0.5 or current == total:
                last[0] = now
                report_progress(job_id, "diff", current, total)

        report_progress(job_id, "diff", 0, 0)
        the_diff = target.diff_from(source, flags=spec.diffsync_flags, callback=on_progress)
        job.record_time("diff", time.perf_counter() - started)
        job.record_worker("diff", task.request.hostname or "")

        structlog.contextvars.bind_contextvars(stage="plan")
        started = time.perf_counter()
        report_progress(job_id, "plan", 0, 1)
        plan = plan_sync(
            the_diff,
            shard_size=spec.shard_size,
            barrier=spec.top_level_barrier,
            model_flags=lambda element: element_flags(target, element),
        )
        codec = DiffCodec(source, target)
        records = [_pack(codec.encode(element)) for element in the_diff.get_children()]
        job.save_diff(records, the_diff.summary())
        shards = [
            {"index": s.index, "wave": s.wave, "type": s.type, "roots": s.roots, "operations": len(s.operations)}
            for s in plan.shards
        ]
        # Saved last: a saved plan means the diff is complete and must never be computed again.
        job.save_plan({"waves": plan.waves, "operations": plan.operations, "shards": shards})
        job.record_time("plan", time.perf_counter() - started)
        report_progress(job_id, "plan", 1, 1)
        logger.info("Planned", shards=len(plan.shards), waves=len(plan.waves), operations=plan.operations)
    return plan


def _start_wave(job_id: str, shard_indexes: List[int]) -> None:
    for index in shard_indexes:
        shard.apply_async((job_id, index), task_id=f"{job_id}.shard-{index}")


def _advance(job: JobState, plan: Dict[str, Any], wave: int, finished_in_wave: int) -> None:
    """After a shard: if its wave is complete, start the next wave, or the finish when none is left."""
    waves = plan["waves"]
    if finished_in_wave < len(waves[wave]):
        return
    if wave + 1 < len(waves) and not job.aborted():
        if job.once(f"wave-{wave + 1}"):
            _start_wave(job.job_id, waves[wave + 1])
        return
    _enqueue_finish(job.job_id)


@app.task(name="shardsync.shard", bind=True, max_retries=None)
def shard(self: Task, job_id: str, index: int) -> None:
    """Apply one shard: its top-level subtrees, in order, through the target models' hooks."""
    job = JobState(job_id)
    structlog.contextvars.bind_contextvars(job_id=job_id, stage="sync", shard=index)
    try:
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
            _advance(job, plan, wave, job.finished_in_wave(wave))
            return
        settings = get_settings()
        token = job.claim(f"claim:{index}", settings.lock_ttl)
        if token is None:
            # Another delivery of this shard is running (or died and its claim has not expired yet).
            raise self.retry(countdown=max(5, settings.lock_ttl // 3))
        try:
            result = _apply_shard(self, job, info, plan["operations"], token)
        finally:
            try:
                job.release_claim(f"claim:{index}", token)
            except Exception:  # noqa: BLE001 - an unreleased claim expires by itself
                logger.warning("Shard claim not released", shard=index)
        finished = job.record_shard(index, wave, result)
        _advance(job, plan, wave, finished)
    except Exception as err:
        _retry_if_transient(self, err)  # a shard run again replays its journal
        raise
    finally:
        structlog.contextvars.unbind_contextvars("job_id", "stage", "shard")


def _apply_shard(task: Task, job: JobState, info: Dict[str, Any], total: int, token: str) -> Dict[str, Any]:
    index = info["index"]
    result: Dict[str, Any] = {
        "index": index,
        "wave": info["wave"],
        "type": info["type"],
        "roots": len(info["roots"]),
        "operations": info["operations"],
        "worker": task.request.hostname,
        "changed": False,
        "applied": 0,
        "replayed": 0,
        "stopped": False,
        "error": None,
    }
    started = time.perf_counter()
    job.client.hsetnx(job.key("info"), "sync_started", _pack(time.time()))
    aborted = job.aborted()
    if aborted:
        result["stopped"] = True
        job.write_journal({}, info["operations"])
        result["seconds"] = 0.0
        return result
    spec = _spec_of(job)
    settings = get_settings()
    syncer: Optional[ShardSyncer] = None
    with job.heartbeat(spec.target_identity(), settings.lock_ttl, claim=f"claim:{index}", token=token):
        try:
            source, target = attached_adapters(spec, lazy=True)
            codec = DiffCodec(source, target)
            sub_diff = Diff()
            op_ids: Dict[int, str] = {}
            for root, record in zip(info["roots"], job.diff_records(info["roots"]), strict=True):
                element = codec.decode(record, source.name, target.name)
                number_elements(root, element, op_ids)
                sub_diff.add(element)
            done = job.journal_entries(sorted(set(op_ids.values())))
            redelivered = bool(done) or bool((task.request.delivery_info or {}).get("redelivered"))

            def on_checkpoint(current: int) -> None:
                report_progress(job.job_id, "sync", current, total)

            syncer = ShardSyncer(
                diff=sub_diff,
                src=source,
                dst=target,
                flags=spec.diffsync_flags,
                job=job,
                op_ids=op_ids,
                done=done,
                redelivered=redelivered,
                on_checkpoint=on_checkpoint,
                checkpoint_every=settings.journal_batch,
            )
            changed, stopped = syncer.run()
            result["changed"] = changed
            result["stopped"] = stopped
        except Exception as err:  # noqa: BLE001 - a failed shard stops the job; the report names the error
            if transient(err) and task.request.retries < MAX_TRANSIENT_RETRIES:
                raise  # retried as a whole (see shard()); nothing of this run is counted
            result["error"] = describe(err)
            job.abort(f"shard {index} failed: {describe(err)}")
            logger.error("Shard failed", error=describe(err))
        # The bookkeeping of a shard that ran to its end, or stopped on an error of its own.
        if syncer is not None:
            syncer.finish()
            result["changed"] = result["changed"] or syncer.attempted
            result["applied"] = syncer.applied
            result["replayed"] = syncer.replayed
            remainder = info["operations"] - syncer.applied - syncer.replayed
        else:
            remainder = info["operations"]
        if remainder > 0:  # operations skipped under a failed parent still count as dealt with
            report_progress(job.job_id, "sync", job.write_journal({}, remainder), total)
    result["seconds"] = time.perf_counter() - started
    job.client.hset(job.key("info"), "sync_ended", _pack(time.time()))
    return result


@app.task(name="shardsync.finish", bind=True, max_retries=None)
def finish(self: Optional[Task], job_id: str) -> Optional[Dict[str, Any]]:
    """Gather the report, call ``sync_complete`` when something changed, release the lock and scratch data."""
    job = JobState(job_id)
    existing = job.report()
    if existing is not None:
        # Finished before: a duplicate delivery, or one whose first delivery died after saving the report.
        if AsyncResult(job_id, app=app).state not in (states.SUCCESS, states.FAILURE):
            publish_end(job_id, existing)
        return None
    token = job.claim("claim:finish", get_settings().lock_ttl)
    if token is None:
        if self is not None and getattr(self.request, "id", None):
            raise self.retry(countdown=max(5, get_settings().lock_ttl // 3))  # another delivery is finishing
        return None
    structlog.contextvars.bind_contextvars(job_id=job_id, stage="finish")
    try:
        return _finish(job, getattr(getattr(self, "request", None), "hostname", None))
    finally:
        job.release_claim("claim:finish", token)
        structlog.contextvars.unbind_contextvars("job_id", "stage")


def _finish(job: JobState, hostname: Optional[str]) -> Optional[Dict[str, Any]]:
    job_id = job.job_id
    started = time.perf_counter()
    settings = get_settings()
    summary = job.summary()
    spec_data = job.spec_data() or {}
    spec: Optional[JobSpec] = None
    error = job.aborted()
    try:
        spec = JobSpec.from_data(spec_data)
    except Exception as err:  # noqa: BLE001
        error = error or f"invalid job: {describe(err)}"
    report_progress(job_id, "finish", 0, 1)
    info = job.info()
    shard_results = job.shard_results()
    journal = job.journal()
    changed = any(result.get("changed") for result in shard_results.values())
    sync_complete = False
    plan: Dict[str, Any] = {}
    try:
        plan = job.plan()
    except LookupError:
        pass
    if spec is not None and not error and not spec.dry_run and changed:
        try:
            source, target = attached_adapters(spec)
            records = job.diff_records(list(range(job.diff_size())))
            full = rebuild_diff(records, DiffCodec(source, target), source.name, target.name, summary)
            target.sync_complete(source, full, spec.diffsync_flags, structlog.get_logger().new(job_id=job_id))
            target.store.flush()
            sync_complete = True
        except Exception as err:  # noqa: BLE001 - reported; the operations themselves were applied
            error = f"sync_complete failed: {describe(err)}"
    times = job.times()
    if "sync_started" in info:
        times["sync"] = max(0.0, float(info.get("sync_ended", info["sync_started"])) - float(info["sync_started"]))
    times["finish"] = time.perf_counter() - started
    if "submitted" in info:
        times["total"] = max(0.0, time.time() - float(info["submitted"]))
    workers = set(job.workers().values())
    workers.update(result["worker"] for result in shard_results.values() if result.get("worker"))
    if hostname:
        workers.add(hostname)
    report = compose_report(
        job_id=job_id,
        source=spec_data.get("source"),
        target=spec_data.get("target"),
        flags=spec_data.get("flags", []),
        dry_run=bool(spec_data.get("dry_run", False)),
        error=error,
        summary=summary,
        loads=job.loads(),
        operations=plan.get("operations", 0),
        journal=journal,
        changed=changed,
        sync_complete=sync_complete,
        seconds=times,
        shards=[shard_results[index] for index in sorted(shard_results)],
        waves=len(plan.get("waves", [])),
        workers=sorted(workers),
        stores={side: job_store_id(job_id, side) for side in SIDES},
    )
    job.save_report(report, settings.store_ttl)
    if spec is not None and info.get("lock") == "held":
        job.release_lock(spec.target_identity())
    job.set_info(status=report["status"], finished=time.time())
    job.drop_scratch()
    report_progress(job_id, "finish", 1, 1)
    publish_end(job_id, report)
    logger.info("Job finished", status=report["status"], operations=report["operations"])
    return report


def publish_end(job_id: str, report: Dict[str, Any]) -> None:
    """Set the job's final Celery state from its report (again, if a finish died after saving the report)."""
    runtime = report.get("seconds", {}).get("total", 0.0)
    error = report.get("error")
    if error:
        app.backend.store_result(job_id, JobFailed(f"job {job_id} failed: {error}"), states.FAILURE)
        job_event("task-failed", job_id, exception=f"JobFailed('{error}')", traceback="", runtime=runtime)
    else:
        app.backend.store_result(job_id, report, states.SUCCESS)
        summary = f"{report['status']}: {report['operations']} operations in {len(report['shards'])} shards"
        job_event("task-succeeded", job_id, result=summary, runtime=runtime)


@app.task(name="shardsync.scheduled", bind=True)
def scheduled(self: Task, job: Dict[str, Any]) -> str:
    """Start one run of a scheduled sync (from beat); returns the new job's id."""
    from worker.api import submit_spec  # pylint: disable=import-outside-toplevel

    spec = JobSpec.from_data({key: value for key, value in job.items() if key != "job_id"})
    handle = submit_spec(spec)
    logger.info("Scheduled sync submitted", job_id=handle.id, source=spec.source, target=spec.target)
    return handle.id
