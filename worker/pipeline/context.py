"""What a step is given and what it may raise: the runner, the delivery, the job's spec and adapters, the outcomes.

A step of the pipeline is a plain function ``work(ctx, *args)`` over a ``StepContext``. It never takes a claim,
checks a deadline or decides whether an error is retried: the dispatcher (``worker.pipeline.dispatch``) does that
around every step, once. ``worker.runners.local`` and ``worker.runners.celery`` implement ``Runner`` and build a
``Delivery`` for each step they run; both carry the very same steps.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Dict, Iterator, Optional, Protocol, Sequence, Tuple

import structlog

from core.adapter import Adapter
from core.limits import Limits
from worker.errors import InvalidJob, JobFailed, LockLost, UnknownAdapter, describe, lock_lost_message
from worker.job.spec import JobSpec
from worker.settings import get_settings
from worker.state.base import Heartbeat, JobState
from worker.targets.guard import TargetGuard

logger = structlog.get_logger("shardsync.worker")

SIDES = ("source", "target")


class JobHook(Protocol):
    """Work done when a job starts and when it ends, around the steps (``worker.hooks``: metrics, schedules).

    Each is called again for a step delivered again, so each must count or release once however often called.
    """

    def started(self, job: JobState) -> None:
        """The job took its target's lock and began loading."""

    def ended(self, job: JobState, report: Dict[str, Any]) -> None:
        """The job's report is saved; its end is published right after."""


class Runner(Protocol):
    """What carries the steps: how the next step is enqueued and where progress and the job's end are shown."""

    hooks: Sequence[JobHook]
    """Called by the dispatcher when a job starts and ends."""

    def enqueue(self, step: str, job_id: str, *args: Any) -> None:
        """Run ``step`` of the job later; asking twice may run it twice (every step guards against that)."""

    def progress(
        self, job_id: str, stage: str, current: int, total: int, extra: Optional[Dict[str, Any]] = None
    ) -> None:
        """Show the job's progress; ``extra``: more of it (``target``: how its target is doing)."""

    def publish_end(self, job_id: str, report: Dict[str, Any]) -> None:
        """Show that the job has ended, with its report (may be called again for the same report)."""

    def end_published(self, job_id: str) -> bool:
        """Whether the job's end has been shown already."""

    def live_slots(self) -> Optional[int]:
        """The pool slots of the live workers that take shards, or None where that is not known (one process)."""

    def target_guard(
        self, key: str, limits: Optional[Limits], also: tuple, outage_budget: Optional[float] = None
    ) -> TargetGuard:
        """What holds a shard's calls to the target counted under ``key`` to its limits and condition.

        Shared by every worker (Redis), or within this process (the embedded runner); ``also``: exception
        types the target adapter lists as transient; ``outage_budget``: the job's (None: the setting's).
        """


@dataclass(frozen=True)
class Delivery:
    """What a step knows of the run carrying it: where it runs, and whether an error will be retried."""

    hostname: str = ""
    redelivered: bool = False
    will_retry: Callable[[BaseException], bool] = lambda err: False
    outage_retries: int = 0
    """Earlier deliveries of this step that ended on Redis (or the broker) not answering and were sent again:
    their claims may never have been released (the release itself failed), which is no worker death."""


class Busy(Exception):
    """Another delivery of this step holds its claim: run this one again in ``countdown`` seconds."""

    def __init__(self, what: str, countdown: int) -> None:
        super().__init__(f"{what} is running in another delivery")
        self.countdown = countdown


class ClaimLost(Busy):
    """The step's claim expired under it (no beat for a whole ``SHARDSYNC_CLAIM_TTL``): it may run elsewhere.

    This delivery stands down before its next hook and comes back later, finding the step done or claimed.
    """


class Ended(Exception):
    """The job ended while this delivery worked: it writes nothing more of the job's and goes away quietly.

    The watchdog ends a job past its deadline or a cancel while a call of one of its steps hangs.
    """


