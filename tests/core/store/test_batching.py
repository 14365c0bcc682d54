"""Batched write-through: about N/B script calls for N writes with batch_size B, and reads flush first."""

import math

import pytest

from core import keys

from ._models import SOURCE, TARGET, Device, Site, Vlan, content, populate


def _count_writes(store):
    """Wrap the store's batch-writing script call; returns the list of calls (one entry each)."""
    calls = []
    original = store._write_batch

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    store._write_batch = counting
    return calls


@pytest.mark.parametrize(("number", "batch_size"), [(250, 50), (250, 1), (1000, 64), (10, 1000)])
def test_n_objects_take_about_n_over_b_write_calls(rbackend, redis_client, number, batch_size):
    adapter = rbackend.adapter(batch_size=batch_size)
    calls = _count_writes(adapter.store)
    for vid in range(number):
        adapter.add(Vlan(vid=vid))
    adapter.store.flush()
    assert len(calls) == math.ceil(number / batch_size)
    assert redis_client.hlen(keys.objects_key(adapter.store.store_id, "vlan")) == number
    adapter.store.flush()  # nothing buffered: no call
    assert len(calls) == math.ceil(number / batch_size)


def test_repeated_writes_to_one_object_are_sent_once_per_batch(rbackend):
    """A parent updated by every add_child is one pending write, not one per child."""
    adapter = rbackend.adapter(batch_size=10)
    calls = _count_writes(adapter.store)
    site = Site(name="ams")
    adapter.add(site)
    for index in range(45):
        device = Device(site_name="ams", name=f"r{index}")
        adapter.add(device)
        site.add_child(device)
    adapter.store.flush()
    # 46 distinct objects (the site rewritten after each batch): 5 batches of 10, as many as without it.
    assert 5 <= len(calls) <= 6
    assert len(rbackend.reread(adapter).get("site", "ams").devices) == 45


def test_a_sync_writes_in_batches(rbackend):
    source, target = rbackend.adapter(), rbackend.adapter(batch_size=25)
    populate(source, {"vlan": {vid: {"label": "x"} for vid in range(500)}})
    source.store.flush()
    calls = _count_writes(target.store)
    target.sync_from(source)
    assert 20 <= len(calls) <= 22
    assert rbackend.reread(target).count("vlan") == 500


def _read_get(adapter):
    return adapter.get("vlan", "3").vid


def _read_get_all(adapter):
    return [obj.vid for obj in adapter.get_all("vlan")]


def _read_get_by_uids(adapter):
    return [obj.vid for obj in adapter.get_by_uids(["9", "0"], "vlan")]


def _read_count(adapter):
    return adapter.count()


def _read_count_type(adapter):
    return adapter.count("vlan")


def _read_model_names(adapter):
    return sorted(adapter.get_all_model_names())


def _read_dict(adapter):
    return content(adapter)


def _read_diff(adapter):
    from core import Adapter

    class Empty(Adapter):
        vlan = Vlan
        top_level = ["vlan"]

    return Empty().diff_from(adapter).summary()


READS = {
    "get": (_read_get, 3),
    "get_all": (_read_get_all, list(range(10))),
    "get_by_uids": (_read_get_by_uids, [9, 0]),
    "count": (_read_count, 10),
    "count-type": (_read_count_type, 10),
    "model-names": (_read_model_names, ["vlan"]),
    "dict": (_read_dict, {"vlan": {str(vid): {"vid": vid} for vid in range(10)}}),
    "diff": (_read_diff, {"create": 10, "update": 0, "delete": 0, "no-change": 0, "skip": 0}),
}


@pytest.mark.parametrize("read", list(READS), ids=list(READS))
def test_reads_flush_pending_writes_first(rbackend, redis_client, read):
    adapter = rbackend.adapter(batch_size=1000)
    for vid in range(10):
        adapter.add(Vlan(vid=vid))
    objects_key = keys.objects_key(adapter.store.store_id, "vlan")
    assert redis_client.hlen(objects_key) == 0  # buffered, not sent yet
    function, expected = READS[read]
    assert function(adapter) == expected
    assert redis_client.hlen(objects_key) == 10


def test_remove_flushes_pending_writes_first(rbackend, redis_client):
    adapter = rbackend.adapter()
    vlans = [Vlan(vid=vid) for vid in range(5)]
    for vlan in vlans:
        adapter.add(vlan)
    adapter.remove(vlans[2])
    assert redis_client.hlen(keys.objects_key(adapter.store.store_id, "vlan")) == 4
    assert [obj.vid for obj in rbackend.reread(adapter).get_all("vlan")] == [0, 1, 3, 4]


def test_a_read_after_many_writes_sees_all_of_them_in_order(rbackend, local):
    redis_adapter = rbackend.adapter(batch_size=7)
    local_adapter = local.adapter()
    for adapter in (redis_adapter, local_adapter):
        populate(adapter, TARGET)
        populate(adapter, {"vlan": {vid: {} for vid in range(100, 160)}})
        adapter.remove(adapter.get("vlan", "20"))
        adapter.update(Vlan(vid=101, label="late"))
    assert content(redis_adapter) == content(local_adapter)
    assert [o.vid for o in redis_adapter.get_all("vlan")] == [o.vid for o in local_adapter.get_all("vlan")]
    assert content(rbackend.reread(redis_adapter)) == content(local_adapter)


def test_diff_reads_each_type_in_bulk(rbackend):
    """During a diff, objects are read a type at a time, not one round trip per object."""
    source, target = rbackend.adapter(), rbackend.adapter()
    populate(source, SOURCE)
    populate(target, TARGET)
    populate(target, {"vlan": {vid: {} for vid in range(1000, 1300)}})
    source.store.flush()
    target.store.flush()
    round_trips = []
    for adapter in (source, target):
        pool = adapter.store.client.connection_pool
        original = pool.get_connection

        def counting(*args, _original=original, **kwargs):
            round_trips.append(1)  # one connection checkout per command or pipeline
            return _original(*args, **kwargs)

        pool.get_connection = counting
    diff = target.diff_from(source)
    assert diff.summary()["delete"] > 300
    # Four types on each side, a few round trips each; far fewer than the ~350 objects.
    assert 0 < len(round_trips) < 60, len(round_trips)
