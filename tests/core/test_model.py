"""DiffSyncModel: declarations, identity, attributes, children, CRUD hooks, status, serialisation, flags.

Engine-parametrized tests run on core and on diffsync (the reference); the ``*_matches_diffsync`` tests build
the same classes on both engines and compare what they observe.
"""

import datetime
import decimal
import enum
import ipaddress
import json
import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Dict, List, Literal, Optional, Tuple, Union

import pytest
from pydantic import BaseModel, Field, PlainSerializer, field_serializer, model_serializer

from ._support import adapter_snapshot, both, build, element_rows, make_models

# ------------------------------------------------------------------------------------------------------------
# Declarations, validated when the subclass is defined
# ------------------------------------------------------------------------------------------------------------


def test_valid_declarations_define_fine(engine):
    class Thing(engine.DiffSyncModel):
        _modelname = "thing"
        _identifiers = ("name",)
        _shortname = ("short",)
        _attributes = ("value",)
        _children = {"child": "kids"}

        name: str
        short: str = ""
        value: int = 0
        kids: List[str] = []

    assert Thing.get_type() == "thing"


def test_identifier_may_be_a_non_field_class_attribute(engine):
    # _identifiers also accepts names that are class attributes (hasattr) rather than fields.
    class Thing(engine.DiffSyncModel):
        _modelname = "thing"
        _identifiers = ("label",)

        name: str

        @property
        def label(self):
            return self.name.upper()

    assert Thing(name="x").name == "x"


@pytest.mark.parametrize(
    "declarations, message",
    [
        ({"_identifiers": ("missing",)}, "_identifiers ('missing',) references missing or un-annotated attr missing"),
        ({"_shortname": ("missing",)}, "_shortname ('missing',) references missing or un-annotated attr missing"),
        ({"_attributes": ("missing",)}, "_attributes ('missing',) references missing or un-annotated attr missing"),
        (
            {"_children": {"child": "missing"}},
            "_children {'child': 'missing'} references missing or un-annotated attr missing",
        ),
        ({"_identifiers": ("name",), "_attributes": ("name",)}, "are included in both _identifiers and _attributes"),
        (
            {"_identifiers": ("kids",), "_children": {"child": "kids"}},
            "are included in both _identifiers and _children",
        ),
        ({"_attributes": ("kids",), "_children": {"child": "kids"}}, "are included in both _attributes and _children"),
    ],
    ids=["identifiers", "shortname", "attributes", "children", "id+attr", "id+child", "attr+child"],
)
def test_invalid_declarations_raise_attribute_error(engine, declarations, message):
    namespace = {
        "__module__": __name__,
        "__annotations__": {"name": str, "kids": List[str]},
        "kids": [],
        "_modelname": "thing",
        **declarations,
    }
    with pytest.raises(AttributeError) as err:
        type("Thing", (engine.DiffSyncModel,), namespace)
    assert message in str(err.value)


def test_shortname_must_be_a_field_not_just_a_class_attribute(engine):
    with pytest.raises(AttributeError, match="_shortname"):

        class Thing(engine.DiffSyncModel):  # noqa: F841 - defining the class is the test
            _modelname = "thing"
            _identifiers = ("name",)
            _shortname = ("label",)

            name: str

            @property
            def label(self):
                return self.name


# ------------------------------------------------------------------------------------------------------------
# Identity and attributes
# ------------------------------------------------------------------------------------------------------------


def test_get_type_on_class_and_instance(engine):
    ns = make_models(engine)
    assert ns.Site.get_type() == "site"
    assert ns.Site(name="s").get_type() == "site"
    assert ns.Interface.get_type() == "interface"
    assert engine.DiffSyncModel.get_type() == "diffsyncmodel"


def test_create_unique_id_follows_identifiers_order(engine):
    ns = make_models(engine)
    assert ns.Device.create_unique_id(name="d1", site_name="s1") == "s1__d1"
    assert ns.Vlan.create_unique_id(vid=10) == "10"
    # Extra keys are ignored; only _identifiers count.
    assert ns.Site.create_unique_id(name="s1", region="r1") == "s1"
    with pytest.raises(KeyError):
        ns.Device.create_unique_id(name="d1")


