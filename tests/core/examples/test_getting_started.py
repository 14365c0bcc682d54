"""diffsync "Getting started" documentation, re-expressed as tests against ``core``.

Covers: defining models (identifiers / attributes / children, plus a locally-significant field that is
never compared), an adapter with ``top_level`` and ``load()``, the documented preorder processing order
(``get_tree_traversal`` and the actual create/delete order during sync), per-record ``create`` / ``update``
/ ``delete`` overrides that call ``super()``, and bulk persistence in ``sync_complete``.
"""

from typing import List, Optional

import pytest

from core import Adapter, Diff, DiffSyncModel
from core.enum import DiffSyncFlags, DiffSyncStatus
from core.exceptions import ObjectStoreWrongType

# --------------------------------------------------------------------------------------------------------
# Site / Device models and a two-backend setup
# --------------------------------------------------------------------------------------------------------


class Site(DiffSyncModel):
    _modelname = "site"
    _identifiers = ("name",)
    _shortname = ()
    _attributes = ("contact_phone",)
    _children = {"device": "devices"}

    name: str
    contact_phone: Optional[str] = None
    devices: List = []
    database_pk: Optional[int] = None  # only locally significant: never compared or synced


class Device(DiffSyncModel):
    _modelname = "device"
    _identifiers = ("name",)
    _attributes = ("role",)

    name: str
    site_name: Optional[str] = None
    role: Optional[str] = None

    @classmethod
    def create(cls, adapter, ids, attrs):
        adapter.events.append(("create", ids, attrs))
        return super().create(ids=ids, adapter=adapter, attrs=attrs)

    def update(self, attrs):
        self.adapter.events.append(("update", self.get_identifiers(), attrs))
        return super().update(attrs)

    def delete(self):
        self.adapter.events.append(("delete", self.get_identifiers(), None))
        super().delete()
        return self


