"""Requests to sync one pair that come close together become one job; while it runs, the next ones one more.

A request with ``coalesce`` (seconds) names a pair: source, its kwargs, the target's identity, flags, dry run
(``JobSpec.pair``). The first request of a pair makes a job that starts ``coalesce`` seconds later and records
it in the pair's entry (``core.keys.coalesce_key``); every request until that job starts joins it instead of
making one, its scope joined into the entry's (``core.scope.union``). The job's start takes the entry: its
scope becomes the job's, and the entry closes. A request that finds it closed (the job runs) makes the next
job, which the next requests join again: never more than one job waiting per pair, never a pile-up. A job of
the pair that finds the target locked (by its predecessor) waits for it instead of being refused.

Every change to an entry is an optimistic transaction (WATCH/MULTI), so two producers never both make a job,
and a start never misses a request that joined just before it: one of them sees the other's write and retries.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Optional, TypeVar

from redis import Redis
from redis.exceptions import WatchError

from core import keys
from core.scope import Scope, union
from worker.state.codec import pack, unpack

T = TypeVar("T")

RESERVED = 120.0
"""Seconds a reserved entry whose job was never recorded counts as pending (a producer that died between)."""


def _scope_data(scope: Optional[Scope]) -> Any:
    return None if scope is None or scope.whole else scope.to_data()


def _pending(client: Redis, entry: Dict[bytes, bytes], now: float) -> Optional[str]:
    """The entry's job if it still waits to start and will: open, not ended, recorded (or just reserved)."""
    if entry.get(b"open") != b"1":
        return None
    job_id = (entry.get(b"job") or b"").decode()
    if not job_id or client.exists(keys.job_key(job_id, "report")):
        return None  # ended before it started (cancelled): the next request makes a new job
    if not client.exists(keys.job_key(job_id, "spec")) and now - float(entry.get(b"reserved") or 0) > RESERVED:
        return None  # reserved by a producer that never recorded it
    return job_id


def _watched(client: Redis, key: str, change: Callable[[Any, Dict[bytes, bytes]], T]) -> T:
    """``change(pipeline, entry)`` under WATCH of the entry, again until no one else changed it meanwhile."""
    while True:
        with client.pipeline() as pipe:
            try:
                pipe.watch(key)
                return change(pipe, pipe.hgetall(key))
            except WatchError:
                continue  # another request or a start changed the entry: look again


def join_or_reserve(client: Redis, pair: str, job_id: str, scope: Optional[Scope], ttl: int) -> Optional[str]:
    """Join the pair's waiting job, or reserve the pair's entry for a new job ``job_id``.

    Returns the waiting job's id (its scope now holds ``scope``), or None: the entry is reserved, and the caller
    records and sends ``job_id`` (or calls ``release``).
    """
    key = keys.coalesce_key(pair)

    def change(pipe: Any, entry: Dict[bytes, bytes]) -> Optional[str]:
        waiting = _pending(client, entry, time.time())
        pipe.multi()
        if waiting is not None:
            joined = union(Scope.from_data(unpack(entry.get(b"scope"))), scope)
            pipe.hset(key, "scope", pack(_scope_data(joined)))
            pipe.execute()
            return waiting
        pipe.delete(key)
        pipe.hset(key, mapping={"job": job_id, "scope": pack(_scope_data(scope)), "open": "1",
                                "reserved": repr(time.time())})  # fmt: skip
        pipe.expire(key, ttl)
        pipe.execute()
        return None

    return _watched(client, key, change)


def release(client: Redis, pair: str, job_id: str) -> None:
    """Give up a reservation whose job could not be sent (only if the entry is still that job's)."""
    key = keys.coalesce_key(pair)

    def change(pipe: Any, entry: Dict[bytes, bytes]) -> None:
        if entry.get(b"job") == job_id.encode():
            pipe.multi()
            pipe.delete(key)
            pipe.execute()

    _watched(client, key, change)


def take(client: Redis, pair: str, job_id: str, keep: Callable[[Any], None]) -> bool:
    """At the job's start: hand the pair's entry's joined scope to ``keep``, then close the entry; True if taken.

    ``keep`` (which writes it into the job's spec) runs before the entry closes, within the watch: a request
    that joins meanwhile makes the transaction fail, and ``keep`` runs again with it; a start that dies between
    the two leaves the entry open and its spec holding what joined so far, for the start delivered again. False
    when the entry is another job's or closed (a start delivered again after it closed it): the spec stands.
    """
    key = keys.coalesce_key(pair)

    def change(pipe: Any, entry: Dict[bytes, bytes]) -> bool:
        if (entry.get(b"job") or b"").decode() != job_id or entry.get(b"open") != b"1":
            return False
        keep(unpack(entry.get(b"scope")))
        pipe.multi()
        pipe.hset(key, "open", "0")
        pipe.execute()
        return True

    return _watched(client, key, change)


def rescope(client: Redis, job_id: str, spec: dict) -> None:
    """Keep the job's spec with the scope its requests joined into (its expiry kept)."""
    client.set(keys.job_key(job_id, "spec"), pack(spec), keepttl=True)


__all__ = ["join_or_reserve", "release", "rescope", "take"]
