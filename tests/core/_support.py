"""Shared helpers for the unit tests: both engines, a model/adapter factory and standard scenarios.

Every engine-parametrized test runs once against ``core`` (the engine under test) and once against the
reference ``diffsync`` 2.2.3: a test that passes on ``diffsync`` states reference behaviour, so a failure
on ``core`` alone is a deviation of ``core``.
"""

import enum
import importlib
from types import SimpleNamespace
from typing import List

ENGINE_NAMES = ("core", "diffsync")


class Engine:
    """The public modules and names of one engine (``core`` or ``diffsync``)."""

    def __init__(self, name):
        self.name = name
        self.root = importlib.import_module(name)
        self.diff = importlib.import_module(f"{name}.diff")
        self.enum = importlib.import_module(f"{name}.enum")
        self.exc = importlib.import_module(f"{name}.exceptions")
        self.utils = importlib.import_module(f"{name}.utils")
        self.helpers = importlib.import_module(f"{name}.helpers")
        self.logging = importlib.import_module(f"{name}.logging")
        self.store = importlib.import_module(f"{name}.store")
        self.store_local = importlib.import_module(f"{name}.store.local")
        self.Adapter = self.root.Adapter
        self.DiffSyncModel = self.root.DiffSyncModel
        self.Diff = self.diff.Diff
        self.DiffElement = self.diff.DiffElement
        self.F = self.enum.DiffSyncFlags
        self.MF = self.enum.DiffSyncModelFlags
        self.Status = self.enum.DiffSyncStatus
        self.Actions = self.enum.DiffSyncActions
        self.LocalStore = self.store_local.LocalStore
        self.BaseStore = self.store.BaseStore

    def __repr__(self):
        return f"Engine({self.name})"


_ENGINES = {}


def get_engine(name):
    """Return the (cached) Engine of that name."""
    if name not in _ENGINES:
        _ENGINES[name] = Engine(name)
    return _ENGINES[name]


def both():
    """Return (core engine, diffsync engine)."""
    return get_engine("core"), get_engine("diffsync")


# ------------------------------------------------------------------------------------------------------------
# Normalisation of values that embed engine-specific objects
# ------------------------------------------------------------------------------------------------------------


