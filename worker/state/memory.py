"""The job state in this process's memory, for the embedded runner: the same records as in Redis, no server.

Values are kept as msgpack bytes, as in Redis, so a step that reads back what it wrote gets a copy typed as a
worker would get it (tuples as lists, no shared objects between steps). Locks are per process: two embedded
jobs into one target in this process exclude each other as two jobs on workers do.
"""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from core.store import BaseStore
from core.store.local import LocalStore
from worker.errors import LockLost, lock_lost_message
from worker.state.base import Entry, Heartbeat, JobState, pack, unpack
from worker.state.pairs import MemoryPairSteps
from worker.state.parts import MemoryParts

_locks: Dict[str, str] = {}
_locks_guard = threading.Lock()


class MemoryJobState(MemoryParts, MemoryPairSteps, JobState):
    """One job's records in dicts; the two sides' stores are LocalStores kept here."""

    distributed = False  # one process: a diff has one range per type and side

    def __init__(self, job_id: str) -> None:
        self._target_figures: Dict[str, float] = {}
        super().__init__(job_id)
        self._spec: Optional[bytes] = None
        self._info: Dict[str, bytes] = {}
        self._once: Set[str] = set()
        self._times: Dict[str, float] = {}
        self._workers: Dict[str, str] = {}
        self._abort: Optional[str] = None
        self._claims: Dict[str, str] = {}
        self._running: Dict[str, bytes] = {}
        self._stores: Dict[str, BaseStore] = {}
        self._loads: Dict[str, bytes] = {}
        self._partitions: Dict[str, bytes] = {}
        self._partition_results: Dict[str, Dict[int, bytes]] = {}
        self._ranges: Optional[bytes] = None
        self._range_records: Dict[int, bytes] = {}
        self._range_results: Dict[int, bytes] = {}
        self._diff: Dict[int, bytes] = {}
        self._summary: Optional[bytes] = None
        self._plan: Optional[bytes] = None
        self._journal: Dict[str, bytes] = {}
        self._progress = 0
        self._shards: Dict[int, bytes] = {}
        self._waves: Dict[int, Set[int]] = {}
        self._report: Optional[bytes] = None

    # -- spec and info --------------------------------------------------------------------------------

    def create(self, spec: Dict[str, Any], ttl: int, info: Optional[Dict[str, Any]] = None) -> bool:
        """Record a new job (with the ``info`` fields given); False if this state holds a job already."""
        if self._spec is not None:
            return False
        self._spec = pack(spec)
        self._info = {name: pack(value) for name, value in (info or {}).items()}
        self._info.update(submitted=pack(time.time()), status=pack("queued"))
        return True

    def forget(self) -> None:
        """Undo ``create``."""
        self._spec = None
        self._info = {}

    def spec_data(self) -> Optional[Dict[str, Any]]:
        """The spec as submitted, or None before ``create``."""
        return unpack(self._spec)

    def set_info(self, **fields: Any) -> None:
        """Set fields of the job's info."""
        self._info.update({name: pack(value) for name, value in fields.items()})

    def info(self) -> Dict[str, Any]:
        """The job's info fields."""
        return {name: unpack(value) for name, value in self._info.items()}

    def mark_sync_started(self, when: float) -> None:
        """Record when the first shard began (kept if set already)."""
        self._info.setdefault("sync_started", pack(when))

    def mark_sync_ended(self, when: float) -> None:
        """Record when a shard ended."""
        self._info["sync_ended"] = pack(when)

    def marked(self, marker: str) -> bool:
        """Whether ``mark(marker)`` was called."""
        return marker in self._once

    def mark(self, marker: str) -> None:
        """Record that something was done."""
        self._once.add(marker)

    def record_time(self, stage: str, seconds: float) -> None:
        """Record how long a stage took."""
        self._times[stage] = float(seconds)

    def times(self) -> Dict[str, float]:
        """Seconds per stage."""
        return dict(self._times)

    def record_worker(self, role: str, hostname: str) -> None:
        """Remember which worker ran a step."""
        self._workers[role] = hostname

    def workers(self) -> Dict[str, str]:
        """Worker hostname per step."""
        return dict(self._workers)

    # -- abort ----------------------------------------------------------------------------------------

    def abort(self, message: str) -> None:
        """Stop the job: the first error wins."""
        if self._abort is None:
            self._abort = message

    def aborted(self) -> Optional[str]:
        """The error that stopped the job, if any."""
        return self._abort

    # -- lock and claims ------------------------------------------------------------------------------

    def acquire_lock(self, target: str, ttl: int) -> Optional[str]:
        """Take the process-wide lock on ``target``; None when this job holds it, else the holder's id."""
        with _locks_guard:
            holder = _locks.setdefault(target, self.job_id)
        return None if holder == self.job_id else holder

    def renew_lock(self, target: str, ttl: int) -> bool:
        """Whether this job still holds the lock (it never expires inside one process)."""
        return self.holds_lock(target)

    def holds_lock(self, target: str) -> bool:
        """Whether this job holds the lock now."""
        with _locks_guard:
            return _locks.get(target) == self.job_id

    def release_lock(self, target: str) -> None:
        """Release the lock if this job holds it."""
        with _locks_guard:
            if _locks.get(target) == self.job_id:
                del _locks[target]

    @contextmanager
    def heartbeat(
        self, target: Optional[str], ttl: int, claim: Optional[str] = None, token: str = ""
    ) -> Iterator[Heartbeat]:
        """Nothing to keep alive (a lock or claim in this process lives until released); the lock is checked."""
        if target is not None and not self.holds_lock(target):
            raise LockLost(lock_lost_message(self.job_id, target))
        yield Heartbeat()

    def claim(self, step_key: str, ttl: int, step: str = "", args: Sequence[Any] = ()) -> Optional[str]:
        """Claim a step; None if it is claimed already."""
        if step_key in self._claims:
            return None
        token = self._claims[step_key] = uuid.uuid4().hex
        if step:
            self._running[step_key] = pack([step, list(args), time.time()])
        return token

    def release_claim(self, step_key: str, token: str) -> None:
        """Release a claim taken with ``claim``."""
        if self._claims.get(step_key) == token:
            del self._claims[step_key]
            self._running.pop(step_key, None)

    def deaths(self, step_key: str) -> int:
        """None: a step in this process either releases its claim or takes the process with it."""
        return 0

    def claim_held(self, step_key: str) -> bool:
        """Whether the step is claimed."""
        return step_key in self._claims

    def revoke_claim(self, step_key: str) -> None:
        """Take a step's claim from its holder."""
        self._claims.pop(step_key, None)
        self._running.pop(step_key, None)

    def running_steps(self) -> Dict[str, List[Any]]:
        """Steps recorded as running by their claims."""
        return {key: unpack(value) for key, value in self._running.items()}

    def forget_running(self, step_key: str, entry: Optional[List[Any]] = None) -> None:
        """Drop a step from the running ones (only if its record is ``entry``, when given)."""
        if entry is None or self._running.get(step_key) == pack(entry):
            self._running.pop(step_key, None)

    # -- stores and loads -----------------------------------------------------------------------------

    def fresh_store(self, side: str) -> BaseStore:
        """A new, empty LocalStore for one side's load (the pair's, kept in this process, for a run of one)."""
        pair = self.pair_name() if side in ("source", "target") else None
        store = self._stores[side] = self.pairs().fresh_store(pair, side) if pair else LocalStore()
        return store

    def open_store(self, side: str, lazy: bool = False) -> BaseStore:
        """The LocalStore one side was loaded into.

        Raises:
            LookupError: if that side has not been loaded.
        """
        pair = self.pair_name() if side in ("source", "target") else None
        if pair and side not in self._stores:
            self._stores[side] = self.pairs().store(pair, side)  # kept from the pair's last run
        try:
            return self._stores[side]
        except KeyError:
            raise LookupError(f"job {self.job_id}: the {side} side has not been loaded") from None

    def store_ids(self) -> Dict[str, str]:
        """None: memory stores end with the job's process."""
        return {}

    def record_load(self, side: str, result: Dict[str, Any]) -> int:
        """Record a finished load; returns how many sides are loaded."""
        self._loads[side] = pack(result)
        return len(self._loads)

    def loads(self) -> Dict[str, Dict[str, Any]]:
        """Load results per side."""
        return {side: unpack(value) for side, value in self._loads.items()}

    # -- diff and plan --------------------------------------------------------------------------------

    def save_diff(self, records: Sequence[Any], summary: Dict[str, int]) -> None:
        """Keep the diff's element records by position, and its summary."""
        self._diff = {position: pack(record) for position, record in enumerate(records)}
        self._summary = pack(summary)

    def diff_records(self, roots: Sequence[int]) -> List[Any]:
        """The element records of some top-level elements."""
        missing = [root for root in roots if root not in self._diff]
        if missing:
            raise LookupError(f"job {self.job_id}: the kept diff has no element for top-level positions {missing}")
        return [unpack(self._diff[root]) for root in roots]

    def diff_size(self) -> int:
        """Number of top-level elements in the kept diff."""
        return len(self._diff)

    def summary(self) -> Optional[Dict[str, int]]:
        """The diff's summary."""
        return unpack(self._summary)

    def save_fingerprints(self, fingerprints: Dict[str, str]) -> None:
        """Keep a plan's fingerprints of the target subtrees it touches."""
        self._fingerprints = dict(fingerprints)

    def fingerprints(self) -> Dict[str, str]:
        """The kept fingerprints."""
        return dict(getattr(self, "_fingerprints", {}))

    def other(self, job_id: str) -> JobState:
        """No other job lives in this process's memory: a plan to apply must be in Redis."""
        raise LookupError(f"job {job_id} is not in this process: plans are applied from the Redis job state (workers)")

    def save_plan(self, plan: Dict[str, Any]) -> None:
        """Keep the plan."""
        self._plan = pack(plan)

    def plan(self) -> Dict[str, Any]:
        """The saved plan."""
        if self._plan is None:
            raise LookupError(f"job {self.job_id} has no plan")
        return unpack(self._plan)  # type: ignore[no-any-return]

    # -- journal and progress -------------------------------------------------------------------------

    def journal_entries(self, ops: Sequence[str]) -> Dict[str, Entry]:
        """Journal entries already recorded for these operations."""
        return {op: unpack(self._journal[op]) for op in ops if op in self._journal}

    def write_journal(self, entries: Dict[str, Entry], counted: int) -> int:
        """Record finished operations and count them; returns the new count."""
        self._journal.update({op: pack(entry) for op, entry in entries.items()})
        self._progress += counted
        return self._progress

    def checkpoint(
        self,
        store: BaseStore,
        entries: Dict[str, Entry],
        counted: int,
        claim: Optional[Tuple[str, str]] = None,
        pipelined: bool = False,
    ) -> Optional[int]:
        """A LocalStore writes at once: only the journal is left to write."""
        flush = getattr(store, "flush", None)
        if flush is not None:
            flush()
        return self.write_journal(entries, counted)

    def journal(self) -> Dict[str, Entry]:
        """Every journal entry of the job."""
        return {op: unpack(value) for op, value in self._journal.items()}

    def progress_count(self) -> int:
        """Operations dealt with so far."""
        return self._progress

    def add_target_figures(self, deltas: Dict[str, float]) -> Dict[str, float]:
        """Add a shard's new counts to the job's target figures; returns them."""
        for name, amount in deltas.items():
            self._target_figures[name] = self._target_figures.get(name, 0) + amount
        return dict(self._target_figures)

    # -- shards ---------------------------------------------------------------------------------------

    def shard_result(self, index: int) -> Optional[Dict[str, Any]]:
        """The recorded result of a shard, if it finished."""
        return unpack(self._shards.get(index))

    def record_shard(self, index: int, wave: int, result: Dict[str, Any]) -> int:
        """Record a shard's result; returns how many shards of its wave have finished."""
        self._shards[index] = pack(result)
        finished = self._waves.setdefault(wave, set())
        finished.add(index)
        return len(finished)

    def finished_in_wave(self, wave: int) -> int:
        """How many shards of a wave have recorded their result."""
        return len(self._waves.get(wave, ()))

    def shard_results(self) -> Dict[int, Dict[str, Any]]:
        """Every recorded shard result by index."""
        return {index: unpack(value) for index, value in self._shards.items()}

    # -- report and clean-up --------------------------------------------------------------------------

    def save_report(self, report: Dict[str, Any], ttl: int) -> bool:
        """Keep the report (for as long as this state object lives), unless one is kept already."""
        if self._report is not None:
            return False
        self._report = pack(report)
        return True

    def report(self) -> Optional[Dict[str, Any]]:
        """The job's report, once it has ended."""
        return unpack(self._report)

    def drop_scratch(self) -> None:
        """Drop what only the running job needed; the diff, the journal and the stores stay, as on workers."""
        self._plan = None
        self._progress = 0
        self._shards = {}
        self._waves = {}
        self._claims = {}
        self._running = {}
        self._once = set()
