"""A RedisStore used on its own, without an adapter, as diffsync's RedisStore can be.

Reads decode records through the model class passed in (``model=Site`` or an instance), never through a
class named by the stored data; with only a type name and no adapter there is no class to read with, and
that is a clear error.
"""

import os
import pickle

import msgpack
import pytest

from core import keys
from core.exceptions import ObjectNotFound, ObjectStoreException

from ._models import Device, Network, Site, Vlan


class OtherSite(Site):
    """Another class for the type ``site`` (same ``_modelname``)."""


def _sites():
    return [Site(name="ams1", region="eu"), Site(name="nyc1", region="us"), Site(name="lon1", region="eu")]


@pytest.fixture
def store(rbackend):
    """A RedisStore without adapter, holding three sites and a vlan (flushed)."""
    result = rbackend.store()
    assert result.adapter is None
    for site in _sites():
        result.add(obj=site)
    result.add(obj=Vlan(vid=10, label="mgmt"))
    result.flush()
    return result


@pytest.fixture
def reader(rbackend, store):
    """Another adapter-less RedisStore on the same namespace: what another process reads."""
    return rbackend.store(store_id=store.store_id)


def _fields(objs):
    return [(type(obj), obj.get_unique_id(), obj.region) for obj in objs]


def test_get_all_with_the_model_class(store, reader):
    assert _fields(reader.get_all(model=Site)) == [(Site, "ams1", "eu"), (Site, "nyc1", "us"), (Site, "lon1", "eu")]
    assert [vlan.label for vlan in reader.get_all(model=Vlan)] == ["mgmt"]
    assert reader.get_all(model=Device) == []


def test_get_with_the_model_class_or_an_instance(store, reader):
    site = reader.get(model=Site, identifier="ams1")
    assert (type(site), site.name, site.region, site.adapter) == (Site, "ams1", "eu", None)
    assert reader.get(model=Site, identifier={"name": "nyc1"}).region == "us"
    assert reader.get(model=Site(name="probe"), identifier="lon1").region == "eu"
    with pytest.raises(ObjectNotFound):
        reader.get(model=Site, identifier="nowhere")


def test_get_by_uids_with_the_model_class(store, reader):
    found = reader.get_by_uids(uids=["lon1", "ams1"], model=Site)
    assert _fields(found) == [(Site, "lon1", "eu"), (Site, "ams1", "eu")]
    assert reader.get_by_uids(uids=[], model=Site) == []
    with pytest.raises(ObjectNotFound):
        reader.get_by_uids(uids=["ams1", "nowhere"], model=Site)


def test_count(store, reader):
    assert reader.count(model=Site) == 3
    assert reader.count(model="site") == 3
    assert reader.count(model=Site(name="probe")) == 3
    assert reader.count() == 4
    assert reader.get_all_model_names() == {"site", "vlan"}


def test_update(store, reader):
    site = store.get(model=Site, identifier="nyc1")
    site.region = "us-east"
    store.update(obj=site)
    store.flush()
    assert reader.get(model=Site, identifier="nyc1").region == "us-east"
    assert [obj.name for obj in reader.get_all(model=Site)] == ["ams1", "nyc1", "lon1"]  # order kept


def test_remove(store, reader):
    store.remove(obj=store.get(model=Site, identifier="ams1"))
    with pytest.raises(ObjectNotFound):
        reader.get(model=Site, identifier="ams1")
    assert [obj.name for obj in reader.get_all(model=Site)] == ["nyc1", "lon1"]
    assert reader.count(model=Site) == 2
    with pytest.raises(ObjectNotFound):
        store.remove(obj=Site(name="ams1"))


