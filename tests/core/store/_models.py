"""Models, adapters and data builders shared by the store tests and by their helper subprocesses.

This module imports nothing from pytest so that a subprocess can import it on its own (see ``_child.py``).
A site holds devices, a device holds interfaces, and ``vlan`` is a flat top-level model.  Every model
records its create/update/delete hook calls in its adapter's ``calls`` list, so that two syncs can be
compared call for call.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from core import Adapter, DiffSyncModel

DB = 11
HOST = "127.0.0.1"
PORT = 6379


class _Recorded(DiffSyncModel):
    """Base of the test models: create/update/delete hooks append to ``adapter.calls``."""

    @classmethod
    def create(cls, adapter, ids, attrs):
        adapter.calls.append(("create", cls.get_type(), cls.create_unique_id(**ids)))
        return super().create(adapter=adapter, ids=ids, attrs=attrs)

    def update(self, attrs):
        self.adapter.calls.append(("update", self.get_type(), self.get_unique_id()))
        return super().update(attrs=attrs)

    def delete(self):
        self.adapter.calls.append(("delete", self.get_type(), self.get_unique_id()))
        return super().delete()


class Site(_Recorded):
    _modelname = "site"
    _identifiers = ("name",)
    _attributes = ("region",)
    _children = {"device": "devices"}

    name: str
    region: str = ""
    devices: List[str] = []


class Device(_Recorded):
    _modelname = "device"
    _identifiers = ("site_name", "name")
    _shortname = ("name",)
    _attributes = ("role", "rack")
    _children = {"interface": "interfaces"}

    site_name: str
    name: str
    role: str = ""
    rack: int = 0
    interfaces: List[str] = []


class Interface(_Recorded):
    _modelname = "interface"
    _identifiers = ("device_name", "name")
    _attributes = ("description", "mtu")

    device_name: str
    name: str
    description: Optional[str] = None
    mtu: int = 1500


class Vlan(_Recorded):
    _modelname = "vlan"
    _identifiers = ("vid",)
    _attributes = ("label", "tags")

    vid: int
    label: str = ""
    tags: Dict[str, str] = {}


class Network(Adapter):
    """The adapter every store test uses."""

    site = Site
    device = Device
    interface = Interface
    vlan = Vlan
    top_level = ["site", "vlan"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []


# ------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------

# Nested description of an adapter's content:
# {"site": {name: {"region": ..., "devices": {name: {"role", "rack", "interfaces": {name: {attrs}}}}}},
#  "vlan": {vid: {attrs}}}

SOURCE = {
    "site": {
        "ams": {
            "region": "eu",
            "devices": {
                "ams-r1": {
                    "role": "core",
                    "rack": 1,
                    "interfaces": {"eth0": {"mtu": 9000}, "eth1": {"description": "uplink"}},
                },
                "ams-r2": {"role": "edge", "rack": 2, "interfaces": {"eth0": {}}},
            },
        },
        "nyc": {
            "region": "us",
            "devices": {
                "nyc-r1": {"role": "core", "rack": 7, "interfaces": {"eth0": {}, "eth1": {"mtu": 9216}}},
            },
        },
        "lon": {"region": "eu", "devices": {}},
    },
    "vlan": {10: {"label": "mgmt"}, 20: {"label": "users", "tags": {"tier": "gold"}}, 40: {"label": "new"}},
}

TARGET = {
    "site": {
        "ams": {
            "region": "europe",
            "devices": {
                "ams-r1": {
                    "role": "edge",
                    "rack": 1,
                    "interfaces": {"eth0": {"mtu": 1500}, "eth1": {"description": "uplink"}, "eth2": {}},
                },
                "ams-r3": {"role": "spare", "rack": 3, "interfaces": {"eth0": {}, "eth1": {}}},
            },
        },
        "sfo": {
            "region": "us",
            "devices": {
                "sfo-r1": {"role": "core", "rack": 1, "interfaces": {"eth0": {}, "eth1": {}}},
                "sfo-r2": {"role": "edge", "rack": 2, "interfaces": {}},
            },
        },
        "lon": {"region": "eu", "devices": {"lon-r1": {"role": "core", "rack": 1, "interfaces": {"eth0": {}}}}},
    },
    "vlan": {10: {"label": "mgmt"}, 20: {"label": "staff"}, 30: {"label": "old"}},
}


def populate(adapter: Adapter, spec: Dict, model_flags=None) -> None:
    """Fill an adapter from a nested spec, through add() and add_child() as a loader would.

    ``model_flags``, when given, is set on every site and device (not on interfaces).
    """
    extra = {} if model_flags is None else {"model_flags": model_flags}
    for site_name, site_spec in spec.get("site", {}).items():
        site = adapter.site(name=site_name, region=site_spec.get("region", ""), **extra)
        adapter.add(site)
        for dev_name, dev_spec in site_spec.get("devices", {}).items():
            device = adapter.device(
                site_name=site_name, name=dev_name, role=dev_spec.get("role", ""), rack=dev_spec.get("rack", 0), **extra
            )
            adapter.add(device)
            site.add_child(device)
            for if_name, if_spec in dev_spec.get("interfaces", {}).items():
                interface = adapter.interface(device_name=device.get_unique_id(), name=if_name, **if_spec)
                adapter.add(interface)
                device.add_child(interface)
    for vid, vlan_spec in spec.get("vlan", {}).items():
        adapter.add(adapter.vlan(vid=vid, **vlan_spec))


def content(adapter: Adapter) -> Dict[str, Dict[str, Dict]]:
    """``adapter.dict()`` without the empty model buckets LocalStore creates when a type is looked up."""
    return {name: objects for name, objects in adapter.dict().items() if objects}


def children_tree(adapter: Adapter) -> Dict[str, Dict[str, List[str]]]:
    """Every parent's children lists as stored: ``{"site:ams": {"devices": [...]}, ...}``."""
    tree = {}
    for modelname in ("site", "device"):
        for obj in adapter.get_all(modelname):
            tree[f"{modelname}:{obj.get_unique_id()}"] = {
                field: list(getattr(obj, field)) for field in obj.get_children_mapping().values()
            }
    return tree
