"""A time limit on one call into an adapter: the call is interrupted where this process can interrupt it.

Python cannot stop a function from outside. What it can do, and what this does, in the order Celery's own
soft and hard time limits take:

- **Soft limit** (the main thread of a process: a prefork pool's child, the solo pool, the embedded runner
  run from a command line): an interval timer (``SIGALRM``) raises ``CallTimedOut`` inside the call at its
  next Python instruction. A call blocked on a socket or in ``time.sleep`` is woken (PEP 475: the handler's
  exception ends the system call). ``CallTimedOut`` is a ``TransientError``: the operation is tried again
  within its retry budget, like a 503.
- **Hard limit** (a prefork child only, where the pool replaces a process that exits): a call still running
  ``HARD_GRACE`` seconds after its soft limit (a C extension holding the interpreter, a handler that
  swallowed the exception) ends the process. The step's claim then lapses and the watchdog runs it again
  elsewhere; its journal replays what was done, and the poison check ends a step that keeps doing it.
- **Elsewhere** (a threads or gevent pool, a thread of an application calling the embedded runner) nothing
  can interrupt the call: the limit is not applied, the adapter's own client timeouts are what ends a call,
  and a job whose call never returns is still ended at its deadline by the watchdog (its late writes
  discarded).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import structlog

from core.exceptions import TransientError

logger = structlog.get_logger("shardsync.worker")

HARD_GRACE = 10.0
"""Seconds a call may run past its soft limit before a replaceable process ends itself (the hard limit)."""


class CallTimedOut(TransientError):
    """A call to an adapter took longer than its time limit and was interrupted."""


_replaceable = False
"""Whether this process may end itself on a hard limit (a prefork pool's child: its pool starts another)."""


def allow_replacing(allowed: bool = True) -> None:
    """Say that this process is a pool's child that the pool replaces when it exits (the hard limit may end it)."""
    global _replaceable  # noqa: PLW0603 - one flag per process
    _replaceable = allowed


def interruptible() -> bool:
    """Whether a call made now in this thread can be interrupted by its time limit (the soft limit)."""
    return threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")


@contextmanager
def time_limit(seconds: Optional[float], what: str) -> Iterator[None]:
    """Run the block under a time limit of ``seconds`` (None or 0: none); ``what`` names the call in errors.

    Raises:
        CallTimedOut: inside the block, when it runs past the limit in an interruptible thread.
    """
    if not seconds or seconds <= 0 or not interruptible() or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        yield  # nothing can interrupt it here (or another timer of the process's runs): see the module's docstring
        return
    active = [True]

    def expire(signum: int, frame: Any) -> None:
        if active[0]:  # not once the call has returned (a signal delivered as the block ends)
            active[0] = False
            raise CallTimedOut(f"{what} took longer than its time limit of {seconds:g} s and was interrupted")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    if _replaceable:
        _HARD.arm(seconds + HARD_GRACE, what)
    try:
        yield
    finally:
        active[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if _replaceable:
            _HARD.disarm()


class _HardLimit:
    """The hard limit of the call in progress: one watching thread per process, armed and disarmed per call.

    Arming costs two assignments (a thread per call would cost more than many hooks take); the thread looks
    twice a second.
    """

    LOOK = 0.5

    def __init__(self) -> None:
        self.deadline: Optional[float] = None
        self.what = ""
        self.armed_at = 0.0
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()

    def arm(self, seconds: float, what: str) -> None:
        self.what = what
        self.armed_at = time.monotonic()
        self.deadline = self.armed_at + seconds
        if self._thread is None or not self._thread.is_alive():  # none yet, or this is a forked child
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._watch, name="shardsync-hard-limit", daemon=True)
                    self._thread.start()

    def disarm(self) -> None:
        self.deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(self.LOOK)
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                logger.critical(
                    "Call outlived its hard time limit: this pool process ends, and its pool replaces it",
                    call=self.what,
                    seconds=round(time.monotonic() - self.armed_at, 1),
                    pid=os.getpid(),
                )
                os._exit(70)  # EX_SOFTWARE; nothing of this process can be trusted to unwind the stuck call


_HARD = _HardLimit()
