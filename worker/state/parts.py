"""The job state of the steps that come in parts: a side loaded by partitions, a diff computed in ranges.

Kept apart from the rest of the job state (``worker.state.base``) for size only: the same rules hold (every
write safe to repeat; a part's result is written after its data, so a result means the data is whole).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Set

from redis import Redis

from core.store import BaseStore
from core.store.redis import RedisStore
from worker.settings import get_settings
from worker.state.codec import pack, unpack


class JobParts(ABC):
    """The part of the ``JobState`` interface for partitioned loads and ranged diffs."""

    @abstractmethod
    def save_partitions(self, side: str, partitions: Sequence[Any], started: float) -> None:
        """Set the side's fresh store up for a partitioned load of ``partitions`` (plain-data keys)."""

    @abstractmethod
    def partitions(self, side: str) -> Optional[Dict[str, Any]]:
        """``{"keys": [...], "started": unix time}`` of the side's partitioned load, or None (not partitioned)."""

    @abstractmethod
    def partition_store(self, side: str, index: int) -> BaseStore:
        """The store one partition of a side loads into, emptied of what the partition wrote before."""

    @abstractmethod
    def record_partition(self, side: str, index: int, result: Dict[str, Any]) -> int:
        """Record a loaded partition; returns how many partitions of the side are loaded."""

    @abstractmethod
    def partitions_done(self, side: str) -> Set[int]:
        """Indexes of the side's loaded partitions (their results unread)."""

    @abstractmethod
    def partition_results(self, side: str) -> Dict[int, Dict[str, Any]]:
        """Results of the side's loaded partitions, by index."""

    distributed = True
    """Whether the job's steps may run in several processes (a diff in ranges); False for a memory state."""

    @abstractmethod
    def save_ranges(self, parts: Dict[str, Any]) -> None:
        """Keep the ranges of a distributed diff (``{"parts": [...], ...}``) and forget any earlier results."""

    @abstractmethod
    def ranges(self) -> Optional[Dict[str, Any]]:
        """The ranges of the job's distributed diff, or None before they are set."""

    @abstractmethod
    def save_range(self, index: int, records: Sequence[Any], result: Dict[str, Any]) -> int:
        """Keep one range's element records and result (records first: a result means they are whole).

        Returns how many ranges have a result.
        """

    @abstractmethod
    def ranges_done(self) -> Set[int]:
        """Indexes of the ranges diffed so far (their results, which hold operation counts, unread)."""

    @abstractmethod
    def range_results(self) -> Dict[int, Dict[str, Any]]:
        """The results of the ranges diffed so far, by index."""

    @abstractmethod
    def join_range(self, index: int, offset: int) -> int:
        """Copy one range's records into the kept diff from position ``offset``; returns how many."""

    @abstractmethod
    def start_diff(self) -> None:
        """Empty the kept diff before a join writes it again."""

    @abstractmethod
    def save_summary(self, summary: Dict[str, int]) -> None:
        """Keep the diff's summary (the join's, once every range's records are in)."""


class RedisParts(JobParts):
    """Partitions and diff ranges as keys of the job (``self.client``, ``self.key`` from RedisJobState)."""

    client: Redis
    job_id: str

    if TYPE_CHECKING:  # RedisJobState's

        def key(self, part: str) -> str: ...  # noqa: D102

        def open_store(self, side: str, lazy: bool = False, partition: Optional[int] = None) -> RedisStore: ...  # noqa: D102

    def save_partitions(self, side: str, partitions: Sequence[Any], started: float) -> None:
        """Set the side's (fresh) store up for the partitions, then keep their keys."""
        self.open_store(side).reserve_partitions(len(partitions))
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key(f"partloads:{side}"))
        pipe.set(self.key(f"partitions:{side}"), pack({"keys": list(partitions), "started": started}))
        pipe.expire(self.key(f"partitions:{side}"), get_settings().store_ttl)
        pipe.execute()

    def partitions(self, side: str) -> Optional[Dict[str, Any]]:
        """The side's partition keys and start time, or None."""
        return unpack(self.client.get(self.key(f"partitions:{side}")))  # type: ignore[no-any-return]

    def partition_store(self, side: str, index: int) -> RedisStore:
        """A store object writing partition ``index`` of the side, which it first empties."""
        store = self.open_store(side, partition=index)
        store.clear_partition()
        return store

    def record_partition(self, side: str, index: int, result: Dict[str, Any]) -> int:
        """Record a loaded partition; returns how many of the side's are loaded."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key(f"partloads:{side}"), str(index), pack(result))
        pipe.expire(self.key(f"partloads:{side}"), get_settings().store_ttl)
        pipe.hlen(self.key(f"partloads:{side}"))
        return int(pipe.execute()[2])

    def partitions_done(self, side: str) -> Set[int]:
        """Indexes of the side's loaded partitions (HKEYS)."""
        return {int(index) for index in self.client.hkeys(self.key(f"partloads:{side}"))}

    def partition_results(self, side: str) -> Dict[int, Dict[str, Any]]:
        """Results of the side's loaded partitions."""
        raw = self.client.hgetall(self.key(f"partloads:{side}"))
        return {int(index): unpack(value) for index, value in raw.items()}

    def save_ranges(self, parts: Dict[str, Any]) -> None:
        """Keep the diff's ranges; forget earlier results (and their records)."""
        count = len(parts.get("parts", []))
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key("diffparts-done"), *[self.key(f"diffpart:{index}") for index in range(count)])
        pipe.set(self.key("diffparts"), pack(parts), ex=get_settings().store_ttl)
        pipe.execute()

    def ranges(self) -> Optional[Dict[str, Any]]:
        """The diff's ranges, or None."""
        return unpack(self.client.get(self.key("diffparts")))  # type: ignore[no-any-return]

    def save_range(self, index: int, records: Sequence[Any], result: Dict[str, Any], batch: int = 1000) -> int:
        """Keep one range's records (a list, replaced as a whole) and its result, in one transaction.

        Two deliveries of a range (one whose claim expired under it) write the same thing; one transaction
        each keeps their records from interleaving.
        """
        key = self.key(f"diffpart:{index}")
        ttl = get_settings().store_ttl
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(key)
        for start in range(0, len(records), batch):
            pipe.rpush(key, *[pack(record) for record in records[start : start + batch]])
        pipe.expire(key, ttl)
        pipe.hset(self.key("diffparts-done"), str(index), pack(result))
        pipe.expire(self.key("diffparts-done"), ttl)
        pipe.hlen(self.key("diffparts-done"))
        return int(pipe.execute()[-1])

    def ranges_done(self) -> Set[int]:
        """Indexes of the ranges diffed so far (HKEYS)."""
        return {int(index) for index in self.client.hkeys(self.key("diffparts-done"))}

    def range_results(self) -> Dict[int, Dict[str, Any]]:
        """The ranges' results so far."""
        raw = self.client.hgetall(self.key("diffparts-done"))
        return {int(index): unpack(value) for index, value in raw.items()}

    def join_range(self, index: int, offset: int, batch: int = 1000) -> int:
        """Copy one range's records (as stored bytes, never decoded) into the kept diff."""
        key = self.key(f"diffpart:{index}")
        total = int(self.client.llen(key))
        for start in range(0, total, batch):
            chunk = self.client.lrange(key, start, start + batch - 1)
            mapping = {str(offset + start + position): raw for position, raw in enumerate(chunk)}
            if mapping:
                pipe = self.client.pipeline(transaction=False)
                pipe.hset(self.key("diff"), mapping=mapping)  # type: ignore[arg-type]
                pipe.expire(self.key("diff"), get_settings().store_ttl)
                pipe.execute()
        return total

    def start_diff(self) -> None:
        """Empty the kept diff."""
        self.client.delete(self.key("diff"))

    def save_summary(self, summary: Dict[str, int]) -> None:
        """Keep the diff's summary."""
        self.client.set(self.key("summary"), pack(summary), ex=get_settings().store_ttl)


