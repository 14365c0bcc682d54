"""Incremental sync pairs: the stores and cursors a named pair keeps between its jobs, in Redis or in memory.

A pair's record says what it syncs (its identity: adapters, kwargs, flags, scope), whether its kept stores
hold the state its last successful job left (``warm``) or are being refilled by a full run (``loading``),
the change cursors of that job's loads, how many jobs ran since its last full reconcile and when that was.
Its two stores are ordinary store namespaces (``pair-{name}-{side}``) that no job end removes; they expire
``SHARDSYNC_PAIR_TTL`` seconds after the pair's last job, with the record.

Only the finish of a successful job moves a record to ``warm`` with new cursors; so a failed job, whatever it
wrote into the kept stores, leaves the next job to start from the last good cursors (merging changes again is
harmless: an upsert twice is one, a delete of what is gone is nothing).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Dict, List, Optional

from redis import Redis

from core import keys
from core.store import BaseStore
from core.store.local import LocalStore
from core.store.redis import RedisStore, clear_namespace, expire_namespace
from worker.settings import get_settings
from worker.state.codec import pack, unpack

SIDES = ("source", "target")


class PairKeeper(ABC):
    """Where pairs are kept: their records and their two stores."""

    @abstractmethod
    def record(self, name: str) -> Optional[Dict[str, Any]]:
        """The pair's record, or None (never run, forgotten, or expired)."""

    @abstractmethod
    def save(self, name: str, record: Dict[str, Any]) -> None:
        """Write the pair's record whole, and renew the pair (record and stores) for ``pair_ttl``."""

    @abstractmethod
    def store(self, name: str, side: str) -> BaseStore:
        """The pair's kept store of one side (created empty on first use)."""

    @abstractmethod
    def fresh_store(self, name: str, side: str) -> BaseStore:
        """The pair's kept store of one side, emptied (a full run loads it again)."""

    @abstractmethod
    def forget(self, name: str) -> bool:
        """Drop the pair's record and stores; whether it had a record."""


class RedisPairs(PairKeeper):
    """Pairs kept in the job-state Redis, shared by every worker."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    def record(self, name: str) -> Optional[Dict[str, Any]]:
        """The record's fields, unpacked."""
        raw = self.client.hgetall(keys.pair_key(name))
        return {field.decode(): unpack(value) for field, value in raw.items()} if raw else None

    def save(self, name: str, record: Dict[str, Any]) -> None:
        """One transaction for the record; then the stores' keys renewed."""
        ttl = get_settings().pair_ttl
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(keys.pair_key(name))
        pipe.hset(keys.pair_key(name), mapping={field: pack(value) for field, value in record.items()})
        pipe.expire(keys.pair_key(name), ttl)
        pipe.execute()
        for side in SIDES:
            expire_namespace(self.client, keys.pair_store_id(name, side), ttl)

    def store(self, name: str, side: str) -> RedisStore:
        """A RedisStore on the pair's namespace of that side (its writes renew it for ``pair_ttl``)."""
        return RedisStore(store_id=keys.pair_store_id(name, side), client=self.client, ttl=get_settings().pair_ttl)

    def fresh_store(self, name: str, side: str) -> RedisStore:
        """The side's store, emptied."""
        store = self.store(name, side)
        store.clear()
        return store

    def names(self) -> List[str]:
        """The pairs kept in this deployment's Redis (a scan of their records' keys)."""
        prefix = keys.pair_key("")
        found = {key.decode()[len(prefix) :] for key in self.client.scan_iter(match=f"{prefix}*", count=1000)}
        return sorted(found)

    def objects(self, name: str) -> Dict[str, int]:
        """How many objects each kept store holds (Redis's own counts: no scan)."""
        return {side: self.store(name, side).count() for side in SIDES}

    def forget(self, name: str) -> bool:
        """Delete the record, then the stores by their exact key names."""
        existed = bool(self.client.delete(keys.pair_key(name)))
        for side in SIDES:
            clear_namespace(self.client, keys.pair_store_id(name, side))
        return existed


