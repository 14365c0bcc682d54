"""Diff and DiffElement: structure, ordering hooks, summaries, renderings, and the element API."""

import datetime
import decimal
from typing import Dict, List

import pytest

from ._support import both, build, element_rows, make_models, standard_pair


def element(engine, obj_type="vlan", name="10", keys=None, source=None, dest=None, **kwargs):
    """A DiffElement with the given attrs (None: absent on that side)."""
    elem = engine.DiffElement(obj_type, name, keys if keys is not None else {"vid": name}, **kwargs)
    elem.add_attrs(source=source, dest=dest)
    return elem


# ------------------------------------------------------------------------------------------------------------
# Diff: add, groups, children, ordering
# ------------------------------------------------------------------------------------------------------------


def test_new_diff_is_empty(engine):
    diff = engine.Diff()
    assert diff.groups() == []
    assert list(diff.get_children()) == []
    assert len(diff) == 0
    assert not diff.has_diffs()
    assert diff.models_processed == 0
    assert diff.str() == "(no diffs)"
    assert diff.dict() == {}
    assert diff.summary() == {"create": 0, "update": 0, "delete": 0, "no-change": 0, "skip": 0}


def test_add_and_groups(engine):
    diff = engine.Diff()
    a = element(engine, "vlan", "1", source={})
    b = element(engine, "site", "s", source={})
    c = element(engine, "vlan", "2", dest={})
    for elem in (a, b, c):
        diff.add(elem)
    assert diff.groups() == ["vlan", "site"]
    assert diff.children["vlan"] == {"1": a, "2": c}
    assert list(diff.get_children()) == [a, c, b]


def test_add_duplicate_name_raises(engine):
    diff = engine.Diff()
    first = element(engine, "vlan", "1", source={})
    duplicate = element(engine, "vlan", "1", dest={})
    diff.add(first)
    with pytest.raises(engine.exc.ObjectAlreadyExists) as err:
        diff.add(duplicate)
    assert str(err.value.args[0]) == "Already storing a vlan named 1"
    assert diff.children["vlan"]["1"] is first
    # The same name in another group is fine.
    diff.add(element(engine, "site", "1", source={}))
    assert len(diff) == 2


def test_add_duplicate_reports_the_rejected_element(engine):
    # diffsync passes the element being added as ObjectAlreadyExists.existing_object.
    diff = engine.Diff()
    first = element(engine, "vlan", "1", source={})
    duplicate = element(engine, "vlan", "1", dest={})
    diff.add(first)
    with pytest.raises(engine.exc.ObjectAlreadyExists) as err:
        diff.add(duplicate)
    assert err.value.existing_object is duplicate
    assert err.value.args == ("Already storing a vlan named 1", duplicate)


def test_order_children_default(engine):
    children = {"b": element(engine, name="b"), "a": element(engine, name="a")}
    assert list(engine.Diff.order_children_default(children)) == list(children.values())
    assert list(engine.Diff().order_children_default(children)) == list(children.values())


def _reverse_device_diff(engine):
    class ReverseDevices(engine.Diff):
        calls = []

        @classmethod
        def order_children_device(cls, children):
            cls.calls.append(sorted(children))
            yield from sorted(children.values(), reverse=True)

    return ReverseDevices


def test_order_children_hook_affects_get_children(engine):
    diff_class = _reverse_device_diff(engine)
    diff = diff_class()
    site = element(engine, "site", "s", source={}, diff_class=diff_class)
    diff.add(site)
    vlans = [element(engine, "vlan", name, source={}) for name in ("2", "1", "3")]
    for vlan in vlans:
        diff.add(vlan)
    devices = [element(engine, "device", name, source={}) for name in ("d2", "d1", "d3")]
    for device in devices:
        site.add_child(device)
    # No hook for vlan/site: insertion order.
    assert [e.name for e in diff.get_children()] == ["s", "2", "1", "3"]
    assert [e.name for e in site.get_children()] == ["d3", "d2", "d1"]
    assert [e.name for e in site.child_diff.get_children()] == ["d3", "d2", "d1"]
    assert len(diff) == 7