def test_get_unique_id_shortname_identifiers(engine):
    ns = make_models(engine)
    device = ns.Device(site_name="s1", name="d1", role="leaf")
    assert device.get_unique_id() == "s1__d1"
    assert device.get_shortname() == "d1"
    assert device.get_identifiers() == {"site_name": "s1", "name": "d1"}
    assert list(device.get_identifiers()) == ["site_name", "name"]
    site = ns.Site(name="s1")
    # Without _shortname, the shortname is the unique id.
    assert site.get_shortname() == "s1" == site.get_unique_id()
    vlan = ns.Vlan(vid=42)
    assert vlan.get_unique_id() == "42"
    assert vlan.get_identifiers() == {"vid": 42}


def test_get_identifiers_key_order_is_field_order(engine):
    class Thing(engine.DiffSyncModel):
        _modelname = "thing"
        _identifiers = ("b", "a")

        a: str
        b: str

    thing = Thing(a="x", b="y")
    assert list(thing.get_identifiers()) == ["a", "b"]
    # ...while the unique id follows the _identifiers order.
    assert thing.get_unique_id() == "y__x"


def test_get_attrs_only_declared_attributes_in_field_order(engine):
    class Thing(engine.DiffSyncModel):
        _modelname = "thing"
        _identifiers = ("name",)
        _attributes = ("zeta", "alpha", "mid")

        name: str
        alpha: int = 1
        mid: str = "m"
        private_note: str = "not compared"
        zeta: bool = False

    attrs = Thing(name="n", zeta=True).get_attrs()
    assert attrs == {"alpha": 1, "mid": "m", "zeta": True}
    assert list(attrs) == ["alpha", "mid", "zeta"]


def test_get_attrs_copies_mutable_values(engine):
    class Thing(engine.DiffSyncModel):
        _modelname = "thing"
        _identifiers = ("name",)
        _attributes = ("tags", "meta", "matrix")

        name: str
        tags: List[str] = []
        meta: Dict[str, List[int]] = {}
        matrix: List[List[int]] = []

    thing = Thing(name="n", tags=["a"], meta={"k": [1]}, matrix=[[1, 2]])
    attrs = thing.get_attrs()
    attrs["tags"].append("b")
    attrs["meta"]["k"].append(2)
    attrs["meta"]["other"] = [3]
    attrs["matrix"][0].append(3)
    assert thing.tags == ["a"]
    assert thing.meta == {"k": [1]}
    assert thing.matrix == [[1, 2]]
    assert thing.get_attrs() == {"tags": ["a"], "meta": {"k": [1]}, "matrix": [[1, 2]]}


def test_get_attrs_without_attributes_is_empty(engine):
    ns = make_models(engine)

    class Bare(engine.DiffSyncModel):
        _modelname = "bare"
        _identifiers = ("name",)
        name: str

    assert Bare(name="x").get_attrs() == {}
    assert ns.Site(name="s", region="r").get_attrs() == {"region": "r"}


def test_get_attrs_goes_through_an_overridden_dict_method(engine):
    # diffsync's get_attrs()/get_identifiers() are built on self.dict(): an override of dict() applies.
    class Thing(engine.DiffSyncModel):
        _modelname = "thing"
        _identifiers = ("name",)
        _attributes = ("value",)

        name: str
        value: str = ""

        def dict(self, **kwargs):
            data = super().dict(**kwargs)
            return {key: value.upper() if isinstance(value, str) else value for key, value in data.items()}

    thing = Thing(name="n", value="low")
    assert thing.get_attrs() == {"value": "LOW"}
    assert thing.get_identifiers() == {"name": "N"}
    assert thing.get_unique_id() == "N"


def test_get_children_mapping(engine):
    ns = make_models(engine)
    assert ns.Site.get_children_mapping() == {"device": "devices"}
    assert ns.Device(site_name="s", name="d").get_children_mapping() == {"interface": "interfaces"}
    assert ns.Interface.get_children_mapping() == {}


# ------------------------------------------------------------------------------------------------------------
# Children
# ------------------------------------------------------------------------------------------------------------


def test_add_child_and_remove_child(engine):
    ns = make_models(engine)
    site = ns.Site(name="s1")
    d1 = ns.Device(site_name="s1", name="d1")
    d2 = ns.Device(site_name="s1", name="d2")
    site.add_child(d1)
    site.add_child(d2)
    assert site.devices == ["s1__d1", "s1__d2"]
    site.remove_child(d1)
    assert site.devices == ["s1__d2"]


