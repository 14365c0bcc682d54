"""diffsync example 04 (get_or_instantiate / update_or_instantiate), re-expressed as tests against ``core``.

Both adapters load a flat list of device records. Devices are the top level; each device has interface
children and a ``sites`` child list. Sites are shared between devices, so loading uses the helpers to avoid
``ObjectAlreadyExists``; as in the original example, a site is attached as a child only to the device that
caused it to be instantiated. Backend A loads interfaces with ``update_or_instantiate`` and backend B with
``get_or_instantiate``.
"""

from typing import List, Optional

import pytest

from core import Adapter, DiffSyncModel
from core.enum import DiffSyncModelFlags
from core.exceptions import ObjectAlreadyExists


class Site(DiffSyncModel):
    _modelname = "site"
    _identifiers = ("name",)
    _shortname = ()
    _attributes = ()

    name: str


class Device(DiffSyncModel):
    _modelname = "device"
    _identifiers = ("name",)
    _attributes = ()
    _children = {"interface": "interfaces", "site": "sites"}

    name: str
    site_name: Optional[str] = None
    role: Optional[str] = None
    interfaces: List = []
    sites: List = []


class Interface(DiffSyncModel):
    _modelname = "interface"
    _identifiers = ("device_name", "name")
    _shortname = ("name",)
    _attributes = ("description",)

    name: str
    device_name: str
    description: Optional[str] = None


def _record(name, role, site, **interfaces):
    return {"name": name, "role": role, "site": site, "interfaces": interfaces}


STD = {"eth0": "Interface 0", "eth1": "Interface 1"}
RECORDS_A = [
    _record("nyc-spine1", "spine", "nyc", **STD),
    _record("nyc-spine2", "spine", "nyc", **STD),
    _record("sfo-spine1", "spine", "sfo", **STD),
    _record("sfo-spine2", "spine", "sfo", eth0="TBD", eth1="ddd", eth2="Interface 2"),
]
RECORDS_B = [
    _record("atl-spine1", "spine", "atl", **STD),
    _record("atl-spine2", "spine", "atl", **STD),
    _record("nyc-spine1", "spine", "nyc", eth0="Interface 0/0", eth1="Interface 1"),
    _record("nyc-spine2", "spine", "nyc", **STD),
    _record("sfo-spine1", "leaf", "sfo", **STD),
    _record("sfo-spine2", "spine", "sfo", eth0="TBD", eth1="ddd"),
]


class _RecordAdapter(Adapter):
    site = Site
    device = Device
    interface = Interface

    top_level = ["device"]

    records: list = []

    def _interface(self, ids, attrs):
        raise NotImplementedError

    def load(self):
        self.outcomes = []  # (model, unique_id, instantiated) for every helper call, in order
        for record in self.records:
            device, created = self.get_or_instantiate(self.device, {"name": record["name"]}, {"role": record["role"]})
            self.outcomes.append(("device", device.get_unique_id(), created))

            site, created = self.get_or_instantiate(self.site, {"name": record["site"]})
            self.outcomes.append(("site", site.get_unique_id(), created))
            if created:
                device.add_child(site)

            for intf_name, description in record["interfaces"].items():
                intf, created = self._interface(
                    {"name": intf_name, "device_name": record["name"]}, {"description": description}
                )
                self.outcomes.append(("interface", intf.get_unique_id(), created))
                if created:
                    device.add_child(intf)


class BackendA(_RecordAdapter):
    type = "Backend A"
    records = RECORDS_A

    def _interface(self, ids, attrs):
        return self.update_or_instantiate(self.interface, ids, attrs)


class BackendB(_RecordAdapter):
    type = "Backend B"
    records = RECORDS_B

    def _interface(self, ids, attrs):
        return self.get_or_instantiate(self.interface, ids, attrs)


@pytest.fixture
def backends():
    a = BackendA(name="Backend-A")
    a.load()
    b = BackendB(name="Backend-B")
    b.load()
    return a, b


