"""What every step shares: the runner that carries it, the delivery it runs in, the job's spec and adapters.

``worker.pipeline.dispatch`` and ``worker.pipeline.journal`` are written against these; ``worker.runners.celery.tasks`` (Celery) and
``worker.runners.local`` (this process) implement ``Runner`` and build a ``Delivery`` for each step they run.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, Optional, Protocol, Sequence, Tuple

import structlog

from core.adapter import Adapter
from worker.errors import InvalidJob, JobFailed, UnknownAdapter, describe
from worker.job.spec import JobSpec
from worker.settings import get_settings
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")

SIDES = ("source", "target")


class Runner(Protocol):
    """What carries the steps: how the next step is enqueued and where progress and the job's end are shown."""

    def enqueue(self, step: str, job_id: str, *args: Any) -> None:
        """Run ``step`` of the job later; asking twice may run it twice (every step guards against that)."""

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


class ClaimLost(Busy):
    """The step's claim expired under it (no beat for a whole ``SHARDSYNC_CLAIM_TTL``): it may run elsewhere.

    This delivery stands down before its next hook and comes back later, finding the step done or claimed.
    """


def claim_wait() -> int:
    """Seconds before a step whose claim is held tries again: a third of the claim's expiry, 1 at least."""
    return max(1, get_settings().claim_ttl // 3)


def claim_ttl() -> int:
    """Seconds a step's claim lives without renewal."""
    return get_settings().claim_ttl


def spec_of(job: JobState) -> JobSpec:
    """The job's validated spec.

    Raises:
        JobFailed: if the job is unknown or its record expired.
        InvalidJob: if the recorded spec does not validate (every problem named).
        UnknownAdapter: if this process has no adapter registered under a name the spec uses.
    """
    try:
        data = job.spec_data()
    except Exception as err:  # noqa: BLE001 - not msgpack, or keys no reader can use
        raise InvalidJob(f"the stored spec of job {job.job_id} cannot be read: {describe(err)}") from None
    if data is None:
        raise JobFailed(f"job {job.job_id} is unknown or expired")
    try:
        spec = JobSpec.from_data(data)
    except UnknownAdapter as err:
        # The producer had it registered (its spec was checked at submit): this process lacks it.
        raise UnknownAdapter(
            f"{err}, in this worker process ({socket.gethostname()}, pid {os.getpid()}). The job was submitted "
            "where the adapter is registered; every worker (and beat) needs it too: make the module that "
            "registers it importable there (SHARDSYNC_ADAPTER_MODULES in the worker's environment, or an "
            "installed package's shardsync.adapters entry point) and restart the workers"
        ) from None
    if spec.job_id != job.job_id:  # a message's task id that is not the job it names
        raise InvalidJob(f"invalid job spec: job_id {spec.job_id!r} is not the id of job {job.job_id!r}")
    return spec


_attached = threading.local()
"""Per thread (a threads pool runs shards side by side): the adapters last attached for one job's shards."""


def attach_adapters(job: JobState, spec: JobSpec, lazy: bool = False, reuse: bool = False) -> Tuple[Adapter, Adapter]:
    """Source and target adapters attached to the job's loaded stores (their ``on_attach`` hooks run).

    With ``reuse`` (the shards), a worker process keeps the pair for the next shard of the same job: one
    ``on_attach`` per process (and thread) per job instead of one per shard, which matters when it builds
    an API client or reads id maps. An adapter class with ``reuse_attached = False`` opts out. Call
    ``forget_attached`` after a shard that did not end cleanly: its stores may hold unflushed writes.
    """
    key = (job.job_id, lazy)
    if reuse:
        kept = getattr(_attached, "pair", None)
        if kept is not None and kept[0] == key:
            return kept[1]
        _attached.pair = None  # another job's adapters: let them go
    adapters = []
    for side in SIDES:
        adapter = spec.build_adapter(side)
        adapter.attach_store(job.open_store(side, lazy=lazy))
        adapters.append(adapter)
    pair = (adapters[0], adapters[1])
    if reuse and all(getattr(type(adapter), "reuse_attached", True) for adapter in pair):
        _attached.pair = (key, pair)
    return pair


def forget_attached() -> None:
    """Drop the adapters kept by ``attach_adapters(reuse=True)`` in this thread."""
    _attached.pair = None


def overdue(job: JobState, spec: Any) -> Optional[str]:
    """Why the job must stop now because its deadline passed, or None (``spec``: its spec data, as read)."""
    if not isinstance(spec, dict):
        return None
    deadline = spec.get("deadline")
    if deadline is None:
        deadline = get_settings().job_deadline
    submitted = job.info().get("submitted")
    if not deadline or submitted is None or time.time() <= float(submitted) + float(deadline):
        return None
    return f"the job's deadline passed: it had not ended {deadline} s after it was submitted"


def poisoned(job: JobState, step_key: str) -> Optional[str]:
    """Why a step must not run again: its worker died under it more than SHARDSYNC_MAX_DELIVERIES times.

    Asked right after the claim is taken; a task that kills its worker (out of memory, say) would
    otherwise be delivered again for ever.
    """
    dead = job.deaths(step_key)
    limit = get_settings().max_deliveries
    if dead < limit:
        return None
    return (
        f"{step_key} was started {dead + 1} times and its worker died {dead} times without finishing it "
        f"(SHARDSYNC_MAX_DELIVERIES={limit}): it may kill its worker (out of memory?)"
    )


def show_progress(job: JobState, runner: Runner, stage: str, current: int, total: int) -> None:
    """Show a job's progress, never over its end.

    A step still running when its job ended elsewhere (a failed load while the other side loads, a shard
    stopping) may publish progress after the finish published the end; the report is saved before the end is
    published, so looking for it after each progress write and publishing the end again keeps it final.
    """
    ended = job.report()
    if ended is None:
        runner.progress(job.job_id, stage, current, total)
        ended = job.report()  # the finish may have published the end meanwhile: publish it again after ours
    if ended is not None:
        runner.publish_end(job.job_id, ended)


def ended_or_stopped(job: JobState, runner: Runner) -> bool:
    """Whether a step has nothing to do: its job ended (a late duplicate), or stopped (the finish reports it)."""
    if job.report() is not None:
        return True
    if job.aborted():  # an error elsewhere, or cancelled: hand over to the finish
        runner.enqueue("finish", job.job_id)
        return True
    return False


@contextmanager
def claimed(job: JobState, step_key: str, step: str, args: Sequence[Any], what: str) -> Iterator[str]:
    """Hold a step's claim for the block (its token), released after it.

    Raises:
        Busy: if another delivery holds the claim (this one comes back later).
        RuntimeError: if the step's worker died under it too often (``poisoned``).
    """
    token = job.claim(step_key, claim_ttl(), step, list(args))
    if token is None:
        raise Busy(what, claim_wait())
    try:
        reason = poisoned(job, step_key)
        if reason is not None:
            raise RuntimeError(reason)
        yield token
    finally:
        job.release_claim(step_key, token)


@contextmanager
def failing(job: JobState, runner: Runner, delivery: Delivery, stage: str) -> Iterator[None]:
    """Any error of the block fails the job at ``stage`` (the finish reports it), unless it will be retried.

    ``Busy`` passes: the step comes back later.
    """
    try:
        yield
    except Busy:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of a step ends the job with a report
        if delivery.will_retry(err):
            raise
        fail(job, runner, stage, err)


def fail(job: JobState, runner: Runner, stage: str, err: BaseException) -> None:
    """Stop the job after an error in one of its steps, and let the finish report it."""
    logger.error("Job step failed", job_id=job.job_id, stage=stage, error=describe(err))
    job.abort(f"{stage} failed: {describe(err)}")
    runner.enqueue("finish", job.job_id)
