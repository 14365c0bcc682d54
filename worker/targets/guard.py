"""The guard of one shard's calls to its target: held to its limits, paused, adapted, and stopped in an outage.

The shard's syncer passes every hook call (and batch hook call, and each call made again) through
``TargetGuard.call``. Before a call: the target's shared condition (``worker.targets.condition``) may ask to
wait (a Retry-After, an open circuit breaker) and sets the adaptive limit on calls in flight; then the limiter
(``worker.targets.limiter``) holds the call to that and to the declared limits. After it: a transient failure
halves the adaptive limit, may pause or open the breaker; a success closes it and grows the limit. A target
that stays unavailable longer than the outage budget fails the shard with ``TargetUnavailable``.

A guard with no declared limits reads the shared condition twice a second, not before every call, until the
condition is not clean (a failure anywhere): then before every call, as with declared limits.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Optional, TypeVar

from redis import Redis

from core.adapter import Adapter
from core.limits import Limits
from core.retry import is_transient, retry_after_of
from worker.errors import ShardsyncError
from worker.settings import get_settings
from worker.targets.condition import CEILING, Admission, Condition, condition_for
from worker.targets.limiter import Limiter, limiter_for
from worker.targets.timeout import time_limit

T = TypeVar("T")

LOOK_EVERY = 0.5
"""Seconds between two reads of a clean target's condition by a guard without declared limits."""

LATENCY_RISE = 3.0
"""How many times the fastest call the calls' average latency may grow to before the limit is lowered."""
LATENCY_SAMPLES = 20
"""Calls a guard times before it judges their latency (and again after each time it lowered the limit)."""
LATENCY_FLOOR = 0.01
"""Seconds below which a call's latency is noise (the client's own overhead), never a baseline."""

_CLEAN = Admission(wait=0.0, limit=CEILING)


class _ProbeFailed(Exception):
    """A probe of the half-open breaker failed transiently: the call waits for the next probe."""


class TargetUnavailable(ShardsyncError):
    """The target has not answered well for longer than the outage budget (SHARDSYNC_OUTAGE_BUDGET)."""


def limits_of(job_limits: Optional[Limits], target: Adapter) -> Optional[Limits]:
    """The limits a job's calls are held to: the job's own over its target adapter's; None when neither has."""
    declared = getattr(target, "limits", None)
    if job_limits is None:
        return declared
    return job_limits.over(declared)


def limits_key(target: Adapter, default: str) -> str:
    """The key the target's limits are counted under: its adapter's ``limits_key()``, else ``default``."""
    own = target.limits_key() if hasattr(target, "limits_key") else None
    return str(own) if own else default


