"""The producer API: submit a sync job and follow it (``submit_sync`` -> ``JobHandle``).

Jobs are enqueued by task name, so a producer needs the Celery app and the job state, not the tasks module.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from celery import states
from celery.result import AsyncResult

from core.batch import BatchSize
from core.diff import Diff
from core.diff_codec import DiffCodec
from core.limits import Limits
from core.retry import RetryBudget
from core.scope import Scope, ScopeLike
from worker.adapters.registry import get_adapter
from worker.connection import reaching_redis, redis_client
from worker.errors import InvalidJob, JobFailed, JobStateLost, RedisUnavailable, job_state_lost_message
from worker.job.history import job_log, job_summary
from worker.job.history import list_jobs as _list_jobs
from worker.job.report import rebuild_diff
from worker.job.review import retake_apply
from worker.job.spec import JobSpec, adapter_by_name
from worker.runners.celery.app import app
from worker.runners.celery.submit import enqueue_job
from worker.settings import get_settings
from worker.state.redis import RedisJobState


class JobHandle:
    """A submitted job: its id, progress, and (once it ends) its report."""

    def __init__(self, job_id: str) -> None:
        self.id = job_id
        self._next_look = 0.0  # when progress() next asks the job state itself (at most once a second)
        self._settled_at = 0.0  # when wait() first found a report while Celery's state was not final yet

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.state}>"

    @property
    def result(self) -> AsyncResult:
        """The job's Celery result (``AsyncResult(job_id)``): state PROGRESS with meta while it runs."""
        return AsyncResult(self.id, app=app)

    @property
    def state(self) -> str:
        """Celery state of the job: PENDING, STARTED, PROGRESS, SUCCESS or FAILURE."""
        return str(self.result.state)

    def progress(self) -> Tuple[str, int, int]:
        """(stage, current, total): stages load-source, load-target, diff, plan, sync, finish; then done/failed."""
        with reaching_redis(f"read the progress of job {self.id}"):
            return self._progress()

    def _progress(self) -> Tuple[str, int, int]:
        result = self.result
        state = result.state
        if state == states.SUCCESS:
            report = result.result if isinstance(result.result, dict) else {}
            total = int(report.get("operations", 0))
            return "done", total, total
        if state == states.FAILURE:
            return "failed", 0, 0
        ended = None
        if time.monotonic() >= self._next_look:  # the job state, not the result backend, says if the job exists
            self._next_look = time.monotonic() + 1.0
            ended = self._settled()
        if ended is not None:
            total = int(ended.get("operations", 0))
            return ("failed", 0, 0) if ended.get("error") else ("done", total, total)
        if state == "PROGRESS" and isinstance(result.info, dict):
            info = result.info
            return str(info.get("stage", "")), int(info.get("current", 0)), int(info.get("total", 0))
        return "queued", 0, 0

    def _settled(self) -> Optional[Dict[str, Any]]:
        """The job's report if it has ended (whatever the result backend kept), else None.

        Raises:
            JobStateLost: if Redis has no record of the job at all (restarted empty, flushed, expired).
        """
        job = RedisJobState(self.id, redis_client())
        report = job.report()
        if report is None and job.spec_data() is None:
            raise JobStateLost(job_state_lost_message(self.id))
        return report

    def target(self) -> Optional[Dict[str, Any]]:
        """How the job's target is doing while its shards run, else None.

        ``limit`` (the adaptive limit on calls in flight; None: none below the declared), ``retries``,
        ``transient`` (calls that met "try later"), ``throttled`` and ``waited`` (for the limits), ``paused``
        (seconds held back), ``unavailable_since`` and ``resume_at`` (epoch seconds, while calls wait).
        """
        with reaching_redis(f"read the progress of job {self.id}"):
            result = self.result
            info = result.info if result.state == "PROGRESS" else None
        target = info.get("target") if isinstance(info, dict) else None
        return target if isinstance(target, dict) else None

    def report(self) -> Optional[Dict[str, Any]]:
        """The job's report once it has ended (failed jobs have one too), else None."""
        with reaching_redis(f"read the report of job {self.id}"):
            return RedisJobState(self.id, redis_client()).report()

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop the job; it ends failed, with a report of what was done.

        Steps not started yet will not start; running shards stop before their next top-level subtree (the
        one being applied is finished). Does nothing to a job that has ended.

        Raises:
            InvalidJob: if no such job is known.
        """
        with reaching_redis(f"cancel job {self.id}"):
            job = RedisJobState(self.id, redis_client())
            if job.spec_data() is None:
                raise InvalidJob(f"job {self.id} is unknown (or expired)")
            if job.report() is None:
                job.abort(f"cancelled: {reason}")

    def diff(self) -> Optional[Diff]:
        """The diff the job computed (and applied, unless a dry run), once its diff step has run; else None.

        Rebuilt here from the copy kept with the job, typed through the registered adapter classes (no
        adapter is constructed), so ``diff.str()``, ``summary()`` and ``dict()`` work as on a local diff.

        Raises:
            UnknownAdapter: if this process does not have the job's adapters registered.
        """
        with reaching_redis(f"read the diff of job {self.id}"):
            job = RedisJobState(self.id, redis_client())
            spec = job.spec_data()
            summary = job.summary()
            if spec is None or summary is None:
                return None
            records = job.diff_records(list(range(job.diff_size())))
        source_cls, target_cls = get_adapter(spec["source"]), get_adapter(spec["target"])
        names = []
        for cls, kwargs in ((source_cls, spec.get("source_kwargs", {})), (target_cls, spec.get("target_kwargs", {}))):
            names.append(kwargs.get("name") or cls.type or cls.__name__)  # what Adapter.name would be
        return rebuild_diff(records, DiffCodec(source_cls, target_cls), names[0], names[1], summary)

    def log(
        self,
        action: Optional[str] = None,
        model: Optional[str] = None,
        status: Optional[str] = None,
        offset: int = 0,
        limit: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        """The per-object log: one entry per operation, in plan order (see ``worker.job.history.job_log``).

        Raises:
            InvalidJob: if no such job is known.
        """
        with reaching_redis(f"read the log of job {self.id}"):
            try:
                return job_log(self.id, action, model, status, offset, limit, client=redis_client())
            except LookupError as err:
                raise InvalidJob(str(err)) from None

    def info(self) -> Optional[Dict[str, Any]]:
        """The job as ``shardsync jobs`` lists it (state, summary, times), or None if it is unknown."""
        with reaching_redis(f"read job {self.id}"):
            return job_summary(RedisJobState(self.id, redis_client()))

    def shards(self) -> Tuple[int, int]:
        """(shards finished, shards planned); (0, 0) before the plan exists."""
        with reaching_redis(f"read the shards of job {self.id}"):
            job = RedisJobState(self.id, redis_client())
            try:
                total = int(job.plan_head()["shards"])
            except LookupError:
                return 0, 0
            return job.shards_finished(), total

    def apply(self, deadline: Optional[int] = None) -> JobHandle:
        """Apply exactly this plan (a finished dry run) as a new job; returns the new job's handle.

        The new job loads the target again and refuses, failing before any operation, if any target subtree
        the plan touches changed since the plan (``worker.job.review``). A plan is applied once.

        Raises:
            InvalidJob: if this job is unknown, not a finished dry run, or was applied before.
        """
        with reaching_redis(f"apply plan {self.id}"):
            job = RedisJobState(self.id, redis_client())
            spec = job.spec_data()
            if spec is None:
                raise InvalidJob(f"job {self.id} is unknown (or its records expired)")
            report = job.report()
            if report is None or report.get("status") != "dry-run":
                state = "still running" if report is None else f"a job that ended {report.get('status')}"
                raise InvalidJob(f"job {self.id} is not a finished plan (a dry run): it is {state}")
            data = {key: value for key, value in spec.items() if key != "job_id"}
            data.update(dry_run=False, apply_of=self.id)
            if deadline is not None:
                data["deadline"] = deadline
            applying = JobSpec.from_data(data)
            if not job.claim_apply(applying.job_id) and not retake_apply(job, applying.job_id):
                raise InvalidJob(f"plan {self.id} was applied already, by job {job.info().get('applied_by')}")
        try:
            return submit_spec(applying)
        except Exception:
            job.release_apply()
            raise

    def _poll(self, look: float) -> Optional[Dict[str, Any]]:
        """One look for the job's end: the report, None while it runs; raises as ``wait``."""
        result = self.result
        with reaching_redis(f"wait for job {self.id}"):
            state = result.state
        if state == states.SUCCESS:
            with reaching_redis(f"read the report of job {self.id}"):
                return result.result  # type: ignore[no-any-return]
        if state == states.FAILURE:
            report = self.report()
            message = str(result.result) if result.result is not None else f"job {self.id} failed"
            raise JobFailed(message, report)
        if time.monotonic() < look:
            return None
        # Once a second, the job state itself: lost (Redis restarted empty)? ended, its result gone?
        with reaching_redis(f"wait for job {self.id}"):
            ended = self._settled()
        if ended is None:
            return None
        # The finish saves the report, then publishes the final state: give that a moment, so that a waiter
        # never returns while the Celery state still says PROGRESS; only a result that never comes is skipped.
        self._settled_at = self._settled_at or time.monotonic()
        if time.monotonic() - self._settled_at < SETTLE_GRACE:
            return None
        if ended.get("error"):
            raise JobFailed(f"job {self.id} failed: {ended['error']}", ended)
        return ended

    def known(self) -> bool:
        """Whether this job was submitted (and its record has not expired)."""
        with reaching_redis(f"look up job {self.id}"):
            return RedisJobState(self.id, redis_client()).spec_data() is not None

    def done(self) -> bool:
        """Whether the job has ended."""
        return self.report() is not None or self.result.state in (states.SUCCESS, states.FAILURE)

    def wait(self, timeout: Optional[float] = None, interval: float = 0.1) -> Dict[str, Any]:
        """Wait for the job to end and return its report.

        Asks the job state once a second too: a job whose report exists ends the wait even when the result
        backend forgot it, and a job Redis has no record of at all raises ``JobStateLost`` instead of waiting
        for ever.

        Raises:
            TimeoutError: if it has not ended within ``timeout`` seconds.
            JobFailed: if it ended in failure (``err.report`` is the report, when there is one).
            JobStateLost: (a JobFailed) if Redis lost the job's state.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        look = time.monotonic() + 1.0
        unreachable_since: Optional[float] = None
        while True:
            try:
                found = self._poll(look)
            except RedisUnavailable:
                # A restart or a blip: wait it out (REDIS_PATIENCE), then say so; the job may be going on.
                unreachable_since = unreachable_since or time.monotonic()
                if time.monotonic() - unreachable_since > REDIS_PATIENCE:
                    raise
                found = None
            else:
                unreachable_since = None
            if found is not None:
                return found
            if time.monotonic() >= look:
                look = time.monotonic() + 1.0
            if deadline is not None and time.monotonic() >= deadline:
                stage, current, total = self.progress()
                raise TimeoutError(f"job {self.id} still running after {timeout} s (stage {stage} {current}/{total})")
            time.sleep(interval)  # polling Celery's result backend, between two reads


SETTLE_GRACE = 3.0
"""Seconds a waiter that found the report gives the job's final Celery state to arrive before it goes by the
report alone (a result backend that expired or lost the result)."""

REDIS_PATIENCE = 60.0
"""Seconds a waiter rides out Redis not answering (a restart, a failover) before it says so."""


SUBMIT_FIELDS = frozenset(JobSpec.model_fields) - {"apply_of"}
"""The spec's fields ``submit_sync`` takes, as keyword arguments of the same names (a test holds them equal)."""


