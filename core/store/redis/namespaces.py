"""Namespace housekeeping for RedisStore: valid store ids, listing namespaces and removing them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List, Optional

from redis import Redis

from core import keys


@dataclass(frozen=True)
class NamespaceInfo:
    """A store namespace found in Redis (see ``list_namespaces``)."""

    store_id: str
    created: float
    last_used: float
    ttl: Optional[int]


_STORE_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")


def describe_client(client: Any) -> str:
    """Host and port (or socket path) of a client, for error messages; never the password."""
    try:
        kwargs = client.connection_pool.connection_kwargs
    except AttributeError:
        return "an unknown Redis server"
    if kwargs.get("path"):
        return f"unix socket {kwargs['path']} (db {kwargs.get('db', 0)})"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)} (db {kwargs.get('db', 0)})"


def check_store_id(store_id: str) -> str:
    """Return ``store_id`` if it is usable as a namespace (no ``:`` and no glob characters), else raise ValueError."""
    if not isinstance(store_id, str) or not _STORE_ID.fullmatch(store_id):
        raise ValueError(
            f"store_id {store_id!r} is not valid: use 1 to 200 letters, digits, '_', '.' or '-' "
            "(it becomes part of Redis key names and patterns)"
        )
    return store_id


def list_namespaces(client: Redis) -> List[NamespaceInfo]:
    """List the store namespaces present in a Redis database (an administrative scan, not a hot path).

    Only keys of exactly the form ``shardsync:{store_id}:meta`` holding a hash count: a model named ``meta``
    (``shardsync:{id}:obj:meta``) or anything else matching the pattern is passed over.
    """
    infos = []
    prefix = f"{keys.ROOT}:"
    for raw_key in client.scan_iter(match=keys.META_PATTERN, count=1000):
        key = raw_key.decode(errors="replace") if isinstance(raw_key, bytes) else raw_key
        store_id = key[len(prefix) : -len(":meta")]
        if not _STORE_ID.fullmatch(store_id) or client.type(raw_key) not in (b"hash", "hash"):
            continue
        meta = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in client.hgetall(raw_key).items()}
        infos.append(
            NamespaceInfo(
                store_id=store_id,
                created=_as_float(meta.get("created")),
                last_used=_as_float(meta.get("last_used")),
                ttl=int(_as_float(meta.get("ttl"))) or None,
            )
        )
    return sorted(infos, key=lambda info: info.last_used)


def _as_float(value: Optional[str]) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0


def clear_namespace(client: Redis, store_id: str) -> None:
    """Delete every key of one namespace by its exact name (its types set says which), in one call.

    Reads and deletes only: it works on a Redis at its ``maxmemory``, and costs no scan of the keyspace.
    """
    names = [name.decode() for name in client.smembers(keys.types_key(store_id))]
    doomed = [keys.types_key(store_id), keys.seq_key(store_id), keys.meta_key(store_id)]
    for modelname in names:
        doomed.append(keys.objects_key(store_id, modelname))
        doomed.append(keys.order_key(store_id, modelname))
    client.unlink(*doomed)


def expire_namespace(client: Redis, store_id: str, ttl: int) -> None:
    """Make every key of one namespace expire ``ttl`` seconds from now (a kept store that stays whole).

    A store's writes renew only the keys they touch; a store kept between jobs (an incremental pair's) is
    renewed whole at each use, so that no type of it expires before the others.
    """
    names = [name.decode() for name in client.smembers(keys.types_key(store_id))]
    pipe = client.pipeline(transaction=False)
    for key in (keys.types_key(store_id), keys.seq_key(store_id), keys.meta_key(store_id)):
        pipe.expire(key, ttl)
    for modelname in names:
        pipe.expire(keys.objects_key(store_id, modelname), ttl)
        pipe.expire(keys.order_key(store_id, modelname), ttl)
    pipe.execute()


def remove_namespace(client: Redis, store_id: str) -> int:
    """Delete every key of one namespace; returns the number of keys removed."""
    check_store_id(store_id)
    removed = 0
    batch: List[Any] = []
    for key in client.scan_iter(match=f"{keys.namespace(store_id)}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            removed += int(client.unlink(*batch))
            batch = []
    if batch:
        removed += int(client.unlink(*batch))
    return removed


def server_time(client: Redis) -> float:
    """Redis's clock, in epoch seconds: what every host agrees on, where their own clocks may differ."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1_000_000


def remove_stale_namespaces(client: Redis, older_than: float, now: Optional[float] = None) -> List[str]:
    """Delete the namespaces not written to for ``older_than`` seconds; returns their store ids.

    Judged by Redis's clock (the writes stamp ``last_used`` with it too), never by this host's.
    """
    limit = (server_time(client) if now is None else now) - older_than
    removed = []
    for info in list_namespaces(client):
        if info.last_used < limit:
            remove_namespace(client, info.store_id)
            removed.append(info.store_id)
    return removed
