"""Adapters for the runner's integration tests, imported by the test process and by the real workers
(``SHARDSYNC_ADAPTER_MODULES=ss_test_adapters``).

``dataset``: loads the data given in its kwargs and records every create/update/delete hook call (and
``sync_complete``) in a Redis list named in its kwargs, so a test can compare what a distributed job did
with what a local ``sync_from`` does.  Attribute values steer the hooks: ``fail-raise`` makes the hook
raise an ObjectCrudException, ``fail-none`` makes it return None; ``wait:<key>`` makes it wait (polling,
with a deadline) until the Redis key ``<key>`` exists; ``meet:<key>:<n>`` adds this process to the set
``<key>`` and waits until ``n`` processes are in it (proof that shards run at the same time elsewhere);
``wait-file:<path>`` waits (polling, with a deadline) until the file ``<path>`` exists, touching no Redis
while it waits; ``sleep:<seconds>`` makes the hook take that long.
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional

import msgpack
from redis import Redis

from core import Adapter, DiffSyncModel
from core.enum import DiffSyncModelFlags
from core.exceptions import ObjectCrudException
from worker import register_adapter

_clients: Dict[str, Redis] = {}


def _client(url: str) -> Redis:
    key = f"{os.getpid()}:{url}"
    if key not in _clients:
        _clients[key] = Redis.from_url(url)
    return _clients[key]


def _steer(adapter: Any, value: Any) -> Optional[str]:
    """Act on a steering value; returns "raise" or "none" for failures."""
    if not isinstance(value, str):
        return None
    if value == "fail-raise":
        return "raise"
    if value == "fail-none":
        return "none"
    deadline = time.monotonic() + 60
    if value.startswith("wait-file:"):
        while not os.path.exists(value[10:]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{value}: gave up waiting")
            time.sleep(0.01)
        return None
    if value.startswith("sleep:"):
        time.sleep(float(value[6:]))
        return None
    client = _client(adapter.record_url)
    if value.startswith("wait:"):
        while not client.exists(value[5:]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{value}: gave up waiting")
            time.sleep(0.01)
    elif value.startswith("meet:"):
        key, count = value[5:].rsplit(":", 1)
        client.sadd(key, os.getpid())
        while client.scard(key) < int(count):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{value}: gave up waiting")
            time.sleep(0.01)
    return None


class _Recorded(DiffSyncModel):
    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        adapter.record("create", cls.get_type(), cls.create_unique_id(**ids), attrs)  # type: ignore[attr-defined]
        outcome = _steer(adapter, attrs.get("note"))
        if outcome == "raise":
            raise ObjectCrudException(f"create of {ids} refused")
        if outcome == "none":
            return None
        return super().create(adapter=adapter, ids=ids, attrs=attrs)

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        self.adapter.record("update", self.get_type(), self.get_unique_id(), attrs)  # type: ignore[union-attr]
        outcome = _steer(self.adapter, attrs.get("note"))
        if outcome == "raise":
            raise ObjectCrudException(f"update of {self.get_unique_id()} refused")
        if outcome == "none":
            return None
        return super().update(attrs)

    def delete(self) -> Optional[DiffSyncModel]:
        self.adapter.record("delete", self.get_type(), self.get_unique_id(), {})  # type: ignore[union-attr]
        outcome = _steer(self.adapter, getattr(self, "note", None))
        if outcome == "raise":
            raise ObjectCrudException(f"delete of {self.get_unique_id()} refused")
        if outcome == "none":
            return None
        return super().delete()


class Region(_Recorded):
    """A top-level type without children (the first wave)."""

    _modelname = "region"
    _identifiers = ("name",)
    _attributes = ("label", "note")

    name: str
    label: str = ""
    note: str = ""


class Site(_Recorded):
    """A top-level type with a two-level subtree below it."""

    _modelname = "site"
    _identifiers = ("name",)
    _attributes = ("region", "note")
    _children = {"device": "devices"}

    name: str
    region: str = ""
    note: str = ""
    devices: List[str] = []


class Device(_Recorded):
    _modelname = "device"
    _identifiers = ("site", "name")
    _shortname = ("name",)
    _attributes = ("role", "note")
    _children = {"port": "ports"}

    site: str
    name: str
    role: str = ""
    note: str = ""
    ports: List[str] = []


class Port(_Recorded):
    _modelname = "port"
    _identifiers = ("device", "name")
    _shortname = ("name",)
    _attributes = ("speed", "note")

    device: str
    name: str
    speed: int = 0
    note: str = ""


@register_adapter("dataset")
class DatasetAdapter(Adapter):
    """Data from kwargs: ``{"region": [{...}], "site": [{..., "devices": [{..., "ports": [{...}]}]}]}``.

    A site, device or port may carry ``"flags": <DiffSyncModelFlags value>``.
    """

    region = Region
    site = Site
    device = Device
    port = Port
    top_level = ["region", "site"]

    def __init__(
        self,
        data: Optional[Dict[str, Any]] = None,
        record_url: str = "redis://127.0.0.1:6379/13",
        calls_key: str = "",
        name: Optional[str] = None,
    ) -> None:
        super().__init__(name=name)
        self.data = data or {}
        self.record_url = record_url
        self.calls_key = calls_key

    def record(self, action: str, modelname: str, uid: str, attrs: Dict[str, Any]) -> None:
        if self.calls_key:
            entry = [action, modelname, uid, dict(sorted(attrs.items())), os.getpid()]
            _client(self.record_url).rpush(self.calls_key, msgpack.packb(entry))

    def load(self) -> None:
        for region in self.data.get("region", []):
            self.add(Region(**region))
        for site_data in self.data.get("site", []):
            site_fields = {k: v for k, v in site_data.items() if k not in ("devices", "flags")}
            site = Site(**site_fields)
            if site_data.get("flags"):
                site.model_flags = DiffSyncModelFlags(site_data["flags"])
            self.add(site)
            for device_data in site_data.get("devices", []):
                fields = {k: v for k, v in device_data.items() if k not in ("ports", "flags")}
                device = Device(site=site.name, **fields)
                if device_data.get("flags"):
                    device.model_flags = DiffSyncModelFlags(device_data["flags"])
                self.add(device)
                site.add_child(device)
                for port_data in device_data.get("ports", []):
                    port = Port(device=device.get_unique_id(), **port_data)
                    self.add(port)
                    device.add_child(port)

    def sync_complete(self, source: Adapter, diff: Any, flags: Any = None, logger: Any = None) -> None:
        self.record("sync_complete", "", "", {"summary": dict(diff.summary())})


def read_calls(client: Redis, key: str) -> List[List[Any]]:
    """The hook calls recorded under ``key``, in the order they were made."""
    return [msgpack.unpackb(raw, raw=False) for raw in client.lrange(key, 0, -1)]
