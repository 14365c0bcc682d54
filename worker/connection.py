"""The Redis connection of job state, and the error a caller sees when Redis or the broker is unreachable.

``safe_url`` (``worker.redaction``) is re-exported here: URLs are shown only through it.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type
from urllib.parse import unquote, urlsplit

from kombu.exceptions import OperationalError
from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from worker.errors import InvalidSetting, RedisUnavailable
from worker.redaction import safe_url, without_secrets
from worker.settings import get_settings

_clients: Dict[int, Redis] = {}

UNREACHABLE: Tuple[Type[BaseException], ...] = (RedisConnectionError, RedisTimeoutError, OperationalError)
"""The errors that mean Redis (or the broker) does not answer for now, rather than a fault of the job: what
a step is run again after (``worker.runners.celery.tasks``), and what a caller is told as RedisUnavailable."""


def unreachable(err: BaseException) -> bool:
    """Whether an error is (or was caused by) Redis or the broker not answering.

    Looks through the chain of causes: the stores wrap Redis errors in ObjectStoreException.
    """
    seen: Optional[BaseException] = err
    depth = 0
    while seen is not None and depth < 10:
        if isinstance(seen, UNREACHABLE):
            return True
        seen = seen.__cause__ or seen.__context__
        depth += 1
    return False


def out_of_memory(err: BaseException) -> bool:
    """Whether an error is (or was caused by) Redis refusing a write at its ``maxmemory`` (noeviction)."""
    seen: Optional[BaseException] = err
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, OutOfMemoryError) or "command not allowed when used memory" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def redis_client() -> Redis:
    """The client of the job-state Redis for this process (one per process: forked workers make their own)."""
    pid = os.getpid()
    client = _clients.get(pid)
    if client is None:
        settings = get_settings()
        client = _clients[pid] = connect(settings.redis_url, **connection_options(settings.redis_socket_timeout))
    return client


SENTINEL_SCHEME = "sentinel://"


@dataclass(frozen=True)
class SentinelUrl:
    """A ``sentinel://`` URL, in kombu's and Celery's form: the sentinels, then the database and options.

    ``sentinel://[[user]:password@]host:port[;sentinel://[[user]:password@]host:port...][/db]``: the password
    (and user) are the primary's, the database its number; the primary's name is SHARDSYNC_SENTINEL_MASTER.
    """

    sentinels: List[Tuple[str, int]]
    db: int
    username: Optional[str]
    password: Optional[str]

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        """Raises InvalidSetting naming what is wrong (never showing the password)."""
        sentinels: List[Tuple[str, int]] = []
        db, username, password = 0, None, None
        for part in url.split(";"):
            part = part.strip()
            if not part.startswith(SENTINEL_SCHEME):
                raise InvalidSetting(f"{safe_url(url)}: every part of a Sentinel URL starts with {SENTINEL_SCHEME}")
            parsed = urlsplit(part)
            if not parsed.hostname:
                raise InvalidSetting(f"{safe_url(url)}: a Sentinel without a host")
            try:
                port = parsed.port or 26379
            except ValueError:
                raise InvalidSetting(f"{safe_url(url)}: a Sentinel port is not a number") from None
            sentinels.append((parsed.hostname, port))
            username = unquote(parsed.username) if parsed.username else username
            password = unquote(parsed.password) if parsed.password else password
            path = parsed.path.strip("/")
            if path:
                if not path.isdigit():
                    raise InvalidSetting(f"{safe_url(url)}: the database must be a number, not {path!r}")
                db = int(path)
        return cls(sentinels, db, username, password)


def connect(url: str, **options: Any) -> Redis:
    """A client for any Redis URL the project takes, Sentinel's included.

    ``redis://``, ``rediss://`` (TLS), ``unix://`` or ``sentinel://`` (the primary of SHARDSYNC_SENTINEL_MASTER,
    found again after a failover). TLS options ride in the URL's query, as redis-py, kombu and Celery read them
    (``rediss://host:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/redis-ca.pem``).
    """
    if not url.startswith(SENTINEL_SCHEME):
        return Redis.from_url(url, **options)
    parsed = SentinelUrl.parse(url)
    sentinel_options = {k: v for k, v in options.items() if k.startswith("socket_")}
    sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_options, **sentinel_options)
    return sentinel.master_for(
        get_settings().sentinel_master,
        redis_class=Redis,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **options,
    )


def keepalive_options() -> Dict[int, int]:
    """TCP keepalive: first probe after 10 s idle, then every 5 s, 3 unanswered end it (where the OS has them)."""
    options: Dict[int, int] = {}
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options[getattr(socket, name)] = value
    return options


def connection_options(timeout: float) -> Dict[str, Any]:
    """What every Redis connection of the project is opened with: timeouts and keepalive, never a silent wait."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(10.0, timeout),
        "socket_keepalive": True,
        "socket_keepalive_options": keepalive_options(),
        "health_check_interval": 30,
        # redis-py retries a timed-out command 10 times by default: with the timeout above, minutes blocked on
        # a silent connection. Once, after a short pause (a blip), then the caller's error handling decides.
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.1), 1),
    }


