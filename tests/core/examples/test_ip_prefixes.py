"""diffsync example 06 (IP prefixes), re-expressed as tests against ``core``.

Two IPAM systems store prefixes in different shapes: "IPAM A" keeps in-memory records with a CIDR string and
a "VLANnn" label (persisted to a JSON file in ``sync_complete``); "IPAM B" is a JSON file read and rewritten on
every create/update/delete, with separate network/prefix-length fields. Both map onto a shared ``Prefix``
model whose identifier is an ``ipaddress`` network object, so "10.10.10.10/24" and "10.10.10.0/24", or
"2001:DB8::/32" and "2001:db8::/32", are the same prefix.
"""

import ipaddress
import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Optional, Union

import pytest

from core import Adapter, DiffSyncModel
from core.enum import DiffSyncFlags


class Prefix(DiffSyncModel):
    _modelname = "prefix"
    _identifiers = ("prefix",)
    _attributes = ("vrf", "vlan_id", "tenant")

    prefix: Union[IPv4Network, IPv6Network]
    vrf: Optional[str] = None
    vlan_id: Optional[int] = None
    tenant: Optional[str] = None


IPAM_A_RECORDS = [
    {"cidr": "10.10.10.10/24", "family": 4, "vrf": "data", "vlan": "VLAN10", "customer_id": None},
    {"cidr": "10.20.20.20/24", "family": 4, "vrf": "voice", "vlan": "VLAN20", "customer_id": "ABC corp"},
    {"cidr": "172.18.0.0/16", "family": 4, "vrf": None, "vlan": "VLAN18", "customer_id": None},
]
IPAM_B_RECORDS = [
    {"network": "10.10.10.10", "prefix_length": 24, "tenant": None, "vlan_id": 123, "vrf": "voice"},
    {"network": "2001:DB8::", "prefix_length": 32, "tenant": "XYZ Corporation", "vlan_id": 10, "vrf": "data"},
]


class IpamAPrefix(Prefix):
    @classmethod
    def create(cls, adapter, ids, attrs):
        adapter.calls.append(("create", ids, attrs))
        prefix = ids["prefix"]
        adapter.records.append(
            {
                "cidr": str(prefix),
                "family": prefix.version,
                "vrf": attrs["vrf"],
                "vlan": f"VLAN{attrs['vlan_id']}",
                "customer_id": attrs["tenant"] or None,
            }
        )
        return super().create(adapter, ids=ids, attrs=attrs)

    def update(self, attrs):
        self.adapter.calls.append(("update", self.prefix, attrs))
        record = self.adapter.find(self.prefix)
        if "vrf" in attrs:
            record["vrf"] = attrs["vrf"]
        if "vlan_id" in attrs:
            record["vlan"] = f"VLAN{attrs['vlan_id']}"
        if "tenant" in attrs:
            record["customer_id"] = attrs["tenant"]
        return super().update(attrs)

    def delete(self):
        self.adapter.calls.append(("delete", self.prefix, None))
        self.adapter.records.remove(self.adapter.find(self.prefix))
        return super().delete()


