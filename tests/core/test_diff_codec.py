"""Diff elements through msgpack and back: structure kept, attribute values typed through the models."""

from __future__ import annotations

import datetime
import ipaddress
from typing import List, Optional, Tuple

import msgpack
import pytest
from pydantic import BaseModel

from core import Adapter, DiffSyncModel
from core.diff_codec import DiffCodec, walk


class Location(BaseModel):
    lat: float
    lon: float


class Site(DiffSyncModel):
    _modelname = "site"
    _identifiers = ("name", "number")
    _attributes = ("seen", "address", "tags", "where", "window", "maybe")
    _children = {"device": "devices"}

    name: str
    number: int
    seen: Optional[datetime.datetime] = None
    address: Optional[ipaddress.IPv4Address] = None
    tags: List[str] = []
    where: Optional[Location] = None
    window: Tuple[int, int] = (0, 0)
    maybe: Optional[str] = None
    devices: List[str] = []


class Device(DiffSyncModel):
    _modelname = "device"
    _identifiers = ("site", "name")
    _attributes = ("role",)

    site: str
    name: str
    role: str = ""


class Inventory(Adapter):
    site = Site
    device = Device
    top_level = ["site"]


def round_trip(source: Inventory, target: Inventory):
    diff = target.diff_from(source)
    codec = DiffCodec(Inventory, Inventory)
    packed = [msgpack.packb(codec.encode(el), use_bin_type=True) for el in diff.get_children()]
    rebuilt = [codec.decode(msgpack.unpackb(raw, raw=False), "src", "dst") for raw in packed]
    return list(diff.get_children()), rebuilt


def test_typed_values_and_structure_survive() -> None:
    source, target = Inventory(), Inventory()
    site = Site(
        name="ams",
        number=1,
        seen=datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        address=ipaddress.IPv4Address("10.0.0.1"),
        tags=["a", "b"],
        where=Location(lat=1.5, lon=2.5),
        window=(3, 4),
    )
    source.add(site)
    device = Device(site="ams", name="leaf1", role="leaf")
    source.add(device)
    site.add_child(device)
    target.add(Site(name="ams", number=1, window=(1, 2)))
    original, rebuilt = round_trip(source, target)
    assert len(original) == len(rebuilt) == 1
    for old, new in zip(walk(original[0]), walk(rebuilt[0]), strict=True):
        assert (old.type, old.name, old.keys, old.action) == (new.type, new.name, new.keys, new.action)
        assert old.get_attrs_diffs() == new.get_attrs_diffs()
        assert old.source_attrs == new.source_attrs and old.dest_attrs == new.dest_attrs
    plus = rebuilt[0].get_attrs_diffs()["+"]
    assert isinstance(plus["seen"], datetime.datetime) and plus["seen"].tzinfo is not None
    assert isinstance(plus["address"], ipaddress.IPv4Address)
    assert plus["where"] == {"lat": 1.5, "lon": 2.5}  # as model_dump gives nested models
    assert plus["window"] == (3, 4) and isinstance(plus["window"], tuple)
    assert rebuilt[0].keys == {"name": "ams", "number": 1}
    assert rebuilt[0].source_name == "src" and rebuilt[0].dest_name == "dst"


def test_visit_numbers_in_preorder() -> None:
    source, target = Inventory(), Inventory()
    site = Site(name="ams", number=1)
    source.add(site)
    for name in ("b", "a"):
        device = Device(site="ams", name=name)
        source.add(device)
        site.add_child(device)
    diff = target.diff_from(source)
    codec = DiffCodec(Inventory, Inventory)
    record = codec.encode(next(diff.get_children()))
    seen = []
    rebuilt = codec.decode(record, visit=seen.append)
    assert [el.name for el in seen] == [el.name for el in walk(rebuilt)] == ["ams__1", "ams__b", "ams__a"]


@pytest.mark.parametrize(
    "record",
    [
        None,
        [],
        ["site"],
        ["site", "x", {}, None, None, "not a list"],
        [1, "x", {}, None, None, []],
        ["site", "x", {}, ["not", "a", "map"], None, []],
    ],
)
def test_malformed_records_are_refused(record) -> None:
    with pytest.raises(ValueError, match="malformed diff record"):
        DiffCodec(Inventory, Inventory).decode(record)
