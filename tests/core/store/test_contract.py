"""The BaseStore contract, stated once and checked on LocalStore and on RedisStore (``backend`` fixture).

Writes to a RedisStore are buffered until a read or a flush; a test that expects an error from a write
therefore also reads (``adapter.count()``) inside the ``pytest.raises`` block.  LocalStore raises at the
write itself, RedisStore at the latest at that read.  Where a test checks that something was stored,
it also reads it back through ``backend.reread`` (a fresh RedisStore on the same store id).
"""

import pytest

from core.enum import DiffSyncFlags
from core.exceptions import ObjectAlreadyExists, ObjectNotFound

from ._models import SOURCE, TARGET, Device, Interface, Network, Site, Vlan, content, populate

# ------------------------------------------------------------------------------------------------------------
# add / get
# ------------------------------------------------------------------------------------------------------------


def test_add_then_get_by_uid_by_class_by_instance(backend):
    adapter = backend.adapter()
    adapter.add(Site(name="ams", region="eu"))
    adapter.add(Device(site_name="ams", name="r1", role="core", rack=4))

    for ref in ("device", Device, Device(site_name="x", name="y")):
        found = adapter.get(ref, "ams__r1")
        assert (found.get_type(), found.get_unique_id(), found.role, found.rack) == ("device", "ams__r1", "core", 4)
        assert found.adapter is adapter
    assert backend.reread(adapter).get("site", "ams").region == "eu"


def test_get_by_dict_of_identifiers(backend):
    adapter = backend.adapter()
    adapter.add(Device(site_name="ams", name="r1", role="core"))

    assert adapter.get(Device, {"site_name": "ams", "name": "r1"}).role == "core"
    # A model name is enough when the adapter has a class of that name to build the uid with.
    assert adapter.get("device", {"site_name": "ams", "name": "r1"}).role == "core"
    assert adapter.get_or_none(Device, {"site_name": "ams", "name": "nope"}) is None


def test_get_missing_raises_object_not_found(backend):
    adapter = backend.adapter()
    adapter.add(Site(name="ams"))

    with pytest.raises(ObjectNotFound):
        adapter.get("site", "nyc")
    with pytest.raises(ObjectNotFound):
        adapter.get(Site, {"name": "nyc"})
    with pytest.raises(ObjectNotFound):
        adapter.get("device", "ams__r1")


def test_get_str_model_with_dict_ids_unknown_to_adapter_raises_value_error(backend):
    adapter = backend.adapter()
    adapter.add(Site(name="ams"))
    with pytest.raises(ValueError):
        adapter.get("rack", {"name": "ams"})
    with pytest.raises(ValueError):
        adapter.get_or_none("rack", {"name": "ams"})


def test_add_same_object_twice_is_a_no_op(backend):
    adapter = backend.adapter()
    site = Site(name="ams", region="eu")
    adapter.add(site)
    adapter.add(site)
    assert adapter.count() == 1
    adapter.add(site)  # again after the read above (a RedisStore has written it by now)
    assert adapter.count() == 1
    assert [obj.get_unique_id() for obj in backend.reread(adapter).get_all("site")] == ["ams"]


@pytest.mark.parametrize("read_between", [False, True], ids=["buffered", "after-read"])
def test_add_different_object_with_same_uid_raises(backend, read_between):
    adapter = backend.adapter()
    adapter.add(Site(name="ams", region="eu"))
    if read_between:
        assert adapter.count() == 1
    other = Site(name="ams", region="us")
    with pytest.raises(ObjectAlreadyExists) as info:
        adapter.add(other)
        adapter.count()
    assert info.value.existing_object is other
    assert adapter.get("site", "ams").region == "eu"
    assert backend.reread(adapter).get("site", "ams").region == "eu"
    assert adapter.count() == 1


def test_add_sets_the_adapter_of_an_object_without_one(backend):
    adapter = backend.adapter()
    site = Site(name="ams")
    adapter.add(site)
    assert site.adapter is adapter
    assert adapter.get("site", "ams").adapter is adapter