class TargetGuard:
    """Holds each call of one shard to its target's limits and condition.

    Args:
        limiter: Holds calls to the declared and the adaptive limit.
        condition: The target's shared condition.
        also: Exception types that mean "try later" besides TransientError (the adapter's).
        outage_budget: Seconds the target may stay unavailable before the shard fails.
        sleep: How to wait (the shard's: it stops when its job stops).
        call_timeout: Most seconds one call may take (``worker.targets.timeout``; None: no limit).
    """

    def __init__(
        self,
        limiter: Limiter,
        condition: Condition,
        also: tuple = (),
        outage_budget: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        call_timeout: Optional[float] = None,
    ) -> None:
        self.limiter = limiter
        self.call_timeout = call_timeout
        self.condition = condition
        self.also = also
        self.outage_budget = outage_budget
        self.sleep = sleep
        declared = limiter.limits
        self.declared = declared.concurrency is not None or declared.rate is not None
        self.engaged = self.declared
        self._next_look = 0.0
        self._failed_since_success = False
        self.paused = 0.0
        """Seconds this guard's calls waited for the target's condition (a pause, the breaker)."""
        self.lowest_limit = condition.ceiling
        """The lowest adaptive limit this guard held calls to."""
        self.probes_failed = 0
        """Probes of a half-open breaker this guard made that failed (the target still down)."""
        self.transient = 0
        """Calls that met "try later" (a transient error, a call past its time limit)."""
        self.limit_now: Optional[int] = None
        """The adaptive limit the last call was held to (None: none below the declared one)."""
        self.unavailable_since: Optional[float] = None
        """While calls wait out an outage (the breaker open): since when the target has not answered well."""
        self.resume_at: Optional[float] = None
        """While calls wait for the target's condition: when the next may start (epoch seconds)."""
        self._fastest = float("inf")
        self._average: Optional[float] = None
        self._timed_calls = 0
        self.before: Callable[[], None] = lambda: None
        """Called before a call that had to wait is made (the shard's journal and fence)."""

    def call(self, call: Callable[[], T]) -> T:
        """Make one call once the target's condition and limits let it start; tell the condition how it went.

        A call that had to wait (for the condition, or for a slot) is preceded by ``before`` (the shard's
        journal and fence), so it is fenced as any hook: the lock may have been lost while it waited. A probe
        of a half-open breaker that fails opens it again and this call waits for the next probe: an operation
        held back by an outage spends none of its retries on it; only the outage budget ends the wait.
        """
        waited = False
        while True:
            admission = self._admission()
            if admission.wait > 0:
                self._wait(admission)
                waited = True
                continue
            self.resume_at = self.unavailable_since = None
            limit = None if admission.limit >= self.condition.ceiling else max(1, int(admission.limit))
            self.limit_now = limit
            if limit is not None:
                self.lowest_limit = min(self.lowest_limit, limit)
            if limit is None and not self.declared and not admission.probe and not self.engaged:
                if waited:
                    self.before()
                return self._made(call, admission)  # nothing to hold it to: the common case, at no cost
            with self.limiter.held(limit) as slot_wait:
                if slot_wait and not admission.probe:  # the target may have asked to wait meanwhile: look
                    admission = self._admission()  # again, holding the slot (a probe must go: it is awaited)
                    if admission.wait > 0:
                        continue  # the slot goes back; wait as asked
                if waited or slot_wait:
                    self.before()
                try:
                    result = self._made(call, admission)
                except _ProbeFailed:
                    waited = True  # the breaker opened again: wait for the next probe
                    continue
            if admission.probe or self._failed_since_success or (self.engaged and limit is not None):
                self.condition.succeeded(admission.probe)
                self._failed_since_success = False
            return result

    def _made(self, call: Callable[[], T], admission: Admission) -> T:
        """Make the call under its time limit; a transient failure told to the shared condition.

        A call past its time limit is a transient failure; a failed probe raises ``_ProbeFailed``.
        """
        started = time.monotonic()
        try:
            with time_limit(self.call_timeout, f"a call to {self.condition.key}"):
                result = call()
        except Exception as err:
            if not is_transient(err, self.also):
                if admission.probe:  # the target answered (a refusal is an answer): the breaker closes
                    self.condition.succeeded(True)
                raise
            self.transient += 1
            self.condition.failed(retry_after_of(err), admission.probe)
            self._failed_since_success = True
            self.engaged = True
            if not admission.probe:
                raise
            self.probes_failed += 1
            raise _ProbeFailed() from err
        self._timed(time.monotonic() - started)
        return result

    def _timed(self, seconds: float) -> None:
        """Judge a successful call's latency: an average grown to LATENCY_RISE times the fastest lowers the limit.

        A target that queues calls answers them ever slower before it fails them (502s, timeouts): lowering
        the calls in flight then, as Netflix's gradient limiters do, keeps it below the point where it fails.
        """
        self._timed_calls += 1
        self._fastest = min(self._fastest, max(seconds, LATENCY_FLOOR))
        average = seconds if self._average is None else self._average * 0.9 + seconds * 0.1
        self._average = average
        if self._timed_calls >= LATENCY_SAMPLES and average > LATENCY_RISE * self._fastest:
            self.condition.slowed()
            self.engaged = True
            self._timed_calls = 0
            self._average = None

    def _admission(self) -> Admission:
        now = time.monotonic()
        if not self.engaged and now < self._next_look:
            return _CLEAN
        admission = self.condition.admit()
        self._next_look = now + LOOK_EVERY
        clean = admission.wait <= 0 and not admission.probe and admission.limit >= self.condition.ceiling
        self.engaged = self.declared or not clean or admission.down_since is not None
        return admission

    def _wait(self, admission: Admission) -> None:
        """Wait as the condition asks (at most a second at a time); fail once the outage outlasts its budget."""
        down = admission.down_since
        if down is not None and time.time() - down > self.outage_budget:
            since = datetime.fromtimestamp(down, tz=timezone.utc).isoformat(timespec="seconds")
            raise TargetUnavailable(
                f"target {self.condition.key} unavailable since {since} (every call failed, the circuit breaker "
                f"open), longer than the outage budget of {self.outage_budget:g} s (SHARDSYNC_OUTAGE_BUDGET)"
            )
        self.resume_at = time.time() + admission.wait
        self.unavailable_since = down if admission.open else None
        seconds = min(admission.wait, 1.0)
        self.paused += seconds
        self.sleep(seconds)

    def figures(self) -> Dict[str, Any]:
        """What this shard's calls waited, for its result and the job's report.

        ``throttled`` calls and ``waited`` seconds for the limits, ``paused`` seconds for the target's
        condition (a pause, the breaker), the ``lowest_limit`` the adaptive limit fell to (None: never).
        """
        lowest = None if self.lowest_limit >= self.condition.ceiling else int(self.lowest_limit)
        return {
            "throttled": self.limiter.throttled,
            "waited": round(self.limiter.waited, 3),
            "paused": round(self.paused, 3),
            "lowest_limit": lowest,
            "transient": self.transient,
        }

    def counters(self) -> Dict[str, float]:
        """What this guard counted so far, for the job's live figures (``JobState.add_target_figures``)."""
        return {
            "transient": self.transient,
            "throttled": self.limiter.throttled,
            "waited": round(self.limiter.waited, 3),
            "paused": round(self.paused, 3),
        }

    def now(self) -> Dict[str, Any]:
        """How the target is doing as this guard last saw it: the limit, and whether calls wait and until when."""
        return {"limit": self.limit_now, "unavailable_since": self.unavailable_since, "resume_at": self.resume_at}

    def close(self) -> None:
        """Let the limiter go (its renewing thread)."""
        self.limiter.close()


