"""The embedded runner: the job pipeline's very steps, in order, in this process, on in-memory state.

No Redis, Celery or worker: a queue in memory carries the steps of ``worker.pipeline.step`` (the ones workers
run), through the same dispatcher, over a ``MemoryJobState`` whose side stores are LocalStores. For a first
try, small jobs, and tests of adapters before they meet a cluster; a fix to a step holds here and on workers
alike.
"""

from __future__ import annotations

import inspect
import socket
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Sequence, Set, Tuple

from core._gc import frozen_heap
from core.limits import Limits
from worker.errors import InvalidJob, JobFailed
from worker.hooks import DEFAULT_HOOKS
from worker.job.spec import JobSpec
from worker.pipeline.context import Busy, Delivery, JobHook, forget_attached
from worker.pipeline.dispatch import run_step
from worker.settings import get_settings
from worker.state.base import JobState
from worker.state.memory import MemoryJobState
from worker.targets.guard import TargetGuard, runner_guard

ProgressCallback = Callable[[str, int, int], None]
"""Called with ``(stage, current, total)``; one that also takes a ``target`` keyword gets the target's live
figures while the shards run (``JobHandle.target``'s mapping)."""


def _takes_keyword(func: Callable[..., Any], name: str) -> bool:
    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):  # a builtin or C callable: pass what every callback takes
        return False
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


class LocalRunner:
    """Carries the steps of one job through a queue in this process, in the order they were enqueued."""

    def __init__(self, callback: Optional[ProgressCallback] = None, hooks: Sequence[JobHook] = DEFAULT_HOOKS) -> None:
        self.callback = callback
        self._takes_target = callback is not None and _takes_keyword(callback, "target")
        self.hooks = hooks
        self.queue: Deque[Tuple[str, str, Tuple[Any, ...]]] = deque()
        self._sent: Set[Tuple[str, str, Tuple[Any, ...]]] = set()
        self._ended: Set[str] = set()

    def enqueue(self, step: str, job_id: str, *args: Any) -> None:
        """Queue a step; a step asked for twice with the same arguments runs once (as one task id would)."""
        key = (step, job_id, tuple(args))
        if key not in self._sent:
            self._sent.add(key)
            self.queue.append(key)

    def progress(
        self, job_id: str, stage: str, current: int, total: int, extra: Optional[Dict[str, Any]] = None
    ) -> None:
        """Hand the progress to the caller's callback (and the target's figures, if it takes ``target=``)."""
        if self.callback is None:
            return
        target = (extra or {}).get("target")
        if target is not None and self._takes_target:
            self.callback(stage, int(current), int(total), target=target)  # type: ignore[call-arg]
        else:
            self.callback(stage, int(current), int(total))

    def publish_end(self, job_id: str, report: Dict[str, Any]) -> None:
        """Remember that the job ended (``run_local`` returns or raises with the report)."""
        self._ended.add(job_id)

    def end_published(self, job_id: str) -> bool:
        """Whether the job's end was published."""
        return job_id in self._ended

    def live_slots(self) -> Optional[int]:
        """None: this process runs one shard at a time, whatever workers a deployment has."""
        return None

    def target_guard(
        self, key: str, limits: Optional[Limits], also: tuple, outage_budget: Optional[float] = None
    ) -> TargetGuard:
        """The target's limits and condition held in this process."""
        return runner_guard(key, limits, None, also, outage_budget)

    def run(self, job: JobState, delivery: Delivery) -> None:
        """Run queued steps until none is left."""
        while self.queue:
            step, _, args = self.queue.popleft()
            try:
                run_step(step, job, self, delivery, *args)
            except Busy as busy:  # one process runs one step at a time: a held claim is a bug
                raise RuntimeError(f"embedded job {job.job_id}: {busy}") from None


def run_local(
    spec: JobSpec, callback: Optional[ProgressCallback] = None, state: Optional[JobState] = None
) -> Dict[str, Any]:
    """Run a job in this process and return its report (the distributed runner's report, same keys).

    Args:
        spec: The job.
        callback: Called with ``(stage, current, total)`` as the job goes.
        state: Where the job keeps its records and stores (a new ``MemoryJobState`` for ``spec.job_id``
            when not given); pass one to read the stores, the kept diff or the journal afterwards.

    Raises:
        JobFailed: if an operation raised without CONTINUE_ON_FAILURE, or a step failed; ``report`` says
            what had been done.
    """
    job = state if state is not None else MemoryJobState(spec.job_id)
    if job.job_id != spec.job_id or not job.create(spec.to_message(), get_settings().store_ttl):
        raise InvalidJob(f"job state {job.job_id!r} is not a new state for job {spec.job_id!r}")
    runner = LocalRunner(callback)
    runner.enqueue("start", spec.job_id)
    try:
        # What this process held before the job (an incremental pair's kept stores: millions of objects) is
        # left out of the collector's scans while the job runs; the objects the job makes are collected as ever.
        with frozen_heap():
            runner.run(job, Delivery(hostname=f"local@{socket.gethostname()}"))
    finally:
        forget_attached()  # the shards' adapters hold this job's stores: let them go with the job
    report = job.report()
    if report is None:  # every path through the steps ends in the finish: this is a bug, said plainly
        raise RuntimeError(f"embedded job {spec.job_id} ended without a report")
    if report["error"]:
        raise JobFailed(f"job {spec.job_id} failed: {report['error']}", report)
    return report
