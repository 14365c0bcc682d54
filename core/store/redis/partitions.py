"""Parts of one RedisStore namespace: partitioned loads (writes) and ranges of the order (reads).

Partitioned loads: each partition's objects in a range of the order.

Several processes load partitions of one side at once (``Adapter.partitions``); the insertion order of a
namespace is a sorted set of positions, so partition ``i`` writes positions ``i * PARTITION_STRIDE + 1``
on, from a counter of its own, and the namespace reads back in partition order whichever finished first.
The range also names what a partition wrote, so a partition loaded again (its worker died) removes exactly
its own objects before it starts over.

Range reads: a distributed diff reads one range of a type's top-level objects with their subtrees, level
by level (one round trip per level and type, not per object), and asks which uids the other side has.
"""

from __future__ import annotations

from typing import Any, Dict, List, Set, Tuple

from core import keys
from core.exceptions import ObjectStoreException
from core.model import DiffSyncModel
from core.store.redis.scripts import MAX_PARTITIONS, PARTITION_STRIDE, partition_field
from core.store.redis.writes import _BufferedWrites


class _PartitionedLoads(_BufferedWrites):
    """Base of RedisStore: the partition methods (``_partition`` and ``_clear_partition`` set by RedisStore)."""

    _clear_partition: Any

    def reserve_partitions(self, count: int) -> None:
        """Set an empty namespace up for ``count`` partitions loaded by other store objects (``partition``).

        Objects added later without a partition (a sync's creates) take positions after every partition's.

        Raises:
            ValueError: if ``count`` is more than MAX_PARTITIONS.
        """
        if not 0 <= count <= MAX_PARTITIONS:
            raise ValueError(f"a load has at most {MAX_PARTITIONS} partitions, not {count}")
        with self._errors("set up partitions"):
            pipe = self._client.pipeline(transaction=True)
            pipe.set(keys.seq_key(self._store_id), count * PARTITION_STRIDE)
            if self._ttl:
                pipe.expire(keys.seq_key(self._store_id), self._ttl)
            pipe.execute()

    def _partition_range(self) -> Tuple[int, int]:
        if self._partition is None:
            raise ObjectStoreException(f"Redis store {self._store_id}: this store object writes no partition")
        base = self._partition * PARTITION_STRIDE
        return base + 1, base + PARTITION_STRIDE - 1

    def clear_partition(self) -> int:
        """Remove what this store's partition wrote before (a load of it run again starts over).

        Returns the number of objects removed.
        """
        low, high = self._partition_range()
        self._pending = {}
        with self._errors("clear a partition"):
            removed = self._clear_partition(
                keys=[keys.types_key(self._store_id), keys.meta_key(self._store_id)],
                args=[keys.namespace(self._store_id), low, high, partition_field(int(self._partition or 0))],
            )
        return int(removed)

    def count_partition(self) -> int:
        """Count the objects of this store's partition (written by any process), from Redis's own counts."""
        low, high = self._partition_range()
        self.flush()
        with self._errors("count a partition"):
            names = [name.decode() for name in self._client.smembers(keys.types_key(self._store_id))]
            pipe = self._client.pipeline(transaction=False)
            for modelname in names:
                pipe.zcount(keys.order_key(self._store_id, modelname), low, high)
            return sum(int(value) for value in pipe.execute())

    def uids_in_order(self, modelname: str, first: int, end: int) -> List[str]:
        """The uids at positions ``first`` to ``end - 1`` of a type's insertion order."""
        if end <= first:
            return []
        self.flush()
        with self._errors("read"):
            raw = self._client.zrange(keys.order_key(self._store_id, modelname), first, end - 1)
        return [uid.decode() for uid in raw]

    def existing_uids(self, modelname: str, uids: List[str]) -> Set[str]:
        """Which of these uids the namespace holds (from the order index: no record is read)."""
        if not uids:
            return set()
        self.flush()
        with self._errors("read"):
            scores = self._client.zmscore(keys.order_key(self._store_id, modelname), uids)
        return {uid for uid, score in zip(uids, scores, strict=True) if score is not None}

    def fetch_subtrees(self, modelname: str, uids: List[str]) -> Dict[str, DiffSyncModel]:
        """Read these objects (those present, in the order given) and everything below them into the session.

        One round trip per level and child type; the diff that follows reads them all from the session.
        Outside a lazy session (``lazy_reads``) the objects are read, their subtrees are not.
        """
        self.prefetch(modelname, uids)
        index = self._uid_map(modelname)
        if index is None:
            return {obj.get_unique_id(): obj for obj in self.get_by_uids(uids=list(uids), model=modelname)}
        found = {uid: obj for uid in uids if (obj := index.get(uid)) is not None}
        level: List[DiffSyncModel] = list(found.values())
        while level:
            wanted: Dict[str, List[str]] = {}
            for obj in level:
                for child_type, field in obj.get_children_mapping().items():
                    wanted.setdefault(child_type, []).extend(getattr(obj, field, None) or [])
            level = []
            for child_type, child_uids in wanted.items():
                self.prefetch(child_type, child_uids)
                children = self._uid_map(child_type)
                if children is not None:
                    level.extend(obj for uid in child_uids if (obj := children.get(uid)) is not None)
        return found
