"""Applying one shard's subtrees: the core syncer, with a journal of finished operations and a fence.

The engine's own syncer does the work, so order, flags, statuses, skipped children and log events are
exactly those of a local ``sync_from``.  What this adds: every finished operation is written to the job's
journal, after the store writes it caused (so the journal never claims what the store lacks), and a shard
delivered again replays journaled operations instead of running their hooks twice.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import structlog

from core.adapter import Adapter
from core.batch import BatchSize
from core.diff import Diff, DiffElement
from core.enum import DiffSyncActions, DiffSyncFlags, DiffSyncModelFlags, DiffSyncStatus
from core.model import DiffSyncModel
from core.retry import RetryBudget
from core.syncer import DiffSyncSyncer
from worker.connection import unreachable
from worker.errors import LockLost
from worker.pipeline.context import Busy, Ended, Stop
from worker.pipeline.journal_writer import JournalWriter
from worker.redaction import mask_text
from worker.state.base import JobState
from worker.targets.guard import TargetGuard

logger = structlog.get_logger("shardsync.worker")

TRACE_FRAMES = 12
"""Frames of a raising hook's traceback kept in its journal entry (the innermost ones)."""

TRACE_CHARS = 6000
"""Most characters of that traceback kept (its end: the frames nearest the error)."""

_CHILDREN_DONE = DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE.value | DiffSyncModelFlags.NATURAL_DELETION_ORDER.value
_SUCCESS = DiffSyncStatus.SUCCESS.value

T = TypeVar("T")


class _StoppedWaiting(Exception):
    """The job stopped while an operation waited to call its remote again (raised out of the engine's syncer)."""


