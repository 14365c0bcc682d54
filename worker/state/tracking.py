"""The fence without a round trip per hook: whether a job holds its lock, told by Redis's invalidations.

A shard checks before every hook that its job still holds the target lock. A GET per hook is a round trip
per operation, about half of a cheap shard. Redis's client-side caching gives the same answer without it:
after one GET on a connection with ``CLIENT TRACKING ON REDIRECT <id>``, Redis sends an invalidation
message to the connection ``<id>`` (subscribed to ``__redis__:invalidate``; both connections the watch's
own, in RESP2) the moment anyone writes, renews, deletes or expires the lock key. Until such a message
arrives, the value read is still the key's value, so a check only asks the subscriber's socket, without
waiting, whether anything came; when something did, it reads the lock again (and is tracked again).

It is as strict as a GET per hook: another job can take the lock only by writing its key, and Redis queues
that write's invalidation while it runs the write, to leave in the same turn of its event loop as the
writer's reply, so a check misses it only while it is in flight, the very window a GET's reply has. An
expired lock that nobody took reads as held until Redis removes it, where a GET would have seen it gone and
taken it back (nobody took it since): the same outcome. Anything unusual (a server without tracking, a
connection that breaks, Redis restarting) makes the watch fall back to a GET per check for the rest of its
life, never to trusting a stale answer.

Silence is not an answer: a connection that stops delivering without closing (a half-open socket behind a
dead NAT entry, a partition) never shows an end of file, and its invalidations would just never come. So a
value read is trusted for ``TRUST_FOR`` seconds at most, then read again on the tracked connection, whose
socket timeout ends a read that gets no answer: a broken path is found within ``TRUST_FOR`` plus the socket
timeout, and the watch then answers as a GET would (or raises, as a GET would).
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from redis import Redis
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = structlog.get_logger("shardsync.worker")

INVALIDATE_CHANNEL = "__redis__:invalidate"

TRUST_FOR = 2.0
"""Seconds a read lock value is trusted without news; then it is read again (one round trip per shard per
TRUST_FOR, against one per hook without tracking)."""


class LockWatch:
    """Whether one lock key holds one value, read once and then trusted until Redis says the key changed.

    Use it as a context manager (its two connections are closed at the end); ``holds()`` is the check.
    One thread uses a watch at a time (a shard's own); it is not shared.
    """

    def __init__(self, client: Redis, key: str, value: bytes, tracking: bool = True) -> None:
        self._wanted = tracking
        self._client = client
        self._key = key
        self._value = value
        self._subscriber: Any = None
        self._reader: Any = None
        self._trusted = False
        self._read_at = 0.0
        self.tracking = False
        """Whether checks are answered from invalidations (False: a GET per check)."""

    def __enter__(self) -> LockWatch:
        if not self._wanted:
            return self
        try:
            self._start()
        except Exception as err:  # noqa: BLE001 - any trouble setting up: the plain GET per check
            self._stop(f"tracking could not be set up ({type(err).__name__}: {err})")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._close()

    def _start(self) -> None:
        self._subscriber = self._connection()
        self._subscriber.connect()
        self._subscriber.send_command("CLIENT", "ID")
        subscriber_id = int(self._subscriber.read_response())
        self._subscriber.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
        self._subscriber.read_response()  # the subscription's confirmation
        self._reader = self._connection()
        self._reader.connect()
        self._reader.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", subscriber_id)
        reply = self._reader.read_response()
        if reply not in (b"OK", "OK", True):
            raise RuntimeError(f"CLIENT TRACKING answered {reply!r}")
        self.tracking = True

    def _connection(self) -> Any:
        """A connection of its own to the client's server (same address, database, credentials, TLS).

        In RESP2, where invalidations are plain messages of a subscribed connection, whatever the client speaks.
        """
        pool = self._client.connection_pool
        options = {**pool.connection_kwargs, "protocol": 2}
        for name in ("maint_notifications_pool_handler", "maint_notifications_config"):
            options.pop(name, None)  # RESP3 only
        return pool.connection_class(**options)

    def holds(self) -> bool:
        """Whether the key holds the value now (as a GET would tell).

        Raises:
            redis.exceptions.RedisError: if Redis cannot be read (as a GET would).
        """
        if self.tracking and self._trusted and time.monotonic() - self._read_at < TRUST_FOR and not self._changed():
            return True
        if not self.tracking:  # never set up, or it broke (the subscriber may have, just now)
            return self._client.get(self._key) == self._value
        if self._changed():  # drain what came before this read: it is about older values
            pass
        held = self._tracked_get() == self._value
        self._read_at = time.monotonic()
        self._trusted = held and self.tracking  # a lock another job holds is read again at every check
        return held

    def _tracked_get(self) -> Any:
        """The lock's value, read on the tracked connection (so tracked again); the plain GET if that breaks."""
        try:
            self._reader.send_command("GET", self._key)
            return self._reader.read_response()
        except RedisTimeoutError as err:  # silence: no answer within the socket timeout; a GET would wait too
            self._stop(f"the tracked connection went silent ({err})")
            raise
        except Exception as err:  # noqa: BLE001 - a broken reader: the plain GET, which raises if Redis is gone
            self._stop(f"the tracked connection failed ({type(err).__name__}: {err})")
            return self._client.get(self._key)

    def _changed(self) -> bool:
        """Whether any invalidation came since the last read (draining them); a broken subscriber counts."""
        subscriber = self._subscriber
        try:
            if not subscriber.can_read(timeout=0):
                return False
            while subscriber.can_read(timeout=0):
                subscriber.read_response()
        except Exception as err:  # noqa: BLE001 - EOF, reset, Redis restarted: never trust the old answer
            self._stop(f"the invalidation subscriber failed ({type(err).__name__}: {err})")
        return True

    def _stop(self, why: str) -> None:
        if self.tracking:
            logger.info("Lock checks fall back to a read per hook", lock=self._key, reason=why)
        self.tracking = False
        self._trusted = False
        self._close()

    def _close(self) -> None:
        for connection in (self._reader, self._subscriber):
            if connection is not None:
                try:
                    connection.disconnect()
                except Exception:  # noqa: BLE001, S110 - closing a broken connection
                    pass
        self._reader = self._subscriber = None
