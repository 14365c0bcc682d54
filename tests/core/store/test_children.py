"""Children lists as stored in Redis: what a second, fresh RedisStore on the same store id reads.

Every add_child/remove_child and every create/delete a sync makes must reach Redis, or the next diff (in
this process or another) sees stale children lists and fails with ObjectNotFound.
"""

import pytest

from core import keys
from core.enum import DiffSyncModelFlags

from ._models import SOURCE, TARGET, Device, Interface, Site, children_tree, content, populate


def test_add_child_and_remove_child_are_stored(rbackend):
    adapter = rbackend.adapter()
    site = Site(name="ams")
    adapter.add(site)
    devices = [Device(site_name="ams", name=f"r{i}") for i in range(3)]
    for device in devices:
        adapter.add(device)
        site.add_child(device)
    assert rbackend.reread(adapter).get("site", "ams").devices == ["ams__r0", "ams__r1", "ams__r2"]

    site.remove_child(devices[1])
    assert rbackend.reread(adapter).get("site", "ams").devices == ["ams__r0", "ams__r2"]


def test_add_child_on_an_object_read_back_from_redis_is_stored(rbackend):
    """An object obtained by get() (a copy decoded from Redis) writes its children changes too."""
    writer = rbackend.adapter()
    writer.add(Device(site_name="ams", name="r1"))
    writer.store.flush()

    other = rbackend.reread(writer)
    device = other.get("device", "ams__r1")
    interface = Interface(device_name="ams__r1", name="eth0")
    other.add(interface)
    device.add_child(interface)
    assert rbackend.reread(other).get("device", "ams__r1").interfaces == ["ams__r1__eth0"]
    # ... and the first adapter, which wrote the device, reads the new list as well.
    assert writer.get("device", "ams__r1").interfaces == ["ams__r1__eth0"]

    device.remove_child(interface)
    other.remove(interface)
    assert writer.get("device", "ams__r1").interfaces == []
    assert writer.count("interface") == 0


def test_loaded_tree_matches_local_store(rbackend, local):
    redis_adapter, local_adapter = rbackend.adapter(), local.adapter()
    populate(redis_adapter, SOURCE)
    populate(local_adapter, SOURCE)
    assert children_tree(rbackend.reread(redis_adapter)) == children_tree(local_adapter)
    assert content(rbackend.reread(redis_adapter)) == content(local_adapter)


def _sync_target(maker, flags=None):
    source, target = maker.adapter(), maker.adapter()
    populate(source, SOURCE)
    populate(target, TARGET, model_flags=flags)
    target.sync_from(source)
    return source, target


def test_sync_creates_and_deletes_reach_the_stored_children_lists(rbackend, local):
    source, target = _sync_target(rbackend)
    local_source, local_target = _sync_target(local)

    fresh = rbackend.reread(target)
    assert children_tree(fresh) == children_tree(local_target) == children_tree(local_source)
    assert content(fresh) == content(local_target)
    # Every listed child exists, and every device/interface is listed by its parent.
    tree = children_tree(fresh)
    listed = {uid for fields in tree.values() for uids in fields.values() for uid in uids}
    stored = {obj.get_unique_id() for name in ("device", "interface") for obj in fresh.get_all(name)}
    assert listed == stored


def test_re_diff_after_sync_is_empty_also_through_fresh_stores(rbackend):
    source, target = _sync_target(rbackend)
    assert not target.diff_from(source).has_diffs()
    fresh_source, fresh_target = rbackend.reread(source), rbackend.reread(target)
    rediff = fresh_target.diff_from(fresh_source)
    assert not rediff.has_diffs()
    assert rediff.summary()["no-change"] == source.count()
    # A second sync changes nothing.
    fresh_target.sync_from(fresh_source)
    assert fresh_target.calls == []