class ShardSyncer(DiffSyncSyncer):
    """The engine's syncer, journaling each operation and replaying those a previous delivery finished."""

    report_every = 0.5
    """Seconds between two progress reports while the shard runs."""

    confirm = True
    """Whether a hook waits for the journal write before it to be acknowledged (``SHARDSYNC_JOURNAL_CONFIRM``)."""

    checkpoint_every = 1
    """Operations per journal write. With 1, a redelivered shard re-runs only the operation that was in flight;
    larger batches trade that for fewer round trips (operations of the last unwritten batch run again)."""

    def __init__(
        self,
        diff: Diff,
        src: Adapter,
        dst: Adapter,
        flags: DiffSyncFlags,
        job: JobState,
        op_ids: Dict[int, str],
        done: Dict[str, List[Any]],
        redelivered: bool,
        on_checkpoint: Optional[Callable[..., None]] = None,
        checkpoint_every: Optional[int] = None,
        fence: Optional[Callable[[], None]] = None,
        batch_size: Optional[BatchSize] = None,
        retry: Optional[RetryBudget] = None,
        guard: Optional[TargetGuard] = None,
        claim: Optional[Tuple[str, str]] = None,
    ) -> None:
        super().__init__(diff=diff, src_diffsync=src, dst_diffsync=dst, flags=flags, batch_size=batch_size, retry=retry)
        self._guard = guard
        if guard is not None:
            guard.sleep = self.backoff  # its waits, as the retries', stop the shard when its job stops
            guard.before = self.before_hook  # after a wait: journal what is done, fence again
        self._job = job
        self._op_ids = op_ids
        self._done = done
        self._redelivered = redelivered
        self._on_checkpoint = on_checkpoint
        self._fence = fence
        if checkpoint_every is not None:
            self.checkpoint_every = checkpoint_every
        self.journal = JournalWriter(job, dst.store, claim)
        self._pushed: Dict[str, float] = {}
        self._target: Optional[Dict[str, Any]] = None
        self._last_checkpoint = 0.0
        self._last_report = 0.0  # the first operation is reported at once
        self._last_abort_check = time.monotonic()
        self.applied = 0
        self.replayed = 0
        self.attempted = False

    def run(self) -> Tuple[bool, bool]:
        """Apply every subtree, stopping between subtrees if the job was aborted.

        Returns:
            (whether anything changed or was attempted, whether it stopped early).
        """
        stop = threading.Event()
        reporter = threading.Thread(target=self._report_while_running, args=(stop,), daemon=True)
        reporter.start()
        try:
            with self.src_diffsync.store.engine_session(), self.dst_diffsync.store.engine_session():
                self._prefetch_targets()
                try:
                    changed = self.sync_top_level(self.diff.get_children())
                except _StoppedWaiting:  # the operation that waited was not made: no journal entry, "not run"
                    self.stopped = True
                    changed = True
                except Exception as err:
                    if self.journal.unwritten and unreachable(err):
                        self.journal.save(err)
                    raise
            return changed, self.stopped
        finally:
            stop.set()
            reporter.join(timeout=5)

    def _report_while_running(self, stop: threading.Event) -> None:
        """Report the job's progress counter twice a second while it changes, also during a long hook."""
        if self._on_checkpoint is None:
            return
        last: Tuple[int, Any] = (-1, None)
        while not stop.wait(self.report_every):
            try:
                current = self._job.progress_count()
                target = self._target_figures()
                if (current, target) != last:
                    last = (current, target)
                    self._on_checkpoint(current, target)
            except Exception:  # noqa: BLE001, S112 - progress is best effort; the next tick tries again
                continue

    def _target_figures(self) -> Optional[Dict[str, Any]]:
        """The job's target figures (its shards' counts added up in the job state) and the target now.

        This shard adds what it counted since it last did (one round trip, only when something changed).
        """
        if self._guard is None:
            return None
        counts: Dict[str, float] = {**self._guard.counters(), "retries": self.retries}
        deltas = {name: value - self._pushed.get(name, 0) for name, value in counts.items()}
        deltas = {name: value for name, value in deltas.items() if value}
        totals = self._target or {}
        if deltas or self._target is None:
            totals = self._job.add_target_figures(deltas)
            self._pushed = counts
        self._target = {**{name: totals.get(name, 0) for name in counts}, **self._guard.now()}
        return self._target

    def _prefetch_targets(self) -> None:
        """Read every target object the shard's elements name, one round trip per type (stores that can)."""
        prefetch = getattr(self.dst_diffsync.store, "prefetch", None)
        if prefetch is None:
            return
        by_type: Dict[str, List[str]] = {}
        stack = list(self.diff.get_children())
        while stack:
            element = stack.pop()
            model_class = getattr(self.dst_diffsync, element.type, None)
            if model_class is not None:
                by_type.setdefault(element.type, []).append(model_class.create_unique_id(**element.keys))
            stack.extend(element.get_children())
        for modelname, uids in by_type.items():
            prefetch(modelname, uids)

    def guard_figures(self) -> Dict[str, Any]:
        """What the shard's calls waited for their target (none without a guard)."""
        return self._guard.figures() if self._guard is not None else {}

    def call_hook(self, call: Callable[[], T]) -> T:
        """Make one call to the target once its limits and condition let it start (``worker.targets``)."""
        return self._guard.call(call) if self._guard is not None else call()

    def held_back(self) -> float:
        """Seconds the guard held calls back for the target (an outage waited out spends no retry budget)."""
        return self._guard.paused if self._guard is not None else 0.0

    def backoff(self, seconds: float) -> None:
        """Wait before calling a hook again (its remote said "try later"), a second at a time.

        The job may be stopped meanwhile (a cancel, its deadline): then the shard stops here, leaving the
        operation that waited unmade, rather than calling the remote again for a job that has ended.
        """
        until = time.monotonic() + seconds
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 1.0))
            if self._job.aborted() is not None:
                raise _StoppedWaiting()

    def should_stop(self) -> bool:
        """Whether the job was aborted (asked of the job state at most four times a second)."""
        now = time.monotonic()
        if now - self._last_abort_check < 0.25:
            return False
        self._last_abort_check = now
        return self._job.aborted() is not None

    # -- journal --------------------------------------------------------------------------------------

    def operation_done(
        self,
        element: DiffElement,
        uid: str,
        action: str,
        status: DiffSyncStatus,
        message: str,
        model: Optional[DiffSyncModel],
    ) -> None:
        """Buffer the operation's journal entry (written at the next checkpoint) and count it."""
        flags = model.model_flags.value if model is not None else 0
        if status.value != _SUCCESS:  # a remote's error text: its secrets masked, its length bounded
            message = mask_text(message)
        self._record(element, [action, status.value, message, element.type, uid, flags])
        self.applied += 1
        self.attempted = True

    def operation_raised(self, element: DiffElement, uid: str, action: str, error: BaseException) -> None:
        """A hook raised something other than ObjectCrudException: journal the operation as failed, with where.

        The shard still fails on it (as a local sync would stop), but the report lists the object and the
        per-object log says what it raised instead of "not run"; the worker's log has the whole traceback. A
        stand-down, a stop or Redis going away is not the operation's failure (it runs again elsewhere).
        """
        if isinstance(error, (Busy, Stop, Ended, LockLost, _StoppedWaiting)) or unreachable(error):
            return
        frames = traceback.extract_tb(error.__traceback__)
        where = f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
        message = mask_text(f"{type(error).__name__}: {error}{where}")
        logger.error(
            "Operation raised", model=element.type, unique_id=uid, action=action, error=message, exc_info=error
        )
        # The traceback's last frames ride in the entry (masked, bounded): the console and ``log`` show them.
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=-TRACE_FRAMES))
        trace = mask_text(trace[-TRACE_CHARS:], limit=TRACE_CHARS)
        self._record(element, [action, DiffSyncStatus.ERROR.value, message, element.type, uid, 0, trace])
        self.applied += 1
        self.attempted = True

    def _record(self, element: DiffElement, entry: List[Any]) -> None:
        # Only buffered here: the syncer has yet to add, link or remove the model in the store. The entry is
        # written at the next checkpoint, after the store writes of the whole operation (see checkpoint).
        self.journal.add(self._op_ids[id(element)], entry)

    def _report(self, current: int, force: bool = False) -> None:
        # The first operation at once, then what the reporter thread sees; the last one at the end.
        if self._on_checkpoint is not None and (force or not self._last_report):
            self._last_report = time.monotonic()
            self._on_checkpoint(current, self._target)

    def checkpoint(self, wait: bool = False) -> None:
        """Write the target store's buffered changes, then the journal entries of the operations behind them.

        Called between operations (never inside one), so a journaled operation's store writes (the model
        added, linked to its parent, removed) have all reached the store: a redelivered shard can replay it
        without running its hook. Fenced like a hook. Pipelined (``RedisStore.send_recording``) unless
        ``wait``: the write is sent now and acknowledged before the next hook runs (``before_hook``).
        """
        if self._fence is not None:
            self._fence()  # a call that returned after its claim or the lock was lost (the job ended) writes nothing
        store = self.dst_diffsync.store
        if not self.journal.pending:
            if wait:
                self.journal.confirm()  # the write in flight acknowledged (kept through an outage)
            flush = getattr(store, "flush", None)
            if flush is not None:
                flush()
            return
        first = not self._last_report  # its count is reported at once: written and read back
        current = self.journal.write(pipelined=not (wait or first))
        self._last_checkpoint = time.monotonic()
        if current is not None:
            self._report(current)

    def finish(self, fenced: bool = True) -> None:
        """Write what is pending and report the progress counter as it is now.

        ``fenced`` False: the bookkeeping of a shard that failed, its fence closed (the dispatcher found its
        job not ended; the operations pending ran under the lock, and their entries say so).
        """
        if not fenced:
            self._fence = None
            if getattr(self.dst_diffsync.store, "write_guard", None) is not None:
                self.dst_diffsync.store.write_guard = None  # type: ignore[attr-defined]
        self.checkpoint(wait=True)
        if self._guard is not None:  # the reporter thread has stopped (run's end): the figures are this thread's
            self._target_figures()
        self._report(self._job.progress_count(), force=True)

    # -- replay ---------------------------------------------------------------------------------------

    def before_element(self, element: DiffElement) -> None:
        """Write the journal when it is due, before an element is applied (or replayed, see ``replay``)."""
        self._checkpoint_if_due()

    def replay(self, element: DiffElement) -> Optional[Tuple[bool, Optional[DiffSyncModel]]]:
        """Replay an operation a previous delivery of this shard journaled (or visibly applied)."""
        entry = self._done.get(self._op_ids[id(element)])
        if entry is None and self._redelivered:
            entry = self._observed(element)
        if entry is None:
            return None
        self.replayed += 1
        action, status = entry[0], entry[1]
        if status != _SUCCESS:
            return False, None  # it failed then, and its children were skipped
        if action == DiffSyncActions.DELETE:
            return not entry[5] & _CHILDREN_DONE, None  # children deleted with it or before it, or still to do
        model_class = getattr(self.dst_diffsync, element.type)
        _, dst_model = self.lookup_dst(model_class, element)
        return True, dst_model

    def _checkpoint_if_due(self) -> None:
        # Called only where every operation recorded so far is complete, store writes included: before an
        # element is visited and before a hook runs (a NATURAL_DELETION_ORDER parent's delete comes after
        # its children's operations, within the parent's own visit).
        if self.journal.pending and (
            self.journal.count >= self.checkpoint_every or time.monotonic() - self._last_checkpoint >= 0.5
        ):
            self.checkpoint()

    def before_hook(self) -> None:
        """Journal what is done, then fence, before a hook (or a batch hook) runs.

        A crash in the hook then re-runs that hook (that batch) alone; and a hook runs only while the job
        holds the lock. The journal write sent as the element was entered (``before_element``) is confirmed
        here, after the engine's own work on the element: its round trip overlaps that work, and no hook runs
        before Redis has acknowledged the operations before it (a partition that outlives the claim then
        re-runs one operation, not two).
        """
        self._checkpoint_if_due()
        if self.confirm:
            self.journal.confirm()
        if self._fence is not None:
            self._fence()

    def batch_done(self) -> None:
        """Journal a batch as one unit as soon as its hook returned (one transaction with its store writes)."""
        self.checkpoint()

    def _observed(self, element: DiffElement) -> Optional[List[Any]]:
        """Journal entry of an operation applied by an earlier delivery that died before journaling it.

        Its effect is visible in the store: a create whose object exists, a delete whose object is gone.
        """
        model_class = getattr(self.dst_diffsync, element.type)
        uid, dst_model = self.lookup_dst(model_class, element)
        action = element.action
        found = (action == DiffSyncActions.CREATE and dst_model is not None) or (
            action == DiffSyncActions.DELETE and dst_model is None
        )
        if not found:
            return None
        entry = [action, _SUCCESS, "applied by an earlier delivery of this shard", element.type, uid, 0]
        self._record(element, entry)
        self.attempted = True
        return entry