def test_order_children_hook_affects_sync_order(engine):
    diff_class = _reverse_device_diff(engine)
    ns = make_models(engine)
    src = build(
        ns,
        {
            "s1": ("r1", {"d1": ("leaf", {"e1": "x"}), "d2": ("leaf", {}), "d3": ("leaf", {"e3": "z"})}),
            "s2": ("r2", {"d5": ("leaf", {}), "d4": ("leaf", {})}),
        },
        {2: "two", 1: "one"},
    )
    dst = build(ns, {"s1": ("r1", {})})
    diff = dst.diff_from(src, diff_class=diff_class)
    s1 = diff.children["site"]["s1"]
    assert [e.name for e in s1.get_children()] == ["d3", "d2", "d1"]
    assert [e.name for e in diff.children["site"]["s2"].get_children()] == ["d5", "d4"]
    dst.sync_from(src, diff_class=diff_class, diff=diff)
    assert ns.rec.ops == [
        ("create", "device", "s1__d3"),
        ("create", "interface", "d3__e3"),
        ("create", "device", "s1__d2"),
        ("create", "device", "s1__d1"),
        ("create", "interface", "d1__e1"),
        ("create", "site", "s2"),
        ("create", "device", "s2__d5"),
        ("create", "device", "s2__d4"),
        ("create", "vlan", "2"),
        ("create", "vlan", "1"),
    ]
    assert dst.get("site", "s1").devices == ["s1__d3", "s1__d2", "s1__d1"]


def test_order_children_hook_affects_dict_but_not_str(engine):
    class ReverseVlans(engine.Diff):
        @classmethod
        def order_children_vlan(cls, children):
            yield from sorted(children.values(), reverse=True)

    diff = ReverseVlans()
    for name in ("1", "2"):
        diff.add(element(engine, "vlan", name, source={"vname": name}))
    assert list(diff.dict()["vlan"]) == ["2", "1"]
    assert diff.str() == "vlan\n  vlan: 1 MISSING in dest\n  vlan: 2 MISSING in dest"


# ------------------------------------------------------------------------------------------------------------
# Diff: has_diffs, summary, str, dict, complete, len
# ------------------------------------------------------------------------------------------------------------


def test_has_diffs(engine):
    diff = engine.Diff()
    unchanged = element(engine, "site", "s", source={"region": "r"}, dest={"region": "r"})
    diff.add(unchanged)
    assert not diff.has_diffs()
    unchanged.add_child(element(engine, "device", "d", source={}, dest={}))
    assert not diff.has_diffs()
    unchanged.add_child(element(engine, "device", "d2", source={}))
    assert diff.has_diffs()


def test_summary_counts_every_level(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src)
    assert diff.summary() == {"create": 7, "update": 2, "delete": 7, "no-change": 6, "skip": 0}
    assert diff.models_processed == len(src) + len(dst)


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("SKIP_UNMATCHED_SRC", {"create": 0, "update": 2, "delete": 7, "no-change": 6, "skip": 4}),
        ("SKIP_UNMATCHED_DST", {"create": 7, "update": 2, "delete": 0, "no-change": 6, "skip": 4}),
        ("SKIP_UNMATCHED_BOTH", {"create": 0, "update": 2, "delete": 0, "no-change": 6, "skip": 8}),
    ],
)
def test_summary_counts_skipped(engine, flag, expected):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src, flags=getattr(engine.F, flag))
    assert diff.summary() == expected


def test_summary_counts_ignored_and_unmatched_top_level_types(engine):
    ns = make_models(engine)

    class SitesOnly(engine.Adapter):
        site = ns.Site
        device = ns.Device
        interface = ns.Interface
        vlan = ns.Vlan
        top_level = ["site"]

    src = build(ns, {"s1": ("r1", {"d1": ("leaf", {})})}, {1: "a", 2: "b"}, adapter_cls=SitesOnly)
    dst = build(ns, {"s1": ("r1", {"d1": ("leaf", {})})}, {3: "c"})
    dst.get("device", "s1__d1").model_flags = engine.MF.IGNORE
    diff = dst.diff_from(src)
    # vlan is top-level in dst only: its 1 object counts as skipped; the ignored device pair counts 1.
    assert diff.models_processed == 4
    assert diff.summary() == {"create": 0, "update": 0, "delete": 0, "no-change": 1, "skip": 2}


