"""Scoped diffs and syncs (``core.scope.Scope``), property-tested against a full sync on generated data.

The reference for a scoped sync is a full sync of the datasets cut down to the scope (both sides): the scoped
sync must leave the target's part inside the scope as that reference leaves it, and everything outside it as
it was. A top-level object only the target has, holding children of an excluded child type, is not deleted
(the reference keeps it by giving the source the same object).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import Adapter, DiffSyncModel
from core.scope import Scope


class Interface(DiffSyncModel):
    _modelname = "interface"
    _identifiers = ("site", "device", "name")
    _attributes = ("speed",)
    site: str
    device: str
    name: str
    speed: int = 0


class Device(DiffSyncModel):
    _modelname = "device"
    _identifiers = ("site", "name")
    _attributes = ("role",)
    _children = {"interface": "interfaces"}
    site: str
    name: str
    role: str = ""
    interfaces: List[str] = []


class Site(DiffSyncModel):
    _modelname = "site"
    _identifiers = ("name",)
    _attributes = ("region",)
    _children = {"device": "devices"}
    name: str
    region: str = ""
    devices: List[str] = []


class Vlan(DiffSyncModel):
    _modelname = "vlan"
    _identifiers = ("group", "vid")
    _attributes = ("label",)
    group: str
    vid: int
    label: str = ""


class Net(Adapter):
    site = Site
    device = Device
    interface = Interface
    vlan = Vlan
    top_level = ["site", "vlan"]


Data = Dict[str, Any]


def build(data: Data, name: str) -> Net:
    adapter = Net(name=name)
    for site_name, (region, devices) in sorted(data["sites"].items()):
        site = Site(name=site_name, region=region)
        adapter.add(site)
        for device_name, (role, interfaces) in sorted(devices.items()):
            device = Device(site=site_name, name=device_name, role=role)
            adapter.add(device)
            site.add_child(device)
            for interface_name, speed in sorted(interfaces.items()):
                interface = Interface(site=site_name, device=device_name, name=interface_name, speed=speed)
                adapter.add(interface)
                device.add_child(interface)
    for (group, vid), label in sorted(data["vlans"].items()):
        adapter.add(Vlan(group=group, vid=vid, label=label))
    return adapter


interfaces = st.dictionaries(st.sampled_from(["i0", "i1", "i2"]), st.sampled_from([1, 10]), max_size=3)
devices = st.dictionaries(
    st.sampled_from(["d0", "d1", "d2"]), st.tuples(st.sampled_from(["leaf", "spine"]), interfaces), max_size=3
)
sites = st.dictionaries(
    st.sampled_from([f"s{i}" for i in range(6)]), st.tuples(st.sampled_from(["emea", "amer"]), devices), max_size=6
)
vlans = st.dictionaries(
    st.tuples(st.sampled_from(["core", "edge"]), st.integers(1, 4)), st.sampled_from(["a", "b"]), max_size=6
)
datasets = st.fixed_dictionaries({"sites": sites, "vlans": vlans})
uids = [f"s{i}" for i in range(6)] + [f"{group}__{vid}" for group in ("core", "edge") for vid in range(1, 5)]
scopes = st.builds(
    Scope,
    types=st.one_of(st.none(), st.lists(st.sampled_from(["site", "vlan"]), unique=True)),
    ids=st.one_of(st.none(), st.lists(st.sampled_from(uids), unique=True, max_size=6)),
    where=st.one_of(
        st.just({}),
        st.fixed_dictionaries({"vlan": st.fixed_dictionaries({"group": st.sampled_from(["core", "edge"])})}),
    ),
    children=st.one_of(st.none(), st.lists(st.sampled_from(["device", "interface"]), unique=True)),
)


def in_top(scope: Scope, modelname: str, uid: str, identifiers: Dict[str, Any]) -> bool:
    class Plain:
        pass

    plain = Plain()
    plain.__dict__.update(identifiers)
    return scope.has_type(modelname) and scope.has_top(modelname, uid, plain)


def cut(data: Data, scope: Scope) -> Data:
    """The part of a dataset inside the scope."""
    found: Data = {"sites": {}, "vlans": {}}
    for name, (region, devices) in data["sites"].items():
        if not in_top(scope, "site", name, {"name": name}):
            continue
        kept = {}
        if scope.has_child_type("device"):
            for device_name, (role, ifaces) in devices.items():
                kept[device_name] = (role, ifaces if scope.has_child_type("interface") else {})
        found["sites"][name] = (region, kept)
    for (group, vid), label in data["vlans"].items():
        if in_top(scope, "vlan", f"{group}__{vid}", {"group": group, "vid": vid}):
            found["vlans"][(group, vid)] = label
    return found


def holds_excluded(scope: Scope, devices: Dict[str, Any]) -> bool:
    if not scope.has_child_type("device"):
        return bool(devices)
    return not scope.has_child_type("interface") and any(ifaces for _, ifaces in devices.values())


def reference(source: Data, target: Data, scope: Scope) -> Data:
    """The target's part inside the scope after a full sync of the cut datasets."""
    src, dst = cut(source, scope), cut(target, scope)
    for name, (_region, devices) in target["sites"].items():  # kept, not deleted: it holds excluded children
        if name in dst["sites"] and name not in src["sites"] and holds_excluded(scope, devices):
            src["sites"][name] = dst["sites"][name]
    src_adapter, dst_adapter = build(src, "source"), build(dst, "target")
    dst_adapter.sync_from(src_adapter)
    return dst_adapter.dict()