def test_add_child_errors(engine):
    ns = make_models(engine)
    site = ns.Site(name="s1")
    device = ns.Device(site_name="s1", name="d1")
    site.add_child(device)
    with pytest.raises(engine.exc.ObjectAlreadyExists) as err:
        site.add_child(ns.Device(site_name="s1", name="d1"))
    assert str(err.value.args[0]) == "Already storing a device with unique_id s1__d1"
    assert err.value.existing_object.get_unique_id() == "s1__d1"
    with pytest.raises(engine.exc.ObjectStoreWrongType) as err:
        site.add_child(ns.Interface(device_name="d1", name="e1"))
    assert str(err.value) == "Unable to store interface as a child of site; valid types are ['device']"
    assert site.devices == ["s1__d1"]


def test_remove_child_errors(engine):
    ns = make_models(engine)
    site = ns.Site(name="s1")
    with pytest.raises(engine.exc.ObjectStoreWrongType) as err:
        site.remove_child(ns.Vlan(vid=1))
    assert str(err.value) == "Unable to find and delete vlan as a child of site; valid types are ['device']"
    with pytest.raises(engine.exc.ObjectNotFound) as err:
        site.remove_child(ns.Device(site_name="s1", name="d9"))
    assert str(err.value) == "s1__d9 was not found as a child in devices"


# ------------------------------------------------------------------------------------------------------------
# create / update / delete and status
# ------------------------------------------------------------------------------------------------------------


def test_create_and_create_base(engine):
    class Thing(engine.DiffSyncModel):
        _modelname = "thing"
        _identifiers = ("name",)
        _attributes = ("value",)
        name: str
        value: int = 0

    adapter = engine.Adapter()
    for method in (Thing.create, Thing.create_base):
        obj = method(adapter=adapter, ids={"name": "n"}, attrs={"value": 3})
        assert isinstance(obj, Thing)
        assert obj.name == "n" and obj.value == 3
        assert obj.adapter is adapter
        assert obj.get_status() == (engine.Status.SUCCESS, "Created successfully")
    # create does not add the object to the adapter: the syncer does.
    assert len(adapter) == 0


def test_update_and_update_base(engine):
    ns = make_models(engine)
    for method_name in ("update", "update_base"):
        vlan = ns.Vlan(vid=1, vname="a")
        result = getattr(vlan, method_name)(attrs={"vname": "b"})
        assert result is vlan
        assert vlan.vname == "b"
        assert vlan.get_status() == (engine.Status.SUCCESS, "Updated successfully")


def test_delete_and_delete_base(engine):
    ns = make_models(engine)
    for method_name in ("delete", "delete_base"):
        vlan = ns.Vlan(vid=1, vname="a")
        assert getattr(vlan, method_name)() is vlan
        assert vlan.get_status() == (engine.Status.SUCCESS, "Deleted successfully")


def test_overridden_create_can_set_its_own_status(engine):
    class Thing(engine.DiffSyncModel):
        _modelname = "thing"
        _identifiers = ("name",)
        name: str

        @classmethod
        def create(cls, adapter, ids, attrs):
            obj = super().create(adapter=adapter, ids=ids, attrs=attrs)
            obj.set_status(engine.Status.FAILURE, "backend said no")
            return obj

    obj = Thing.create(adapter=None, ids={"name": "x"}, attrs={})
    assert obj.get_status() == (engine.Status.FAILURE, "backend said no")


def test_set_status_get_status(engine):
    ns = make_models(engine)
    vlan = ns.Vlan(vid=1)
    assert vlan.get_status() == (engine.Status.SUCCESS, "")
    vlan.set_status(engine.Status.ERROR, "boom")
    assert vlan.get_status() == (engine.Status.ERROR, "boom")
    vlan.set_status(engine.Status.UNKNOWN)
    assert vlan.get_status() == (engine.Status.UNKNOWN, "")
    # The status is per instance.
    assert ns.Vlan(vid=2).get_status() == (engine.Status.SUCCESS, "")


def test_status_private_attributes_readable(engine):
    # diffsync declares _status/_status_message as pydantic private attributes.
    ns = make_models(engine)
    vlan = ns.Vlan(vid=1)
    assert vlan._status == engine.Status.SUCCESS
    assert vlan._status_message == ""
    vlan.set_status(engine.Status.ERROR, "boom")
    assert (vlan._status, vlan._status_message) == (engine.Status.ERROR, "boom")


def test_status_does_not_break_model_equality(engine):
    # Pydantic equality includes private attributes; in diffsync every instance starts with SUCCESS/"".
    ns = make_models(engine)
    one, two = ns.Vlan(vid=1, vname="a"), ns.Vlan(vid=1, vname="a")
    assert one == two
    one.set_status(engine.Status.SUCCESS, "")
    assert one == two
    one.set_status(engine.Status.ERROR, "x")
    assert one != two