class MemoryPairs(PairKeeper):
    """Pairs kept in this process's memory (the embedded runner): they live as long as the process."""

    def __init__(self) -> None:
        self._records: Dict[str, Dict[str, Any]] = {}
        self._stores: Dict[str, Dict[str, BaseStore]] = {}
        self._lock = threading.Lock()

    def record(self, name: str) -> Optional[Dict[str, Any]]:
        """A copy of the record (as Redis would give it: plain data)."""
        with self._lock:
            found = self._records.get(name)
            return unpack(pack(found)) if found is not None else None

    def save(self, name: str, record: Dict[str, Any]) -> None:
        """Keep a copy of the record."""
        with self._lock:
            self._records[name] = unpack(pack(record))

    def store(self, name: str, side: str) -> BaseStore:
        """The side's LocalStore."""
        with self._lock:
            return self._stores.setdefault(name, {}).setdefault(side, LocalStore())

    def fresh_store(self, name: str, side: str) -> BaseStore:
        """A new LocalStore for the side."""
        with self._lock:
            store = self._stores.setdefault(name, {})[side] = LocalStore()
            return store

    def forget(self, name: str) -> bool:
        """Drop the record and the stores."""
        with self._lock:
            self._stores.pop(name, None)
            return self._records.pop(name, None) is not None

    def names(self) -> List[str]:
        """The pairs this process keeps."""
        with self._lock:
            return sorted(self._records)


MEMORY_PAIRS = MemoryPairs()
"""The embedded runner's pairs: one process's jobs (``run_local`` called again) find them warm."""


_UNREAD = object()


class PairSteps(ABC):
    """The part of the job state a run of a pair adds: where its pair is kept, what its loads found."""

    @abstractmethod
    def spec_data(self) -> Optional[Dict[str, Any]]: ...  # noqa: D102 - JobState's

    def pair_name(self) -> Optional[str]:
        """The pair the job is a run of (its spec's ``pair``), or None; read once per state object."""
        cached = self.__dict__.get("_pair_name", _UNREAD)
        if cached is _UNREAD:
            try:
                data = self.spec_data() or {}
            except Exception:  # noqa: BLE001 - an unreadable spec names no pair (the job ends as invalid)
                data = {}
            cached = data.get("pair") if isinstance(data, dict) else None
            cached = cached if isinstance(cached, str) and cached else None
            self.__dict__["_pair_name"] = cached
        return cached  # type: ignore[no-any-return]

    def know_pair(self, name: Optional[str]) -> None:
        """Take the job's pair from a spec read and checked already (``pair_name`` then reads nothing)."""
        self.__dict__["_pair_name"] = name

    @abstractmethod
    def pairs(self) -> PairKeeper:
        """Where this job's pairs are kept."""

    @abstractmethod
    def save_pair_step(self, part: str, data: Dict[str, Any]) -> None:
        """Keep what one part of a pair's run found (``run``: full or changes; a side: its cursor, changes)."""

    @abstractmethod
    def pair_step(self, part: str) -> Optional[Dict[str, Any]]:
        """What ``save_pair_step`` kept for one part, or None (a tree of paths is big: each part is read alone)."""


class RedisPairSteps(PairSteps):
    """``PairSteps`` as a hash of the job (``self.client``, ``self.key`` from RedisJobState)."""

    client: Redis

    @abstractmethod
    def key(self, part: str) -> str: ...  # noqa: D102 - RedisJobState's

    def pairs(self) -> PairKeeper:
        """The pairs in the job-state Redis."""
        return RedisPairs(self.client)

    def save_pair_step(self, part: str, data: Dict[str, Any]) -> None:
        """One field of the job's ``pairrun`` hash (expiring with the job's records)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.key("pairrun"), part, pack(data))
        pipe.expire(self.key("pairrun"), get_settings().store_ttl)
        pipe.execute()

    def pair_step(self, part: str) -> Optional[Dict[str, Any]]:
        """One field of the ``pairrun`` hash, unpacked."""
        return unpack(self.client.hget(self.key("pairrun"), part))  # type: ignore[no-any-return]


class MemoryPairSteps(PairSteps):
    """``PairSteps`` in this process: the pairs in ``MEMORY_PAIRS``, what the run found in a dict."""

    def pairs(self) -> PairKeeper:
        """The process's pairs."""
        return MEMORY_PAIRS

    def save_pair_step(self, part: str, data: Dict[str, Any]) -> None:
        """Keep a copy."""
        self.__dict__.setdefault("_pair_steps", {})[part] = unpack(pack(data))

    def pair_step(self, part: str) -> Optional[Dict[str, Any]]:
        """A copy of what was kept for the part."""
        found = self.__dict__.get("_pair_steps", {}).get(part)
        return unpack(pack(found)) if found is not None else None  # type: ignore[no-any-return]
