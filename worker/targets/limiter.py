"""A target's limits held by every worker at once: calls in flight (slots) and calls per second (a window).

Slots live in Redis, one sorted-set member per call in flight, each with an expiry (Redis's own clock): a
worker that dies mid-call leaks its slot only until the expiry, and a holder renews its slots while its calls
last. The rate is a moving window over Redis (the ``limits`` library: every call started in the last second,
or in the last 1/rate seconds below one call per second, counted wherever it was made). The embedded runner
holds the same limits in its process (``MemoryLimiter``). A waiting caller polls, a few times per second at
most, and counts what it waited.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Optional, Set

import limits
from limits.storage import MemoryStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis

from core import keys
from core.limits import Limits

SLOT_TTL = 60.0
"""Seconds a slot lives without renewal (a call's holder renews it every third of that)."""

POLL = 0.02
"""Seconds between two tries of a caller waiting for a slot (doubled up to 0.25 s while it waits)."""

# KEYS[1]: the slots (zset member -> expiry, Redis time). ARGV: token, limit, ttl in seconds.
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], t + tonumber(ARGV[3]), ARGV[1])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) * 2)
  return 1
end
return 0
"""
_RENEW = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
for i = 1, #ARGV - 1 do
  redis.call('ZADD', KEYS[1], 'XX', t + tonumber(ARGV[#ARGV]), ARGV[i])
end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[#ARGV])) * 2)
return 0
"""


def _until(taken: Callable[[], bool]) -> None:
    """Try until ``taken()`` says yes, waiting POLL seconds after the first no, doubling up to 0.25 s."""
    pause = POLL
    while not taken():
        time.sleep(pause)
        pause = min(0.25, pause * 2)


def rate_item(rate: float) -> limits.RateLimitItem:
    """A calls-per-second rate as a window: ``rate`` calls per second, or one call per 1/rate s below one."""
    if rate >= 1:
        return limits.RateLimitItemPerSecond(max(1, math.floor(rate)), 1)
    return limits.RateLimitItemPerSecond(1, max(1, math.ceil(1 / rate)))


class Limiter:
    """Holds one target's limits for the calls of this process (a shard, a thread): take, make the call, free."""

    def __init__(self, key: str, limits_: Limits, max_hold: Optional[float] = None) -> None:
        self.key = key
        self.limits = limits_
        self.max_hold = max_hold
        """Seconds a slot is renewed at most (a call's time limit): a call that outlives it (one no pool could
        interrupt) gives its slot back SLOT_TTL later instead of holding a share of the target for ever."""
        self.waited = 0.0
        """Seconds this holder's calls waited for a slot or for the rate."""
        self.throttled = 0
        """Calls that had to wait."""
        self._rate = rate_item(limits_.rate) if limits_.rate else None

    @contextmanager
    def held(self, concurrency: Optional[int] = None) -> Iterator[float]:
        """Hold a slot (at most ``concurrency``, else the declared one) and a place in the rate for one call.

        Args:
            concurrency: A lower limit than the declared one for now (the adaptive limit).

        Yields:
            The seconds the call waited for them (0.0: none).
        """
        started = time.monotonic()
        limit = min((x for x in (concurrency, self.limits.concurrency) if x), default=None)
        token = self._take_slot(limit) if limit else None
        try:
            self._take_rate()
            waited = time.monotonic() - started
            if waited > 0.001:
                self.waited += waited
                self.throttled += 1
            yield waited if waited > 0.001 else 0.0
        finally:
            if token is not None:
                self._free_slot(token)

    def close(self) -> None:
        """Stop renewing slots (none is held between calls)."""

    def _take_slot(self, limit: int) -> str:
        token = uuid.uuid4().hex
        _until(lambda: self._try_slot(token, limit))
        return token

    def _take_rate(self) -> None:
        if self._rate is not None:
            _until(self._try_rate)

    def _try_slot(self, token: str, limit: int) -> bool:
        raise NotImplementedError

    def _free_slot(self, token: str) -> None:
        raise NotImplementedError

    def _try_rate(self) -> bool:
        raise NotImplementedError


_storages: Dict[int, RedisStorage] = {}


def _rate_storage(client: Redis) -> RedisStorage:
    """One ``limits`` storage per Redis client (per process), its keys under the project's prefix."""
    found = _storages.get(id(client))
    if found is None:
        found = _storages[id(client)] = RedisStorage(
            "redis://", connection_pool=client.connection_pool, key_prefix=keys.rate_prefix()
        )
    return found


class RedisLimiter(Limiter):
    """The limits of a target shared by every worker, through the job-state Redis."""

    def __init__(self, key: str, limits_: Limits, client: Redis, max_hold: Optional[float] = None) -> None:
        super().__init__(key, limits_, max_hold)
        self.client = client
        self._slots = keys.slots_key(key)
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._window = MovingWindowRateLimiter(_rate_storage(client)) if self._rate is not None else None
        self._held: Dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: Optional[threading.Thread] = None

    def _try_slot(self, token: str, limit: int) -> bool:
        if not self._take(keys=[self._slots], args=[token, limit, SLOT_TTL]):
            return False
        with self._lock:
            self._held[token] = time.monotonic()
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_held, name="shardsync-slots-renew", daemon=True)
                self._renewer.start()
        return True

    def _free_slot(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)
        try:
            self.client.zrem(self._slots, token)
        except Exception:  # noqa: BLE001, S110 - a slot not freed expires by itself (SLOT_TTL)
            pass

    def _try_rate(self) -> bool:
        assert self._window is not None and self._rate is not None
        return bool(self._window.hit(self._rate, self.key))

    def _renew_held(self) -> None:
        while not self._stop.wait(SLOT_TTL / 3):
            oldest = time.monotonic() - self.max_hold if self.max_hold else float("-inf")
            with self._lock:
                held = [token for token, taken in self._held.items() if taken >= oldest]
            if held:
                try:
                    self._renew(keys=[self._slots], args=[*held, SLOT_TTL])
                except Exception:  # noqa: BLE001, S112 - the next renewal tries again
                    continue

    def close(self) -> None:
        """Stop the renewing thread (its slots are freed by their calls, or expire)."""
        self._stop.set()


_memory_slots: Dict[str, Set[str]] = {}
_memory_lock = threading.Lock()
_memory_rate = MovingWindowRateLimiter(MemoryStorage())


class MemoryLimiter(Limiter):
    """The limits of a target in this process (the embedded runner): slots in a set, the rate in memory."""

    def _try_slot(self, token: str, limit: int) -> bool:
        with _memory_lock:
            held = _memory_slots.setdefault(self.key, set())
            if len(held) >= limit:
                return False
            held.add(token)
            return True

    def _free_slot(self, token: str) -> None:
        with _memory_lock:
            _memory_slots.get(self.key, set()).discard(token)

    def _try_rate(self) -> bool:
        assert self._rate is not None
        return bool(_memory_rate.hit(self._rate, self.key))


def limiter_for(key: str, limits_: Limits, client: Optional[Any], max_hold: Optional[float] = None) -> Limiter:
    """The limiter of a target: shared through Redis when ``client`` is given, else in this process."""
    if client is not None:
        return RedisLimiter(key, limits_, client, max_hold)
    return MemoryLimiter(key, limits_, max_hold)
