"""diffsync example 01 (multiple data sources), re-expressed as tests against ``core``.

Three adapters share one Site -> Device -> Interface model tree but hold different inventories.
Device ``role``/``site_name`` are deliberately *not* listed in ``_attributes``, so differences in them are
invisible to diff and sync. A ``Diff`` subclass with ``order_children_site`` controls the order in which
sites are yielded by ``get_children()`` (and therefore synced).
"""

import logging
from typing import List, Optional

import pydantic
import pytest
import structlog

from core import Adapter, Diff, DiffSync, DiffSyncModel
from core.exceptions import DiffClassMismatch
from core.logging import enable_console_logging


class Site(DiffSyncModel):
    _modelname = "site"
    _identifiers = ("name",)
    _shortname = ()
    _attributes = ()
    _children = {"device": "devices"}

    name: str
    devices: List = []


class Device(DiffSyncModel):
    _modelname = "device"
    _identifiers = ("name",)
    _attributes = ()
    _children = {"interface": "interfaces"}

    name: str
    site_name: Optional[str]  # local-only: not compared
    role: Optional[str]  # local-only: not compared
    interfaces: List = []


class Interface(DiffSyncModel):
    _modelname = "interface"
    _identifiers = ("device_name", "name")
    _shortname = ("name",)
    _attributes = ("description",)

    name: str
    device_name: str
    description: Optional[str]


STD = (("eth0", "Interface 0"), ("eth1", "Interface 1"))

# (site, device, role, ((interface, description), ...))
INVENTORY_A = [
    ("nyc", "nyc-spine1", "spine", STD),
    ("nyc", "nyc-spine2", "spine", STD),
    ("sfo", "sfo-spine1", "spine", STD),
    ("sfo", "sfo-spine2", "spine", (("eth0", "TBD"), ("eth1", "ddd"), ("eth2", "Interface 2"))),
]
INVENTORY_B = [
    ("atl", "atl-spine1", "spine", STD),
    ("atl", "atl-spine2", "spine", STD),
    ("nyc", "nyc-spine1", "spine", (("eth0", "Interface 0/0"), ("eth1", "Interface 1"))),
    ("nyc", "nyc-spine2", "spine", STD),
    ("sfo", "sfo-spine1", "leaf", STD),
    ("sfo", "sfo-spine2", "spine", (("eth0", "TBD"), ("eth1", "ddd"))),
]
INVENTORY_C = [
    ("nyc", "nyc-spine1", "spine", (("eth0", "Interface 1/1"), ("eth1", "Interface 1"))),
    ("nyc", "nyc-spine2", "spine", STD),
    ("sfo", "sfo-spine1", "leaf", STD),
    ("sfo", "sfo-spine2", "spine", (("eth0", "Interface 0/0"), ("eth1", "Interface 0/1"))),
]


class _InventoryAdapter(Adapter):
    site = Site
    device = Device
    interface = Interface

    top_level = ["site"]

    inventory: list = []

    def load(self):
        """Explicit add() + add_child(), creating each site the first time it is seen."""
        sites = {}
        for site_name, dev_name, role, interfaces in self.inventory:
            if site_name not in sites:
                sites[site_name] = self.site(name=site_name)
                self.add(sites[site_name])
            device = self.device(name=dev_name, role=role, site_name=site_name)
            self.add(device)
            sites[site_name].add_child(device)
            for intf_name, description in interfaces:
                intf = self.interface(name=intf_name, device_name=dev_name, description=description)
                self.add(intf)
                device.add_child(intf)


class BackendA(_InventoryAdapter):
    type = "Backend A"
    inventory = INVENTORY_A


class BackendB(_InventoryAdapter):
    inventory = INVENTORY_B

    def load(self):
        """Same data shape, loaded through get_or_instantiate() so repeated sites are reused."""
        for site_name, dev_name, role, interfaces in self.inventory:
            site, _ = self.get_or_instantiate(self.site, {"name": site_name})
            device, created = self.get_or_instantiate(
                self.device, {"name": dev_name}, {"role": role, "site_name": site_name}
            )
            assert created
            site.add_child(device)
            for intf_name, description in interfaces:
                intf, created = self.get_or_instantiate(
                    self.interface, {"name": intf_name, "device_name": dev_name}, {"description": description}
                )
                assert created
                device.add_child(intf)


class BackendC(_InventoryAdapter):
    inventory = INVENTORY_C