def test_summary_of_hand_built_diff(engine):
    diff = engine.Diff()
    site = element(engine, "site", "s", source={"r": 1}, dest={"r": 2})
    site.add_child(element(engine, "device", "d", source={}))
    diff.add(site)
    diff.add(element(engine, "vlan", "1", dest={}))
    diff.add(element(engine, "vlan", "2", source={}, dest={}))
    diff.models_processed = 10
    assert diff.summary() == {"create": 1, "update": 1, "delete": 1, "no-change": 1, "skip": 10 - 1 - 2 - 1 - 2}
    assert site.summary() == {"create": 1, "update": 1, "delete": 0, "no-change": 0}


def test_str_of_standard_diff(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    assert dst.diff_from(src).str() == (
        "site\n"
        "  site: s1\n"
        "    device\n"
        "      device: d1\n"
        "        role    src(leaf)    dst(spine)\n"
        "        interface\n"
        "          interface: e2 MISSING in dst\n"
        "          interface: e3 MISSING in src\n"
        "      device: d2 MISSING in dst\n"
        "        interface\n"
        "          interface: e5 MISSING in dst\n"
        "      device: d4 MISSING in src\n"
        "        interface\n"
        "          interface: e9 MISSING in src\n"
        "  site: s2 MISSING in dst\n"
        "    device\n"
        "      device: d3 MISSING in dst\n"
        "        interface\n"
        "          interface: e7 MISSING in dst\n"
        "  site: s3 MISSING in src\n"
        "    device\n"
        "      device: d5 MISSING in src\n"
        "        interface\n"
        "          interface: e8 MISSING in src\n"
        "vlan\n"
        "  vlan: 10\n"
        "    vname    src(ten)    dst(TEN)\n"
        "  vlan: 20 MISSING in dst\n"
        "  vlan: 30 MISSING in src"
    )


def test_str_indent_and_no_diffs(engine):
    ns = make_models(engine)
    src = build(ns, {"s1": ("r1", {})}, {1: "a"})
    dst = build(ns, {"s1": ("r1", {})}, {1: "a"})
    assert dst.diff_from(src).str() == "(no diffs)"
    dst.get("vlan", "1").vname = "b"
    assert dst.diff_from(src).str(indent=4) == "    vlan\n      vlan: 1\n        vname    Backend(a)    Backend(b)"


def test_dict_of_standard_diff(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    assert dst.diff_from(src).dict() == {
        "site": {
            "s1": {
                "-": {},
                "+": {},
                "device": {
                    "d1": {
                        "-": {"role": "spine"},
                        "+": {"role": "leaf"},
                        "interface": {"e2": {"+": {"description": "b"}}, "e3": {"-": {"description": "c"}}},
                    },
                    "d2": {"+": {"role": "spine"}, "interface": {"e5": {"+": {"description": "x"}}}},
                    "d4": {"-": {"role": "leaf"}, "interface": {"e9": {"-": {"description": "z"}}}},
                },
            },
            "s2": {
                "+": {"region": "r2"},
                "device": {"d3": {"+": {"role": "leaf"}, "interface": {"e7": {"+": {"description": "y"}}}}},
            },
            "s3": {
                "-": {"region": "r3"},
                "device": {"d5": {"-": {"role": "leaf"}, "interface": {"e8": {"-": {"description": "w"}}}}},
            },
        },
        "vlan": {
            "10": {"-": {"vname": "TEN"}, "+": {"vname": "ten"}},
            "20": {"+": {"vname": "twenty"}},
            "30": {"-": {"vname": "thirty"}},
        },
    }


def test_complete_called_once_per_diff(engine):
    class CountingDiff(engine.Diff):
        completed = []

        def complete(self):
            CountingDiff.completed.append(self)

    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src, diff_class=CountingDiff)
    assert CountingDiff.completed == [diff]
    # No new diff is computed (so none completed) when one is given.
    dst.sync_from(src, diff_class=CountingDiff, diff=diff)
    assert CountingDiff.completed == [diff]
    src, dst = standard_pair(ns)
    synced = dst.sync_from(src, diff_class=CountingDiff)
    assert CountingDiff.completed == [diff, synced]
    # The children's diffs are instances of the class too, but they are never completed.
    assert type(synced.children["site"]["s1"].child_diff) is CountingDiff
    assert engine.Diff().complete() is None


def test_len_counts_all_elements(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src)
    assert len(diff) == 22
    assert len(diff.children["site"]["s1"]) == 9


def test_diff_matches_diffsync():
    observations = []
    for eng in both():
        ns = make_models(eng)
        src, dst = standard_pair(ns)
        diff = dst.diff_from(src)
        observations.append(
            (
                element_rows(diff),
                diff.summary(),
                diff.str(),
                diff.dict(),
                len(diff),
                diff.groups(),
                diff.models_processed,
            )
        )
    assert observations[0] == observations[1]


# ------------------------------------------------------------------------------------------------------------
# A diff is a snapshot of the data it was computed from
# ------------------------------------------------------------------------------------------------------------


def test_diff_elements_are_a_snapshot(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src)
    s4 = diff.children["site"]["s4"]
    vlan40 = diff.children["vlan"]["40"]
    dst.get("site", "s4").region = "changed-later"
    src.get("vlan", "40").vname = "changed-later"
    assert s4.dest_attrs == {"region": "r4"}
    assert vlan40.source_attrs == {"vname": "forty"}
    assert s4.action is None
    assert s4.get_attrs_diffs() == {"-": {}, "+": {}}
    assert "changed-later" not in diff.str()


def test_changing_a_nested_element_after_the_diff_is_seen_by_parents(engine):
    ns = make_models(engine)
    src, dst = standard_pair(ns)
    diff = dst.diff_from(src)
    s4 = diff.children["site"]["s4"]
    d6 = s4.child_diff.children["device"]["d6"]
    e6 = d6.child_diff.children["interface"]["e6"]
    assert not s4.has_diffs()
    e6.dest_attrs = {"description": "other"}
    assert e6.action == "update"
    assert d6.has_diffs()
    assert s4.has_diffs()
    assert diff.dict()["site"]["s4"]["device"]["d6"]["interface"]["e6"] == {
        "-": {"description": "other"},
        "+": {"description": "q"},
    }
    assert "interface: e6" in diff.str()


# ------------------------------------------------------------------------------------------------------------
# DiffElement
# ------------------------------------------------------------------------------------------------------------


def test_element_construction(engine):
    elem = engine.DiffElement("device", "d1", {"site_name": "s1", "name": "d1"})
    assert elem.type == "device"
    assert elem.name == "d1"
    assert elem.keys == {"site_name": "s1", "name": "d1"}
    assert (elem.source_name, elem.dest_name) == ("source", "dest")
    assert elem.source_attrs is None and elem.dest_attrs is None
    assert type(elem.child_diff) is engine.Diff
    assert elem.action is None
    assert not elem.has_diffs()
    assert len(elem) == 1


def test_element_custom_names_and_diff_class(engine):
    class MyDiff(engine.Diff):
        pass

    elem = engine.DiffElement("vlan", "1", {"vid": 1}, source_name="A", dest_name="B", diff_class=MyDiff)
    assert (elem.source_name, elem.dest_name) == ("A", "B")
    assert type(elem.child_diff) is MyDiff
    replacement = MyDiff()
    elem.child_diff = replacement
    assert elem.child_diff is replacement


@pytest.mark.parametrize(
    "obj_type, name, message",
    [
        (1, "n", "obj_type must be a string (not <class 'int'>)"),
        ("t", None, "name must be a string (not <class 'NoneType'>)"),
        ("t", 10, "name must be a string (not <class 'int'>)"),
    ],
)
def test_element_requires_str_type_and_name(engine, obj_type, name, message):
    with pytest.raises(ValueError) as err:
        engine.DiffElement(obj_type, name, {})
    assert str(err.value) == message


def test_element_action(engine):
    assert element(engine, source={"a": 1}).action == "create"
    assert element(engine, dest={"a": 1}).action == "delete"
    assert element(engine, source={"a": 1}, dest={"a": 2}).action == "update"
    assert element(engine, source={"a": 1}, dest={"a": 1}).action is None
    assert element(engine, source={}, dest={}).action is None
    assert element(engine).action is None
    # Only attributes present on both sides are compared.
    assert element(engine, source={"a": 1, "b": 2}, dest={"a": 1, "c": 3}).action is None
    assert engine.Actions.CREATE == "create"


def test_element_source_and_dest_attrs_settable(engine):
    elem = element(engine)
    elem.source_attrs = {"vname": "x"}
    assert elem.action == "create"
    elem.dest_attrs = {"vname": "y"}
    assert elem.action == "update"
    assert elem.has_diffs()
    elem.source_attrs = None
    assert elem.action == "delete"
    elem.dest_attrs = None
    assert elem.action is None
    assert not elem.has_diffs()


def test_element_add_attrs(engine):
    elem = engine.DiffElement("vlan", "1", {"vid": 1})
    elem.add_attrs(source={"vname": "a"})
    assert (elem.source_attrs, elem.dest_attrs) == ({"vname": "a"}, None)
    elem.add_attrs(dest={"vname": "b"})
    assert (elem.source_attrs, elem.dest_attrs) == ({"vname": "a"}, {"vname": "b"})
    elem.add_attrs(source=None, dest=None)  # None leaves both sides as they are
    assert (elem.source_attrs, elem.dest_attrs) == ({"vname": "a"}, {"vname": "b"})
    elem.add_attrs(source={"vname": "b"})
    assert elem.action is None
    elem.add_attrs()
    assert elem.action is None


def test_element_get_attrs_keys(engine):
    assert list(element(engine, source={"b": 1, "a": 2}, dest={"a": 2, "c": 1, "b": 3}).get_attrs_keys()) == [
        "a",
        "b",
    ]
    assert list(element(engine, source={"b": 1, "a": 2}).get_attrs_keys()) == ["b", "a"]
    assert list(element(engine, dest={"c": 1}).get_attrs_keys()) == ["c"]
    assert list(element(engine).get_attrs_keys()) == []


def test_element_get_attrs_diffs(engine):
    assert element(engine, source={"a": 1, "b": 2}, dest={"a": 1, "b": 3}).get_attrs_diffs() == {
        "-": {"b": 3},
        "+": {"b": 2},
    }
    assert element(engine, source={"a": 1}, dest={"a": 1}).get_attrs_diffs() == {"-": {}, "+": {}}
    assert element(engine, source={"a": 1}).get_attrs_diffs() == {"+": {"a": 1}}
    assert element(engine, dest={"a": 1}).get_attrs_diffs() == {"-": {"a": 1}}
    assert element(engine).get_attrs_diffs() == {}


def test_element_has_diffs_include_children(engine):
    parent = element(engine, "site", "s", source={"r": 1}, dest={"r": 1})
    child = element(engine, "device", "d", source={})
    parent.add_child(child)
    assert parent.has_diffs() is True
    assert parent.has_diffs(include_children=True) is True
    assert parent.has_diffs(include_children=False) is False
    assert list(parent.get_children()) == [child]
    assert parent.child_diff.children["device"]["d"] is child
    assert len(parent) == 2


def test_element_add_child_duplicate(engine):
    parent = element(engine, "site", "s", source={})
    parent.add_child(element(engine, "device", "d", source={}))
    with pytest.raises(engine.exc.ObjectAlreadyExists):
        parent.add_child(element(engine, "device", "d", dest={}))


def test_element_dunder_str(engine):
    elem = element(
        engine, "interface", "e1", keys={"device_name": "d1", "name": "e1"}, source={"mtu": 1}, dest={"mtu": 2}
    )
    assert str(elem) == (
        "interface \"e1\" : {'device_name': 'd1', 'name': 'e1'} : source → dest : {'-': {'mtu': 2}, '+': {'mtu': 1}}"
    )
    created = element(engine, "vlan", "1", keys={"vid": 1}, source={"vname": "a"}, source_name="A", dest_name="B")
    assert str(created) == "vlan \"1\" : {'vid': 1} : A → B : {'+': {'vname': 'a'}}"


def test_element_detailed_str_and_dict(engine):
    parent = element(engine, "site", "s", source={"r": 1, "q": 0}, dest={"r": 2, "q": 0})
    parent.add_child(element(engine, "device", "d", source={"x": 1}))
    parent.add_child(element(engine, "device", "e", dest={"x": 1}))
    parent.add_child(element(engine, "device", "f", source={"x": 1}, dest={"x": 1}))
    assert parent.str() == (
        "site: s\n  r    source(1)    dest(2)\n  device\n    device: d MISSING in dest\n    device: e MISSING in source"
    )
    assert parent.dict() == {"-": {"r": 2}, "+": {"r": 1}, "device": {"d": {"+": {"x": 1}}, "e": {"-": {"x": 1}}}}
    assert element(engine, "vlan", "9").str(indent=2) == "  vlan: 9 (no diffs)"
    assert element(engine, "vlan", "9").dict() == {}


def test_element_ordering_and_equality(engine):
    a = element(engine, "device", "b", source={})
    b = element(engine, "device", "a", source={})
    c = element(engine, "site", "a", source={})
    assert b < a < c
    assert a > b
    assert c >= a
    assert b <= a
    assert sorted([c, a, b]) == [b, a, c]
    assert element(engine, "vlan", "1", source={"x": 1}) == element(engine, "vlan", "1", source={"x": 1})
    assert element(engine, "vlan", "1", source={"x": 1}) != element(engine, "vlan", "1", source={"x": 2})
    assert element(engine, "vlan", "1", source={"x": 1}) != element(engine, "vlan", "1", dest={"x": 1})
    assert element(engine, "vlan", "1", keys={"vid": 1}) != element(engine, "vlan", "1", keys={"vid": 2})
    assert element(engine, "vlan", "1") != "vlan"
    # Children are not part of equality.
    with_child = element(engine, "vlan", "1", source={})
    with_child.add_child(element(engine, "x", "y", source={}))
    assert with_child == element(engine, "vlan", "1", source={})


def test_unchanged_elements_keep_each_sides_own_values(engine):
    # Equal is not identical: each side's attrs are that side's values, as get_attrs() gave them.
    utc, plus_one = datetime.timezone.utc, datetime.timezone(datetime.timedelta(hours=1))

    class Reading(engine.DiffSyncModel):
        _modelname = "reading"
        _identifiers = ("name",)
        _attributes = ("amount", "when", "level")

        name: str
        amount: decimal.Decimal = decimal.Decimal(0)
        when: datetime.datetime = datetime.datetime(2020, 1, 1)
        level: float = 0.0

    class Meters(engine.Adapter):
        reading = Reading
        top_level = ["reading"]

    src, dst = Meters(name="src"), Meters(name="dst")
    src.add(Reading(name="r", amount=decimal.Decimal("1.0"), when=datetime.datetime(2024, 1, 1, 12, tzinfo=utc)))
    dst.add(
        Reading(
            name="r",
            amount=decimal.Decimal("1.00"),
            when=datetime.datetime(2024, 1, 1, 13, tzinfo=plus_one),
            level=-0.0,
        )
    )
    elem = dst.diff_from(src).children["reading"]["r"]
    assert elem.action is None
    assert repr(elem.source_attrs) == repr(src.get("reading", "r").get_attrs())
    assert repr(elem.dest_attrs) == repr(dst.get("reading", "r").get_attrs())
    assert str(elem.dest_attrs["amount"]) == "1.00"
    assert elem.dest_attrs["when"].tzinfo == plus_one
    assert str(elem.dest_attrs["level"]) == "-0.0"


def test_diff_snapshot_survives_in_place_mutation(engine):
    class Tagged(engine.DiffSyncModel):
        _modelname = "tagged"
        _identifiers = ("name",)
        _attributes = ("tags", "meta")

        name: str
        tags: List[str] = []
        meta: Dict[str, List[int]] = {}

    class Store(engine.Adapter):
        tagged = Tagged
        top_level = ["tagged"]

    src, dst = Store(name="src"), Store(name="dst")
    for adapter in (src, dst):
        adapter.add(Tagged(name="same", tags=["a"], meta={"k": [1]}))
        adapter.add(Tagged(name="changed", tags=["a"], meta={"k": [1]}))
    dst.get("tagged", "changed").tags = ["b"]
    diff = dst.diff_from(src)
    for adapter in (src, dst):
        for obj in adapter.get_all("tagged"):
            obj.tags.append("mutated")
            obj.meta["k"].append(99)
    same = diff.children["tagged"]["same"]
    changed = diff.children["tagged"]["changed"]
    assert same.source_attrs == {"tags": ["a"], "meta": {"k": [1]}}
    assert same.dest_attrs == {"tags": ["a"], "meta": {"k": [1]}}
    assert changed.source_attrs == {"tags": ["a"], "meta": {"k": [1]}}
    assert changed.dest_attrs == {"tags": ["b"], "meta": {"k": [1]}}
    assert diff.dict() == {"tagged": {"changed": {"-": {"tags": ["b"]}, "+": {"tags": ["a"]}}}}