# ------------------------------------------------------------------------------------------------------------
# get_all / get_by_uids
# ------------------------------------------------------------------------------------------------------------

VIDS = [30, 5, 100, 7, 20, 1, 64]


def test_get_all_keeps_insertion_order(backend):
    adapter = backend.adapter()
    for vid in VIDS:
        adapter.add(Vlan(vid=vid, label=f"v{vid}"))
        adapter.add(Site(name=f"s{vid}"))  # another type interleaved
    expected = [str(vid) for vid in VIDS]
    assert [obj.get_unique_id() for obj in adapter.get_all("vlan")] == expected
    assert [obj.get_unique_id() for obj in adapter.get_all(Vlan)] == expected
    assert [obj.get_unique_id() for obj in backend.reread(adapter).get_all("vlan")] == expected
    assert [obj.name for obj in adapter.get_all(Site)] == [f"s{vid}" for vid in VIDS]


def test_get_all_order_after_update_remove_and_re_add(backend):
    adapter = backend.adapter()
    for vid in VIDS:
        adapter.add(Vlan(vid=vid))
    updated = adapter.get("vlan", "100")
    updated.label = "changed"
    adapter.update(updated)  # an update keeps the position
    adapter.remove(adapter.get("vlan", "5"))
    adapter.add(Vlan(vid=5, label="back"))  # removed and added again: now last
    expected = ["30", "100", "7", "20", "1", "64", "5"]
    for reader in (adapter, backend.reread(adapter)):
        assert [obj.get_unique_id() for obj in reader.get_all("vlan")] == expected
        assert reader.get("vlan", "100").label == "changed"


def test_get_all_of_an_empty_type_is_empty(backend):
    adapter = backend.adapter()
    adapter.add(Site(name="ams"))
    assert adapter.get_all("vlan") == []
    assert adapter.get_all(Device) == []


def test_get_by_uids_follows_the_order_of_the_uids(backend):
    adapter = backend.adapter()
    for vid in VIDS:
        adapter.add(Vlan(vid=vid, label=f"v{vid}"))
    wanted = ["64", "30", "7", "100"]
    for reader in (adapter, backend.reread(adapter)):
        got = reader.get_by_uids(wanted, "vlan")
        assert [obj.get_unique_id() for obj in got] == wanted
        assert [obj.label for obj in got] == ["v64", "v30", "v7", "v100"]
        assert [obj.vid for obj in reader.get_by_uids(["1", "5"], Vlan)] == [1, 5]
        assert reader.get_by_uids([], "vlan") == []


def test_get_by_uids_with_a_missing_uid_raises(backend):
    adapter = backend.adapter()
    for vid in VIDS:
        adapter.add(Vlan(vid=vid))
    with pytest.raises(ObjectNotFound):
        adapter.get_by_uids(["30", "999", "5"], "vlan")
    with pytest.raises(ObjectNotFound):
        adapter.get_by_uids(["1"], "site")


# ------------------------------------------------------------------------------------------------------------
# update / remove / count / model names
# ------------------------------------------------------------------------------------------------------------


def test_update_replaces_the_stored_state(backend):
    adapter = backend.adapter()
    adapter.add(Vlan(vid=10, label="old", tags={"a": "1"}))
    adapter.update(Vlan(vid=10, label="new", tags={"b": "2"}))
    for reader in (adapter, backend.reread(adapter)):
        vlan = reader.get("vlan", "10")
        assert (vlan.label, vlan.tags) == ("new", {"b": "2"})
        assert reader.count() == 1


def test_update_of_an_absent_object_stores_it(backend):
    adapter = backend.adapter()
    adapter.update(Vlan(vid=10, label="x"))
    assert backend.reread(adapter).get("vlan", "10").label == "x"
    assert adapter.count("vlan") == 1