class SortedSiteDiff(Diff):
    """Yield site elements alphabetically instead of insertion order."""

    @classmethod
    def order_children_site(cls, children):
        for key in sorted(children):
            yield children[key]


@pytest.fixture
def backends():
    a = BackendA(name="Backend-A")
    a.load()
    b = BackendB(name="Backend-B")
    b.load()
    c = BackendC()
    c.load()
    return a, b, c


EXPECTED_DIFF_A_B_STR = """\
site
  site: nyc
    device
      device: nyc-spine1
        interface
          interface: eth0
            description    Backend-A(Interface 0)    Backend-B(Interface 0/0)
  site: sfo
    device
      device: sfo-spine2
        interface
          interface: eth2 MISSING in Backend-B
  site: atl MISSING in Backend-A
    device
      device: atl-spine1 MISSING in Backend-A
        interface
          interface: eth0 MISSING in Backend-A
          interface: eth1 MISSING in Backend-A
      device: atl-spine2 MISSING in Backend-A
        interface
          interface: eth0 MISSING in Backend-A
          interface: eth1 MISSING in Backend-A"""

EXPECTED_DIFF_A_B_DICT = {
    "site": {
        "atl": {
            "-": {},
            "device": {
                "atl-spine1": {
                    "-": {},
                    "interface": {
                        "eth0": {"-": {"description": "Interface 0"}},
                        "eth1": {"-": {"description": "Interface 1"}},
                    },
                },
                "atl-spine2": {
                    "-": {},
                    "interface": {
                        "eth0": {"-": {"description": "Interface 0"}},
                        "eth1": {"-": {"description": "Interface 1"}},
                    },
                },
            },
        },
        # elements present on both sides carry (possibly empty) "-"/"+" attribute dicts
        "nyc": {
            "-": {},
            "+": {},
            "device": {
                "nyc-spine1": {
                    "-": {},
                    "+": {},
                    "interface": {"eth0": {"-": {"description": "Interface 0/0"}, "+": {"description": "Interface 0"}}},
                }
            },
        },
        "sfo": {
            "-": {},
            "+": {},
            "device": {
                "sfo-spine2": {"-": {}, "+": {}, "interface": {"eth2": {"+": {"description": "Interface 2"}}}},
            },
        },
    }
}

EXPECTED_DIFF_B_C_STR = """\
site
  site: atl MISSING in BackendC
    device
      device: atl-spine1 MISSING in BackendC
        interface
          interface: eth0 MISSING in BackendC
          interface: eth1 MISSING in BackendC
      device: atl-spine2 MISSING in BackendC
        interface
          interface: eth0 MISSING in BackendC
          interface: eth1 MISSING in BackendC
  site: nyc
    device
      device: nyc-spine1
        interface
          interface: eth0
            description    Backend-B(Interface 0/0)    BackendC(Interface 1/1)
  site: sfo
    device
      device: sfo-spine2
        interface
          interface: eth0
            description    Backend-B(TBD)    BackendC(Interface 0/0)
          interface: eth1
            description    Backend-B(ddd)    BackendC(Interface 0/1)"""


def test_adapters_load_expected_inventory(backends):
    a, b, c = backends
    assert (a.name, b.name, c.name) == ("Backend-A", "Backend-B", "BackendC")
    assert BackendA.type == "Backend A"
    assert (a.type, b.type, c.type) == ("Backend A", "BackendB", "BackendC")
    assert (str(a), str(b), str(c)) == ('Backend A "Backend-A"', 'BackendB "Backend-B"', "BackendC")
    assert repr(a) == '<Backend A "Backend-A">'
    assert repr(c) == "<BackendC>"
    assert len(a) == 2 + 4 + 9
    assert len(b) == 3 + 6 + 12
    assert len(c) == 2 + 4 + 8
    assert (a.count("site"), a.count("device"), a.count("interface")) == (2, 4, 9)
    assert (b.count(Site), b.count(Device), b.count(Interface)) == (3, 6, 12)

    # get_or_instantiate in BackendB reused the site objects: children accumulated on a single instance
    assert b.get("site", "atl").devices == ["atl-spine1", "atl-spine2"]
    assert b.get(Site, {"name": "sfo"}).devices == ["sfo-spine1", "sfo-spine2"]
    assert a.get("device", "sfo-spine2").interfaces == ["sfo-spine2__eth0", "sfo-spine2__eth1", "sfo-spine2__eth2"]

    intf = c.get(Interface, {"device_name": "nyc-spine1", "name": "eth0"})
    assert intf.get_unique_id() == "nyc-spine1__eth0"
    assert intf.get_shortname() == "eth0"
    assert intf.get_identifiers() == {"device_name": "nyc-spine1", "name": "eth0"}
    assert intf.get_attrs() == {"description": "Interface 1/1"}
    assert intf.adapter is c

    assert a.dict()["device"]["sfo-spine1"] == {
        "name": "sfo-spine1",
        "site_name": "sfo",
        "role": "spine",
        "interfaces": ["sfo-spine1__eth0", "sfo-spine1__eth1"],
    }
    assert a.dict()["interface"]["nyc-spine2__eth1"] == {
        "name": "eth1",
        "device_name": "nyc-spine2",
        "description": "Interface 1",
    }
    assert sorted(a.dict()["site"]) == ["nyc", "sfo"]