class MemoryParts(JobParts):
    """Partitions and diff ranges in dicts (one process: the embedded runner)."""

    _diff: Dict[int, bytes]
    _summary: Optional[bytes]
    _partitions: Dict[str, bytes]
    _partition_results: Dict[str, Dict[int, bytes]]
    _ranges: Optional[bytes]
    _range_records: Dict[int, bytes]
    _range_results: Dict[int, bytes]

    if TYPE_CHECKING:  # MemoryJobState's

        def open_store(self, side: str, lazy: bool = False) -> BaseStore: ...  # noqa: D102

    def save_partitions(self, side: str, partitions: Sequence[Any], started: float) -> None:
        """Keep the side's partition keys (its store is the one ``fresh_store`` made)."""
        self._partitions[side] = pack({"keys": list(partitions), "started": started})
        self._partition_results[side] = {}

    def partitions(self, side: str) -> Optional[Dict[str, Any]]:
        """The side's partition keys and start time, or None."""
        raw = self._partitions.get(side)
        return None if raw is None else unpack(raw)  # type: ignore[no-any-return]

    def partition_store(self, side: str, index: int) -> BaseStore:
        """The side's store: this process loads one partition after another into it, in their order."""
        return self.open_store(side)

    def record_partition(self, side: str, index: int, result: Dict[str, Any]) -> int:
        """Record a loaded partition; returns how many of the side's are loaded."""
        results = self._partition_results.setdefault(side, {})
        results[index] = pack(result)
        return len(results)

    def partitions_done(self, side: str) -> Set[int]:
        """Indexes of the side's loaded partitions."""
        return set(self._partition_results.get(side, {}))

    def partition_results(self, side: str) -> Dict[int, Dict[str, Any]]:
        """Results of the side's loaded partitions."""
        return {index: unpack(raw) for index, raw in self._partition_results.get(side, {}).items()}

    def save_ranges(self, parts: Dict[str, Any]) -> None:
        """Keep the diff's ranges; forget earlier results."""
        self._ranges = pack(parts)
        self._range_records = {}
        self._range_results = {}

    def ranges(self) -> Optional[Dict[str, Any]]:
        """The diff's ranges, or None."""
        raw = self._ranges
        return None if raw is None else unpack(raw)  # type: ignore[no-any-return]

    def save_range(self, index: int, records: Sequence[Any], result: Dict[str, Any]) -> int:
        """Keep one range's records and result."""
        self._range_records[index] = pack(list(records))
        self._range_results[index] = pack(result)
        return len(self._range_results)

    def ranges_done(self) -> Set[int]:
        """Indexes of the ranges diffed so far."""
        return set(self._range_results)

    def range_results(self) -> Dict[int, Dict[str, Any]]:
        """The ranges' results so far."""
        return {index: unpack(raw) for index, raw in self._range_results.items()}

    def join_range(self, index: int, offset: int) -> int:
        """Copy one range's records into the kept diff."""
        records = unpack(self._range_records[index])
        for position, record in enumerate(records, start=offset):
            self._diff[position] = pack(record)
        return len(records)

    def start_diff(self) -> None:
        """Empty the kept diff."""
        self._diff = {}

    def save_summary(self, summary: Dict[str, int]) -> None:
        """Keep the diff's summary."""
        self._summary = pack(summary)
