"""Partitioned loads into one RedisStore namespace: partition order, exact clean-up, counts, conflicts."""

from __future__ import annotations

import pytest

from core.exceptions import ObjectAlreadyExists, ObjectStoreException
from core.store.redis import RedisStore
from core.store.redis.scripts import MAX_PARTITIONS

from ._models import Device, Network, Site
from .conftest import new_store_id


def _store(client, store_id, partition=None, ttl=None):
    store = RedisStore(client=client, store_id=store_id, partition=partition, ttl=ttl)
    Network(internal_storage_engine=store)  # the store reads records back through an adapter's models
    return store


def _load(store, first, end):
    for number in range(first, end):
        site = Site(name=f"s{number:03d}")
        store.add(obj=site)
        device = Device(site_name=site.name, name="d0")
        store.add(obj=device)
        site.add_child(device)
        store.update(obj=site)
    store.flush()


def test_partitions_read_back_in_partition_order_whatever_order_they_were_written(redis_client) -> None:
    store_id = new_store_id()
    main = _store(redis_client, store_id)
    main.reserve_partitions(3)
    ranges = {0: (0, 4), 1: (4, 9), 2: (9, 12)}
    for index in (2, 0, 1):  # written last first, as parallel tasks may end
        _load(_store(redis_client, store_id, partition=index), *ranges[index])
    reader = _store(redis_client, store_id)
    assert [site.name for site in reader.get_all(model="site")] == [f"s{n:03d}" for n in range(12)]
    assert [d.site_name for d in reader.get_all(model="device")] == [f"s{n:03d}" for n in range(12)]
    assert reader.count() == 24
    # a write without a partition (a sync's create) comes after every partition's objects
    reader.add(obj=Site(name="late"))
    reader.flush()
    assert [site.name for site in _store(redis_client, store_id).get_all(model="site")][-1] == "late"


def test_a_partition_loaded_again_removes_exactly_what_it_wrote(redis_client) -> None:
    store_id = new_store_id()
    _store(redis_client, store_id).reserve_partitions(2)
    _load(_store(redis_client, store_id, partition=0), 0, 3)
    first = _store(redis_client, store_id, partition=1)
    _load(first, 3, 7)
    assert first.count_partition() == 8
    again = _store(redis_client, store_id, partition=1)
    assert again.clear_partition() == 8
    assert again.count_partition() == 0
    assert _store(redis_client, store_id, partition=0).count_partition() == 6
    _load(again, 3, 5)  # the second delivery loads less: nothing of the first stays
    names = [site.name for site in _store(redis_client, store_id).get_all(model="site")]
    assert names == ["s000", "s001", "s002", "s003", "s004"]
    assert again.count_partition() == 4


def test_the_same_object_in_two_partitions_is_a_conflict(redis_client) -> None:
    store_id = new_store_id()
    _store(redis_client, store_id).reserve_partitions(2)
    _load(_store(redis_client, store_id, partition=0), 0, 3)
    other = _store(redis_client, store_id, partition=1)
    other.add(obj=Site(name="s002", region="elsewhere"))
    with pytest.raises(ObjectAlreadyExists):
        other.flush()


def test_partition_limits_are_checked(redis_client) -> None:
    store_id = new_store_id()
    with pytest.raises(ValueError, match="partition must be from 0"):
        _store(redis_client, store_id, partition=MAX_PARTITIONS)
    with pytest.raises(ValueError, match="at most"):
        _store(redis_client, store_id).reserve_partitions(MAX_PARTITIONS + 1)
    with pytest.raises(ObjectStoreException, match="writes no partition"):
        _store(redis_client, store_id).clear_partition()


def test_partition_keys_expire_with_the_namespace(redis_client) -> None:
    store_id = new_store_id()
    _store(redis_client, store_id, ttl=300).reserve_partitions(2)
    _load(_store(redis_client, store_id, partition=1, ttl=300), 0, 2)
    for key in redis_client.keys(f"*{store_id}*"):
        assert 0 < redis_client.ttl(key) <= 300, key