def test_remove(backend):
    adapter = backend.adapter()
    populate(adapter, SOURCE)
    before = adapter.count()
    vlan = adapter.get("vlan", "20")
    adapter.remove(vlan)
    assert vlan.adapter is None
    for reader in (adapter, backend.reread(adapter)):
        with pytest.raises(ObjectNotFound):
            reader.get("vlan", "20")
        assert reader.count() == before - 1
    with pytest.raises(ObjectNotFound):
        adapter.remove(Vlan(vid=20))
    with pytest.raises(ObjectNotFound):
        adapter.remove(Vlan(vid=999))


def test_remove_without_children_leaves_them(backend):
    adapter = backend.adapter()
    populate(adapter, SOURCE)
    adapter.remove(adapter.get("site", "nyc"))
    reader = backend.reread(adapter)
    assert reader.get_or_none("site", "nyc") is None
    assert reader.get("device", "nyc__nyc-r1").interfaces == ["nyc__nyc-r1__eth0", "nyc__nyc-r1__eth1"]
    assert reader.count("interface") == 5


def test_remove_with_children_removes_the_whole_subtree(backend):
    adapter = backend.adapter()
    populate(adapter, SOURCE)
    adapter.remove(adapter.get("site", "ams"), remove_children=True)
    for reader in (adapter, backend.reread(adapter)):
        assert [obj.get_unique_id() for obj in reader.get_all("site")] == ["nyc", "lon"]
        assert [obj.get_unique_id() for obj in reader.get_all("device")] == ["nyc__nyc-r1"]
        assert [obj.get_unique_id() for obj in reader.get_all("interface")] == [
            "nyc__nyc-r1__eth0",
            "nyc__nyc-r1__eth1",
        ]
        assert reader.count("vlan") == 3


def test_remove_with_children_goes_on_past_a_missing_child(backend):
    adapter = backend.adapter()
    populate(adapter, SOURCE)
    adapter.remove(adapter.get("device", "ams__ams-r1"))  # the site still lists it
    adapter.remove(adapter.get("site", "ams"), remove_children=True)
    reader = backend.reread(adapter)
    assert reader.count("site") == 2
    assert [obj.get_unique_id() for obj in reader.get_all("device")] == ["nyc__nyc-r1"]
    # ams-r1's interfaces were not reachable any more and stay.
    assert reader.count("interface") == 4


def test_count_per_type_and_total(backend):
    adapter = backend.adapter()
    assert adapter.count() == 0
    assert len(adapter) == 0
    populate(adapter, SOURCE)
    expected = {"site": 3, "device": 3, "interface": 5, "vlan": 3}
    for reader in (adapter, backend.reread(adapter)):
        for name, number in expected.items():
            assert reader.count(name) == number
            assert reader.count(getattr(Network, name)) == number
        assert reader.count(Vlan(vid=1)) == 3
        assert reader.count() == len(reader) == sum(expected.values())
        assert reader.count("nothing") == 0


def test_get_all_model_names(backend):
    adapter = backend.adapter()
    assert adapter.get_all_model_names() == set()
    adapter.add(Site(name="ams"))
    adapter.add(Vlan(vid=1))
    assert adapter.get_all_model_names() == {"site", "vlan"}
    assert backend.reread(adapter).get_all_model_names() == {"site", "vlan"}


# ------------------------------------------------------------------------------------------------------------
# get_or_* / update_or_*
# ------------------------------------------------------------------------------------------------------------


def test_get_or_instantiate(backend):
    adapter = backend.adapter()
    obj, created = adapter.get_or_instantiate(Interface, {"device_name": "d", "name": "e0"}, {"mtu": 9000})
    assert created is True
    assert obj.mtu == 9000
    obj, created = adapter.get_or_instantiate(Interface, {"device_name": "d", "name": "e0"}, {"mtu": 1})
    assert created is False
    assert obj.mtu == 9000  # attrs only apply to a new object
    obj, created = adapter.get_or_instantiate(Interface, {"device_name": "d", "name": "e1"})
    assert (created, obj.mtu) == (True, 1500)
    reader = backend.reread(adapter)
    assert [(o.get_unique_id(), o.mtu) for o in reader.get_all("interface")] == [("d__e0", 9000), ("d__e1", 1500)]


