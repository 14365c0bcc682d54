"""Partitioned loads into one RedisStore namespace: each partition's objects in a range of the order.

Several processes load partitions of one side at once (``Adapter.partitions``); the insertion order of a
namespace is a sorted set of positions, so partition ``i`` writes positions ``i * PARTITION_STRIDE + 1``
on, from a counter of its own, and the namespace reads back in partition order whichever finished first.
The range also names what a partition wrote, so a partition loaded again (its worker died) removes exactly
its own objects before it starts over.
"""

from __future__ import annotations

from typing import Any, Tuple

from core import keys
from core.exceptions import ObjectStoreException
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