def test_adapter_str(backends):
    _, _, c = backends
    lines = c.str().splitlines()
    assert lines[0] == "site"
    assert lines[1] == "  site: nyc: {}"
    assert lines[2] == "    devices"
    assert lines[3] == "      device: nyc-spine1: {}"
    assert lines[4] == "        interfaces"
    assert lines[5] == "          interface: nyc-spine1__eth0: {'description': 'Interface 1/1'}"
    assert lines[6] == "          interface: nyc-spine1__eth1: {'description': 'Interface 1'}"
    assert len(lines) == 1 + 2 * 2 + 4 * 2 + 8


def test_diff_a_to_b(backends):
    a, b, _ = backends
    diff = a.diff_to(b, diff_class=SortedSiteDiff)
    assert isinstance(diff, SortedSiteDiff)
    assert diff.has_diffs()
    assert diff.summary() == {"create": 1, "update": 1, "delete": 7, "no-change": 13, "skip": 0}
    assert len(diff) == 22  # every DiffElement, recursively: 3 sites + 6 devices + 13 interfaces
    assert diff.groups() == ["site"]
    # the custom ordering only affects get_children(); str()/dict() keep insertion order (source first)
    assert [element.name for element in diff.get_children()] == ["atl", "nyc", "sfo"]
    assert [element.name for element in a.diff_to(b).get_children()] == ["nyc", "sfo", "atl"]
    assert diff.str() == EXPECTED_DIFF_A_B_STR
    assert diff.dict() == EXPECTED_DIFF_A_B_DICT
    assert list(diff.dict()["site"]) == ["atl", "nyc", "sfo"]  # dict() follows get_children() order
    assert list(a.diff_to(b).dict()["site"]) == ["nyc", "sfo", "atl"]

    atl = diff.children["site"]["atl"]
    assert atl.action == "delete"
    assert atl.source_name == "Backend-A"
    assert atl.dest_name == "Backend-B"
    assert atl.keys == {"name": "atl"}
    assert atl.summary() == {"create": 0, "update": 0, "delete": 7, "no-change": 0}
    nyc = diff.children["site"]["nyc"]
    assert nyc.action is None
    assert nyc.has_diffs(include_children=False) is False
    assert nyc.has_diffs() is True
    eth0 = nyc.child_diff.children["device"]["nyc-spine1"].child_diff.children["interface"]["eth0"]
    assert eth0.action == "update"
    assert eth0.keys == {"device_name": "nyc-spine1", "name": "eth0"}
    assert eth0.get_attrs_diffs() == {"-": {"description": "Interface 0/0"}, "+": {"description": "Interface 0"}}