class Stop(Exception):
    """A step stops its job (a refusal, an invalid job): the dispatcher records why and hands over to the finish.

    ``reason`` None: the job was stopped already (cancelled, say); the first reason recorded stays.
    """

    def __init__(self, reason: Optional[str] = None) -> None:
        super().__init__(reason or "the job was stopped")
        self.reason = reason


class _Done:
    def __repr__(self) -> str:
        return "DONE"


DONE: Any = _Done()
"""The outcome a step's ``record`` and ``then`` are given when its work was found done by an earlier delivery."""


def claim_wait() -> int:
    """Seconds before a step whose claim is held tries again: a third of the claim's expiry, 1 at least."""
    return max(1, get_settings().claim_ttl // 3)


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
    job.know_pair(spec.pair)  # the state's stores follow it: no second read of the spec for that
    return spec


_attached = threading.local()
"""Per thread (a threads pool runs shards side by side): the adapters last attached for one job's shards."""


def attach_adapters(job: JobState, spec: JobSpec, lazy: bool = False, reuse: bool = False) -> Tuple[Adapter, Adapter]:
    """Source and target adapters attached to the job's loaded stores (their ``on_attach`` hooks run).

    With ``reuse`` (the shards), a worker process keeps the pair for the next shard of the same job: one
    ``on_attach`` per process (and thread) per job instead of one per shard, which matters when it builds
    an API client or reads id maps. An adapter class with ``reuse_attached = False`` opts out. Call
    ``forget_attached`` after a step that did not end cleanly: its stores may hold unflushed writes.
    """
    key = (job.job_id, lazy)
    if reuse:
        kept = getattr(_attached, "pair", None)
        if kept is not None and kept[0] == key:
            return kept[1]  # type: ignore[no-any-return]
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


def show_progress(
    job: JobState, runner: Runner, stage: str, current: int, total: int, extra: Optional[Dict[str, Any]] = None
) -> None:
    """Show a job's progress, never over its end.

    A step still running when its job ended elsewhere (a failed load while the other side loads, a shard
    stopping) may publish progress after the finish published the end; the report is saved before the end is
    published, so looking for it after each progress write and publishing the end again keeps it final.
    """
    ended = job.report()
    if ended is None:
        runner.progress(job.job_id, stage, current, total, extra)
        ended = job.report()  # the finish may have published the end meanwhile: publish it again after ours
    if ended is not None:
        runner.publish_end(job.job_id, ended)


class Caught:
    """What ``StepContext.caught`` caught: the error of its block, described (None if it ended well)."""

    error: Optional[str] = None


class StepContext:
    """One delivery of one step: its job, runner and delivery, and what the step may ask of them.

    Built by the dispatcher, which also fills in the claim the step runs under (``claim``, ``token``) so that
    ``kept_alive`` and ``fence`` keep and check it without the step knowing of claims.
    """

    def __init__(self, job: JobState, runner: Runner, delivery: Delivery, label: str = "") -> None:
        self.job = job
        self.runner = runner
        self.delivery = delivery
        self.label = label
        """How the step names itself in messages: its key (``shard-3``)."""
        self.claim: Optional[str] = None
        self.token = ""
        self.beat: Optional[Heartbeat] = None
        """The running heartbeat's findings, inside ``kept_alive``."""

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.job.job_id

    @property
    def hostname(self) -> str:
        """The worker running this delivery (``local@host`` in this process)."""
        return self.delivery.hostname

    @property
    def redelivered(self) -> bool:
        """Whether the broker says this delivery is a redelivery (an earlier one may have run part of it)."""
        return self.delivery.redelivered

    @cached_property
    def spec(self) -> JobSpec:
        """The job's validated spec (read once per delivery; see ``spec_of``)."""
        return spec_of(self.job)

    def adapters(self, lazy: bool = False, reuse: bool = False) -> Tuple[Adapter, Adapter]:
        """Source and target adapters attached to the job's stores (``attach_adapters``)."""
        return attach_adapters(self.job, self.spec, lazy=lazy, reuse=reuse)

    def progress(self, stage: str, current: int, total: int, target: Optional[Dict[str, Any]] = None) -> None:
        """Show the job's progress (never over its end: ``show_progress``), with its ``target`` figures."""
        show_progress(self.job, self.runner, stage, current, total, {"target": target} if target else None)

    def lease(self) -> None:
        """Check, without Redis, that this delivery's claim surely lives (``Heartbeat.lease_short``).

        Called before every hook and every store write of a step under its claim: a delivery that was paused,
        held the interpreter in a hook, or whose heartbeat could not reach Redis stands down before the
        watchdog can give its step to another, instead of writing beside it.

        Raises:
            ClaimLost: the lease ran short (or the heartbeat found the claim gone).
        """
        beat = self.beat
        if beat is not None and (beat.claim_lost.is_set() or beat.lease_short()):
            beat.claim_lost.set()
            raise ClaimLost(self.label, claim_wait())

    def standing(self) -> None:
        """Check, before writing the job's state after a long call, that this delivery may still write it.

        Raises:
            ClaimLost: the heartbeat found this step's claim gone (another delivery may run it now).
            Ended: the job has a report (the watchdog ended it while a call of this step hung).
        """
        self.lease()
        if self.job.report() is not None:
            raise Ended(f"job {self.job_id} ended while {self.label} ran")

    def hand_over(self, step: str, *args: Any) -> None:
        """Enqueue the next step of the job (by name: a step never imports another)."""
        self.runner.enqueue(step, self.job.job_id, *args)

    def live_slots(self) -> Optional[int]:
        """The pool slots of the live workers (None where not known): what shard and range sizes are cut for."""
        return self.runner.live_slots()

    @contextmanager
    def caught(self) -> Iterator[Caught]:
        """Catch the block's error, unless the runner will retry it (then it is raised: the step runs again).

        For work whose failure the step reports without failing (``sync_complete``'s, in the report).
        """
        caught = Caught()
        try:
            yield caught
        except Busy:
            raise
        except Exception as err:  # noqa: BLE001 - described for the caller to report
            if self.delivery.will_retry(err):
                raise
            caught.error = describe(err)

    @contextmanager
    def kept_alive(self) -> Iterator[Heartbeat]:
        """Keep the job's lock, this step's claim and the job's records alive while a long part of it runs.

        Raises:
            LockLost: at once, if the job's lock on its target is lost already.
        """
        with self.job.heartbeat(
            self.spec.target_identity(), get_settings().lock_ttl, claim=self.claim, token=self.token
        ) as beat:
            self.beat = beat
            try:
                yield beat
            finally:
                self.beat = None

    @contextmanager
    def fence(self) -> Iterator[Callable[[], None]]:
        """A check to call before every write to the target (a hook), inside ``kept_alive``.

        It raises ``ClaimLost`` when this delivery's claim expired under it (another may run the step now), and
        ``LockLost`` when the job no longer holds its target's lock, read at most SHARDSYNC_FENCE_INTERVAL ago
        (``JobState.watch_lock`` answers without a round trip where it can).
        """
        beat = self.beat
        if beat is None:
            raise RuntimeError("StepContext.fence() is used inside kept_alive()")
        settings = get_settings()
        target = self.spec.target_identity()
        label = self.label
        job = self.job
        with job.watch_lock(target) as holds_lock:
            checked = [float("-inf")]

            def check() -> None:
                # The heartbeat's findings and the claim's lease count at once; the lock is this job's (or is
                # taken back while no other job took it since), as read at most fence_interval ago.
                if beat.claim_lost.is_set() or beat.lease_short():
                    beat.claim_lost.set()
                    raise ClaimLost(label, claim_wait())
                if not beat.lost.is_set() and time.monotonic() - checked[0] < settings.fence_interval:
                    return
                if beat.lost.is_set() or not (holds_lock() or job.renew_lock(target, settings.lock_ttl)):
                    beat.lost.set()
                    raise LockLost(lock_lost_message(job.job_id, target))
                checked[0] = time.monotonic()

            yield check
