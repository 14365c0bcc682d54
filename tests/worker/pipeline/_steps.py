"""What the step tests run steps with: a runner that records hand-overs, memory jobs, and a driver.

``RecordingRunner.deliver`` runs exactly one delivery of one step through the dispatcher (``run_step``) and keeps
what that delivery handed over (``handed``: ``(step, *args)``) and showed (``progressed``), without running any of
it; ``drive`` takes a job from its start up to a given step by running the hand-overs one by one.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Dict, List, Optional, Sequence, Tuple

from worker.job.spec import JobSpec
from worker.pipeline.context import Delivery
from worker.pipeline.dispatch import run_step
from worker.settings import get_settings
from worker.state.memory import MemoryJobState, _locks, _locks_guard
from worker.targets.guard import guard_for

HOST = "worker-1@test"
DELIVERY = Delivery(hostname=HOST)


class RecordingRunner:
    """The Runner protocol, recording: hand-overs and progress per delivery, published ends for good."""

    def __init__(self, hooks: Sequence[Any] = (), slots: Optional[int] = None) -> None:
        self.hooks = list(hooks)
        self.slots = slots
        self.handed: List[Tuple[Any, ...]] = []
        self.progressed: List[Tuple[str, int, int]] = []
        self.published: List[Tuple[str, Dict[str, Any]]] = []
        self._job_id: Optional[str] = None

    def enqueue(self, step: str, job_id: str, *args: Any) -> None:
        assert job_id == self._job_id, f"a step of job {self._job_id} handed over for job {job_id}"
        self.handed.append((step, *args))

    def progress(
        self, job_id: str, stage: str, current: int, total: int, extra: Optional[Dict[str, Any]] = None
    ) -> None:
        assert job_id == self._job_id
        self.progressed.append((stage, current, total))

    def publish_end(self, job_id: str, report: Dict[str, Any]) -> None:
        self.published.append((job_id, report))

    def end_published(self, job_id: str) -> bool:
        return any(published == job_id for published, _ in self.published)

    def live_slots(self) -> Optional[int]:
        return self.slots

    def target_guard(self, key: str, limits: Any, also: tuple, outage_budget: Any = None) -> Any:
        return guard_for(key, limits, None, also, 600.0 if outage_budget is None else outage_budget)

    def expect(self, job: MemoryJobState) -> None:
        """Forget what was handed over and shown; take hand-overs of ``job`` only from now on."""
        self.handed = []
        self.progressed = []
        self._job_id = job.job_id

    def deliver(self, job: MemoryJobState, step: str, *args: Any, delivery: Delivery = DELIVERY) -> Any:
        """One delivery of ``step``: what it returns; ``handed`` and ``progressed`` are this delivery's."""
        self.expect(job)
        return run_step(step, job, self, delivery, *args)


class RecordingHook:
    """A job-level hook (``JobHook``) that records its calls; ``fail``: the error each call raises."""

    def __init__(self, fail: Optional[Exception] = None) -> None:
        self.calls: List[Tuple[str, str, Optional[str]]] = []
        self.fail = fail

    def started(self, job: Any) -> None:
        self.calls.append(("started", job.job_id, None))
        if self.fail is not None:
            raise self.fail

    def ended(self, job: Any, report: Dict[str, Any]) -> None:
        self.calls.append(("ended", job.job_id, report["status"]))
        if self.fail is not None:
            raise self.fail


class DyingState(MemoryJobState):
    """A memory state whose workers died under some steps: ``dead`` is the ``deaths()`` count by step key."""

    def __init__(self, job_id: str) -> None:
        super().__init__(job_id)
        self.dead: Dict[str, int] = {}

    def deaths(self, step_key: str) -> int:
        return self.dead.get(step_key, 0)


def spec_data(**fields: Any) -> Dict[str, Any]:
    """A small demo job (4 sites each side, the source a variant: creates, updates and deletes), as plain data."""
    data: Dict[str, Any] = {
        "source": "demo",
        "target": "demo",
        "source_kwargs": {"sites": 4, "variant": 1},
        "target_kwargs": {"sites": 4},
    }
    data.update(fields)
    return data


class Jobs:
    """Makes memory jobs for one test, and releases the target locks they hold after it."""

    def __init__(self) -> None:
        self.ids: List[str] = []

    def new(self, state: type = MemoryJobState, **fields: Any) -> Any:
        """A new job of ``spec_data(**fields)`` (validated), recorded but not started."""
        return self.raw(JobSpec.from_data(spec_data(**fields)).to_message(), state=state)

    def raw(self, message: Any, state: type = MemoryJobState, job_id: Optional[str] = None) -> Any:
        """A new job whose stored spec is ``message`` as given (it may not validate)."""
        if job_id is None:
            job_id = message["job_id"]
        job = state(job_id)
        assert job.create(message, get_settings().store_ttl)
        self.ids.append(job_id)
        return job

    def release(self) -> None:
        with _locks_guard:
            for target, holder in list(_locks.items()):
                if holder in self.ids:
                    del _locks[target]


def drive(
    runner: RecordingRunner,
    job: MemoryJobState,
    until: str,
    delivery: Delivery = DELIVERY,
    pending: Sequence[Tuple] = (("start",),),
) -> List[Tuple]:
    """Run the job from its start (or ``pending``), each hand-over in turn, until the next step is ``until``.

    Returns the hand-overs not run yet (the first is ``until``); the runner's records are then empty.
    """
    pending = deque(pending)
    while pending and pending[0][0] != until:
        step, *args = pending.popleft()
        runner.deliver(job, step, *args, delivery=delivery)
        pending.extend(runner.handed)
    assert pending, f"job {job.job_id} never handed over to {until!r}"
    runner.handed, runner.progressed = [], []
    return list(pending)


def run_all(runner: RecordingRunner, job: MemoryJobState, pending: Sequence[Tuple], delivery: Delivery = DELIVERY):
    """Run the given hand-overs and all they hand over, in order, until none is left; returns the report."""
    queue = deque(pending)
    while queue:
        step, *args = queue.popleft()
        runner.deliver(job, step, *args, delivery=delivery)
        queue.extend(runner.handed)
    return job.report()


class EndingState(MemoryJobState):
    """A memory state whose job ends elsewhere meanwhile: a report appears at ``end_in``.

    ``claim``: as a step takes its claim; ``work``: as a load opens its fresh store.
    """

    end_in = ""

    def _end(self, where: str) -> None:
        if self.end_in == where and self.report() is None:
            self.save_report({"status": "failed", "error": "ended elsewhere"}, 60)

    def claim(self, step_key: str, ttl: int, step: str = "", args: Sequence[Any] = ()) -> Optional[str]:
        self._end("claim")
        return super().claim(step_key, ttl, step, args)

    def fresh_store(self, side: str) -> Any:
        self._end("work")
        return super().fresh_store(side)