def test_diff_b_to_c_via_diff_from(backends):
    _, b, c = backends
    diff = c.diff_from(b)
    assert diff.summary() == {"create": 7, "update": 3, "delete": 0, "no-change": 11, "skip": 0}
    assert len(diff) == 21
    assert diff.dict() == {
        "site": {
            "atl": {
                "+": {},
                "device": {
                    "atl-spine1": {
                        "+": {},
                        "interface": {
                            "eth0": {"+": {"description": "Interface 0"}},
                            "eth1": {"+": {"description": "Interface 1"}},
                        },
                    },
                    "atl-spine2": {
                        "+": {},
                        "interface": {
                            "eth0": {"+": {"description": "Interface 0"}},
                            "eth1": {"+": {"description": "Interface 1"}},
                        },
                    },
                },
            },
            "nyc": {
                "-": {},
                "+": {},
                "device": {
                    "nyc-spine1": {
                        "-": {},
                        "+": {},
                        "interface": {
                            "eth0": {"-": {"description": "Interface 1/1"}, "+": {"description": "Interface 0/0"}}
                        },
                    }
                },
            },
            "sfo": {
                "-": {},
                "+": {},
                "device": {
                    "sfo-spine2": {
                        "-": {},
                        "+": {},
                        "interface": {
                            "eth0": {"-": {"description": "Interface 0/0"}, "+": {"description": "TBD"}},
                            "eth1": {"-": {"description": "Interface 0/1"}, "+": {"description": "ddd"}},
                        },
                    }
                },
            },
        }
    }
    assert diff.str() == EXPECTED_DIFF_B_C_STR
    # role differs for sfo-spine1 between B ("leaf") and A ("spine") but it's not an attribute: C vs B shows nothing
    assert "sfo-spine1" not in diff.dict()["site"]["sfo"]["device"]


def test_sync_a_to_b_with_precomputed_diff(backends):
    a, b, _ = backends
    diff = a.diff_to(b, diff_class=SortedSiteDiff)
    returned = a.sync_to(b, diff_class=SortedSiteDiff, diff=diff)
    assert returned is diff

    assert b.get_or_none("site", "atl") is None
    assert b.get_or_none("device", "atl-spine1") is None
    assert b.get_or_none(Interface, {"device_name": "atl-spine2", "name": "eth1"}) is None
    assert (b.count("site"), b.count("device"), b.count("interface")) == (2, 4, 9)
    assert b.get(Interface, {"device_name": "nyc-spine1", "name": "eth0"}).description == "Interface 0"
    eth2 = b.get("interface", "sfo-spine2__eth2")
    assert eth2.description == "Interface 2"
    assert eth2.adapter is b
    assert b.get("device", "sfo-spine2").interfaces == ["sfo-spine2__eth0", "sfo-spine2__eth1", "sfo-spine2__eth2"]
    # non-attribute fields are untouched by sync
    assert b.get("device", "sfo-spine1").role == "leaf"

    for modelname in ("site", "interface"):
        assert b.dict()[modelname] == a.dict()[modelname]

    again = a.diff_to(b)
    assert again.has_diffs() is False
    assert again.str() == "(no diffs)"
    assert again.dict() == {}
    assert again.summary() == {"create": 0, "update": 0, "delete": 0, "no-change": 15, "skip": 0}


def test_sync_into_c_only_passes_identifiers_and_attributes_to_create(backends):
    """Device.site_name/role are required but not attributes: creating atl-spine1 in C from ids+attrs fails."""
    _, b, c = backends
    with pytest.raises(pydantic.ValidationError) as excinfo:
        c.sync_from(b)
    assert {err["loc"] for err in excinfo.value.errors()} == {("site_name",), ("role",)}


def test_sync_with_mismatched_diff_class_is_rejected(backends):
    a, b, _ = backends
    diff = a.diff_to(b)
    with pytest.raises(DiffClassMismatch):
        a.sync_to(b, diff_class=SortedSiteDiff, diff=diff)
    assert b.count("site") == 3


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    saved = structlog.get_config()
    yield
    structlog.reset_defaults()
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("verbosity", [0, 1, 2])
def test_enable_console_logging_then_diff_and_sync(backends, restore_logging, verbosity):
    a, b, _ = backends
    enable_console_logging(verbosity=verbosity)
    a.sync_to(b)
    assert not a.diff_to(b).has_diffs()


def test_deprecated_diffsync_base_class_still_works(backends):
    """Some of the example backends subclass the pre-2.0 name ``DiffSync``; it must still work, with a warning."""
    a, _, _ = backends
    with pytest.warns(DeprecationWarning):

        class LegacyBackendB(DiffSync):
            site = Site
            device = Device
            interface = Interface
            top_level = ["site"]

            load = BackendB.load
            inventory = INVENTORY_B

        legacy = LegacyBackendB(name="Backend-B")
    assert isinstance(legacy, Adapter)
    legacy.load()
    diff = a.diff_to(legacy)
    assert diff.summary() == {"create": 1, "update": 1, "delete": 7, "no-change": 13, "skip": 0}
    a.sync_to(legacy)
    assert not a.diff_to(legacy).has_diffs()
