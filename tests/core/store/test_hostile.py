"""Corrupt and hostile values in Redis: rejected with ObjectStoreException naming the key, never executed.

Each value is written with a raw client straight into a model's HASH (``core.keys.objects_key``) under the
uid ``666``, with the uid also put in the model's order ZSET so that whole-type reads see it, and is then
read through every read path: get, get_all, get_by_uids, adapter.dict(), a diff (as source and as target)
and a sync.
"""

import os
import pickle

import msgpack
import pytest

from core import keys
from core.exceptions import ObjectStoreException

from ._models import Network, Vlan, populate

UID = "666"
GOOD_FIELDS = {"vid": 666, "label": "ok", "tags": {}, "model_flags": 0}


class _Touch:
    """Unpickling this creates a marker file (through os.system and through open)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class _Open:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _payloads(marker):
    good = msgpack.packb([1, GOOD_FIELDS, ["label", "vid"]], use_bin_type=True)
    return {
        "not-msgpack": b"\xc1\xc1 definitely not msgpack",
        "empty": b"",
        "truncated-record": good[:-4],
        "trailing-bytes": good + b"\x00",
        "bare-int": msgpack.packb(42),
        "bare-string": msgpack.packb("vlan 666"),
        "dict": msgpack.packb(GOOD_FIELDS),
        "wrong-version": msgpack.packb([2, GOOD_FIELDS, ["vid"]]),
        "version-0": msgpack.packb([0, GOOD_FIELDS, ["vid"]]),
        "short-list": msgpack.packb([1, GOOD_FIELDS]),
        "long-list": msgpack.packb([1, GOOD_FIELDS, ["vid"], "extra"]),
        "fields-not-a-map": msgpack.packb([1, [["vid", 666]], ["vid"]]),
        "fields-set-not-a-list": msgpack.packb([1, GOOD_FIELDS, "vid"]),
        "fields-set-of-ints": msgpack.packb([1, GOOD_FIELDS, [1, 2]]),
        "string-for-int": msgpack.packb([1, {**GOOD_FIELDS, "vid": "six hundred"}, ["vid"]]),
        "int-for-string": msgpack.packb([1, {**GOOD_FIELDS, "label": 12}, ["vid", "label"]]),
        "missing-identifier": msgpack.packb([1, {"label": "no vid"}, ["label"]]),
        "bad-dict-value": msgpack.packb([1, {**GOOD_FIELDS, "tags": {"a": [1, 2]}}, ["vid", "tags"]]),
        "non-str-map-key": msgpack.packb([1, {**GOOD_FIELDS, "tags": {1: "x"}}, ["vid"]]),
        "ext-type": msgpack.packb([1, {**GOOD_FIELDS, "label": msgpack.ExtType(5, b"boom")}, ["vid"]]),
        "pickle-os-system": pickle.dumps(_Touch(marker)),
        "pickle-open": pickle.dumps(_Open(marker), protocol=0),
        "pickle-of-a-model": pickle.dumps(Vlan(vid=666, label="pickled")),
    }


PAYLOAD_NAMES = list(_payloads("x"))


def _plant(client, store_id, modelname, uid, raw):
    client.hset(keys.objects_key(store_id, modelname), uid, raw)
    client.zadd(keys.order_key(store_id, modelname), {uid: 10_000})
    client.sadd(keys.types_key(store_id), modelname)


def _read_get(adapter, source):
    adapter.get("vlan", UID)


def _read_get_class(adapter, source):
    adapter.get(Vlan, {"vid": 666})


def _read_get_all(adapter, source):
    adapter.get_all("vlan")


def _read_get_by_uids(adapter, source):
    adapter.get_by_uids(["10", UID], "vlan")


def _read_dict(adapter, source):
    adapter.dict()


def _read_diff_as_target(adapter, source):
    adapter.diff_from(source)


def _read_diff_as_source(adapter, source):
    source.diff_from(adapter)


def _read_sync(adapter, source):
    adapter.sync_from(source)


READS = {
    "get": _read_get,
    "get-by-ids": _read_get_class,
    "get_all": _read_get_all,
    "get_by_uids": _read_get_by_uids,
    "dict": _read_dict,
    "diff-target": _read_diff_as_target,
    "diff-source": _read_diff_as_source,
    "sync": _read_sync,
}


@pytest.mark.parametrize("read", list(READS.values()), ids=list(READS))
@pytest.mark.parametrize("payload", PAYLOAD_NAMES)
def test_hostile_value_is_rejected(rbackend, redis_client, local, tmp_path, payload, read):
    marker = tmp_path / "executed"
    raw = _payloads(marker)[payload]
    adapter = rbackend.adapter()
    populate(adapter, {"vlan": {10: {"label": "good"}}})
    adapter.store.flush()
    store_id = adapter.store.store_id
    _plant(redis_client, store_id, "vlan", UID, raw)
    source = local.adapter()
    populate(source, {"vlan": {10: {"label": "good"}, 20: {}}})

    with pytest.raises(ObjectStoreException) as info:
        read(adapter, source)

    message = str(info.value)
    assert keys.objects_key(store_id, "vlan") in message
    assert UID in message
    assert "Vlan" in message or "vlan" in message
    assert not marker.exists(), "a stored value was executed"
    # Nothing was written over the planted value, and the good object is still readable.
    assert redis_client.hget(keys.objects_key(store_id, "vlan"), UID) == raw
    assert adapter.get("vlan", "10").label == "good"


def test_pickle_payload_is_not_executed_by_any_read(rbackend, redis_client, tmp_path):
    """The payload that would touch a file, read every way in a row, leaves no file behind."""
    marker = tmp_path / "pwned"
    adapter = rbackend.adapter()
    _plant(redis_client, adapter.store.store_id, "vlan", UID, pickle.dumps(_Touch(marker)))
    _plant(redis_client, adapter.store.store_id, "site", "evil", pickle.dumps(_Open(marker)))
    for read in (
        lambda: adapter.get("vlan", UID),
        lambda: adapter.get("site", "evil"),
        lambda: adapter.get_all("site"),
        lambda: adapter.get_by_uids([UID], "vlan"),
        lambda: adapter.dict(),
        lambda: adapter.diff_from(Network()),
        lambda: Network().diff_from(adapter),
    ):
        with pytest.raises(ObjectStoreException):
            read()
    assert not marker.exists()
    # Sanity check of the payload itself: unpickling it really would have created the file.
    pickle.loads(pickle.dumps(_Open(marker))).close()
    assert marker.exists()


def test_validation_error_names_model_uid_and_key(rbackend, redis_client):
    adapter = rbackend.adapter()
    store_id = adapter.store.store_id
    _plant(
        redis_client,
        store_id,
        "device",
        "ams__r1",
        msgpack.packb([1, {"site_name": "ams", "name": "r1", "rack": "top shelf"}, ["site_name", "name", "rack"]]),
    )
    with pytest.raises(ObjectStoreException) as info:
        adapter.get("device", "ams__r1")
    message = str(info.value)
    assert keys.objects_key(store_id, "device") in message
    assert "ams__r1" in message
    assert "Device" in message
    assert "rack" in message


def test_record_under_another_uid_is_rejected(rbackend, redis_client):
    """A valid record for vlan 7 stored under the uid 666 is not vlan 666: reading it must not pass it off."""
    adapter = rbackend.adapter()
    store_id = adapter.store.store_id
    _plant(
        redis_client,
        store_id,
        "vlan",
        UID,
        msgpack.packb([1, {**GOOD_FIELDS, "vid": 7}, ["vid", "label"]], use_bin_type=True),
    )
    with pytest.raises(ObjectStoreException) as info:
        adapter.get("vlan", UID)
    assert keys.objects_key(store_id, "vlan") in str(info.value)
    with pytest.raises(ObjectStoreException):
        adapter.get_all("vlan")


def test_unknown_model_name_in_redis_is_not_instantiated(rbackend, redis_client):
    """A type present in Redis that the adapter has no class for is never read as anything."""
    adapter = rbackend.adapter()
    adapter.add(Vlan(vid=1))
    adapter.store.flush()
    _plant(redis_client, adapter.store.store_id, "os", "system", msgpack.packb([1, {"name": "x"}, ["name"]]))
    with pytest.raises(ObjectStoreException):
        adapter.get_all("os")
    with pytest.raises(ObjectStoreException):
        adapter.dict()