def guard_for(
    key: str,
    limits: Optional[Limits],
    client: Optional[Redis],
    also: tuple = (),
    outage_budget: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
    call_timeout: Optional[float] = None,
) -> TargetGuard:
    """A guard for one shard's calls to the target under ``key``: shared through Redis, else in this process.

    ``call_timeout``: the runner's time limit of one call, unless the limits set their own (0 or None: none).
    """
    limits = limits or Limits()
    ceiling = float(limits.concurrency) if limits.concurrency else CEILING
    timeout = limits.call_timeout if limits.call_timeout is not None else (call_timeout or None)
    return TargetGuard(
        limiter_for(key, limits, client, max_hold=timeout),
        condition_for(key, ceiling, client),
        also,
        outage_budget,
        sleep,
        call_timeout=timeout,
    )


def runner_guard(
    key: str, limits: Optional[Limits], client: Optional[Redis], also: tuple, outage_budget: Optional[float]
) -> TargetGuard:
    """``guard_for`` with the runner's settings (what both runners' ``target_guard`` give).

    The job's outage budget over SHARDSYNC_OUTAGE_BUDGET, and SHARDSYNC_CALL_TIMEOUT under the limits' own
    call_timeout.
    """
    settings = get_settings()
    budget = settings.outage_budget if outage_budget is None else outage_budget
    return guard_for(key, limits, client, also, budget, call_timeout=settings.call_timeout)