# ------------------------------------------------------------------------------------------------------------
# dict / json / str / repr
# ------------------------------------------------------------------------------------------------------------


def test_dict_excludes_adapter(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    site = ns.Site(name="s1", region="r1")
    adapter.add(site)
    assert site.adapter is adapter
    assert site.dict() == {
        "model_flags": engine.MF.NONE,
        "name": "s1",
        "region": "r1",
        "devices": [],
    }
    assert site.dict(exclude_defaults=True) == {"name": "s1", "region": "r1"}
    # An explicit exclude replaces the default one.
    assert set(site.dict(exclude={"devices"})) == {"model_flags", "adapter", "name", "region"}


def test_json_excludes_adapter_and_defaults(engine):
    ns = make_models(engine)
    adapter = ns.Backend()
    site = ns.Site(name="s1", region="r1")
    adapter.add(site)
    assert site.json() == '{"name":"s1","region":"r1"}'
    assert json.loads(site.json(exclude_defaults=False)) == {
        "model_flags": 0,
        "name": "s1",
        "region": "r1",
        "devices": [],
    }
    site.add_child(ns.Device(site_name="s1", name="d1"))
    assert json.loads(site.json()) == {"name": "s1", "region": "r1", "devices": ["s1__d1"]}


def test_repr_and_str(engine):
    ns = make_models(engine)
    device = ns.Device(site_name="s1", name="d1")
    assert repr(device) == 'device "s1__d1"'
    assert str(device) == "s1__d1"
    assert f"{ns.Vlan(vid=7)}" == "7"


def test_detailed_str_with_children_from_adapter(engine):
    ns = make_models(engine)
    adapter = build(ns, {"s1": ("r1", {"d1": ("leaf", {"e1": "a"}), "d2": ("spine", {})})})
    site = adapter.get("site", "s1")
    assert site.str() == (
        "site: s1: {'region': 'r1'}\n"
        "  devices\n"
        "    device: s1__d1: {'role': 'leaf'}\n"
        "      interfaces\n"
        "        interface: d1__e1: {'description': 'a'}\n"
        "    device: s1__d2: {'role': 'spine'}\n"
        "      interfaces: []"
    )
    assert site.str(include_children=False) == "site: s1: {'region': 'r1'}\n  devices: ['s1__d1', 's1__d2']"
    assert site.str(indent=2).startswith("  site: s1: {'region': 'r1'}\n    devices\n      device: s1__d1")


def test_detailed_str_missing_child_and_no_adapter(engine):
    ns = make_models(engine)
    adapter = build(ns, {"s1": ("r1", {"d1": ("leaf", {}), "d2": ("spine", {})})})
    site = adapter.get("site", "s1")
    adapter.remove(adapter.get("device", "s1__d2"))
    assert site.str() == (
        "site: s1: {'region': 'r1'}\n"
        "  devices\n"
        "    device: s1__d1: {'role': 'leaf'}\n"
        "      interfaces: []\n"
        "    s1__d2 (ERROR: details unavailable)"
    )
    orphan = ns.Site(name="x", devices=["a"])
    assert orphan.str() == "site: x: {'region': ''}\n  devices: ['a']"
    assert ns.Site(name="y").str() == "site: y: {'region': ''}\n  devices: []"


# ------------------------------------------------------------------------------------------------------------
# model_flags
# ------------------------------------------------------------------------------------------------------------


def test_model_flags_default_class_level_and_instance_level(engine):
    ns = make_models(engine, vlan_flags=engine.MF.IGNORE)
    assert ns.Site(name="s").model_flags == engine.MF.NONE
    assert ns.Vlan(vid=1).model_flags == engine.MF.IGNORE
    site = ns.Site(name="s")
    site.model_flags |= engine.MF.SKIP_CHILDREN_ON_DELETE
    assert site.model_flags == engine.MF.SKIP_CHILDREN_ON_DELETE
    assert ns.Site(name="t").model_flags == engine.MF.NONE
    assert ns.Site(name="u", model_flags=engine.MF.SKIP_UNMATCHED_BOTH).model_flags & engine.MF.SKIP_UNMATCHED_SRC


# ------------------------------------------------------------------------------------------------------------
# Models with non-trivial fields: core must observe exactly what diffsync observes
# ------------------------------------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class StrColor(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(BaseModel):
    a: int = 0
    b: str = "x"


@dataclass
class Point:
    x: int
    y: int


def _times_ten(self, value):
    return value * 10


def _upper_strings(self, handler):
    data = handler(self)
    return {key: value.upper() if isinstance(value, str) else value for key, value in data.items()}


IP1, IP2 = ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2")

# (id, annotation, value_a, value_b, extra class namespace)
FIELD_KINDS = [
    ("nested_model", Inner, Inner(a=1), Inner(a=2), {}),
    ("optional_nested_model", Optional[Inner], Inner(a=1), None, {}),
    ("list_of_models", List[Inner], [Inner(a=1)], [Inner(a=1), Inner(a=2)], {}),
    ("dict_of_models", Dict[str, Inner], {"k": Inner(a=1)}, {"k": Inner(a=3)}, {}),
    ("field_serializer", int, 1, 2, {"ser_value": field_serializer("value")(_times_ten)}),
    ("model_serializer", str, "low", "other", {"ser_model": model_serializer(mode="wrap")(_upper_strings)}),
    ("plain_serializer", Annotated[int, PlainSerializer(lambda v: f"<{v}>", return_type=str)], 1, 2, {}),
    ("annotated_constraint", Annotated[int, Field(gt=0)], 1, 2, {}),
    ("any_scalar", Any, 1, "1", {}),
    ("any_model", Any, Inner(a=1), Inner(a=2), {}),
    ("any_dataclass", Any, Point(1, 2), Point(2, 2), {}),
    ("list_any_models", List[Any], [Inner(a=1)], [Inner(a=2)], {}),
    ("ipv4_address", ipaddress.IPv4Address, IP1, IP2, {}),
    ("ipv6_address", ipaddress.IPv6Address, ipaddress.ip_address("::1"), ipaddress.ip_address("::2"), {}),
    (
        "ipv4_network",
        ipaddress.IPv4Network,
        ipaddress.ip_network("10.0.0.0/24"),
        ipaddress.ip_network("10.1.0.0/24"),
        {},
    ),
    (
        "ipv4_interface",
        ipaddress.IPv4Interface,
        ipaddress.ip_interface("10.0.0.1/24"),
        ipaddress.ip_interface("10.0.0.2/24"),
        {},
    ),
    ("enum", Color, Color.RED, Color.BLUE, {}),
    ("str_enum", StrColor, StrColor.RED, StrColor.BLUE, {}),
    ("literal", Literal["x", "y"], "x", "y", {}),
    ("list_str", List[str], ["a", "b"], ["b"], {}),
    ("dict_str_int", Dict[str, int], {"a": 1}, {"a": 2, "b": 3}, {}),
    ("tuple_ints", Tuple[int, ...], (1, 2), (2,), {}),
    ("optional_int", Optional[int], None, 3, {}),
    ("union_model_int", Union[Inner, int], Inner(a=1), 5, {}),
    ("bare_list_scalars", list, [1, "a"], [2], {}),
    ("bare_list_of_models", list, [Inner(a=1)], [Inner(a=2)], {}),
    ("bare_dict_of_models", dict, {"k": Inner(a=1)}, {"k": Inner(a=2)}, {}),
    ("bare_list_of_dataclasses", list, [Point(1, 2)], [Point(3, 4)], {}),
    ("float_given_int", float, 1, 2, {}),
    ("bool", bool, True, False, {}),
    ("datetime", datetime.datetime, datetime.datetime(2024, 1, 1), datetime.datetime(2024, 1, 2), {}),
    ("decimal", decimal.Decimal, decimal.Decimal("1.10"), decimal.Decimal("2.5"), {}),
    ("uuid", uuid.UUID, uuid.UUID(int=1), uuid.UUID(int=2), {}),
    ("bytes", bytes, b"a", b"b", {}),
]


def make_kind_classes(eng, annotation, role, extra):
    """One model with a ``value`` field of the given annotation, as an attribute or as an identifier."""
    namespace = {
        "__module__": __name__,
        "__annotations__": {"name": str, "value": annotation, "other": int},
        "other": 0,
        "_modelname": "thing",
        **extra,
    }
    if role == "attribute":
        namespace.update(_identifiers=("name",), _attributes=("value", "other"))
    else:
        namespace.update(_identifiers=("name", "value"), _attributes=("other",))
    model = type("Thing", (eng.DiffSyncModel,), namespace)
    adapter = type("ThingAdapter", (eng.Adapter,), {"__module__": __name__, "thing": model, "top_level": ["thing"]})
    return model, adapter


def safe(func, *args):
    """Call func; an exception becomes a comparable observation."""
    try:
        return func(*args)
    except Exception as exc:  # noqa: BLE001 - any exception is an observation
        return ("raised", type(exc).__name__, str(exc))


def observe_kind(eng, annotation, value_a, value_b, role, extra):
    """Everything observable about one field kind on one engine, as comparable plain data."""
    model, adapter_cls = make_kind_classes(eng, annotation, role, extra)
    obj = model(name="n1", value=value_a, other=1)
    observed = {
        "attrs": obj.get_attrs(),
        "attrs_repr": repr(obj.get_attrs()),
        "attrs_keys": list(obj.get_attrs()),
        "ids": obj.get_identifiers(),
        "ids_repr": repr(obj.get_identifiers()),
        "uid": obj.get_unique_id(),
        "shortname": obj.get_shortname(),
        "str": obj.str(),
    }
    src, dst = adapter_cls(name="src"), adapter_cls(name="dst")
    src.add(model(name="same", value=value_a, other=1))
    dst.add(model(name="same", value=value_a, other=1))
    src.add(model(name="changed", value=value_a, other=1))
    dst.add(model(name="changed", value=value_b, other=1))
    src.add(model(name="only_src", value=value_b, other=2))
    dst.add(model(name="only_dst", value=value_a, other=3))
    diff = safe(dst.diff_from, src)
    if isinstance(diff, tuple):  # the diff raised: that is the observation
        observed["diff"] = diff
        return observed
    observed["diff_rows"] = element_rows(diff)
    observed["diff_rows_repr"] = repr(element_rows(diff))
    observed["summary"] = diff.summary()
    observed["diff_str"] = diff.str()
    observed["diff_dict_repr"] = repr(diff.dict())
    observed["sync"] = safe(lambda: dst.sync_from(src) and None)
    observed["synced"] = sorted(repr((o.get_unique_id(), o.get_attrs())) for o in dst.get_all("thing"))
    return observed


@pytest.mark.parametrize("role", ["attribute", "identifier"])
@pytest.mark.parametrize(
    "annotation, value_a, value_b, extra", [kind[1:] for kind in FIELD_KINDS], ids=[kind[0] for kind in FIELD_KINDS]
)
def test_field_kinds_match_diffsync(annotation, value_a, value_b, extra, role):
    core_eng, ref_eng = both()
    expected = observe_kind(ref_eng, annotation, value_a, value_b, role, extra)
    actual = observe_kind(core_eng, annotation, value_a, value_b, role, extra)
    for key in expected:
        assert actual[key] == expected[key], key


def test_rich_model_all_kinds_together_matches_diffsync():
    def make(eng):
        class Rich(eng.DiffSyncModel):
            _modelname = "rich"
            _identifiers = ("ip", "color")
            _attributes = ("inner", "scaled", "shown", "anything", "tags", "meta", "net")

            ip: ipaddress.IPv4Address
            color: Color
            inner: Inner = Inner()
            scaled: int = 0
            shown: Annotated[int, PlainSerializer(lambda v: f"#{v}", return_type=str)] = 0
            anything: Any = None
            tags: List[str] = []
            meta: Dict[str, int] = {}
            net: Optional[ipaddress.IPv4Network] = None

            @field_serializer("scaled")
            def _scale(self, value):
                return value * 100

        return Rich

    values = {
        "ip": IP1,
        "color": Color.BLUE,
        "inner": Inner(a=5, b="y"),
        "scaled": 3,
        "shown": 4,
        "anything": {"k": Inner(a=1)},
        "tags": ["t"],
        "meta": {"m": 1},
        "net": ipaddress.ip_network("10.0.0.0/8"),
    }
    results = []
    for eng in both():
        obj = make(eng)(**values)
        results.append(
            (repr(obj.get_attrs()), repr(obj.get_identifiers()), obj.get_unique_id(), obj.get_shortname(), obj.str())
        )
    assert results[0] == results[1]


def test_standard_models_dict_matches_diffsync():
    snapshots = []
    for eng in both():
        ns = make_models(eng)
        adapter = build(ns, {"s1": ("r1", {"d1": ("leaf", {"e1": "a"})})}, {10: "ten"})
        snapshots.append(adapter_snapshot(adapter))
    assert snapshots[0] == snapshots[1]