def norm(value):
    """Turn engine enums into plain (name, value) pairs, recursively; keeps dict order."""
    if isinstance(value, enum.Enum):
        return (type(value).__name__, value.value)
    if isinstance(value, dict):
        return {norm(k): norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    return value


LOG_KEYS = ("event", "log_level", "action", "model", "unique_id", "status")


def log_tuples(entries):
    """(event, log_level, action, model, unique_id, status) of each captured structlog event."""
    return [tuple(entry.get(key) for key in LOG_KEYS) for entry in entries]


# ------------------------------------------------------------------------------------------------------------
# The standard models: site -> device -> interface, plus a flat top-level vlan
# ------------------------------------------------------------------------------------------------------------


class Recorder:
    """Records the create/update/delete hooks called, and makes chosen ones fail."""

    def __init__(self):
        self.ops = []
        self.fail = {}  # (action, modelname, uid) -> "raise" | "none"


def make_models(eng, site_flags=None, device_flags=None, interface_flags=None, vlan_flags=None, diff_class=None):
    """Define the standard models and adapter on top of ``eng``; returns a namespace of the classes."""
    rec = Recorder()
    exc = eng.exc
    crud_exc = {"create": exc.ObjectNotCreated, "update": exc.ObjectNotUpdated, "delete": exc.ObjectNotDeleted}

    def planned(action, modelname, uid):
        rec.ops.append((action, modelname, uid))
        mode = rec.fail.get((action, modelname, uid))
        if mode == "raise":
            raise crud_exc[action](f"planned {action} failure of {modelname} {uid}")
        return mode

    class Base(eng.DiffSyncModel):
        @classmethod
        def create(cls, adapter, ids, attrs):
            if planned("create", cls.get_type(), cls.create_unique_id(**ids)) == "none":
                return None
            return super().create(adapter=adapter, ids=ids, attrs=attrs)

        def update(self, attrs):
            if planned("update", self.get_type(), self.get_unique_id()) == "none":
                return None
            return super().update(attrs=attrs)

        def delete(self):
            if planned("delete", self.get_type(), self.get_unique_id()) == "none":
                return None
            return super().delete()

    class Site(Base):
        _modelname = "site"
        _identifiers = ("name",)
        _attributes = ("region",)
        _children = {"device": "devices"}

        name: str
        region: str = ""
        devices: List[str] = []
        if site_flags is not None:
            model_flags: eng.MF = site_flags

    class Device(Base):
        _modelname = "device"
        _identifiers = ("site_name", "name")
        _shortname = ("name",)
        _attributes = ("role",)
        _children = {"interface": "interfaces"}

        site_name: str
        name: str
        role: str = ""
        interfaces: List[str] = []
        if device_flags is not None:
            model_flags: eng.MF = device_flags

    class Interface(Base):
        _modelname = "interface"
        _identifiers = ("device_name", "name")
        _shortname = ("name",)
        _attributes = ("description",)

        device_name: str
        name: str
        description: str = ""
        if interface_flags is not None:
            model_flags: eng.MF = interface_flags

    class Vlan(Base):
        _modelname = "vlan"
        _identifiers = ("vid",)
        _attributes = ("vname",)

        vid: int
        vname: str = ""
        if vlan_flags is not None:
            model_flags: eng.MF = vlan_flags

    class Backend(eng.Adapter):
        site = Site
        device = Device
        interface = Interface
        vlan = Vlan
        top_level = ["site", "vlan"]

    return SimpleNamespace(
        eng=eng, rec=rec, Base=Base, Site=Site, Device=Device, Interface=Interface, Vlan=Vlan, Backend=Backend
    )


def build(ns, sites, vlans=None, name=None, adapter_cls=None):
    """Build and fill an adapter.

    ``sites`` is ``{site: (region, {device: (role, {interface: description})})}``, ``vlans`` ``{vid: vname}``.
    """
    adapter = (adapter_cls or ns.Backend)(name=name)
    for site_name, (region, devices) in sites.items():
        site = ns.Site(name=site_name, region=region)
        adapter.add(site)
        for device_name, (role, interfaces) in devices.items():
            device = ns.Device(site_name=site_name, name=device_name, role=role)
            adapter.add(device)
            site.add_child(device)
            for intf_name, description in interfaces.items():
                intf = ns.Interface(device_name=device_name, name=intf_name, description=description)
                adapter.add(intf)
                device.add_child(intf)
    for vid, vname in (vlans or {}).items():
        adapter.add(ns.Vlan(vid=vid, vname=vname))
    return adapter


# Standard scenario: creates, updates, deletes and unchanged objects at every level.
SRC_SITES = {
    "s1": ("r1", {"d1": ("leaf", {"e1": "a", "e2": "b"}), "d2": ("spine", {"e5": "x"})}),
    "s2": ("r2", {"d3": ("leaf", {"e7": "y"})}),
    "s4": ("r4", {"d6": ("leaf", {"e6": "q"})}),
}
SRC_VLANS = {10: "ten", 20: "twenty", 40: "forty"}
DST_SITES = {
    "s1": ("r1", {"d1": ("spine", {"e1": "a", "e3": "c"}), "d4": ("leaf", {"e9": "z"})}),
    "s3": ("r3", {"d5": ("leaf", {"e8": "w"})}),
    "s4": ("r4", {"d6": ("leaf", {"e6": "q"})}),
}
DST_VLANS = {10: "TEN", 30: "thirty", 40: "forty"}


def standard_pair(ns, src_name="src", dst_name="dst"):
    """Source and destination adapters of the standard scenario."""
    return (
        build(ns, SRC_SITES, SRC_VLANS, name=src_name),
        build(ns, DST_SITES, DST_VLANS, name=dst_name),
    )


def adapter_snapshot(adapter):
    """Plain-data content of an adapter: {modelname: {uid: dict without defaults}} with sorted model names."""
    data = adapter.dict()
    return {name: norm(data[name]) for name in sorted(data)}


def element_rows(diff):
    """Every element of a diff, depth first, as plain tuples."""
    rows = []

    def walk(elements, depth):
        for element in elements:
            rows.append(
                (
                    depth,
                    element.type,
                    element.name,
                    norm(element.keys),
                    element.action,
                    norm(element.source_attrs),
                    norm(element.dest_attrs),
                )
            )
            walk(element.get_children(), depth + 1)

    walk(diff.get_children(), 0)
    return rows
