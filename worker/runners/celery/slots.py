"""The live workers' pool slots: each worker that takes shards says how many it runs, the planner reads the sum.

A job that does not fix its shard size gets shards sized for the slots that are live when it is planned
(``core.planner.balanced_shard_size``): several shards per slot, so that no slot idles through a half-empty
last round. Each worker's main process writes ``{slots, expires}`` under its hostname every
``RENEW_EVERY`` seconds; an entry past its expiry (a worker that died without saying goodbye) is not counted
and is dropped by the next reader.
"""

from __future__ import annotations

import threading
from typing import Optional

import msgpack
import structlog
from redis import Redis

from core import keys
from core.store.redis import server_time
from worker.connection import redis_client
from worker.errors import describe

logger = structlog.get_logger("shardsync.worker")

RENEW_EVERY = 10.0
"""Seconds between two renewals of a worker's entry."""

LIVES = 3 * RENEW_EVERY
"""Seconds an entry counts after its last renewal."""


def announce(client: Redis, hostname: str, slots: int, now: Optional[float] = None) -> None:
    """Say that ``hostname`` runs ``slots`` pool slots taking shards, for the next LIVES seconds."""
    expires = (server_time(client) if now is None else now) + LIVES  # Redis's clock: readers judge by it
    client.hset(keys.SLOTS, hostname, msgpack.packb({"slots": int(slots), "expires": expires}))


def withdraw(client: Redis, hostname: str) -> None:
    """A worker that stops takes its slots out at once."""
    client.hdel(keys.SLOTS, hostname)


def live_slots(client: Redis, now: Optional[float] = None) -> int:
    """The pool slots of the workers that announced themselves within LIVES seconds (0: none known)."""
    now = server_time(client) if now is None else now
    total = 0
    stale = []
    for hostname, raw in client.hgetall(keys.SLOTS).items():
        try:
            entry = msgpack.unpackb(raw)
            alive = float(entry["expires"]) > now
            slots = int(entry["slots"])
        except Exception:  # noqa: BLE001 - an entry no reader can use is dropped like a stale one
            alive, slots = False, 0
        if alive and slots > 0:
            total += slots
        else:
            stale.append(hostname)
    if stale:
        client.hdel(keys.SLOTS, *stale)
    return total


class SlotsBeacon(threading.Thread):
    """The thread of a worker's main process that keeps its slots announced."""

    def __init__(self, hostname: str, slots: int) -> None:
        super().__init__(name="shardsync-slots", daemon=True)
        self.hostname = hostname
        self.slots = slots
        self.stopped = threading.Event()

    def run(self) -> None:
        """Announce now, then once per RENEW_EVERY until stopped; withdraw at the end."""
        while True:
            try:
                announce(redis_client(), self.hostname, self.slots)
            except Exception as err:  # noqa: BLE001 - the next renewal tries again
                logger.warning("Worker slots not announced", error=describe(err))
            if self.stopped.wait(RENEW_EVERY):
                break
        try:
            withdraw(redis_client(), self.hostname)
        except Exception as err:  # noqa: BLE001 - the entry expires by itself
            logger.warning("Worker slots not withdrawn", error=describe(err))