def test_get_or_instantiate_and_friends(store, reader):
    assert store.get_or_instantiate(model=Site, ids={"name": "ams1"}, attrs={"region": "x"})[1] is False
    created, is_new = store.get_or_instantiate(model=Site, ids={"name": "par1"}, attrs={"region": "eu"})
    assert is_new and created.region == "eu"
    updated, is_new = store.update_or_instantiate(model=Site, ids={"name": "nyc1"}, attrs={"region": "usa"})
    assert not is_new and updated.region == "usa"
    found, added = store.get_or_add_model_instance(Site(name="lon1", region="ignored"))
    assert not added and found.region == "eu"
    assert store.get_or_add_model_instance(Site(name="ber1", region="eu"))[1] is True
    changed, added = store.update_or_add_model_instance(Site(name="lon1", region="uk"))
    assert not added and changed.region == "uk"
    store.flush()
    assert [(obj.name, obj.region) for obj in reader.get_all(model=Site)] == [
        ("ams1", "eu"),
        ("nyc1", "usa"),
        ("lon1", "uk"),
        ("par1", "eu"),
        ("ber1", "eu"),
    ]


@pytest.mark.parametrize(
    "read",
    [
        lambda store: store.get(model="site", identifier="ams1"),
        lambda store: store.get_all(model="site"),
        lambda store: store.get_by_uids(uids=["ams1"], model="site"),
    ],
    ids=["get", "get_all", "get_by_uids"],
)
def test_a_type_name_alone_without_adapter_is_a_clear_error(store, reader, read):
    with pytest.raises(ObjectStoreException, match=r"no model class for 'site' on adapter None.*pass the model class"):
        read(reader)


def test_a_class_of_another_type_is_not_used_for_a_type_name(store, reader):
    # The class passed in is used for its own type only: Vlan says nothing about how to read "site".
    with pytest.raises(ObjectStoreException, match="no model class for 'site'"):
        reader._model_class("site", Vlan)


def test_stored_data_naming_another_class_is_not_used(store, reader, redis_client):
    """A record whose fields name another class or type is still read as the class passed in."""
    fields = {"name": "evil", "region": "x", "__class__": "tests.store._models.Device", "_modelname": "device"}
    record = msgpack.packb([1, fields, ["name", "region"]], use_bin_type=True)
    redis_client.hset(keys.objects_key(store.store_id, "site"), "evil", record)
    redis_client.zadd(keys.order_key(store.store_id, "site"), {"evil": 99})
    obj = reader.get(model=Site, identifier="evil")
    assert type(obj) is Site and obj.get_type() == "site" and obj.region == "x"
    assert [type(obj) for obj in reader.get_all(model=Site)] == [Site] * 4


class _Touch:
    """Unpickling this creates a marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_is_never_unpickled(store, reader, redis_client, tmp_path):
    marker = tmp_path / "unpickled"
    redis_client.hset(keys.objects_key(store.store_id, "site"), "ams1", pickle.dumps(_Touch(marker)))
    for read in (
        lambda: reader.get(model=Site, identifier="ams1"),
        lambda: reader.get_all(model=Site),
        lambda: reader.get_by_uids(uids=["ams1"], model=Site),
    ):
        with pytest.raises(ObjectStoreException, match="is not a shardsync record for model Site"):
            read()
    assert not marker.exists()


def test_the_class_passed_in_is_used_without_adapter(store, reader):
    assert type(reader.get(model=OtherSite, identifier="ams1")) is OtherSite
    assert {type(obj) for obj in reader.get_all(model=OtherSite)} == {OtherSite}


def test_with_an_adapter_its_class_wins_over_the_class_passed_in(rbackend, store):
    adapter = Network(internal_storage_engine=rbackend.store(store_id=store.store_id))
    assert type(adapter.store.get(model=OtherSite, identifier="ams1")) is Site
    assert {type(obj) for obj in adapter.store.get_all(model=OtherSite)} == {Site}
    assert {type(obj) for obj in adapter.store.get_by_uids(uids=["ams1", "nyc1"], model=OtherSite)} == {Site}
    assert adapter.store.get(model="site", identifier="ams1").adapter is adapter
