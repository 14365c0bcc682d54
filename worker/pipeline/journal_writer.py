"""A shard's journal entries on their way to the job state: pipelined, guarded, kept through a Redis outage.

Each operation's entry goes with the store writes it caused, in one script call sent as the engine enters
the next element (``RedisStore.send_recording``) and acknowledged before that element's hook runs
(``confirm``): the round trip overlaps the engine's own work, and a crash or a partition re-runs only the
operation in flight. Redis checks the delivery's claim in the same call, so a delivery that lost its claim
writes nothing. An entry names an operation that ran: a write that meets an unreachable
Redis is kept and tried again (``keep_for``), never dropped for a redelivery to run its hook a second time.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

import structlog

from core.store.redis import WriteRefused
from worker.connection import unreachable
from worker.errors import describe
from worker.pipeline.context import ClaimLost, claim_wait
from worker.state.base import JobState

logger = structlog.get_logger("shardsync.worker")


class JournalWriter:
    """The entries of finished operations not written yet, and the one write whose reply is not read yet."""

    keep_for = 60.0
    """Seconds a journal write that met an unreachable Redis is tried again before the shard gives up on it.

    The operations it names were applied: dropped, a redelivery would run their hooks again. Waited out here
    (no hook runs meanwhile), a Redis paused or restarted with its data loses none of them; the write goes
    only while this delivery still holds its claim (Redis checks it), so waiting longer than the claim can
    live is no use."""

    def __init__(self, job: JobState, store: Any, claim: Optional[Tuple[str, str]]) -> None:
        self._job = job
        self._store = store
        self._claim = claim
        self.pending: Dict[str, List[Any]] = {}
        self.count = 0
        """Operations the pending entries stand for (the progress they add)."""
        self._sent: Optional[Tuple[Dict[str, List[Any]], int]] = None

    def add(self, op: str, entry: List[Any]) -> None:
        """Buffer one finished operation's entry (the store writes of the operation are still to come)."""
        self.pending[op] = entry
        self.count += 1

    @property
    def unwritten(self) -> bool:
        """Whether some entry is not known to be in Redis yet (pending, or sent without a reply)."""
        return bool(self.pending) or self._sent is not None

    def write(self, pipelined: bool) -> Optional[int]:
        """Write the pending entries with the store's buffered writes; the progress count, if read back.

        Raises:
            ClaimLost: Redis refused the write: another delivery holds the claim (nothing was written).
        """
        try:
            current = self._write(pipelined)
        except Exception as err:
            if not unreachable(err):
                raise
            current = self._write_when_back(err)
        self.pending = {}
        self.count = 0
        return current

    def settle(self) -> None:
        """Read the reply of the write in flight; if it was lost, its entries are pending again."""
        sent, self._sent = self._sent, None
        if sent is None:
            return
        try:
            self._store.settle()
        except WriteRefused as err:
            raise self._stale() from err
        except Exception as err:
            if unreachable(err):  # not known to be written: sent again (counted once if it was)
                self.pending = {**sent[0], **self.pending}
                self.count += sent[1]
            raise

    def confirm(self) -> None:
        """Wait for Redis to acknowledge the write in flight (before the next hook runs), kept through an outage.

        Cheap when its reply has come while the engine prepared the next operation (the usual case).
        """
        if self._sent is None:
            return
        try:
            self.settle()
        except Exception as err:
            if not unreachable(err):
                raise
            self._write_when_back(err)
            self.pending = {}
            self.count = 0

    def save(self, err: BaseException) -> None:
        """Journal the operations applied before Redis stopped answering, before the shard gives up on it.

        The shard is sent again after the outage: what is journaled here is replayed then, not run twice.
        """
        try:
            self._write_when_back(err)
        except Exception as failed:  # noqa: BLE001 - the shard's own error is what it ends on
            logger.warning("Applied operations not journaled", operations=len(self.pending), error=describe(failed))
        else:
            self.pending = {}
            self.count = 0

    def _write(self, pipelined: bool = False) -> Optional[int]:
        self.settle()
        try:
            current = self._job.checkpoint(self._store, self.pending, self.count, self._claim, pipelined)
        except WriteRefused as err:
            raise self._stale() from err
        if pipelined and current is None:
            self._sent = (self.pending, self.count)
        return current

    def _stale(self) -> ClaimLost:
        """Another delivery holds the claim: this one's writes are stale, its pending entries dropped."""
        self.pending = {}
        self.count = 0
        return ClaimLost(f"shard of job {self._job.job_id}", claim_wait())

    def _write_when_back(self, first: BaseException) -> Optional[int]:
        """Write once Redis answers again (``keep_for``).

        The local lease may run short meanwhile (the heartbeat cannot renew it either): the write is still
        safe, Redis checking the claim in the same call, so the store's own guard is set aside for it.
        """
        logger.warning("Journal write waits for Redis", operations=len(self.pending), error=describe(first))
        deadline = time.monotonic() + self.keep_for
        delay = 0.25
        store = self._store
        guard = getattr(store, "write_guard", None)
        try:
            if guard is not None:
                store.write_guard = None
            while True:
                time.sleep(delay)  # backoff: Redis does not answer; no hook runs meanwhile
                delay = min(delay * 2, 2.0)
                try:
                    return self._write()
                except Exception as err:
                    if not unreachable(err) or time.monotonic() >= deadline:
                        raise
        finally:
            if guard is not None:
                store.write_guard = guard