def test_readme_get_or_instantiate():
    adapter = BackendA()
    ids = {"device_name": "test100", "name": "eth0"}
    obj, created = adapter.get_or_instantiate(Interface, ids, {"description": "Test description"})
    assert created is True
    assert isinstance(obj, Interface)
    assert obj.dict() == {
        "model_flags": DiffSyncModelFlags.NONE,
        "name": "eth0",
        "device_name": "test100",
        "description": "Test description",
    }
    assert adapter.get(Interface, "test100__eth0") is obj

    again, created = adapter.get_or_instantiate(Interface, ids, {"description": "ignored when it exists"})
    assert created is False
    assert again is obj
    assert again.description == "Test description"

    no_attrs, created = adapter.get_or_instantiate(Interface, {"device_name": "test100", "name": "eth1"})
    assert created is True
    assert no_attrs.description is None
    assert adapter.count("interface") == 2


def test_readme_update_or_instantiate():
    adapter = BackendA()
    ids = {"device_name": "test100", "name": "eth0"}
    obj, created = adapter.update_or_instantiate(Interface, ids, {"description": "Test description"})
    assert created is True
    assert obj.description == "Test description"

    again, created = adapter.update_or_instantiate(Interface, ids, {"description": "New description"})
    assert created is False
    assert again is obj
    assert obj.description == "New description"
    assert adapter.get("interface", "test100__eth0").description == "New description"

    unchanged, created = adapter.update_or_instantiate(Interface, ids, {})
    assert (unchanged, created) == (obj, False)
    assert obj.description == "New description"
    assert adapter.count(Interface) == 1


def test_model_instance_variants():
    adapter = BackendA()
    first = Interface(device_name="test100", name="eth0", description="one")
    obj, created = adapter.get_or_add_model_instance(first)
    assert (obj, created) == (first, True)
    obj, created = adapter.get_or_add_model_instance(Interface(device_name="test100", name="eth0", description="two"))
    assert obj is first
    assert created is False
    assert first.description == "one"

    obj, created = adapter.update_or_add_model_instance(
        Interface(device_name="test100", name="eth0", description="three")
    )
    assert obj is first
    assert created is False
    assert first.description == "three"
    other = Interface(device_name="test100", name="eth9", description="nine")
    assert adapter.update_or_add_model_instance(other) == (other, True)
    assert adapter.count("interface") == 2


def test_adding_a_duplicate_is_what_the_helpers_avoid():
    adapter = BackendA()
    adapter.add(Site(name="nyc"))
    with pytest.raises(ObjectAlreadyExists):
        adapter.add(Site(name="nyc"))
    site, created = adapter.get_or_instantiate(Site, {"name": "nyc"})
    assert created is False
    assert site.name == "nyc"


def test_load_outcomes(backends):
    a, b = backends
    assert [o for o in a.outcomes if o[0] == "site"] == [
        ("site", "nyc", True),
        ("site", "nyc", False),
        ("site", "sfo", True),
        ("site", "sfo", False),
    ]
    assert [o for o in a.outcomes if o[0] == "device"] == [
        ("device", name, True) for name in ("nyc-spine1", "nyc-spine2", "sfo-spine1", "sfo-spine2")
    ]
    assert all(created for model, _, created in a.outcomes if model == "interface")
    assert len(a.outcomes) == 4 + 4 + 9
    assert [o for o in b.outcomes if o[0] == "site" and o[2]] == [
        ("site", "atl", True),
        ("site", "nyc", True),
        ("site", "sfo", True),
    ]

    assert (a.count("device"), a.count("site"), a.count("interface")) == (4, 2, 9)
    assert (b.count("device"), b.count("site"), b.count("interface")) == (6, 3, 12)
    # only the device that instantiated a site holds it as a child
    assert a.get("device", "nyc-spine1").sites == ["nyc"]
    assert a.get("device", "nyc-spine2").sites == []
    assert b.get("device", "atl-spine1").sites == ["atl"]
    assert a.get("device", "sfo-spine2").interfaces == ["sfo-spine2__eth0", "sfo-spine2__eth1", "sfo-spine2__eth2"]
    assert b.get("device", "sfo-spine1").dict() == {
        "model_flags": DiffSyncModelFlags.NONE,
        "name": "sfo-spine1",
        "site_name": None,
        "role": "leaf",
        "interfaces": ["sfo-spine1__eth0", "sfo-spine1__eth1"],
        "sites": ["sfo"],
    }
    assert b.dict()["device"]["sfo-spine1"] == {
        "name": "sfo-spine1",
        "role": "leaf",
        "interfaces": ["sfo-spine1__eth0", "sfo-spine1__eth1"],
        "sites": ["sfo"],
    }
    assert b.dict()["site"] == {"atl": {"name": "atl"}, "nyc": {"name": "nyc"}, "sfo": {"name": "sfo"}}