def test_get_or_add_model_instance(backend):
    adapter = backend.adapter()
    first = Vlan(vid=7, label="first")
    obj, added = adapter.get_or_add_model_instance(first)
    assert added is True
    assert obj is first
    obj, added = adapter.get_or_add_model_instance(Vlan(vid=7, label="second"))
    assert added is False
    assert obj.label == "first"
    assert backend.reread(adapter).get("vlan", "7").label == "first"
    assert adapter.count() == 1


def test_update_or_instantiate(backend):
    adapter = backend.adapter()
    obj, created = adapter.update_or_instantiate(Device, {"site_name": "s", "name": "d"}, {"role": "core"})
    assert (created, obj.role) == (True, "core")
    obj, created = adapter.update_or_instantiate(Device, {"site_name": "s", "name": "d"}, {"role": "edge", "rack": 3})
    assert (created, obj.role, obj.rack) == (False, "edge", 3)
    for reader in (adapter, backend.reread(adapter)):
        stored = reader.get(Device, {"site_name": "s", "name": "d"})
        assert (stored.role, stored.rack) == ("edge", 3)
        assert reader.count() == 1


def test_update_or_add_model_instance(backend):
    adapter = backend.adapter()
    obj, added = adapter.update_or_add_model_instance(Vlan(vid=9, label="a", tags={"x": "1"}))
    assert (added, obj.label) == (True, "a")
    obj, added = adapter.update_or_add_model_instance(Vlan(vid=9, label="b"))
    assert (added, obj.label, obj.tags) == (False, "b", {})
    for reader in (adapter, backend.reread(adapter)):
        assert (reader.get("vlan", "9").label, reader.get("vlan", "9").tags) == ("b", {})
        assert reader.count() == 1


# ------------------------------------------------------------------------------------------------------------
# Adapter-level diff and sync: the same results whatever the store
# ------------------------------------------------------------------------------------------------------------


def _diff_sync_results(make_source, make_target, flags):
    source = make_source()
    target = make_target()
    populate(source, SOURCE)
    populate(target, TARGET)
    source_before = content(source)
    diff = target.diff_from(source, flags=flags)
    first = {"summary": diff.summary(), "dict": diff.dict(), "str": diff.str(), "len": len(diff)}
    applied = target.sync_from(source, flags=flags)
    rediff = target.diff_from(source, flags=flags)
    return (
        {
            "diff": first,
            "applied": {"summary": applied.summary(), "dict": applied.dict()},
            "target": content(target),
            "calls": list(target.calls),
            "source_unchanged": content(source) == source_before,
            "rediff": {"summary": rediff.summary(), "dict": rediff.dict(), "has_diffs": rediff.has_diffs()},
        },
        source,
        target,
    )


FLAG_CASES = [
    DiffSyncFlags.NONE,
    DiffSyncFlags.SKIP_UNMATCHED_DST,
    DiffSyncFlags.SKIP_UNMATCHED_SRC,
    DiffSyncFlags.CONTINUE_ON_FAILURE,
]


@pytest.mark.parametrize("flags", FLAG_CASES, ids=lambda flags: flags.name)
def test_diff_and_sync_match_local_store(backend, local, flags):
    expected, _, _ = _diff_sync_results(local.adapter, local.adapter, flags)
    got, source, target = _diff_sync_results(backend.adapter, backend.adapter, flags)
    assert got == expected
    assert got["source_unchanged"]
    if flags == DiffSyncFlags.NONE:
        assert not got["rediff"]["has_diffs"]
        assert content(target) == content(source)
    reread = backend.reread(target)
    assert content(reread) == got["target"]
    if flags == DiffSyncFlags.NONE:
        assert not reread.diff_from(backend.reread(source), flags=flags).has_diffs()