def submit_sync(
    source: Any,
    target: Any,
    source_kwargs: Optional[Dict[str, Any]] = None,
    target_kwargs: Optional[Dict[str, Any]] = None,
    flags: Iterable[str] = (),
    dry_run: bool = False,
    shard_size: Optional[int] = None,
    top_level_barrier: bool = True,
    batch_size: Optional[BatchSize] = None,
    delete_limit: Optional[str] = None,
    allow_deletes: bool = False,
    job_id: Optional[str] = None,
    deadline: Optional[int] = None,
    keep_stores: Optional[bool] = None,
    diff_range: Optional[int] = None,
    retry: Optional[Union[RetryBudget, Mapping[str, float]]] = None,
    limits: Optional[Union[Limits, Mapping[str, float]]] = None,
    outage_budget: Optional[float] = None,
    scope: Optional[ScopeLike] = None,
    coalesce: Optional[float] = None,
    pair: Optional[str] = None,
    full: bool = False,
) -> JobHandle:
    """Validate a sync job and enqueue it; returns its handle at once.

    ``source`` and ``target`` are registered adapter names (with their ``*_kwargs``), or adapter instances
    of registered classes, whose constructor arguments (``Adapter.get_constructor_kwargs()``) are used.
    ``retry``: how long a hook whose remote says "try later" is called again (a ``RetryBudget``, or some of
    its fields by name); the rest is the target adapter's ``retry_budget``, else the settings'. ``limits``:
    what the target can take (``core.Limits``: calls in flight, calls per second, over every worker, and
    ``call_timeout``), over the target adapter's ``limits``. ``outage_budget``: seconds the target may stay
    unavailable before the job fails (None: ``SHARDSYNC_OUTAGE_BUDGET``). ``scope``: only that part of both sides
    is compared and written (``core.scope.Scope``, or its plain data). ``coalesce``: wait that many seconds for
    more requests of the same pair, which join this job (its scope the union of theirs); the handle returned may
    be of the waiting job this request joined (``worker.state.coalesce``). ``pair``: the name of an incremental
    pair this job is a run of: both sides' stores and change cursors are kept between the pair's jobs, and a
    run reads only what changed since the last good one (``worker.pairs``); ``full``: this run is a
    full reconcile.

    Raises:
        UnknownAdapter: if ``source`` or ``target`` is not a registered adapter name.
        InvalidJob: if anything else in the spec is invalid (every problem is named), or the job id is taken.
    """
    data: Dict[str, Any] = {name: value for name, value in locals().items() if name in SUBMIT_FIELDS}
    data["source"], data["source_kwargs"] = adapter_by_name("source", source, source_kwargs)
    data["target"], data["target_kwargs"] = adapter_by_name("target", target, target_kwargs)
    data["flags"] = list(flags) if isinstance(flags, (list, tuple, set, frozenset)) else flags  # else: named error
    data["shard_size"] = shard_size if shard_size is not None else get_settings().shard_size
    data["batch_size"] = dict(batch_size) if isinstance(batch_size, Mapping) else batch_size
    data["retry"] = dataclasses.asdict(retry) if isinstance(retry, RetryBudget) else retry
    data["limits"] = dataclasses.asdict(limits) if isinstance(limits, Limits) else limits
    data["scope"] = scope.to_data() if isinstance(scope, Scope) else scope
    if job_id is None:
        del data["job_id"]  # a new one
    return submit_spec(JobSpec.from_data(data))


