"""Transient failures of the system a sync writes to, tried again: backoff with jitter, never before Retry-After.

A hook that meets "try later" from its remote (429, 502/503/504, a timeout, a reset connection) raises
``TransientError`` (``retry_after`` from the remote's ``Retry-After``), or an exception its adapter lists in
``Adapter.transient_errors``. The syncer then calls the hook (or the batch hook, for the items still pending)
again, after a wait that grows exponentially with jitter and is never shorter than ``retry_after``, until the
operation's ``RetryBudget`` (attempts and seconds) is spent; only then is it the hook's failure, as an
``ObjectCrudException`` would be (with CONTINUE_ON_FAILURE the element fails and its children are skipped;
without, the sync stops with that error, which names the operation and the last remote error).

The first call costs nothing more than before: the retry machinery (tenacity's waits and stops) starts only
once a call has failed transiently.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, Type, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core.exceptions import TransientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryBudget:
    """How long one operation (or one batch call) may be tried again after transient failures.

    An adapter declares its own (``Adapter.retry_budget``), a sync or a job may set one for itself; the most
    specific wins.
    """

    attempts: int = 5
    """Calls in all, the first included (1: never tried again)."""
    seconds: float = 120.0
    """Most seconds from the first failure to the start of the last call (a wait that would end later is
    not waited: the operation fails at once); time a runner held a call back for the target (an outage,
    a shared pause) does not count."""
    initial: float = 0.5
    """The first wait; each next one about doubles, with up to as much again of random jitter."""
    maximum: float = 30.0
    """The longest wait of the exponential backoff (a longer ``retry_after`` is still waited, within
    ``seconds``)."""

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"retry attempts must be a whole number of 1 or more, not {self.attempts!r}")
        for name in ("seconds", "initial", "maximum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"retry {name} must be a number of 0 or more, not {value!r}")
        if self.initial > self.maximum:
            raise ValueError(f"retry initial wait {self.initial} is longer than its maximum {self.maximum}")


DEFAULT_RETRY_BUDGET = RetryBudget()
"""What a sync uses when neither it nor its target adapter says otherwise."""


def is_transient(err: BaseException, also: Tuple[Type[BaseException], ...] = ()) -> bool:
    """Whether an error means "try later": a ``TransientError``, or one of the adapter's ``also`` types."""
    return isinstance(err, TransientError) or (bool(also) and isinstance(err, also))


def retry_after_of(err: Optional[BaseException]) -> float:
    """The seconds the remote asked to wait (``TransientError.retry_after``), 0 when it did not say."""
    after = getattr(err, "retry_after", None)
    try:
        return max(0.0, float(after)) if after is not None else 0.0
    except (TypeError, ValueError):
        return 0.0


def _error_of(state: RetryCallState) -> Optional[BaseException]:
    return state.outcome.exception() if state.outcome is not None else None


def _describe(err: BaseException) -> str:
    message = str(err)
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


class Retrier:
    """Calls a failed call again within a budget; what a syncer keeps for its hooks.

    Args:
        budget: Attempts and seconds one operation may take.
        also: Exception types that mean "try later" besides ``TransientError`` (the adapter's).
        sleep: How to wait (a runner may wait while watching for a stop).
        held_back: Seconds the calls have spent so far waiting for the target before they started (a
            runner's circuit breaker or shared pause): not counted against the budget's seconds, which
            measure trying, not waiting.
    """

    def __init__(
        self,
        budget: RetryBudget,
        also: Tuple[Type[BaseException], ...] = (),
        sleep: Callable[[float], None] = time.sleep,
        held_back: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.budget = budget
        self.also = tuple(also)
        self.sleep = sleep
        self.held_back = held_back
        self._backoff = wait_exponential_jitter(multiplier=budget.initial, max=budget.maximum, jitter=budget.initial)

    def transient(self, err: BaseException) -> bool:
        """Whether ``err`` means "try later" for this retrier."""
        return is_transient(err, self.also)

    def wait(self, attempt: int, err: Optional[BaseException]) -> float:
        """Seconds to wait after the ``attempt``-th call failed with ``err``: backoff, at least its retry_after."""
        state = RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        return max(float(self._backoff(state)), retry_after_of(err))

    def again(
        self,
        call: Callable[[], T],
        first: BaseException,
        what: str,
        before: Callable[[], None],
        on_retry: Optional[Callable[[int, float, BaseException], None]] = None,
    ) -> T:
        """Call ``call`` again after its first call failed with the transient error ``first``.

        Args:
            call: The call (a hook, a batch hook for the items still pending).
            first: Its first call's error.
            what: The operation, for the error raised when the budget is spent (``create site ams1``).
            before: Called before each new call (a runner journals what is done and checks its lock).
            on_retry: Called before each wait with (attempt that failed, seconds to wait, its error).

        Returns:
            What the first successful call returned.

        Raises:
            TransientError: when the budget is spent, naming ``what``, the calls made and the last error.
            Exception: any error of a call that is not transient, as it was raised.
        """
        budget = self.budget
        started = time.monotonic()
        first_wait = self.wait(1, first)
        if budget.attempts < 2 or first_wait > budget.seconds:
            raise self._spent(what, first, 1, started) from first
        if on_retry is not None:
            on_retry(1, first_wait, first)
        self.sleep(first_wait)
        held_before = self.held_back()

        def spent(state: RetryCallState) -> bool:
            trying = state.seconds_since_start - (self.held_back() - held_before)
            return trying + (state.upcoming_sleep or 0.0) > budget.seconds - first_wait

        def announce(state: RetryCallState) -> None:
            error = _error_of(state)
            if on_retry is not None and state.next_action is not None and error is not None:
                on_retry(state.attempt_number + 1, state.next_action.sleep, error)

        retrying = Retrying(
            stop=stop_after_attempt(budget.attempts - 1) | spent,
            wait=lambda state: self.wait(state.attempt_number + 1, _error_of(state)),
            retry=retry_if_exception(self.transient),
            sleep=self.sleep,
            before_sleep=announce,
            reraise=True,
        )
        attempts = 1
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    before()
                    return call()
        except Exception as err:
            if self.transient(err):
                raise self._spent(what, err, attempts, started) from err
            raise
        raise AssertionError("unreachable: tenacity either returns the call's result or raises")  # pragma: no cover

    def _spent(self, what: str, last: BaseException, attempts: int, started: float) -> TransientError:
        seconds = time.monotonic() - started
        calls = "1 call" if attempts == 1 else f"{attempts} calls"
        return TransientError(f"{what} failed after {calls} in {seconds:.1f} s: {_describe(last)}")


def budget_of(value: Any) -> Optional[RetryBudget]:
    """A RetryBudget from a budget, a mapping of its fields (a job's plain data), or None.

    Raises:
        ValueError: naming what is wrong with it.
    """
    if value is None or isinstance(value, RetryBudget):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"attempts", "seconds", "initial", "maximum"})
        if unknown:
            raise ValueError(f"retry budget: unknown field {unknown[0]!r} (attempts, seconds, initial, maximum)")
        return RetryBudget(**value)
    raise ValueError(f"a retry budget is a RetryBudget or a mapping of its fields, not {value!r}")