def test_sync_deleting_children_then_diff_again_finds_every_child(rbackend):
    """Children deleted under parents that stay: the parents' stored lists must drop them."""
    source, target = rbackend.adapter(), rbackend.adapter()
    populate(source, {"site": {"ams": {"devices": {"r1": {"interfaces": {"eth0": {}}}}}}})
    populate(
        target,
        {
            "site": {
                "ams": {
                    "devices": {
                        "r1": {"interfaces": {"eth0": {}, "eth1": {}, "eth2": {}}},
                        "r2": {"interfaces": {"eth0": {}}},
                        "r3": {},
                    }
                }
            }
        },
    )
    target.sync_from(source)
    assert [call[0] for call in target.calls] == ["delete"] * 5

    for reader in (target, rbackend.reread(target)):
        diff = reader.diff_from(source)  # no ObjectNotFound for a deleted child still listed
        assert not diff.has_diffs()
        assert reader.get("site", "ams").devices == ["ams__r1"]
        assert reader.get("device", "ams__r1").interfaces == ["ams__r1__eth0"]
        assert reader.count() == 3
    # The other direction: diffing the synced target as a source works as well.
    assert not rbackend.reread(source).diff_from(rbackend.reread(target)).has_diffs()


def test_sync_creating_children_under_existing_parents(rbackend):
    source, target = rbackend.adapter(), rbackend.adapter()
    populate(source, {"site": {"ams": {"devices": {"r1": {"interfaces": {"eth0": {}, "eth1": {}}}, "r2": {}}}}})
    populate(target, {"site": {"ams": {"devices": {"r1": {}}}}})
    target.sync_from(source)
    fresh = rbackend.reread(target)
    assert fresh.get("site", "ams").devices == ["ams__r1", "ams__r2"]
    assert fresh.get("device", "ams__r1").interfaces == ["ams__r1__eth0", "ams__r1__eth1"]
    assert not fresh.diff_from(rbackend.reread(source)).has_diffs()


FLAGS = {
    "natural": DiffSyncModelFlags.NATURAL_DELETION_ORDER,
    "skip-children": DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE,
    "both": DiffSyncModelFlags.NATURAL_DELETION_ORDER | DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE,
}


@pytest.mark.parametrize("flags", list(FLAGS.values()), ids=list(FLAGS))
def test_deletion_flags_give_the_local_store_result(rbackend, local, flags):
    source, target = _sync_target(rbackend, flags)
    local_source, local_target = _sync_target(local, flags)

    assert target.calls == local_target.calls
    fresh = rbackend.reread(target)
    assert content(fresh) == content(local_target)
    assert children_tree(fresh) == children_tree(local_target)
    for name in ("site", "device", "interface", "vlan"):
        assert fresh.count(name) == local_target.count(name), name
    # The flags were stored with the objects and read back (sites created by the sync have none).
    assert [site.model_flags for site in fresh.get_all("site")] == [flags, flags, DiffSyncModelFlags.NONE]
    assert fresh.diff_from(rbackend.reread(source)).dict() == local_target.diff_from(local_source).dict()


def test_skip_children_on_delete_leaves_no_orphans_in_redis(rbackend, redis_client):
    source, target = rbackend.adapter(), rbackend.adapter()
    populate(source, {"site": {"ams": {}}})
    populate(
        target,
        {"site": {"ams": {}, "sfo": {"devices": {"r1": {"interfaces": {"eth0": {}, "eth1": {}}}, "r2": {}}}}},
        model_flags=DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE,
    )
    target.sync_from(source)
    assert target.calls == [("delete", "site", "sfo")]
    fresh = rbackend.reread(target)
    assert fresh.count() == 1
    assert fresh.get_all("device") == []
    assert fresh.get_all("interface") == []
    store_id = target.store.store_id
    for name in ("device", "interface"):
        assert redis_client.hlen(keys.objects_key(store_id, name)) == 0
        assert redis_client.zcard(keys.order_key(store_id, name)) == 0
