"""A target's shared condition and the guard of a shard's calls (``worker.targets``), on the real Redis.

Two guards on two clients stand for two workers: a 429's Retry-After pauses both; transient failures halve the
adaptive limit and successes grow it back; failures in a row over the window open the circuit breaker, whose
cool-down holds every call back until a probe succeeds; an outage longer than the budget fails the shard.
The in-process condition (the embedded runner's) follows the same rules.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Iterator, List

import pytest
from redis import Redis

from core import TransientError, keys
from core.limits import Limits
from worker.targets import condition as condition_module
from worker.targets.guard import TargetUnavailable, guard_for

URL = os.environ["SHARDSYNC_BROKER_URL"]


@pytest.fixture(params=["redis", "memory"])
def clients(request) -> Iterator[List]:
    """Two holders' clients: two Redis clients (two workers), or None twice (one process)."""
    name = f"test-target-{uuid.uuid4().hex}"
    made = [Redis.from_url(URL), Redis.from_url(URL)] if request.param == "redis" else [None, None]
    yield name, made
    client = Redis.from_url(URL)
    client.delete(keys.target_key(name), keys.slots_key(name))


@pytest.fixture(autouse=True)
def quick(monkeypatch) -> None:
    """The breaker's windows in tenths of a second, so that the tests take a second, not minutes."""
    monkeypatch.setattr(condition_module, "WINDOW", 0.05)
    monkeypatch.setattr(condition_module, "COOLDOWN", 0.2)
    monkeypatch.setattr(condition_module, "MAX_COOLDOWN", 0.4)
    monkeypatch.setattr(condition_module, "DECREASE_EVERY", 0.0)


def fail(guard, error: Exception) -> None:
    def call():
        raise error

    with pytest.raises(type(error)):
        guard.call(call)


def test_a_retry_after_pauses_every_worker(clients) -> None:
    name, (one, two) = clients
    first, second = guard_for(name, None, one), guard_for(name, None, two)
    fail(first, TransientError("429", retry_after=0.5))
    started = time.monotonic()
    assert second.call(lambda: "ok") == "ok"  # the other worker's next call waited for the pause
    assert time.monotonic() - started >= 0.4 and second.paused >= 0.4


def test_failures_halve_the_limit_and_successes_grow_it(clients) -> None:
    name, (one, two) = clients
    first, second = guard_for(name, Limits(concurrency=8), one), guard_for(name, Limits(concurrency=8), two)
    for _ in range(2):
        fail(first, TransientError("503"))
    assert second.condition.admit().limit == 2.0  # 8 -> 4 -> 2, whoever failed
    for _ in range(6):
        second.call(lambda: None)
    grown = second.condition.admit().limit
    assert 3.0 < grown < 8.0  # additive: about one per limit's worth of successes
    assert second.figures()["lowest_limit"] == 2


def test_the_breaker_opens_holds_calls_back_and_closes_on_a_probe(clients) -> None:
    name, (one, two) = clients
    first, second = guard_for(name, None, one), guard_for(name, None, two)
    for _ in range(condition_module.THRESHOLD):
        fail(first, TransientError("503"))
        time.sleep(0.02)
    admission = second.condition.admit()
    assert admission.open and admission.wait > 0 and admission.down_since is not None
    calls: List[float] = []
    started = time.monotonic()
    second.call(lambda: calls.append(time.monotonic()))  # waits the cool-down, then probes: the target answers
    assert calls[0] - started >= 0.1
    after = first.condition.admit()
    assert not after.open and after.wait == 0 and after.down_since is None


def test_a_failed_probe_opens_it_again_for_longer_and_the_call_waits_for_the_next(clients) -> None:
    name, (one, _) = clients
    guard = guard_for(name, None, one)
    for _ in range(condition_module.THRESHOLD):
        fail(guard, TransientError("503"))
        time.sleep(0.02)
    answers = [TransientError("still down"), TransientError("still down"), None]
    befores: List[float] = []
    guard.before = lambda: befores.append(time.monotonic())

    def call():
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return "back"

    started = time.monotonic()
    assert guard.call(call) == "back"  # two probes failed (no error for the operation), the third answered
    assert guard.probes_failed == 2 and len(befores) == 3  # each of the 3 probes waited first: fenced
    assert time.monotonic() - started >= 0.2 + 0.4  # the cool-downs, doubled: 0.2, then 0.4
    assert not guard.condition.admit().open


def test_an_outage_longer_than_its_budget_fails_the_calls(clients) -> None:
    name, (one, two) = clients
    guard = guard_for(name, None, one, outage_budget=0.3)
    for _ in range(condition_module.THRESHOLD):
        fail(guard, TransientError("503"))
        time.sleep(0.02)
    waiting = guard_for(name, None, two, outage_budget=0.3)
    deadline = time.monotonic() + 10
    with pytest.raises(TargetUnavailable, match="longer than the outage budget of 0.3 s"):
        while time.monotonic() < deadline:  # probes keep failing: the target stays down
            try:
                waiting.call(lambda: (_ for _ in ()).throw(TransientError("503")))
            except TransientError:
                continue
    assert waiting.paused > 0


def test_other_errors_leave_the_condition_alone(clients) -> None:
    name, (one, _) = clients
    guard = guard_for(name, None, one)
    fail(guard, ValueError("a bug, not the target"))
    admission = guard.condition.admit()
    assert admission.wait == 0 and admission.down_since is None and not admission.open


def test_a_call_that_waited_is_fenced_again_before_it_is_made(clients) -> None:
    """The lock may be lost while a call waits for its target: the shard's fence runs again before it."""
    name, (one, two) = clients
    fail(guard_for(name, None, one), TransientError("429", retry_after=0.2))
    waiting = guard_for(name, None, two)
    made: List[str] = []

    def lost() -> None:
        raise RuntimeError("the job lost its lock while the call waited")

    waiting.before = lost
    with pytest.raises(RuntimeError, match="lost its lock"):
        waiting.call(lambda: made.append("called"))
    assert made == []  # never made


def test_calls_grown_slow_lower_the_limit_without_a_failure() -> None:
    """A target that queues calls answers ever slower before it fails: the limit comes down on latency alone."""
    guard = guard_for(f"memory-{uuid.uuid4().hex}", Limits(concurrency=16), None)
    for _ in range(25):
        guard.call(lambda: time.sleep(0.01))
    assert guard.condition.admit().limit == 16  # steady latency: no change
    for _ in range(25):
        guard.call(lambda: time.sleep(0.06))
    assert guard.condition.admit().limit <= 8 and guard.transient == 0