def submit_spec(spec: JobSpec, *, info: Optional[Dict[str, Any]] = None) -> JobHandle:
    """Enqueue a validated spec (see ``submit_sync``); returns its handle at once.

    With ``coalesce``, the handle may be of the pair's waiting job, which this request joined.

    ``info``: fields recorded with the job before it is enqueued (a scheduled run's ``schedule``: the entry
    whose marker its end releases, ``worker.hooks.schedule``).

    Raises:
        InvalidJob: if the job id is taken.
        RedisUnavailable: if Redis or the broker cannot be reached.
    """
    return JobHandle(enqueue_job(spec, info))


def list_jobs(
    state: Optional[str] = None,
    target: Optional[str] = None,
    source: Optional[str] = None,
    limit: Optional[int] = 50,
    schedule: Optional[str] = None,
    since: Optional[float] = None,
    until: Optional[float] = None,
    offset: int = 0,
) -> List[Dict[str, Any]]:
    """Recent jobs, newest first (``worker.job.history.list_jobs`` says each filter, ``offset``, the retention).

    Raises:
        ValueError: if ``state`` is not a known job state.
        RedisUnavailable: if Redis cannot be reached.
    """
    found = dict(state=state, target=target, source=source, limit=limit, schedule=schedule, since=since, until=until)
    with reaching_redis("list jobs"):
        return _list_jobs(**found, offset=offset, client=redis_client())  # type: ignore[arg-type]