def test_reloading_with_helpers_is_idempotent(backends):
    a, _ = backends
    before = a.dict()
    a.load()
    assert a.dict() == before
    assert all(not created for _, _, created in a.outcomes)


def test_update_or_instantiate_changes_existing_on_reload(backends):
    a, _ = backends
    a.records = [_record("nyc-spine1", "spine", "nyc", eth0="changed", eth3="brand new")]
    a.load()
    assert a.outcomes == [
        ("device", "nyc-spine1", False),
        ("site", "nyc", False),
        ("interface", "nyc-spine1__eth0", False),
        ("interface", "nyc-spine1__eth3", True),
    ]
    assert a.get("interface", "nyc-spine1__eth0").description == "changed"
    assert a.get("device", "nyc-spine1").interfaces == ["nyc-spine1__eth0", "nyc-spine1__eth1", "nyc-spine1__eth3"]


EXPECTED_DIFF_STR = """\
device
  device: nyc-spine1
    interface
      interface: eth0
        description    Backend-A(Interface 0)    Backend-B(Interface 0/0)
  device: sfo-spine2
    interface
      interface: eth2 MISSING in Backend-B
  device: atl-spine1 MISSING in Backend-A
    interface
      interface: eth0 MISSING in Backend-A
      interface: eth1 MISSING in Backend-A
    site
      site: atl MISSING in Backend-A
  device: atl-spine2 MISSING in Backend-A
    interface
      interface: eth0 MISSING in Backend-A
      interface: eth1 MISSING in Backend-A"""


def test_diff_sync_and_rediff(backends):
    a, b = backends
    diff = a.diff_to(b)
    assert diff.summary() == {"create": 1, "update": 1, "delete": 7, "no-change": 13, "skip": 0}
    assert diff.str() == EXPECTED_DIFF_STR
    assert diff.dict() == {
        "device": {
            "nyc-spine1": {
                "-": {},
                "+": {},
                "interface": {"eth0": {"-": {"description": "Interface 0/0"}, "+": {"description": "Interface 0"}}},
            },
            "sfo-spine2": {"-": {}, "+": {}, "interface": {"eth2": {"+": {"description": "Interface 2"}}}},
            "atl-spine1": {
                "-": {},
                "interface": {
                    "eth0": {"-": {"description": "Interface 0"}},
                    "eth1": {"-": {"description": "Interface 1"}},
                },
                "site": {"atl": {"-": {}}},
            },
            "atl-spine2": {
                "-": {},
                "interface": {
                    "eth0": {"-": {"description": "Interface 0"}},
                    "eth1": {"-": {"description": "Interface 1"}},
                },
            },
        }
    }

    a.sync_to(b)
    assert b.get_or_none("device", "atl-spine1") is None
    assert b.get_or_none("device", "atl-spine2") is None
    assert b.get_or_none("site", "atl") is None
    assert b.get_or_none("interface", "atl-spine1__eth0") is None
    assert b.get("interface", "nyc-spine1__eth0").description == "Interface 0"
    assert b.get("interface", "sfo-spine2__eth2").description == "Interface 2"
    assert b.get("device", "sfo-spine2").interfaces == ["sfo-spine2__eth0", "sfo-spine2__eth1", "sfo-spine2__eth2"]
    assert b.get("device", "sfo-spine1").role == "leaf"  # role is not an attribute: left alone
    assert (b.count("device"), b.count("site"), b.count("interface")) == (4, 2, 9)
    assert b.dict()["interface"] == a.dict()["interface"]

    again = a.diff_to(b)
    assert not again.has_diffs()
    assert again.summary() == {"create": 0, "update": 0, "delete": 0, "no-change": 15, "skip": 0}
