"""Adapter: declaration checks, storage API, tree traversal, diff and sync entry points, sync_complete."""

import pytest
from structlog.testing import capture_logs

from ._support import (
    DST_SITES,
    DST_VLANS,
    SRC_SITES,
    SRC_VLANS,
    adapter_snapshot,
    both,
    build,
    get_engine,
    make_models,
    norm,
    standard_pair,
)

SMALL = {"s1": ("r1", {"d1": ("leaf", {"e1": "a"}), "d2": ("spine", {})})}

# ------------------------------------------------------------------------------------------------------------
# type, name, top_level, declaration checks, storage engine
# ------------------------------------------------------------------------------------------------------------


def test_type_and_name_defaults(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    assert adapter.type == "Backend"
    assert adapter.name == "Backend"
    assert str(adapter) == "Backend"
    assert repr(adapter) == "<Backend>"
    named = ns.Backend(name="east")
    assert named.type == "Backend"
    assert named.name == "east"
    assert str(named) == 'Backend "east"'
    assert repr(named) == '<Backend "east">'
    plain = engine.Adapter()
    assert (plain.type, plain.name) == ("Adapter", "Adapter")


def test_explicit_type(engine):
    class Custom(engine.Adapter):
        type = "custom-kind"

    assert Custom().type == "custom-kind"
    assert Custom().name == "custom-kind"
    assert str(Custom(name="x")) == 'custom-kind "x"'


def test_top_level(engine):
    ns = make_models(engine)
    assert ns.Backend.top_level == ["site", "vlan"]
    assert engine.Adapter.top_level == []


def test_subclass_with_wrongly_named_model_attribute(engine):
    ns = make_models(engine)
    with pytest.raises(AttributeError) as err:
        type("Bad", (engine.Adapter,), {"device": ns.Site})
    assert str(err.value) == 'Incorrect field name - Site has type name "site", not "device"'


def test_subclass_top_level_naming_missing_attribute(engine):
    ns = make_models(engine)
    with pytest.raises(AttributeError) as err:
        type("Bad", (engine.Adapter,), {"site": ns.Site, "top_level": ["site", "nope"]})
    assert str(err.value) == 'top_level references attribute "nope" but it is not a class attribute!'


@pytest.mark.parametrize("value", [1, "site", object()], ids=["int", "str", "object"])
def test_subclass_top_level_naming_non_model(engine, value):
    with pytest.raises(AttributeError) as err:
        type("Bad", (engine.Adapter,), {"nope": value, "top_level": ["nope"]})
    assert str(err.value) == 'top_level references attribute "nope" but it is not a DiffSyncModel subclass!'


def test_subclass_top_level_naming_non_model_class(engine):
    with pytest.raises(AttributeError, match="not a DiffSyncModel subclass"):
        type("Bad", (engine.Adapter,), {"nope": dict, "top_level": ["nope"]})


def test_top_level_inherited_from_parent_is_checked(engine):
    ns = make_models(engine)

    class Child(ns.Backend):
        pass

    assert Child.top_level == ["site", "vlan"]
    assert Child().type == "Child"


def test_internal_storage_engine_as_class(engine):
    class MyStore(engine.LocalStore):
        pass

    ns = make_models(engine)
    adapter = ns.Backend(internal_storage_engine=MyStore)
    assert isinstance(adapter.store, MyStore)
    assert adapter.store.adapter is adapter
    assert str(adapter.store) == "MyStore"
    adapter.add(ns.Site(name="s1"))
    assert adapter.store.count() == 1


def test_internal_storage_engine_as_instance(engine):
    ns = make_models(engine)
    store = engine.LocalStore(name="shared")
    adapter = ns.Backend(name="a", internal_storage_engine=store)
    assert adapter.store is store
    assert store.adapter is adapter
    site = ns.Site(name="s1")
    adapter.add(site)
    assert site.adapter is adapter
    assert store.count(model="site") == 1
    with pytest.raises(engine.exc.ObjectNotFound) as err:
        adapter.get("site", "s9")
    assert str(err.value) == "site s9 not present in shared"


def test_default_store_is_local_store(engine):
    adapter = engine.Adapter()
    assert type(adapter.store) is engine.LocalStore
    assert isinstance(adapter.store, engine.BaseStore)


def test_deprecated_diffsync_alias_warns(engine):
    with pytest.warns(DeprecationWarning, match="deprecated"):
        adapter = engine.root.DiffSync()
    assert isinstance(adapter, engine.Adapter)
    assert adapter.name == "DiffSync"


# ------------------------------------------------------------------------------------------------------------
# get_constructor_kwargs (shardsync addition: core only)
# ------------------------------------------------------------------------------------------------------------


def test_constructor_kwargs_of_base_adapter():
    core = get_engine("core")
    assert core.Adapter().get_constructor_kwargs() == {}
    assert core.Adapter(name="x").get_constructor_kwargs() == {"name": "x"}
    assert core.Adapter("x").get_constructor_kwargs() == {"name": "x"}


def test_constructor_kwargs_positional_and_keyword_mapped_to_names():
    core = get_engine("core")
    ns = make_models(core)
    adapter = ns.Backend("east", core.LocalStore)
    assert adapter.get_constructor_kwargs() == {"name": "east", "internal_storage_engine": core.LocalStore}


def test_constructor_kwargs_of_custom_init_with_var_kwargs():
    core = get_engine("core")
    ns = make_models(core)

    class Remote(ns.Backend):
        def __init__(self, url, name=None, retries=3, **options):
            super().__init__(name=name)
            self.url = url
            self.retries = retries
            self.options = options

    adapter = Remote("http://x", "west", retries=5, token="t", verify=False)
    kwargs = adapter.get_constructor_kwargs()
    assert kwargs == {"url": "http://x", "name": "west", "retries": 5, "token": "t", "verify": False}
    clone = Remote(**kwargs)
    assert type(clone) is Remote
    assert clone.name == adapter.name == "west"
    assert clone.type == adapter.type
    assert (clone.url, clone.retries, clone.options) == ("http://x", 5, {"token": "t", "verify": False})
    # Defaults not given are not reported; re-creation still gives an equal adapter.
    other = Remote(url="u")
    assert other.get_constructor_kwargs() == {"url": "u"}
    again = Remote(**other.get_constructor_kwargs())
    assert (type(again), again.name, again.retries) == (Remote, "Remote", 3)


def test_constructor_kwargs_recreate_standard_adapter():
    core = get_engine("core")
    ns = make_models(core)
    adapter = build(ns, SMALL, name="src")
    clone = type(adapter)(**adapter.get_constructor_kwargs())
    assert type(clone) is type(adapter)
    assert (clone.name, clone.type) == ("src", "Backend")
    assert len(clone) == 0


# ------------------------------------------------------------------------------------------------------------
# load / dict / str / load_from_dict / len / count
# ------------------------------------------------------------------------------------------------------------


def test_load_default_is_noop_and_can_be_overridden(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    assert adapter.load() is None
    assert len(adapter) == 0

    class Loaded(ns.Backend):
        def load(self):
            self.add(ns.Vlan(vid=1, vname="one"))

    loaded = Loaded()
    loaded.load()
    assert loaded.count() == 1


def test_dict(engine):
    ns = make_models(engine)
    adapter = build(ns, {"s1": ("r1", {"d1": ("leaf", {"e1": "a"})})}, {10: "ten"})
    assert adapter.dict() == {
        "site": {"s1": {"name": "s1", "region": "r1", "devices": ["s1__d1"]}},
        "device": {"s1__d1": {"site_name": "s1", "name": "d1", "role": "leaf", "interfaces": ["d1__e1"]}},
        "interface": {"d1__e1": {"device_name": "d1", "name": "e1", "description": "a"}},
        "vlan": {"10": {"vid": 10, "vname": "ten"}},
    }
    full = adapter.dict(exclude_defaults=False)
    assert full["vlan"]["10"] == {"model_flags": engine.MF.NONE, "vid": 10, "vname": "ten"}
    assert engine.Adapter().dict() == {}


def test_str(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL, {10: "ten"})
    assert adapter.str() == (
        "site\n"
        "  site: s1: {'region': 'r1'}\n"
        "    devices\n"
        "      device: s1__d1: {'role': 'leaf'}\n"
        "        interfaces\n"
        "          interface: d1__e1: {'description': 'a'}\n"
        "      device: s1__d2: {'role': 'spine'}\n"
        "        interfaces: []\n"
        "vlan\n"
        "  vlan: 10: {'vname': 'ten'}"
    )
    assert ns.Backend().str() == "site: []\nvlan: []"
    assert ns.Backend().str(indent=2) == "  site: []\n  vlan: []"


def test_load_from_dict_round_trip(engine):
    ns = make_models(engine)
    original = build(ns, SRC_SITES, SRC_VLANS)
    copy = ns.Backend()
    copy.load_from_dict(original.dict())
    assert copy.dict() == original.dict()
    assert len(copy) == len(original)
    assert all(obj.adapter is copy for obj in copy.get_all("device"))
    assert copy.get("site", "s1").devices == ["s1__d1", "s1__d2"]


def test_len_and_count(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL, {10: "ten", 20: "twenty"})
    assert len(adapter) == 6
    assert adapter.count() == 6
    assert adapter.count("site") == 1
    assert adapter.count(ns.Device) == 2
    assert adapter.count(ns.Interface(device_name="x", name="y")) == 1
    assert adapter.count("vlan") == 2
    assert adapter.count("unknown") == 0
    assert len(ns.Backend()) == 0


# ------------------------------------------------------------------------------------------------------------
# get / get_or_none / get_all / get_by_uids / get_all_model_names
# ------------------------------------------------------------------------------------------------------------


def test_get_by_uid_and_by_identifiers(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL)
    device = adapter.get("device", "s1__d1")
    assert device.role == "leaf"
    assert adapter.get(ns.Device, "s1__d1") is device
    assert adapter.get(ns.Device(site_name="s1", name="d1"), "s1__d1") is device
    assert adapter.get(ns.Device, {"site_name": "s1", "name": "d1"}) is device
    assert adapter.get(ns.Device(site_name="a", name="b"), {"name": "d1", "site_name": "s1"}) is device
    # A model name that is an attribute of the adapter resolves to its class.
    assert adapter.get("device", {"site_name": "s1", "name": "d1"}) is device


def test_get_errors(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL)
    with pytest.raises(engine.exc.ObjectNotFound) as err:
        adapter.get("device", "s1__d9")
    assert str(err.value) == "device s1__d9 not present in LocalStore"
    with pytest.raises(engine.exc.ObjectNotFound):
        adapter.get(ns.Device, {"site_name": "s1", "name": "d9"})
    with pytest.raises(ValueError, match="Invalid args"):
        adapter.get("gadget", {"name": "x"})
    with pytest.raises(ValueError):
        adapter.get_or_none("gadget", {"name": "x"})


def test_get_or_none(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL)
    assert adapter.get_or_none("device", "s1__d9") is None
    assert adapter.get_or_none(ns.Device, {"site_name": "s1", "name": "d9"}) is None
    assert adapter.get_or_none("gadget", "x") is None
    assert adapter.get_or_none("site", "s1") is adapter.get("site", "s1")


def test_get_all(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL, {20: "b", 10: "a"})
    assert [obj.get_unique_id() for obj in adapter.get_all("device")] == ["s1__d1", "s1__d2"]
    assert [obj.get_unique_id() for obj in adapter.get_all(ns.Vlan)] == ["20", "10"]
    assert [obj.get_unique_id() for obj in adapter.get_all(ns.Vlan(vid=1))] == ["20", "10"]
    assert adapter.get_all("gadget") == []
    assert isinstance(adapter.get_all("site"), list)


def test_get_by_uids(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL)
    objs = adapter.get_by_uids(["s1__d2", "s1__d1"], "device")
    assert [obj.name for obj in objs] == ["d2", "d1"]
    assert adapter.get_by_uids([], ns.Device) == []
    with pytest.raises(engine.exc.ObjectNotFound) as err:
        adapter.get_by_uids(["s1__d1", "s1__d9"], ns.Device)
    assert str(err.value) == "device s1__d9 not present in LocalStore"


def test_get_all_model_names(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL)
    assert adapter.get_all_model_names() == {"site", "device", "interface"}
    assert ns.Backend().get_all_model_names() == set()


# ------------------------------------------------------------------------------------------------------------
# add / update / remove
# ------------------------------------------------------------------------------------------------------------


def test_add_sets_adapter_and_rejects_duplicates(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    site = ns.Site(name="s1")
    adapter.add(site)
    assert site.adapter is adapter
    adapter.add(site)  # the very same object again: no-op
    assert adapter.count() == 1
    duplicate = ns.Site(name="s1", region="other")
    with pytest.raises(engine.exc.ObjectAlreadyExists) as err:
        adapter.add(duplicate)
    assert str(err.value.args[0]) == "Object s1 already present"
    assert err.value.existing_object is duplicate
    assert adapter.get("site", "s1") is site
    assert duplicate.adapter is None


def test_add_keeps_an_existing_adapter_reference(engine):
    ns = make_models(engine)
    first, second = ns.Backend(name="first"), ns.Backend(name="second")
    vlan = ns.Vlan(vid=1)
    first.add(vlan)
    second.add(vlan)
    assert vlan.adapter is first
    assert second.get("vlan", "1") is vlan


def test_update_replaces_stored_object(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    old = ns.Vlan(vid=1, vname="old")
    adapter.add(old)
    new = ns.Vlan(vid=1, vname="new")
    adapter.update(new)
    assert adapter.get("vlan", "1") is new
    assert adapter.count() == 1
    adapter.update(new)
    assert adapter.count() == 1
    fresh = ns.Vlan(vid=2)
    adapter.update(fresh)
    assert adapter.get("vlan", "2") is fresh
    assert adapter.count("vlan") == 2


def test_remove(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL)
    device = adapter.get("device", "s1__d2")
    adapter.remove(device)
    assert device.adapter is None
    assert adapter.get_or_none("device", "s1__d2") is None
    # The parent's reference is not touched.
    assert adapter.get("site", "s1").devices == ["s1__d1", "s1__d2"]
    with pytest.raises(engine.exc.ObjectNotFound) as err:
        adapter.remove(device)
    assert str(err.value) == "device s1__d2 not present in LocalStore"


def test_remove_with_children(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL, {10: "ten"})
    adapter.remove(adapter.get("site", "s1"), remove_children=True)
    assert adapter.count() == 1
    assert adapter.count("vlan") == 1


def test_remove_without_children_leaves_them(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL)
    adapter.remove(adapter.get("site", "s1"))
    assert adapter.count("device") == 2
    assert adapter.count("interface") == 1


def test_remove_with_missing_child_logs_error(engine):
    ns = make_models(engine)
    adapter = build(ns, SMALL)
    adapter.remove(adapter.get("device", "s1__d2"))
    with capture_logs() as logs:
        adapter.remove(adapter.get("site", "s1"), remove_children=True)
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert len(errors) == 1
    entry = errors[0]
    assert entry["event"] == "Unable to remove child element as it was not found!"
    assert (entry["child_type"], entry["child_id"], entry["parent_type"], entry["parent_id"]) == (
        "device",
        "s1__d2",
        "site",
        "s1",
    )
    assert entry["store"] is adapter.store
    assert adapter.count() == 0


# ------------------------------------------------------------------------------------------------------------
# get_or_instantiate & co
# ------------------------------------------------------------------------------------------------------------


def test_get_or_instantiate(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    obj, created = adapter.get_or_instantiate(ns.Vlan, {"vid": 1}, {"vname": "one"})
    assert created is True
    assert (obj.vid, obj.vname, obj.adapter) == (1, "one", adapter)
    again, created = adapter.get_or_instantiate(ns.Vlan, {"vid": 1}, {"vname": "other"})
    assert created is False
    assert again is obj
    assert again.vname == "one"
    bare, created = adapter.get_or_instantiate(ns.Vlan, {"vid": 2})
    assert created is True and bare.vname == ""
    assert adapter.count() == 2


def test_get_or_add_model_instance(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    first = ns.Vlan(vid=1, vname="one")
    assert adapter.get_or_add_model_instance(first) == (first, True)
    assert first.adapter is adapter
    other = ns.Vlan(vid=1, vname="other")
    obj, added = adapter.get_or_add_model_instance(other)
    assert added is False
    assert obj is first
    assert first.vname == "one"


def test_update_or_instantiate(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    obj, created = adapter.update_or_instantiate(ns.Vlan, {"vid": 1}, {"vname": "one"})
    assert created is True and obj.vname == "one"
    again, created = adapter.update_or_instantiate(ns.Vlan, {"vid": 1}, {"vname": "uno"})
    assert created is False
    assert again is obj
    assert obj.vname == "uno"
    same, created = adapter.update_or_instantiate(ns.Vlan, {"vid": 1}, {})
    assert (same, created, same.vname) == (obj, False, "uno")


def test_update_or_add_model_instance(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    first = ns.Vlan(vid=1, vname="one")
    assert adapter.update_or_add_model_instance(first) == (first, True)
    replacement = ns.Vlan(vid=1, vname="uno")
    obj, added = adapter.update_or_add_model_instance(replacement)
    assert added is False
    assert obj is first
    assert first.vname == "uno"
    assert adapter.get("vlan", "1") is first


# ------------------------------------------------------------------------------------------------------------
# get_tree_traversal
# ------------------------------------------------------------------------------------------------------------


def _three_level_adapter(eng):
    ns = make_models(eng)

    class Tree(eng.Adapter):
        site = ns.Site
        device = ns.Device
        interface = ns.Interface
        top_level = ["site"]

    return Tree


def test_tree_traversal_three_levels(engine):
    tree = _three_level_adapter(engine)
    assert tree.get_tree_traversal() == "Tree\n└── site\n    └── device\n        └── interface"
    assert tree.get_tree_traversal(as_dict=True) == {"site": {"device": {"interface": {}}}}


def test_tree_traversal_two_top_level_types(engine):
    ns = make_models(engine)
    assert ns.Backend.get_tree_traversal() == ("Backend\n├── site\n│   └── device\n│       └── interface\n└── vlan")
    assert ns.Backend.get_tree_traversal(as_dict=True) == {"site": {"device": {"interface": {}}}, "vlan": {}}
    # Callable on an instance too.
    assert ns.Backend().get_tree_traversal() == ns.Backend.get_tree_traversal()


def test_tree_traversal_order_follows_top_level(engine):
    ns = make_models(engine)

    class Reordered(engine.Adapter):
        site = ns.Site
        device = ns.Device
        interface = ns.Interface
        vlan = ns.Vlan
        top_level = ["vlan", "site"]

    assert list(Reordered.get_tree_traversal(as_dict=True)) == ["vlan", "site"]
    assert Reordered.get_tree_traversal().splitlines()[1] == "├── vlan"


def test_tree_traversal_matches_diffsync():
    outputs = []
    for eng in both():
        ns = make_models(eng)
        tree = _three_level_adapter(eng)

        class Mixed(eng.Adapter):
            interface = ns.Interface
            vlan = ns.Vlan
            device = ns.Device
            site = ns.Site
            top_level = ["vlan", "site"]

        outputs.append(
            [
                tree.get_tree_traversal(),
                tree.get_tree_traversal(as_dict=True),
                ns.Backend.get_tree_traversal(),
                ns.Backend.get_tree_traversal(as_dict=True),
                Mixed.get_tree_traversal(),
                eng.Adapter.get_tree_traversal(),
            ]
        )
    assert outputs[0] == outputs[1]


def test_model_added_to_adapter_class_later_is_traversed(engine):
    ns = make_models(engine)

    class Growing(engine.Adapter):
        vlan = ns.Vlan
        top_level = ["vlan"]

    assert Growing.get_tree_traversal(as_dict=True) == {"vlan": {}}
    Growing.site = ns.Site
    assert Growing.get_tree_traversal(as_dict=True) == {"vlan": {}, "site": {"device": {}}}
    adapter = Growing()
    adapter.load_from_dict({"site": {"s1": {"name": "s1"}}})
    assert adapter.count("site") == 1


# ------------------------------------------------------------------------------------------------------------
# diff_from / diff_to / sync_from / sync_to
# ------------------------------------------------------------------------------------------------------------


def test_diff_from_and_diff_to_agree(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff_from = dst.diff_from(src)
    diff_to = src.diff_to(dst)
    assert isinstance(diff_from, engine.Diff)
    assert diff_from.dict() == diff_to.dict()
    assert (
        diff_from.summary()
        == diff_to.summary()
        == {
            "create": 7,
            "update": 2,
            "delete": 7,
            "no-change": 6,
            "skip": 0,
        }
    )
    # Diffing changes nothing.
    assert ns.rec.ops == []
    assert dst.dict() == build(ns, DST_SITES, DST_VLANS, name="dst").dict()


def test_diff_in_the_other_direction(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    reverse = src.diff_from(dst)
    forward = dst.diff_from(src)
    assert reverse.summary()["create"] == forward.summary()["delete"]
    assert reverse.summary()["delete"] == forward.summary()["create"]
    assert reverse.dict()["vlan"]["10"] == {"-": {"vname": "ten"}, "+": {"vname": "TEN"}}


def test_diff_with_diff_class(engine):
    class MyDiff(engine.Diff):
        pass

    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src, diff_class=MyDiff)
    assert type(diff) is MyDiff
    site = diff.children["site"]["s1"]
    assert type(site.child_diff) is MyDiff
    assert type(src.diff_to(dst, diff_class=MyDiff)) is MyDiff


def test_sync_from_makes_destination_equal_to_source(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    before_src = src.dict()
    diff = dst.sync_from(src)
    assert isinstance(diff, engine.Diff)
    assert diff.has_diffs()
    assert not dst.diff_from(src).has_diffs()
    assert adapter_snapshot(dst) == adapter_snapshot(src)
    assert src.dict() == before_src
    assert ("create", "site", "s2") in ns.rec.ops
    assert ("update", "vlan", "10") in ns.rec.ops
    assert ("delete", "interface", "d1__e3") in ns.rec.ops
    # Created objects belong to the destination and are linked to their parents.
    created = dst.get("device", "s1__d2")
    assert created.adapter is dst
    assert "s1__d2" in dst.get("site", "s1").devices
    assert "s1__d4" not in dst.get("site", "s1").devices


def test_sync_to(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = src.sync_to(dst)
    assert diff.summary()["create"] == 7
    assert not dst.diff_from(src).has_diffs()


def test_sync_with_precomputed_diff(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src)
    with capture_logs() as logs:
        result = dst.sync_from(src, diff=diff)
    assert result is diff
    events = [entry["event"] for entry in logs]
    assert "Beginning diff calculation" not in events
    assert "Beginning sync" in events
    assert not dst.diff_from(src).has_diffs()


def test_sync_to_with_precomputed_diff_and_diff_class(engine):
    class MyDiff(engine.Diff):
        pass

    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = src.diff_to(dst, diff_class=MyDiff)
    assert src.sync_to(dst, diff_class=MyDiff, diff=diff) is diff
    assert not dst.diff_from(src).has_diffs()


def test_sync_with_diff_class_returns_that_class(engine):
    class MyDiff(engine.Diff):
        pass

    ns = make_models(engine)
    src, dst = standard_pair(ns)
    assert type(dst.sync_from(src, diff_class=MyDiff)) is MyDiff


def test_diff_class_mismatch(engine):
    class MyDiff(engine.Diff):
        pass

    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src)
    with pytest.raises(engine.exc.DiffClassMismatch) as err:
        dst.sync_from(src, diff_class=MyDiff, diff=diff)
    assert str(err.value) == "The provided diff's class (Diff) does not match the diff_class: MyDiff"
    with pytest.raises(engine.exc.DiffClassMismatch):
        src.sync_to(dst, diff_class=MyDiff, diff=diff)
    assert ns.rec.ops == []
    # A diff of a subclass of diff_class is accepted.
    sub_diff = dst.diff_from(src, diff_class=MyDiff)
    assert dst.sync_from(src, diff=sub_diff) is sub_diff


def test_empty_precomputed_diff_is_recomputed(engine):
    # diffsync tests the diff's truthiness (its len): an empty diff counts as "no diff given".
    class MyDiff(engine.Diff):
        pass

    ns = make_models(engine)
    src, dst = standard_pair(ns)
    empty = engine.Diff()
    result = dst.sync_from(src, diff_class=MyDiff, diff=empty)
    assert result is not empty
    assert type(result) is MyDiff
    assert not dst.diff_from(src).has_diffs()


def test_sync_with_flags(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    dst.sync_from(src, flags=engine.F.SKIP_UNMATCHED_DST)
    assert not any(op[0] == "delete" for op in ns.rec.ops)
    assert any(op[0] == "create" for op in ns.rec.ops)


def test_sync_with_callback(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    calls = []
    dst.sync_from(src, callback=lambda stage, current, total: calls.append((stage, current, total)))
    assert {call[0] for call in calls} == {"diff", "sync"}
    assert calls[-1][0] == "sync"
    assert calls[-1][1] == calls[-1][2]


# ------------------------------------------------------------------------------------------------------------
# sync_complete
# ------------------------------------------------------------------------------------------------------------


def _recording_adapter(ns):
    class Recording(ns.Backend):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.completions = []

        def sync_complete(self, source, diff, flags=ns.eng.F.NONE, logger=None):
            self.completions.append((source, diff, flags, logger))
            super().sync_complete(source, diff, flags, logger)

    return Recording


def test_sync_complete_called_once_with_arguments(engine):
    ns = make_models(engine)
    recording = _recording_adapter(ns)
    src = build(ns, SRC_SITES, SRC_VLANS, name="src")
    dst = build(ns, DST_SITES, DST_VLANS, name="dst", adapter_cls=recording)
    flags = engine.F.LOG_UNCHANGED_RECORDS
    diff = dst.sync_from(src, flags=flags)
    assert len(dst.completions) == 1
    source, passed_diff, passed_flags, logger = dst.completions[0]
    assert source is src
    assert passed_diff is diff
    assert passed_flags == flags
    assert logger is not None
    assert hasattr(logger, "info")


def test_sync_complete_called_on_sync_to_target(engine):
    ns = make_models(engine)
    recording = _recording_adapter(ns)
    src = build(ns, SRC_SITES, SRC_VLANS, name="src", adapter_cls=recording)
    dst = build(ns, DST_SITES, DST_VLANS, name="dst", adapter_cls=recording)
    src.sync_to(dst)
    assert len(dst.completions) == 1
    assert dst.completions[0][0] is src
    assert src.completions == []


def test_sync_complete_not_called_without_changes(engine):
    ns = make_models(engine)
    recording = _recording_adapter(ns)
    src = build(ns, SRC_SITES, SRC_VLANS, name="src")
    dst = build(ns, SRC_SITES, SRC_VLANS, name="dst", adapter_cls=recording)
    diff = dst.sync_from(src)
    assert not diff.has_diffs()
    assert dst.completions == []
    assert ns.rec.ops == []
    # Changes that were all skipped by flags are no changes either.
    only_dst = build(ns, {"s9": ("r9", {})}, name="dst2", adapter_cls=recording)
    only_dst.sync_from(ns.Backend(), flags=engine.F.SKIP_UNMATCHED_DST)
    assert only_dst.completions == []


def test_sync_complete_called_after_failed_change_with_continue_on_failure(engine):
    ns = make_models(engine)
    recording = _recording_adapter(ns)
    src = build(ns, {}, {5: "five"}, name="src")
    dst = build(ns, {}, {}, name="dst", adapter_cls=recording)
    ns.rec.fail[("create", "vlan", "5")] = "raise"
    dst.sync_from(src, flags=engine.F.CONTINUE_ON_FAILURE)
    assert len(dst.completions) == 1
    assert dst.count() == 0


# ------------------------------------------------------------------------------------------------------------
# Whole-adapter comparisons with diffsync
# ------------------------------------------------------------------------------------------------------------


def _sync_observation(eng, src_spec, dst_spec):
    ns = make_models(eng)
    src = build(ns, *src_spec, name="src")
    dst = build(ns, *dst_spec, name="dst")
    diff = dst.sync_from(src)
    return {
        "summary": diff.summary(),
        "ops": ns.rec.ops,
        "dst": adapter_snapshot(dst),
        "src": adapter_snapshot(src),
        "dst_models": sorted(dst.get_all_model_names()),
        "src_models": sorted(src.get_all_model_names()),
        "statuses": sorted(
            (obj.get_type(), obj.get_unique_id(), norm(obj.get_status()))
            for name in sorted(dst.get_all_model_names())
            for obj in dst.get_all(name)
        ),
    }


@pytest.mark.parametrize(
    "src_spec, dst_spec",
    [
        ((SRC_SITES, SRC_VLANS), (DST_SITES, DST_VLANS)),
        ((DST_SITES, DST_VLANS), (SRC_SITES, SRC_VLANS)),
        (({}, {1: "one"}), (DST_SITES, {})),
        ((SRC_SITES, {}), ({}, {1: "one"})),
    ],
    ids=["standard", "reverse", "delete-subtrees", "create-subtrees"],
)
def test_adapter_contents_after_sync_match_diffsync(src_spec, dst_spec):
    core_eng, ref_eng = both()
    expected = _sync_observation(ref_eng, src_spec, dst_spec)
    actual = _sync_observation(core_eng, src_spec, dst_spec)
    for key in expected:
        assert actual[key] == expected[key], key


# ------------------------------------------------------------------------------------------------------------
# Custom stores and overridden adapter methods are what the diff reads through
# ------------------------------------------------------------------------------------------------------------


def _reverse_store(eng):
    class ReverseStore(eng.LocalStore):
        """A store that returns objects in reverse unique-id order."""

        def get_all(self, *, model):
            return sorted(super().get_all(model=model), key=lambda obj: obj.get_unique_id(), reverse=True)

        def get_by_uids(self, *, uids, model):
            objs = super().get_by_uids(uids=uids, model=model)
            return sorted(objs, key=lambda obj: obj.get_unique_id(), reverse=True)

    return ReverseStore


def _reverse_adapter(ns):
    class ReverseAdapter(ns.Backend):
        def get_all(self, obj):
            return sorted(super().get_all(obj), key=lambda o: o.get_unique_id(), reverse=True)

        def get_by_uids(self, uids, obj):
            return sorted(super().get_by_uids(uids, obj), key=lambda o: o.get_unique_id(), reverse=True)

    return ReverseAdapter


@pytest.mark.parametrize("how", ["store_class", "store_instance", "adapter_methods"])
def test_diff_reads_through_custom_store_or_adapter_methods(engine, how):
    ns = make_models(engine)
    if how == "adapter_methods":
        adapter_cls, kwargs = _reverse_adapter(ns), lambda: {}
    elif how == "store_class":
        adapter_cls, kwargs = ns.Backend, lambda: {"internal_storage_engine": _reverse_store(engine)}
    else:
        adapter_cls, kwargs = ns.Backend, lambda: {"internal_storage_engine": _reverse_store(engine)()}

    def make(sites, vlans, name):
        adapter = adapter_cls(name=name, **kwargs())
        filled = build(ns, sites, vlans, name=name)
        for modelname in ("site", "device", "interface", "vlan"):
            for obj in filled.get_all(modelname):
                adapter.add(obj.model_copy(update={"adapter": None}))
        return adapter

    src = make(SRC_SITES, SRC_VLANS, "src")
    dst = make(DST_SITES, DST_VLANS, "dst")
    diff = dst.diff_from(src)
    assert [e.name for e in diff.get_children()] == ["s4", "s2", "s1", "s3", "40", "20", "10", "30"]
    s1 = diff.children["site"]["s1"]
    assert [e.name for e in s1.get_children()] == ["d2", "d1", "d4"]
    dst.sync_from(src, diff=diff)
    assert ns.rec.ops[:3] == [
        ("create", "site", "s2"),
        ("create", "device", "s2__d3"),
        ("create", "interface", "d3__e7"),
    ]