def plain(values: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("devices", "interfaces")}


def part_of(adapter: Net, scope: Scope, inside: bool) -> Dict[str, Any]:
    """The adapter's objects inside (or outside) the scope, as ``Adapter.dict()`` shows them."""
    everything = adapter.dict()
    found: Dict[str, Any] = {}
    tops = {"site": {}, "vlan": {}}
    for modelname in ("site", "vlan"):
        for uid in everything.get(modelname, {}):
            obj = adapter.get(modelname, uid)
            tops[modelname][uid] = in_top(scope, modelname, uid, obj.get_identifiers())
    for modelname, objects in everything.items():
        for uid, values in objects.items():
            if modelname in tops:
                within = tops[modelname][uid]
            else:
                site_uid = values["site"]
                within = tops["site"].get(site_uid, False) and scope.has_child_type("device")
                if modelname == "interface":
                    within = within and scope.has_child_type("interface")
            if within == inside:
                found.setdefault(modelname, {})[uid] = {
                    k: v for k, v in values.items() if k not in ("devices", "interfaces")
                }
    return found


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(source=datasets, target=datasets, scope=scopes)
def test_a_scoped_sync_is_a_full_sync_of_the_scope_and_touches_nothing_else(
    source: Data, target: Data, scope: Scope
) -> None:
    src, dst = build(source, "source"), build(target, "target")
    before_outside = part_of(dst, scope, inside=False)
    dst.sync_from(src, scope=scope)
    expected = reference(source, target, scope)
    got_inside = part_of(dst, scope, inside=True)
    want_inside = {name: {uid: plain(values) for uid, values in objects.items()} for name, objects in expected.items()}
    assert got_inside == {k: v for k, v in want_inside.items() if v}
    assert part_of(dst, scope, inside=False) == before_outside
    assert not dst.diff_from(src, scope=scope).has_diffs() or holds_excluded_anywhere(target, source, scope)


def holds_excluded_anywhere(target: Data, source: Data, scope: Scope) -> bool:
    return any(
        name not in source["sites"] and holds_excluded(scope, devices) for name, (_, devices) in target["sites"].items()
    )


@settings(max_examples=100, deadline=None, derandomize=True)
@given(source=datasets, target=datasets, scope=scopes)
def test_a_scoped_diff_is_the_full_diff_cut_to_the_scope(source: Data, target: Data, scope: Scope) -> None:
    scoped = build(target, "target").diff_from(build(source, "source"), scope=scope)
    whole_cut = build(cut(target, scope), "target").diff_from(build(cut(source, scope), "source"))
    skipped = {
        name
        for name, (_, devices) in target["sites"].items()
        if name not in source["sites"]
        and holds_excluded(scope, devices)
        and in_top(scope, "site", name, {"name": name})
    }
    expected = whole_cut.dict()
    for name in skipped:
        expected.get("site", {}).pop(name, None)
    assert scoped.dict() == {k: v for k, v in expected.items() if v}
    assert scoped.summary()["skip"] >= len(skipped)


def test_the_whole_scope_changes_nothing_and_bad_scopes_are_named() -> None:
    data = {"sites": {"s0": ("emea", {"d0": ("leaf", {"i0": 1})})}, "vlans": {("core", 1): "a"}}
    empty: Data = {"sites": {}, "vlans": {}}
    assert (
        build(empty, "t").diff_from(build(data, "s"), scope=Scope()).dict()
        == build(empty, "t").diff_from(build(data, "s")).dict()
    )
    with pytest.raises(ValueError, match="scope types must be a list of strings"):
        Scope(types="site")
    with pytest.raises(ValueError, match="unknown field 'type'"):
        Scope.from_data({"type": ["site"]})
    scope = Scope.from_data({"types": ["site"], "ids": ["s0"], "children": []})
    assert Scope.from_data(scope.to_data()) == scope and "children none" in scope.describe()
    assert copy.deepcopy(scope) == scope


@settings(max_examples=100, deadline=None, derandomize=True)
@given(first=scopes, second=scopes, data=datasets)
def test_the_union_of_two_scopes_holds_both(first: Scope, second: Scope, data: Data) -> None:
    from core.scope import union

    joined = union(first, second) or Scope()
    for scope in (first, second):
        for name in data["sites"]:
            if in_top(scope, "site", name, {"name": name}):
                assert in_top(joined, "site", name, {"name": name})
        for (group, vid) in data["vlans"]:
            if in_top(scope, "vlan", f"{group}__{vid}", {"group": group, "vid": vid}):
                assert in_top(joined, "vlan", f"{group}__{vid}", {"group": group, "vid": vid})
        for child in ("device", "interface"):
            assert joined.has_child_type(child) or not scope.has_child_type(child)
    assert union(Scope(ids=("a",)), Scope(ids=("b", "a"))) == Scope(ids=("a", "b"))
    assert union(Scope(ids=("a",)), None) is None
