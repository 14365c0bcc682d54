"""A call's time limit: interrupted in a main thread, left alone elsewhere, the process ended past the hard limit."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from core import TransientError
from core.limits import Limits
from worker.targets.guard import guard_for
from worker.targets.timeout import CallTimedOut, time_limit


def test_a_call_past_its_limit_is_interrupted_as_a_transient_error() -> None:
    started = time.monotonic()
    with pytest.raises(CallTimedOut, match=r"the hook took longer than its time limit of 0.2 s") as caught:
        with time_limit(0.2, "the hook"):
            time.sleep(30)
    assert time.monotonic() - started < 5
    assert isinstance(caught.value, TransientError)


def test_the_limit_ends_with_its_call_and_gives_back_the_signal() -> None:
    def mine(signum, frame):  # noqa: ANN001 - a signal handler's signature
        raise AssertionError("not expected")

    previous = signal.signal(signal.SIGALRM, mine)
    try:
        with time_limit(0.2, "the hook"):
            pass
        assert signal.getsignal(signal.SIGALRM) is mine
        assert signal.getitimer(signal.ITIMER_REAL)[0] == 0
    finally:
        signal.signal(signal.SIGALRM, previous)


def test_no_limit_and_another_thread_are_left_alone() -> None:
    with time_limit(None, "the hook"):
        time.sleep(0.01)
    done = []

    def in_a_thread() -> None:
        with time_limit(0.05, "the hook"):  # nothing can interrupt a thread: the call runs its course
            time.sleep(0.2)
        done.append(True)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    assert done == [True]


def test_a_guarded_call_past_its_limit_is_a_transient_failure_of_the_target() -> None:
    guard = guard_for(f"memory-{uuid.uuid4().hex}", Limits(call_timeout=0.2), None)
    with pytest.raises(CallTimedOut):
        guard.call(lambda: time.sleep(30))
    assert guard.engaged  # the failure was told to the target's condition
    assert guard.call(lambda: 7) == 7


def test_a_call_that_outlives_its_hard_limit_ends_a_replaceable_process() -> None:
    code = textwrap.dedent(
        """
        import time
        from worker.targets import timeout
        timeout.HARD_GRACE = 0.5
        timeout.allow_replacing()
        with timeout.time_limit(0.2, "a stubborn call"):
            while True:  # swallows the soft limit, as a C extension would never see it
                try:
                    time.sleep(10)
                except timeout.CallTimedOut:
                    pass
        """
    )
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 70, finished.stderr