class IpamA(Adapter):
    prefix = IpamAPrefix
    top_level = ["prefix"]

    def __init__(self, records, dump_path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records = [dict(record) for record in records]
        self.dump_path = dump_path
        self.calls = []
        self.completed = []

    def find(self, prefix):
        return next(r for r in self.records if ipaddress.ip_network(r["cidr"], strict=False) == prefix)

    def load(self):
        for record in self.records:
            self.add(
                self.prefix(
                    prefix=ipaddress.ip_network(record["cidr"], strict=False),
                    vrf=record["vrf"],
                    vlan_id=int(record["vlan"].removeprefix("VLAN")),
                    tenant=record["customer_id"],
                )
            )

    def sync_complete(self, source, diff, flags=DiffSyncFlags.NONE, logger=None):
        self.completed.append((source, diff, flags))
        self.dump_path.write_text(json.dumps(self.records, indent=2))
        return super().sync_complete(source, diff, flags, logger)


class IpamBPrefix(Prefix):
    @staticmethod
    def _matches(record, prefix):
        return ipaddress.ip_network(f"{record['network']}/{record['prefix_length']}", strict=False) == prefix

    @classmethod
    def create(cls, adapter, ids, attrs):
        adapter.calls.append(("create", ids, attrs))
        prefix = ids["prefix"]
        records = adapter.read()
        records.append(
            {
                "network": str(prefix.network_address),
                "prefix_length": prefix.prefixlen,
                "vrf": attrs["vrf"],
                "vlan_id": attrs["vlan_id"],
                "tenant": attrs["tenant"] or None,
            }
        )
        adapter.write(records)
        return super().create(adapter, ids=ids, attrs=attrs)

    def update(self, attrs):
        self.adapter.calls.append(("update", self.prefix, attrs))
        records = self.adapter.read()
        for record in records:
            if self._matches(record, self.prefix):
                record.update({key: attrs[key] for key in ("vrf", "vlan_id", "tenant") if key in attrs})
                break
        self.adapter.write(records)
        return super().update(attrs)

    def delete(self):
        self.adapter.calls.append(("delete", self.prefix, None))
        self.adapter.write([r for r in self.adapter.read() if not self._matches(r, self.prefix)])
        return super().delete()


class IpamB(Adapter):
    prefix = IpamBPrefix
    top_level = ["prefix"]

    def __init__(self, path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path = path
        self.calls = []

    def read(self):
        return json.loads(self.path.read_text())

    def write(self, records):
        self.path.write_text(json.dumps(records, indent=2))

    def load(self):
        for record in self.read():
            self.add(
                self.prefix(
                    prefix=ipaddress.ip_network(f"{record['network']}/{record['prefix_length']}", strict=False),
                    vrf=record["vrf"],
                    vlan_id=record["vlan_id"],
                    tenant=record["tenant"],
                )
            )


@pytest.fixture
def ipams(tmp_path):
    b_path = tmp_path / "ipam_b.json"
    b_path.write_text(json.dumps(IPAM_B_RECORDS))
    ipam_a = IpamA(IPAM_A_RECORDS, tmp_path / "ipam_a.json")
    ipam_a.load()
    ipam_b = IpamB(b_path)
    ipam_b.load()
    return ipam_a, ipam_b


NET_10 = IPv4Network("10.10.10.0/24")
NET_20 = IPv4Network("10.20.20.0/24")
NET_172 = IPv4Network("172.18.0.0/16")
NET_V6 = IPv6Network("2001:db8::/32")


def test_loaded_models_use_ipaddress_identifiers(ipams):
    ipam_a, ipam_b = ipams
    a_prefixes = ipam_a.get_all("prefix")
    assert [p.prefix for p in a_prefixes] == [NET_10, NET_20, NET_172]
    assert all(type(p.prefix) is IPv4Network for p in a_prefixes)
    v6 = ipam_b.get(Prefix, {"prefix": NET_V6})
    assert type(v6.prefix) is IPv6Network
    assert v6.get_unique_id() == "2001:db8::/32"
    assert v6.get_identifiers() == {"prefix": NET_V6}
    assert ipam_b.get("prefix", "2001:db8::/32") is v6
    assert ipam_b.get(IpamBPrefix, "10.10.10.0/24").vlan_id == 123

    assert ipam_a.dict() == {
        "prefix": {
            "10.10.10.0/24": {"prefix": NET_10, "vrf": "data", "vlan_id": 10},
            "10.20.20.0/24": {"prefix": NET_20, "vrf": "voice", "vlan_id": 20, "tenant": "ABC corp"},
            "172.18.0.0/16": {"prefix": NET_172, "vlan_id": 18},
        }
    }
    assert ipam_b.dict() == {
        "prefix": {
            "10.10.10.0/24": {"prefix": NET_10, "vrf": "voice", "vlan_id": 123},
            "2001:db8::/32": {"prefix": NET_V6, "vrf": "data", "vlan_id": 10, "tenant": "XYZ Corporation"},
        }
    }


EXPECTED_DIFF_DICT = {
    "prefix": {
        "10.10.10.0/24": {"-": {"vrf": "voice", "vlan_id": 123}, "+": {"vrf": "data", "vlan_id": 10}},
        "10.20.20.0/24": {"+": {"vrf": "voice", "vlan_id": 20, "tenant": "ABC corp"}},
        "172.18.0.0/16": {"+": {"vrf": None, "vlan_id": 18, "tenant": None}},
        "2001:db8::/32": {"-": {"vrf": "data", "vlan_id": 10, "tenant": "XYZ Corporation"}},
    }
}

EXPECTED_DIFF_STR = """\
prefix
  prefix: 10.10.10.0/24
    vrf    IpamA(data)    IpamB(voice)
    vlan_id    IpamA(10)    IpamB(123)
  prefix: 10.20.20.0/24 MISSING in IpamB
  prefix: 172.18.0.0/16 MISSING in IpamB
  prefix: 2001:db8::/32 MISSING in IpamA"""


def test_diff(ipams):
    ipam_a, ipam_b = ipams
    diff = ipam_a.diff_to(ipam_b)
    assert diff.summary() == {"create": 2, "update": 1, "delete": 1, "no-change": 0, "skip": 0}
    assert diff.dict() == EXPECTED_DIFF_DICT
    assert list(diff.dict()["prefix"]) == ["10.10.10.0/24", "10.20.20.0/24", "172.18.0.0/16", "2001:db8::/32"]
    assert diff.str() == EXPECTED_DIFF_STR
    assert ipam_b.diff_from(ipam_a).dict() == EXPECTED_DIFF_DICT

    element = diff.children["prefix"]["2001:db8::/32"]
    assert element.action == "delete"
    assert element.keys == {"prefix": NET_V6}
    assert type(element.keys["prefix"]) is IPv6Network


def test_sync_updates_remote_store_and_rediff_is_clean(ipams):
    ipam_a, ipam_b = ipams
    diff = ipam_a.sync_to(ipam_b)
    assert diff.summary() == {"create": 2, "update": 1, "delete": 1, "no-change": 0, "skip": 0}

    # create/update/delete hooks were called with ipaddress objects, in diff order
    assert [(op, key) for op, key, _ in ipam_b.calls[1:]] == [
        ("create", {"prefix": NET_20}),
        ("create", {"prefix": NET_172}),
        ("delete", NET_V6),
    ]
    op, key, attrs = ipam_b.calls[0]
    assert (op, key, attrs) == ("update", NET_10, {"vrf": "data", "vlan_id": 10})
    assert type(key) is IPv4Network
    assert type(ipam_b.calls[1][1]["prefix"]) is IPv4Network
    assert ipam_b.calls[1][2] == {"vrf": "voice", "vlan_id": 20, "tenant": "ABC corp"}
    assert ipam_b.calls[2][2] == {"vrf": None, "vlan_id": 18, "tenant": None}

    assert ipam_b.read() == [
        {"network": "10.10.10.10", "prefix_length": 24, "tenant": None, "vlan_id": 10, "vrf": "data"},
        {"network": "10.20.20.0", "prefix_length": 24, "vrf": "voice", "vlan_id": 20, "tenant": "ABC corp"},
        {"network": "172.18.0.0", "prefix_length": 16, "vrf": None, "vlan_id": 18, "tenant": None},
    ]
    assert ipam_b.get_or_none("prefix", "2001:db8::/32") is None
    assert type(ipam_b.get("prefix", "172.18.0.0/16").prefix) is IPv4Network
    assert ipam_b.get(Prefix, {"prefix": NET_10}).vlan_id == 10

    # the in-memory adapter and a freshly reloaded one both agree with IPAM A
    assert ipam_a.diff_to(ipam_b).summary() == {"create": 0, "update": 0, "delete": 0, "no-change": 3, "skip": 0}
    reloaded = IpamB(ipam_b.path)
    reloaded.load()
    again = ipam_a.diff_to(reloaded)
    assert not again.has_diffs()
    assert again.summary() == {"create": 0, "update": 0, "delete": 0, "no-change": 3, "skip": 0}
    assert reloaded.dict() == ipam_a.dict()


def test_sync_from_b_into_a_and_bulk_write_in_sync_complete(ipams):
    ipam_a, ipam_b = ipams
    diff = ipam_a.sync_from(ipam_b)
    assert diff.summary() == {"create": 1, "update": 1, "delete": 2, "no-change": 0, "skip": 0}
    assert len(ipam_a.completed) == 1
    source, completed_diff, flags = ipam_a.completed[0]
    assert source is ipam_b
    assert completed_diff is diff
    assert flags == DiffSyncFlags.NONE
    assert json.loads(ipam_a.dump_path.read_text()) == [
        {"cidr": "10.10.10.10/24", "family": 4, "vrf": "voice", "vlan": "VLAN123", "customer_id": None},
        {"cidr": "2001:db8::/32", "family": 6, "vrf": "data", "vlan": "VLAN10", "customer_id": "XYZ Corporation"},
    ]

    # nothing left to change: sync_complete is not invoked again
    ipam_a.sync_from(ipam_b)
    assert len(ipam_a.completed) == 1
    assert not ipam_b.diff_to(ipam_a).has_diffs()


class GatewayPrefix(DiffSyncModel):
    """Variant with ipaddress-typed attributes as well as identifiers."""

    _modelname = "prefix"
    _identifiers = ("prefix",)
    _attributes = ("gateway", "dns")

    prefix: Union[IPv4Network, IPv6Network]
    gateway: Optional[Union[IPv4Address, IPv6Address]] = None
    dns: list = []


class GatewayIpam(Adapter):
    prefix = GatewayPrefix
    top_level = ["prefix"]


def test_ipaddress_typed_attributes():
    src, dst = GatewayIpam(name="src"), GatewayIpam(name="dst")
    src.add(GatewayPrefix(prefix="10.0.0.0/24", gateway="10.0.0.1", dns=[IPv4Address("10.0.0.53")]))
    src.add(GatewayPrefix(prefix="2001:db8:1::/48", gateway="2001:db8:1::1"))
    dst.add(GatewayPrefix(prefix="10.0.0.0/24", gateway="10.0.0.254", dns=[IPv4Address("10.0.0.53")]))

    gateway = src.get("prefix", "10.0.0.0/24").gateway
    assert type(gateway) is IPv4Address

    diff = src.diff_to(dst)
    assert diff.summary() == {"create": 1, "update": 1, "delete": 0, "no-change": 0, "skip": 0}
    assert diff.dict() == {
        "prefix": {
            "10.0.0.0/24": {"-": {"gateway": IPv4Address("10.0.0.254")}, "+": {"gateway": IPv4Address("10.0.0.1")}},
            "2001:db8:1::/48": {"+": {"gateway": IPv6Address("2001:db8:1::1"), "dns": []}},
        }
    }
    assert diff.str().splitlines()[2] == "    gateway    src(10.0.0.1)    dst(10.0.0.254)"

    src.sync_to(dst)
    synced = dst.get(GatewayPrefix, {"prefix": IPv6Network("2001:db8:1::/48")})
    assert synced.gateway == IPv6Address("2001:db8:1::1")
    assert type(synced.gateway) is IPv6Address
    assert type(dst.get("prefix", "10.0.0.0/24").gateway) is IPv4Address
    assert not src.diff_to(dst).has_diffs()
