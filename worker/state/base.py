"""The job-state interface: every record a step of the pipeline keeps or reads, and nothing else.

Each write is safe to repeat, because a step may run twice (a redelivered task); the methods that guard
against a second run (``mark``, ``claim``, the lock) say so in what they return.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from core.store import BaseStore
from worker.state.codec import pack, unpack  # noqa: F401 - re-exported: the state's encoding
from worker.state.lease import Heartbeat  # noqa: F401 - re-exported: what a step's heartbeat finds
from worker.state.pairs import PairSteps
from worker.state.parts import JobParts

Entry = List[Any]
"""A journal entry: ``[action, status, message, modelname, unique_id, model_flags]``."""


class JobState(JobParts, PairSteps, ABC):
    """One job's records: spec, info, times, lock and claims, loads, diff, plan, journal, shards and report."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id

    # -- spec and info --------------------------------------------------------------------------------

    @abstractmethod
    def create(self, spec: Dict[str, Any], ttl: int, info: Optional[Dict[str, Any]] = None) -> bool:
        """Record a new job (status queued, and the ``info`` fields given); False if a job with this id exists.

        ``info`` is recorded with the job, before anything can run it: a run of a schedule entry is
        ``{"schedule": name}``, which its finish reads to let the entry's next run start.
        """

    @abstractmethod
    def forget(self) -> None:
        """Undo ``create`` for a job that could not be enqueued, so that its id may be used again."""

    @abstractmethod
    def spec_data(self) -> Optional[Dict[str, Any]]:
        """The spec as submitted, or None if this job is unknown (or expired)."""

    @abstractmethod
    def set_info(self, **fields: Any) -> None:
        """Set fields of the job's info (status, started, lock...)."""

    @abstractmethod
    def info(self) -> Dict[str, Any]:
        """The job's info fields."""

    def now(self) -> float:
        """The time by the clock every host of the job agrees on (epoch seconds): the state's store's.

        ``submitted`` is stamped with it, and deadlines are judged by it: a producer or worker whose own clock
        is off never makes a job overdue (or immortal).
        """
        return time.time()

    @abstractmethod
    def mark_sync_started(self, when: float) -> None:
        """Record when the first shard began (kept if set already)."""

    @abstractmethod
    def mark_sync_ended(self, when: float) -> None:
        """Record when a shard ended (the last one's time stays)."""

    @abstractmethod
    def marked(self, marker: str) -> bool:
        """Whether ``mark(marker)`` was called for this job."""

    @abstractmethod
    def mark(self, marker: str) -> None:
        """Record that something was done.

        Set after the enqueue it guards: a crash between the two repeats the enqueue, which the steps tolerate,
        rather than losing it.
        """

    @abstractmethod
    def record_time(self, stage: str, seconds: float) -> None:
        """Record how long a stage took."""

    @abstractmethod
    def times(self) -> Dict[str, float]:
        """Seconds per stage."""

    @abstractmethod
    def record_worker(self, role: str, hostname: str) -> None:
        """Remember which worker ran a step (for the report)."""

    @abstractmethod
    def workers(self) -> Dict[str, str]:
        """Worker hostname per step."""

    # -- abort ----------------------------------------------------------------------------------------

    @abstractmethod
    def abort(self, message: str) -> None:
        """Stop the job: the first error wins; steps not started yet will not start."""

    @abstractmethod
    def aborted(self) -> Optional[str]:
        """The error that stopped the job, if any."""

    # -- lock and claims ------------------------------------------------------------------------------

    @abstractmethod
    def acquire_lock(self, target: str, ttl: int) -> Optional[str]:
        """Take the lock on ``target``; None when this job holds it now, else the id of the holder."""

    @abstractmethod
    def renew_lock(self, target: str, ttl: int) -> bool:
        """Extend this job's lock, or take it back if it expired and no other job has taken it since.

        False if another job holds it, or held it since this job last did (the fence).
        """

    @abstractmethod
    def holds_lock(self, target: str) -> bool:
        """Whether this job holds the lock now (checked before every write to the target)."""

    def watch_lock(self, target: str) -> AbstractContextManager[Callable[[], bool]]:
        """A check of ``holds_lock(target)`` for a step that asks before every write (a shard, per hook).

        States whose check costs a round trip answer it more cheaply (``worker.state.tracking``).
        """
        return nullcontext(lambda: self.holds_lock(target))

    @abstractmethod
    def release_lock(self, target: str) -> None:
        """Release the lock if this job holds it."""

    @abstractmethod
    def heartbeat(
        self, target: Optional[str], ttl: int, claim: Optional[str] = None, token: str = ""
    ) -> AbstractContextManager[Heartbeat]:
        """Keep the job's lock (and a step's claim, and the job's records) alive while a long step runs.

        Raises:
            LockLost: at once, if the lock is lost already; later losses set ``Heartbeat.lost``.
        """

    @abstractmethod
    def claim(self, step_key: str, ttl: int, step: str = "", args: Sequence[Any] = ()) -> Optional[str]:
        """Claim a step (``load-source``, ``diff``, ``shard-3``...); a token, or None if claimed already.

        So a duplicate delivery does not run it at the same time. The step and its arguments are recorded as
        running, so the watchdog can run it again if its claim expires without a result.
        """

    @abstractmethod
    def release_claim(self, step_key: str, token: str) -> None:
        """Release a claim taken with ``claim`` (the step is no longer running)."""

    @abstractmethod
    def deaths(self, step_key: str) -> int:
        """How many deliveries of a step took its claim and never released it (their worker died).

        Asked by the delivery that holds the claim now (not counted).
        """

    def record_stand_down(self, step_key: str) -> None:  # noqa: B027 - in one process a claim is never lost
        """Count a delivery that found its own claim lost and stood down (alive: not a death of its worker)."""

    def stand_downs(self, step_key: str) -> int:
        """How many deliveries of a step stood down on a lost claim (``record_stand_down``)."""
        return 0

    @abstractmethod
    def claim_held(self, step_key: str) -> bool:
        """Whether some delivery holds the step's claim now."""

    @abstractmethod
    def revoke_claim(self, step_key: str) -> None:
        """Take a step's claim from whichever delivery holds it (the watchdog's end of a job with a hung step).

        The delivery learns it at its next heartbeat or fence, and writes nothing of the job's after that.
        """

    @abstractmethod
    def running_steps(self) -> Dict[str, List[Any]]:
        """Steps recorded as running by their claims: ``{step_key: [step, args, claimed_at]}``."""

    @abstractmethod
    def forget_running(self, step_key: str, entry: Optional[List[Any]] = None) -> None:
        """Drop a step from the running ones (the watchdog, once it has sent the step again).

        ``entry``: only if its record is still that one (``running_steps``'s value): a new delivery of the
        step that recorded itself meanwhile stays recorded.
        """

    # -- stores and loads -----------------------------------------------------------------------------

    @abstractmethod
    def fresh_store(self, side: str) -> BaseStore:
        """An empty store for one side's load (a load run again starts over)."""

    @abstractmethod
    def open_store(self, side: str, lazy: bool = False) -> BaseStore:
        """The store one side was loaded into (``lazy``: read objects when named, for shards)."""

    @abstractmethod
    def store_ids(self) -> Dict[str, str]:
        """Where the job's stores can be inspected after it ended, per side (none for memory)."""

    def drop_stores(self, sides: Sequence[str] = ("source", "target")) -> None:  # noqa: B027 - memory: nothing
        """Remove side stores (a job that does not keep them, at its end), writing nothing first.

        Memory stores go with their state: nothing to do.
        """

    @abstractmethod
    def record_load(self, side: str, result: Dict[str, Any]) -> int:
        """Record a finished load; returns how many sides are loaded."""

    @abstractmethod
    def loads(self) -> Dict[str, Dict[str, Any]]:
        """Load results per side."""

    # -- diff and plan --------------------------------------------------------------------------------

    @abstractmethod
    def save_diff(self, records: Sequence[Any], summary: Dict[str, int]) -> None:
        """Keep the diff: one element record (plain data) per top-level element, by position."""

    @abstractmethod
    def diff_records(self, roots: Sequence[int]) -> List[Any]:
        """The element records of some top-level elements.

        Raises:
            LookupError: naming the positions the kept diff lacks.
        """

    @abstractmethod
    def diff_size(self) -> int:
        """Number of top-level elements in the kept diff."""

    @abstractmethod
    def summary(self) -> Optional[Dict[str, int]]:
        """The diff's summary, once the diff ran."""

    @abstractmethod
    def save_fingerprints(self, fingerprints: Dict[str, str]) -> None:
        """Keep a plan's fingerprints of the target subtrees it touches (top-level position -> digest)."""

    @abstractmethod
    def fingerprints(self) -> Dict[str, str]:
        """The fingerprints kept by ``save_fingerprints`` (empty if none)."""

    @abstractmethod
    def other(self, job_id: str) -> JobState:
        """The state of another job in the same place (an apply reads its plan's job).

        Raises:
            LookupError: where job states are not shared (the embedded runner's memory).
        """

    @abstractmethod
    def save_plan(self, plan: Dict[str, Any]) -> None:
        """Keep the plan (waves, shards with their roots and operation counts); saved means the diff is done."""

    @abstractmethod
    def plan(self) -> Dict[str, Any]:
        """The plan saved by the diff step.

        Raises:
            LookupError: if there is none (not planned yet, or the job's scratch data is gone).
        """

    def plan_head(self) -> Dict[str, Any]:
        """The plan without its shards' roots: ``waves``, ``operations`` and ``shards`` (their number).

        What every shard and every progress poll needs; cheap where the state can keep it apart.

        Raises:
            LookupError: as ``plan``.
        """
        plan = self.plan()
        return {"waves": plan["waves"], "operations": plan["operations"], "shards": len(plan["shards"])}

    def shard_plan(self, index: int) -> Dict[str, Any]:
        """One shard of the plan (index, wave, type, roots, operations): a shard reads only its own part.

        Raises:
            LookupError: as ``plan``, or if the plan has no such shard.
        """
        shards = self.plan()["shards"]
        if not 0 <= index < len(shards):
            raise LookupError(f"job {self.job_id} has no shard {index}")
        return shards[index]  # type: ignore[no-any-return]

    # -- journal and progress -------------------------------------------------------------------------

    @abstractmethod
    def journal_entries(self, ops: Sequence[str]) -> Dict[str, Entry]:
        """Journal entries already recorded for these operations."""

    @abstractmethod
    def write_journal(self, entries: Dict[str, Entry], counted: int) -> int:
        """Record finished operations and count them as progress; returns the new count."""

    @abstractmethod
    def checkpoint(
        self,
        store: BaseStore,
        entries: Dict[str, Entry],
        counted: int,
        claim: Optional[Tuple[str, str]] = None,
        pipelined: bool = False,
    ) -> Optional[int]:
        """Write a store's buffered changes, then the journal entries of the operations that made them.

        Together where the two live side by side (one script call in Redis), so the journal never names an
        operation whose store writes are missing. ``claim`` (step key, token): written only while that
        delivery holds the step's claim, checked by Redis in the same call (a stale delivery writes nothing).
        Sending the same entries again (a reply lost) counts them once. Returns the new progress count.

        ``pipelined``: sent without waiting for the reply where the store can (``RedisStore.send_recording``:
        the store's ``settle`` reads it); returns None then.

        Raises:
            WriteRefused: the claim is no longer the caller's (nothing was written).
        """

    @abstractmethod
    def journal(self) -> Dict[str, Entry]:
        """Every journal entry of the job."""

    def iter_journal(self) -> Iterator[Tuple[str, Entry]]:
        """The journal's ``(operation, entry)`` pairs one by one, for a reader that needs not hold them all."""
        yield from self.journal().items()

    @abstractmethod
    def progress_count(self) -> int:
        """Operations dealt with so far."""

    @abstractmethod
    def add_target_figures(self, deltas: Dict[str, float]) -> Dict[str, float]:
        """Add a shard's new counts of its target's figures (retries, transient...) to the job's; returns them.

        What the job's progress shows while it runs (the report sums the shards' results once they ended).
        """

    # -- shards ---------------------------------------------------------------------------------------

    @abstractmethod
    def shard_result(self, index: int) -> Optional[Dict[str, Any]]:
        """The recorded result of a shard, if it finished."""

    @abstractmethod
    def record_shard(self, index: int, wave: int, result: Dict[str, Any]) -> int:
        """Record a shard's result; returns how many shards of its wave have finished."""

    @abstractmethod
    def finished_in_wave(self, wave: int) -> int:
        """How many shards of a wave have recorded their result."""

    @abstractmethod
    def shard_results(self) -> Dict[int, Dict[str, Any]]:
        """Every recorded shard result by index."""

    # -- report and clean-up --------------------------------------------------------------------------

    @abstractmethod
    def save_report(self, report: Dict[str, Any], ttl: int) -> bool:
        """Keep the job's report for ``ttl`` seconds, with the spec, info and diff it describes.

        Returns False, keeping nothing, when the job has a report already: the first one is the job's end.
        """

    @abstractmethod
    def report(self) -> Optional[Dict[str, Any]]:
        """The job's report, once it has ended."""

    def keep_history(self) -> Dict[str, Any]:
        """Keep an ended job's records for the history's retention; returns what was kept (nothing in memory)."""
        return {}

    @abstractmethod
    def drop_scratch(self) -> None:
        """Delete what only the running job needed (plan, journal, claims...); the diff stays with the report."""
