"""A target's limits held by every holder at once (``worker.targets.limiter``), against the suite's real Redis.

Several holders stand for several workers (each its own limiter on its own client), their calls in threads:
never more calls in flight than the limit, never more started in a window than the rate; a slot whose holder
died (never freed) stops counting at its expiry. The in-process limiter (the embedded runner's) alike.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Iterator, List

import pytest
from redis import Redis

from core import keys
from core.limits import Limits
from worker.targets import limiter as limiter_module
from worker.targets.guard import guard_for, limits_key, limits_of
from worker.targets.limiter import MemoryLimiter, RedisLimiter, rate_item

URL = os.environ["SHARDSYNC_BROKER_URL"]


@pytest.fixture
def key() -> Iterator[str]:
    name = f"test-target-{uuid.uuid4().hex}"
    yield name
    client = Redis.from_url(URL)
    client.delete(keys.slots_key(name))
    for found in client.scan_iter(match=f"{keys.rate_prefix()}*{name}*"):
        client.delete(found)


def hammer(limiters: List, calls_each: int, seconds: float) -> List[float]:
    """Each limiter's calls from 3 threads; returns the most calls seen in flight at once, and the starts."""
    lock = threading.Lock()
    state = {"in_flight": 0, "most": 0}
    starts: List[float] = []

    def one(limiter) -> None:
        for _ in range(calls_each):
            with limiter.held():
                with lock:
                    state["in_flight"] += 1
                    state["most"] = max(state["most"], state["in_flight"])
                    starts.append(time.monotonic())
                time.sleep(seconds)
                with lock:
                    state["in_flight"] -= 1

    threads = [threading.Thread(target=one, args=(limiter,)) for limiter in limiters for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return [state["most"], *sorted(starts)]


def test_calls_in_flight_never_exceed_the_limit_over_every_holder(key: str) -> None:
    holders = [RedisLimiter(key, Limits(concurrency=3), Redis.from_url(URL)) for _ in range(3)]
    most, *_ = hammer(holders, calls_each=4, seconds=0.03)
    assert most == 3  # nine threads, three at a time
    assert sum(holder.throttled for holder in holders) > 0
    assert Redis.from_url(URL).zcard(keys.slots_key(key)) == 0  # every slot freed
    for holder in holders:
        holder.close()


def test_the_rate_holds_in_any_window_over_every_holder(key: str) -> None:
    holders = [RedisLimiter(key, Limits(rate=20), Redis.from_url(URL)) for _ in range(2)]
    _, *starts = hammer(holders, calls_each=5, seconds=0.0)
    assert len(starts) == 30
    window = [later - earlier for earlier, later in zip(starts, starts[20:], strict=False)]
    assert min(window) >= 0.95  # the 21st call after any call started a second later, or nearly (clock steps)


def test_a_slot_never_freed_counts_until_its_expiry(key: str, monkeypatch) -> None:
    monkeypatch.setattr(limiter_module, "SLOT_TTL", 0.3)
    dead = RedisLimiter(key, Limits(concurrency=1), Redis.from_url(URL))
    assert dead._try_slot("dead-worker", 1)  # taken by a worker that dies: never freed, never renewed
    dead._stop.set()
    alive = RedisLimiter(key, Limits(concurrency=1), Redis.from_url(URL))
    assert not alive._try_slot("alive", 1)
    started = time.monotonic()
    with alive.held():
        waited = time.monotonic() - started
    assert 0.1 <= waited < 5
    alive.close()


def test_the_embedded_runners_limiter_holds_the_same_limits() -> None:
    name = f"memory-{uuid.uuid4().hex}"
    most, *starts = hammer([MemoryLimiter(name, Limits(concurrency=2, rate=10))], calls_each=5, seconds=0.01)
    assert most == 2 and len(starts) == 15
    window = [later - earlier for earlier, later in zip(starts, starts[10:], strict=False)]
    assert window and min(window) >= 0.95


def test_rates_below_one_call_a_second_and_the_guard() -> None:
    assert (rate_item(50).amount, rate_item(50).multiples) == (50, 1)
    assert (rate_item(0.2).amount, rate_item(0.2).multiples) == (1, 5)
    guard = guard_for(f"memory-{uuid.uuid4().hex}", Limits(concurrency=1), None)
    assert guard.call(lambda: 42) == 42
    assert guard.figures() == {"throttled": 0, "waited": 0.0, "paused": 0.0, "lowest_limit": None, "transient": 0}


def test_limits_resolve_job_over_adapter_and_keys_default_to_the_target() -> None:
    from core import Adapter

    class Api(Adapter):
        limits = Limits(concurrency=8, rate=100.0)

    class Shared(Api):
        def limits_key(self) -> str:
            return "the-one-api"

    assert limits_of(None, Api()) == Limits(concurrency=8, rate=100.0)
    assert limits_of(Limits(concurrency=2), Api()) == Limits(concurrency=2, rate=100.0)
    assert limits_of(None, Adapter()) is None
    assert limits_key(Api(), "api.0123") == "api.0123" and limits_key(Shared(), "api.0123") == "the-one-api"
    with pytest.raises(ValueError, match="concurrency must be a whole number"):
        Limits(concurrency=0)
    with pytest.raises(ValueError, match="rate must be a number above 0"):
        Limits(rate=-1)
    assert Limits.of({"rate": 5}) == Limits(rate=5)