@pytest.mark.parametrize("flags", FLAG_CASES, ids=lambda flags: flags.name)
def test_diff_and_sync_across_store_kinds(backend, local, flags):
    """A LocalStore source synced into the backend's target, and the backend's source into a LocalStore."""
    expected, _, _ = _diff_sync_results(local.adapter, local.adapter, flags)
    into_backend, _, _ = _diff_sync_results(local.adapter, backend.adapter, flags)
    from_backend, _, _ = _diff_sync_results(backend.adapter, local.adapter, flags)
    assert into_backend == expected
    assert from_backend == expected


def test_sync_to_empty_and_back_to_empty(backend, local):
    """Everything created, then everything deleted, on both stores alike."""
    results = {}
    for name, maker in (("local", local), ("backend", backend)):
        source, target, empty = maker.adapter(), maker.adapter(), maker.adapter()
        populate(source, SOURCE)
        target.sync_from(source)
        filled = content(maker.reread(target))
        target.sync_from(empty)
        results[name] = (filled, content(maker.reread(target)), maker.reread(target).count(), target.calls)
    assert results["backend"] == results["local"]
    assert results["backend"][1] == {}
    assert results["backend"][2] == 0


# ------------------------------------------------------------------------------------------------------------
# Values and hooks
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vid", [2**63 - 1, 2**64, 2**70, -(2**63) - 1], ids=["int64-max", "2^64", "2^70", "below-int64"]
)
def test_integers_of_any_size_round_trip(backend, vid):
    """Python ints have no size limit (think IPv6 addresses or 128-bit ids stored as int fields)."""
    adapter = backend.adapter()
    adapter.add(Vlan(vid=1))
    adapter.add(Vlan(vid=vid, tags={"size": "big"}))
    adapter.add(Vlan(vid=2))
    for reader in (adapter, backend.reread(adapter)):
        assert [obj.vid for obj in reader.get_all("vlan")] == [1, vid, 2]
        assert reader.get("vlan", str(vid)).tags == {"size": "big"}


class _ReplacingVlan(Vlan):
    """A model whose update hook replaces the stored object by a new one (remove, then add, same uid)."""

    def update(self, attrs):
        adapter = self.adapter
        adapter.calls.append(("replace", self.get_type(), self.get_unique_id()))
        adapter.remove(self)
        replacement = type(self)(**{**self.get_identifiers(), **self.get_attrs(), **attrs})
        adapter.add(replacement)
        return replacement


class _ReplacingNetwork(Network):
    vlan = _ReplacingVlan


def test_a_hook_may_remove_and_re_add_an_object_during_a_sync(backend, local):
    results = []
    for maker in (local, backend):
        source, target = maker.adapter(), maker.adapter(cls=_ReplacingNetwork)
        populate(source, {"site": SOURCE["site"], "vlan": {10: {}, 20: {"label": "users"}}})
        populate(target, {"site": TARGET["site"], "vlan": {20: {"label": "staff"}, 10: {}}})
        target.sync_from(source)
        reader = maker.reread(target)
        results.append((content(reader), [obj.vid for obj in reader.get_all("vlan")], target.calls))
        assert not reader.diff_from(maker.reread(source)).has_diffs()
    assert results[1] == results[0]
    assert ("replace", "vlan", "20") in results[0][2]
    assert results[0][1] == [10, 20]  # the replaced object was removed and added again: now last


def test_a_parent_that_gains_a_child_after_a_sibling_was_added_keeps_its_place(backend):
    """Insertion order is the order objects were added, whatever changed them later (children included)."""
    adapter = backend.adapter()
    first, second = Site(name="first"), Site(name="second")
    adapter.add(first)
    adapter.add(second)
    device = Device(site_name="first", name="r1")
    adapter.add(device)
    first.add_child(device)  # changes ``first`` after ``second`` was added
    assert [site.name for site in adapter.get_all("site")] == ["first", "second"]
    reread = backend.reread(adapter)
    assert [site.name for site in reread.get_all("site")] == ["first", "second"]
    assert reread.get("site", "first").devices == ["first__r1"]