class Inventory(Adapter):
    site = Site
    device = Device

    top_level = ["site"]

    def __init__(self, sites, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sites = sites
        self.events = []
        self.completions = []

    def load(self):
        for pk, (site_name, phone, devices) in enumerate(self.sites, start=100 if self.name == "Remote" else 1):
            site = self.site(name=site_name, contact_phone=phone, database_pk=pk)
            self.add(site)
            for device_name, role in devices:
                device = self.device(name=device_name, role=role, site_name=site_name)
                self.add(device)
                site.add_child(device)
            self.update(site)

    def sync_complete(self, source, diff, flags=DiffSyncFlags.NONE, logger=None):
        self.completions.append({"source": source, "diff": diff, "flags": flags, "logger": logger})
        super().sync_complete(source, diff, flags, logger)


LOCAL_SITES = [
    ("nyc", "555-0100", [("rtr-nyc", "router"), ("sw-nyc", "switch")]),
    ("sfo", None, [("rtr-sfo", "router")]),
]
REMOTE_SITES = [
    ("nyc", "555-0100", [("rtr-nyc", "router"), ("sw-nyc", "access-switch"), ("fw-nyc", "firewall")]),
    ("lax", "555-0199", []),
]


@pytest.fixture
def inventories():
    local = Inventory(LOCAL_SITES, name="Local")
    local.load()
    remote = Inventory(REMOTE_SITES, name="Remote")
    remote.load()
    return local, remote


def test_models_and_load(inventories):
    local, remote = inventories
    nyc = local.get("site", "nyc")
    assert nyc.devices == ["rtr-nyc", "sw-nyc"]
    assert nyc.get_identifiers() == {"name": "nyc"}
    assert nyc.get_attrs() == {"contact_phone": "555-0100"}
    assert nyc.get_shortname() == "nyc"
    assert (nyc.database_pk, remote.get(Site, "nyc").database_pk) == (1, 100)
    assert local.get(Device, {"name": "sw-nyc"}).get_attrs() == {"role": "switch"}
    assert Site.get_type() == "site"
    assert Device.create_unique_id(name="rtr-nyc") == "rtr-nyc"
    assert Site.get_children_mapping() == {"device": "devices"}
    assert [site.name for site in local.get_all(Site)] == ["nyc", "sfo"]
    assert local.get_all_model_names() == {"site", "device"}
    assert [d.name for d in local.get_by_uids(["sw-nyc", "rtr-sfo"], Device)] == ["sw-nyc", "rtr-sfo"]
    assert repr(nyc) == 'site "nyc"'
    assert nyc.json() == '{"name":"nyc","contact_phone":"555-0100","devices":["rtr-nyc","sw-nyc"],"database_pk":1}'
    assert str(nyc) == "nyc"
    assert local.str() == (
        "site\n"
        "  site: nyc: {'contact_phone': '555-0100'}\n"
        "    devices\n"
        "      device: rtr-nyc: {'role': 'router'}\n"
        "      device: sw-nyc: {'role': 'switch'}\n"
        "  site: sfo: {'contact_phone': None}\n"
        "    devices\n"
        "      device: rtr-sfo: {'role': 'router'}"
    )
    assert remote.get("site", "lax").str() == "site: lax: {'contact_phone': '555-0199'}\n  devices: []"

    with pytest.raises(ObjectStoreWrongType):
        local.get(Device, "rtr-nyc").add_child(nyc)


def test_dict_round_trip_through_load_from_dict(inventories):
    local, _ = inventories
    copy = Inventory([], name="Copy")
    copy.load_from_dict(local.dict())
    assert copy.dict() == local.dict()
    assert copy.get("site", "nyc").devices == ["rtr-nyc", "sw-nyc"]
    assert copy.get("site", "nyc").database_pk == 1
    assert not copy.diff_from(local).has_diffs()


def test_local_only_field_is_not_compared(inventories):
    local, remote = inventories
    diff = remote.diff_from(local)
    nyc = diff.children["site"]["nyc"]
    assert nyc.action is None
    assert nyc.get_attrs_diffs() == {"-": {}, "+": {}}
    assert "database_pk" not in str(diff.dict())


def test_diff_and_sync_with_record_level_hooks(inventories):
    local, remote = inventories
    diff = local.diff_to(remote)
    assert diff.summary() == {"create": 2, "update": 1, "delete": 2, "no-change": 2, "skip": 0}
    assert diff.dict() == {
        "site": {
            "nyc": {
                "-": {},
                "+": {},
                "device": {
                    "sw-nyc": {"-": {"role": "access-switch"}, "+": {"role": "switch"}},
                    "fw-nyc": {"-": {"role": "firewall"}},
                },
            },
            "sfo": {"+": {"contact_phone": None}, "device": {"rtr-sfo": {"+": {"role": "router"}}}},
            "lax": {"-": {"contact_phone": "555-0199"}},
        }
    }

    result = local.sync_to(remote, diff=diff)
    assert result is diff
    assert remote.events == [
        ("update", {"name": "sw-nyc"}, {"role": "switch"}),
        ("delete", {"name": "fw-nyc"}, None),
        ("create", {"name": "rtr-sfo"}, {"role": "router"}),
    ]
    assert local.events == []
    assert remote.get(Device, "sw-nyc").role == "switch"
    assert remote.get_or_none(Device, "fw-nyc") is None
    assert remote.get("site", "nyc").devices == ["rtr-nyc", "sw-nyc"]
    assert remote.get("site", "sfo").devices == ["rtr-sfo"]
    assert remote.get("site", "sfo").database_pk is None  # created from ids + attrs only
    assert remote.get_or_none("site", "lax") is None
    created = remote.get(Device, "rtr-sfo")
    assert created.adapter is remote
    assert created.get_status()[0] == DiffSyncStatus.SUCCESS
    assert created.site_name is None

    assert local.diff_to(remote).str() == "(no diffs)"


def test_sync_complete_only_called_when_something_changed(inventories):
    local, remote = inventories
    diff = remote.sync_from(local, flags=DiffSyncFlags.CONTINUE_ON_FAILURE)
    assert len(remote.completions) == 1
    completion = remote.completions[0]
    assert completion["source"] is local
    assert completion["diff"] is diff
    assert completion["flags"] == DiffSyncFlags.CONTINUE_ON_FAILURE
    assert completion["logger"] is not None
    completion["logger"].debug("sync_complete logger is usable")
    assert local.completions == []

    remote.sync_from(local)
    assert len(remote.completions) == 1


def test_sync_with_skip_unmatched_dst_keeps_extra_objects(inventories):
    local, remote = inventories
    diff = remote.sync_from(local, flags=DiffSyncFlags.SKIP_UNMATCHED_DST)
    assert diff.summary() == {"create": 2, "update": 1, "delete": 0, "no-change": 2, "skip": 2}
    assert remote.get_or_none("site", "lax") is not None
    assert remote.get_or_none(Device, "fw-nyc") is not None
    assert [event[0] for event in remote.events] == ["update", "create"]


# --------------------------------------------------------------------------------------------------------
# "Model Processing Ordering Logic": preorder tree traversal
# --------------------------------------------------------------------------------------------------------


class Recorded(DiffSyncModel):
    """Base that logs every create/delete into the owning adapter's ``events`` list."""

    @classmethod
    def create(cls, adapter, ids, attrs):
        adapter.events.append(("create", cls.get_type(), cls.create_unique_id(**ids)))
        return super().create(adapter, ids, attrs)

    def delete(self):
        self.adapter.events.append(("delete", self.get_type(), self.get_unique_id()))
        return super().delete()


class OSite(Recorded):
    _modelname = "site"
    _identifiers = ("name",)
    _children = {"vlan": "vlans", "prefix": "prefixes"}

    name: str
    vlans: List = []
    prefixes: List = []


class ODevice(Recorded):
    _modelname = "device"
    _identifiers = ("name",)
    _children = {"interface": "interfaces"}

    name: str
    interfaces: List = []


class OVlan(Recorded):
    _modelname = "vlan"
    _identifiers = ("site", "vid")

    site: str
    vid: int


class OPrefix(Recorded):
    _modelname = "prefix"
    _identifiers = ("prefix",)

    prefix: str


class OInterface(Recorded):
    _modelname = "interface"
    _identifiers = ("device", "name")
    _shortname = ("name",)
    _children = {"ip_address": "ip_addresses"}

    device: str
    name: str
    ip_addresses: List = []


class OIPAddress(Recorded):
    _modelname = "ip_address"
    _identifiers = ("address",)

    address: str


class OCable(Recorded):
    _modelname = "cable"
    _identifiers = ("label",)

    label: str


class Nautobot(Adapter):
    site = OSite
    device = ODevice
    interface = OInterface
    ip_address = OIPAddress
    cable = OCable
    vlan = OVlan
    prefix = OPrefix

    top_level = ["site", "device", "cable"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.events = []

    def load(self):
        # deliberately loaded "backwards" (cables first, children before parents are linked) to show that the
        # processing order comes from top_level/_children, not from load order
        for label in ("cable-2", "cable-1"):
            self.add(self.cable(label=label))
        for dev_name, interfaces in (("dev-b", {"eth0": ["10.0.0.2/24"]}), ("dev-a", {"eth0": [], "eth1": []})):
            device = self.device(name=dev_name)
            self.add(device)
            for intf_name, addresses in interfaces.items():
                intf = self.interface(device=dev_name, name=intf_name)
                self.add(intf)
                for address in addresses:
                    ip = self.ip_address(address=address)
                    self.add(ip)
                    intf.add_child(ip)
                device.add_child(intf)
        for site_name, vids, prefixes in (("site-1", [10, 20], ["10.1.0.0/16"]), ("site-2", [], ["10.2.0.0/16"])):
            site = self.site(name=site_name)
            self.add(site)
            for prefix in prefixes:
                obj = self.prefix(prefix=prefix)
                self.add(obj)
                site.add_child(obj)
            for vid in vids:
                vlan = self.vlan(site=site_name, vid=vid)
                self.add(vlan)
                site.add_child(vlan)


PREORDER = [
    ("site", "site-1"),
    ("vlan", "site-1__10"),
    ("vlan", "site-1__20"),
    ("prefix", "10.1.0.0/16"),
    ("site", "site-2"),
    ("prefix", "10.2.0.0/16"),
    ("device", "dev-b"),
    ("interface", "dev-b__eth0"),
    ("ip_address", "10.0.0.2/24"),
    ("device", "dev-a"),
    ("interface", "dev-a__eth0"),
    ("interface", "dev-a__eth1"),
    ("cable", "cable-2"),
    ("cable", "cable-1"),
]


def test_tree_traversal_description():
    assert Nautobot.get_tree_traversal() == (
        "Nautobot\n"
        "├── site\n"
        "│   ├── vlan\n"
        "│   └── prefix\n"
        "├── device\n"
        "│   └── interface\n"
        "│       └── ip_address\n"
        "└── cable"
    )
    assert Nautobot.get_tree_traversal(as_dict=True) == {
        "site": {"vlan": {}, "prefix": {}},
        "device": {"interface": {"ip_address": {}}},
        "cable": {},
    }


def test_sync_creates_and_deletes_in_preorder():
    source = Nautobot(name="source")
    source.load()
    target = Nautobot(name="target")

    diff = target.sync_from(source)
    assert diff.summary() == {"create": 14, "update": 0, "delete": 0, "no-change": 0, "skip": 0}
    assert [(event[1], event[2]) for event in target.events] == PREORDER
    assert {event[0] for event in target.events} == {"create"}
    assert target.get("site", "site-1").vlans == ["site-1__10", "site-1__20"]
    assert target.get("interface", "dev-b__eth0").ip_addresses == ["10.0.0.2/24"]
    assert target.dict() == source.dict()
    assert source.events == []

    deletions = target.sync_from(Nautobot(name="empty"))
    assert deletions.summary() == {"create": 0, "update": 0, "delete": 14, "no-change": 0, "skip": 0}
    assert [(event[1], event[2]) for event in target.events[14:]] == PREORDER
    assert {event[0] for event in target.events[14:]} == {"delete"}
    assert len(target) == 0


def test_custom_diff_class_receives_complete_call():
    class RecordingDiff(Diff):
        completed = 0

        def complete(self):
            type(self).completed += 1

    source = Nautobot(name="source")
    source.load()
    diff = Nautobot(name="target").diff_from(source, diff_class=RecordingDiff)
    assert isinstance(diff, RecordingDiff)
    assert RecordingDiff.completed == 1
    assert [element.name for element in diff.get_children()] == [
        "site-1",
        "site-2",
        "dev-b",
        "dev-a",
        "cable-2",
        "cable-1",
    ]
    assert diff.groups() == ["site", "device", "cable"]
    assert len(diff) == 14