@contextmanager
def reaching_redis(doing: str) -> Iterator[None]:
    """Turn Redis and broker connection errors into RedisUnavailable, naming the URL and what was being done."""
    try:
        yield
    except (*UNREACHABLE, ConnectionError, InvalidResponse) as err:
        # Only calls to Redis and the broker run in the block, so a socket's own ConnectionError is theirs too;
        # InvalidResponse: something else answers at that address (a web server, say), not Redis.
        settings = get_settings()
        raise RedisUnavailable(
            f"cannot {doing}: Redis at {safe_url(settings.redis_url)} (SHARDSYNC_STORE_URL, else "
            f"SHARDSYNC_BROKER_URL; broker {safe_url(settings.broker_url)}) does not answer: "
            f"{without_secrets(str(err), settings.redis_url, settings.broker_url)}"
        ) from None


EVICTING = ("allkeys-", "volatile-")
"""Eviction policies that can drop job state: every job key carries an expiry, so volatile-* ones too."""


def redis_config_problems(url: str, what: str) -> Tuple[List[str], List[str]]:
    """What is wrong with a Redis a worker uses, read from INFO: (refused, warned) sentences.

    An evicting ``maxmemory-policy`` can drop queue messages, locks, journal entries and loaded objects (the
    crash contract cannot hold: refused); no persistence loses every running job on a restart (warned).
    Nothing is said of a Redis that does not answer: the worker waits for it as for any outage.
    """
    client = connect(url, **connection_options(5.0))
    try:
        memory = client.info("memory")
        persistence = client.info("persistence")
    except (*UNREACHABLE, InvalidResponse, OSError):
        return [], []
    finally:
        client.close()
    refused, warned = [], []
    policy = str(memory.get("maxmemory_policy", "noeviction"))
    where = safe_url(url)
    if policy.startswith(EVICTING):
        refused.append(
            f"the {what} Redis at {where} has maxmemory-policy {policy}: it may evict job state (every job key "
            f"expires), so jobs could be lost or hooks run twice. Set maxmemory-policy noeviction (deploy/README.md, "
            f"'Redis persistence'), or SHARDSYNC_REDIS_EVICTION=warn to run anyway"
        )
    if not int(persistence.get("aof_enabled", 0)):
        warned.append(
            f"the {what} Redis at {where} has no append-only file (appendonly no): a restart loses every running "
            f"job (they end 'job state lost'); production should set appendonly yes, appendfsync always"
        )
    return refused, warned


__all__ = [
    "UNREACHABLE",
    "SentinelUrl",
    "connect",
    "connection_options",
    "out_of_memory",
    "reaching_redis",
    "redis_client",
    "safe_url",
    "unreachable",
]
