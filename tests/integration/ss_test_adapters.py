"""Adapters for the runner's integration tests, imported by the test process and by the real workers
(``SHARDSYNC_ADAPTER_MODULES=ss_test_adapters``).

``dataset``: loads the data given in its kwargs and records every create/update/delete hook call (and
``sync_complete``) in a Redis list named in its kwargs, so a test can compare what a distributed job did
with what a local ``sync_from`` does.  Attribute values steer the hooks: ``fail-raise`` makes the hook
raise an ObjectCrudException, ``fail-body:<key>`` too, with a 10 KiB message quoting the token held in the
Redis key ``<key>`` (``?token=...``),
``fail-none`` makes it return None; ``fail-runtime`` makes it raise a RuntimeError (a bug, not a refusal);
``wait:<key>`` makes it wait (polling,
with a deadline) until the Redis key ``<key>`` exists; ``meet:<key>:<n>`` adds this process to the set
``<key>`` and waits until ``n`` processes are in it (proof that shards run at the same time elsewhere);
``wait-file:<path>`` waits (polling, with a deadline) until the file ``<path>`` exists, touching no Redis
while it waits; ``sleep:<seconds>`` makes the hook take that long; ``gil-once:<key>:<seconds>`` makes the
first call that takes the Redis key ``<key>`` hold the interpreter's lock that long (a C call through
``ctypes.PyDLL``: no other thread of its process runs);
``die`` SIGKILLs the process running the hook (a task that kills its worker every time it runs; on workers
only: a local sync with it kills the test process).

``dataset-batch``: the same data and steering, through real batch hooks (``create_batch``...): each call is
recorded as ``["<action>_batch", model, "", {"items": n}, pid]``, then each item as the single hook records
it, with its result built directly (no single hook runs).

The kwarg ``data_key`` loads the data from that Redis key (JSON) instead, so a test can change the system
between two loads. The kwarg ``load_steer`` steers ``load()`` the same way: a step or a list of steps run
in order before the data is loaded, ``fail`` (raise a RuntimeError) or ``wait:<key>`` (as for hooks). With
``load_steer`` and ``calls_key`` set, ``load()`` first records a ``["load", "", "", {}, pid]`` call, so a
test can see that the load has begun; without ``load_steer`` nothing changes (no call recorded, nothing steered).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import time
from typing import Any, Dict, List, Optional, Sequence, Union

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
    if value == "fail-runtime":  # a bug in the hook (not the remote's refusal): the shard stops on it
        raise RuntimeError(f"the hook broke on {value}")
    if value.startswith("fail-body:"):  # a remote's long error body, a credential (kept in Redis) echoed in it
        token = _client(adapter.record_url).get(value[10:]).decode()
        raise ObjectCrudException(f"upstream answered 500 for ?token={token}: {'y' * 10_240} (token={token})")
    if value == "die":
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would: no clean-up, no goodbye
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
    if value.startswith("gil-once:"):
        # A C call that keeps the interpreter's lock for its whole length (as a C extension parsing a huge
        # payload would): no other thread of the process runs meanwhile, its heartbeat included. Only the
        # first call that takes the Redis key ``<key>`` holds it (a payload that was huge once).
        key, seconds = value[9:].rsplit(":", 1)
        if _client(adapter.record_url).set(key, os.getpid(), nx=True, ex=600):
            ctypes.PyDLL(None).sleep(int(seconds))
        return None
    client = _client(adapter.record_url)
    if value.startswith("wait:"):
        _wait_for(client, value[5:], deadline)
    elif value.startswith("meet:"):
        key, count = value[5:].rsplit(":", 1)
        client.sadd(key, os.getpid())
        while client.scard(key) < int(count):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{value}: gave up waiting")
            time.sleep(0.01)
    return None


def _wait_for(client: Redis, key: str, deadline: float) -> None:
    """Poll until the Redis key exists; a RuntimeError at ``deadline`` (a test that never opens its gate)."""
    while not client.exists(key):
        if time.monotonic() > deadline:
            raise RuntimeError(f"wait:{key}: gave up waiting")
        time.sleep(0.01)


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
        record_url: str = os.environ.get("SHARDSYNC_BROKER_URL", "redis://127.0.0.1:6379/13"),
        calls_key: str = "",
        name: Optional[str] = None,
        load_steer: Union[str, Sequence[str], None] = None,
        data_key: str = "",
        api_token: str = "",
    ) -> None:
        super().__init__(name=name)
        self.api_token = api_token  # never used: a secret kwarg, for the tests of what reports show
        self.data = data or {}
        self.record_url = record_url
        self.calls_key = calls_key
        self.load_steer = load_steer
        self.data_key = data_key

    def record(self, action: str, modelname: str, uid: str, attrs: Dict[str, Any]) -> None:
        if self.calls_key:
            entry = [action, modelname, uid, dict(sorted(attrs.items())), os.getpid()]
            _client(self.record_url).rpush(self.calls_key, msgpack.packb(entry))

    def _steer_load(self) -> None:
        steps = [self.load_steer] if isinstance(self.load_steer, str) else list(self.load_steer or [])
        if not steps:
            return
        self.record("load", "", "", {})
        deadline = time.monotonic() + 60
        for step in steps:
            if step == "fail":
                raise RuntimeError(f"load of {self.name} refused (load_steer)")
            if step.startswith("wait:"):
                _wait_for(_client(self.record_url), step[5:], deadline)
            else:
                raise ValueError(f"unknown load_steer step {step!r}")

    def load(self) -> None:
        self._steer_load()
        if self.data_key:  # a system whose data changes between two loads (JSON kept in Redis by the test)
            self.data = json.loads(_client(self.record_url).get(self.data_key) or b"{}")
        self._load_data(self.data)

    def _load_data(self, data: Dict[str, Any]) -> None:
        for region in data.get("region", []):
            self.add(self.region(**region))
        for site_data in data.get("site", []):
            site_fields = {k: v for k, v in site_data.items() if k not in ("devices", "flags")}
            site = self.site(**site_fields)
            if site_data.get("flags"):
                site.model_flags = DiffSyncModelFlags(site_data["flags"])
            self.add(site)
            for device_data in site_data.get("devices", []):
                fields = {k: v for k, v in device_data.items() if k not in ("ports", "flags")}
                device = self.device(site=site.name, **fields)
                if device_data.get("flags"):
                    device.model_flags = DiffSyncModelFlags(device_data["flags"])
                self.add(device)
                site.add_child(device)
                for port_data in device_data.get("ports", []):
                    port = self.port(device=device.get_unique_id(), **port_data)
                    self.add(port)
                    device.add_child(port)

    def sync_complete(self, source: Adapter, diff: Any, flags: Any = None, logger: Any = None) -> None:
        self.record("sync_complete", "", "", {"summary": dict(diff.summary())})


def _item_result(outcome: Optional[str], message: str, make: Any) -> Any:
    if outcome == "raise":
        return ObjectCrudException(message)
    return None if outcome == "none" else make()


class _Batched(DiffSyncModel):
    """Real batch hooks for the ``dataset`` models (mixed in before them)."""

    @classmethod
    def create_batch(cls, adapter: Adapter, items: Sequence[Any]) -> List[Any]:
        adapter.record("create_batch", cls.get_type(), "", {"items": len(items)})  # type: ignore[attr-defined]
        results = []
        for ids, attrs in items:
            adapter.record("create", cls.get_type(), cls.create_unique_id(**ids), attrs)  # type: ignore[attr-defined]
            outcome = _steer(adapter, attrs.get("note"))
            make = lambda ids=ids, attrs=attrs: cls.create_base(adapter=adapter, ids=ids, attrs=attrs)  # noqa: E731
            results.append(_item_result(outcome, f"create of {ids} refused", make))
        return results

    @classmethod
    def update_batch(cls, adapter: Adapter, items: Sequence[Any]) -> List[Any]:
        adapter.record("update_batch", cls.get_type(), "", {"items": len(items)})  # type: ignore[attr-defined]
        results = []
        for model, attrs in items:
            adapter.record("update", cls.get_type(), model.get_unique_id(), attrs)  # type: ignore[attr-defined]
            outcome = _steer(adapter, attrs.get("note"))
            make = lambda model=model, attrs=attrs: model.update_base(attrs)  # noqa: E731
            results.append(_item_result(outcome, f"update of {model.get_unique_id()} refused", make))
        return results

    @classmethod
    def delete_batch(cls, adapter: Adapter, items: Sequence[Any]) -> List[Any]:
        adapter.record("delete_batch", cls.get_type(), "", {"items": len(items)})  # type: ignore[attr-defined]
        results = []
        for model in items:
            adapter.record("delete", cls.get_type(), model.get_unique_id(), {})  # type: ignore[attr-defined]
            outcome = _steer(adapter, getattr(model, "note", None))
            results.append(_item_result(outcome, f"delete of {model.get_unique_id()} refused", model.delete_base))
        return results


class BatchRegion(_Batched, Region):
    """Region with batch hooks."""


class BatchSite(_Batched, Site):
    """Site with batch hooks."""


class BatchDevice(_Batched, Device):
    """Device with batch hooks."""


class BatchPort(_Batched, Port):
    """Port with batch hooks."""


@register_adapter("dataset-batch")
class BatchDatasetAdapter(DatasetAdapter):
    """``dataset`` whose models have real batch hooks."""

    region = BatchRegion
    site = BatchSite
    device = BatchDevice
    port = BatchPort


class ShortBatchSite(Site):
    """A site whose batch hook breaks its contract: one result too few."""

    @classmethod
    def create_batch(cls, adapter: Adapter, items: Sequence[Any]) -> List[Any]:
        return [cls.create_base(adapter=adapter, ids=ids, attrs=attrs) for ids, attrs in items][:-1]


@register_adapter("dataset-short-batch")
class ShortBatchDatasetAdapter(DatasetAdapter):
    """``dataset`` whose sites' batch hook returns one result too few."""

    site = ShortBatchSite


@register_adapter("dataset-attach-counted")
class AttachCountedDatasetAdapter(DatasetAdapter):
    """``dataset`` recording each ``on_attach`` as ``["attach", stage, "", {}, pid]`` (stage: the step's)."""

    def on_attach(self) -> None:
        import structlog  # the step binds its stage in the context

        stage = str(structlog.contextvars.get_contextvars().get("stage", ""))
        if self.calls_key:
            _client(self.record_url).rpush(self.calls_key, msgpack.packb(["attach", stage, "", {}, os.getpid()]))


@register_adapter("dataset-attach-fresh")
class FreshAttachDatasetAdapter(AttachCountedDatasetAdapter):
    """The same, opting out of adapter reuse across a job's shards (``reuse_attached = False``)."""

    reuse_attached = False


def read_calls(client: Redis, key: str) -> List[List[Any]]:
    """The hook calls recorded under ``key``, in the order they were made."""
    return [msgpack.unpackb(raw, raw=False) for raw in client.lrange(key, 0, -1)]


@register_adapter("dataset-gated")
class GatedDatasetAdapter(DatasetAdapter):
    """``dataset`` plus one knob, ``attach_gate``: attached to a store it did not load (the diff, each shard, the
    finish), it sets the Redis key ``<attach_gate>:waiting`` and waits (polling, with a deadline) until the key
    ``<attach_gate>`` exists. A test changes the job's stores or records while the step waits, then opens it.
    """

    def __init__(
        self,
        data: Optional[Dict[str, Any]] = None,
        record_url: str = os.environ.get("SHARDSYNC_BROKER_URL", "redis://127.0.0.1:6379/13"),
        calls_key: str = "",
        name: Optional[str] = None,
        attach_gate: str = "",
    ) -> None:
        super().__init__(data=data, record_url=record_url, calls_key=calls_key, name=name)
        self.attach_gate = attach_gate

    def on_attach(self) -> None:
        if not self.attach_gate:
            return
        client = _client(self.record_url)
        client.set(f"{self.attach_gate}:waiting", os.getpid(), ex=600)
        deadline = time.monotonic() + 60
        while not client.exists(self.attach_gate):
            if time.monotonic() > deadline:
                raise RuntimeError(f"attach gate {self.attach_gate}: gave up waiting")
            time.sleep(0.01)


@register_adapter("dataset-parts")
class PartitionedDatasetAdapter(DatasetAdapter):
    """``dataset`` loaded by partitions: ``parts`` chunks of the sites (the regions go with the first chunk).

    ``raw_parts`` (any value) is returned by ``partitions()`` as it is, for the tests of bad declarations.
    ``part_steer`` steers the load of one partition (``{"<index>": step}``): ``fail`` raises, ``wait:<key>``
    waits for a Redis key, ``die-once:<key>`` writes half of the partition, then SIGKILLs its process unless
    the Redis key ``<key>`` exists (which it sets first), so the partition's next delivery loads it whole.
    Each partition's load records a ``["part", "", "<index>", {}, pid]`` call.
    """

    def __init__(
        self,
        parts: int = 0,
        raw_parts: Any = None,
        part_steer: Optional[Dict[str, str]] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.parts = parts
        self.raw_parts = raw_parts
        self.part_steer = part_steer or {}

    def partitions(self) -> Any:
        if self.raw_parts is not None:
            return self.raw_parts
        if not self.parts:
            return None
        sites = len(self.data.get("site", []))
        bounds = [sites * index // self.parts for index in range(self.parts + 1)]
        return [[index, bounds[index], bounds[index + 1]] for index in range(self.parts)]

    def load_partition(self, partition: Any) -> None:
        index, first, end = partition
        self.record("part", "", str(index), {})
        steer = self.part_steer.get(str(index), "")
        client = _client(self.record_url)
        if steer == "fail":
            raise RuntimeError(f"partition {index} refused (part_steer)")
        if steer.startswith("wait:"):
            _wait_for(client, steer[5:], time.monotonic() + 60)
        full = self.data
        chunk = {"region": full.get("region", []) if index == 0 else [], "site": full.get("site", [])[first:end]}
        if steer.startswith("die-once:") and client.set(steer[9:], 1, nx=True):
            half = {"region": chunk["region"], "site": chunk["site"][: max(1, len(chunk["site"]) // 2)]}
            self._load_data(half)
            self.store.flush()  # what a dying load leaves behind: half of its objects in the store
            os.kill(os.getpid(), signal.SIGKILL)
        self._load_data(chunk)


@register_adapter("dataset-die-in-range")
class DieInRangeDatasetAdapter(DatasetAdapter):
    """``dataset`` whose ``on_attach`` SIGKILLs its process once while diffing a range of the job's diff.

    The kwarg ``die_key`` names a Redis key set just before dying (the next attach in a range finds it and
    lives), so exactly one range's first delivery dies and the watchdog must run it again.
    """

    def __init__(self, die_key: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.die_key = die_key

    def on_attach(self) -> None:
        import structlog  # the step binds its stage (and a range its index) in the context

        context = structlog.contextvars.get_contextvars()
        if self.die_key and "range" in context and _client(self.record_url).set(self.die_key, 1, nx=True):
            os.kill(os.getpid(), signal.SIGKILL)


from worker.adapters.demo_db import DbDevice, DbInterface, DbInventoryAdapter, DbSite  # noqa: E402


class _GatedRow:
    """A write hook of the SQLite demo that waits while its row is named in the file's ``gate`` table.

    The gate lives in the target's own file, so the adapter's kwargs (and its pair) are those of the demo.
    """

    def _gate(self) -> None:
        conn = self.adapter.conn  # type: ignore[attr-defined]
        conn.execute("CREATE TABLE IF NOT EXISTS gate (uid TEXT PRIMARY KEY, pid INTEGER)")
        uid = self.get_unique_id()  # type: ignore[attr-defined]
        if conn.execute("SELECT 1 FROM gate WHERE uid = ?", (uid,)).fetchone() is None:
            return
        conn.execute("UPDATE gate SET pid = ? WHERE uid = ?", (os.getpid(), uid))
        deadline = time.monotonic() + 60
        while conn.execute("SELECT 1 FROM gate WHERE uid = ?", (uid,)).fetchone() is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"gate on {uid}: gave up waiting")
            time.sleep(0.01)

    def update(self, attrs: Dict) -> Any:
        self._gate()
        return super().update(attrs)  # type: ignore[misc]


class GatedInterface(_GatedRow, DbInterface):
    """An interface row whose update may wait at a gate."""


@register_adapter("demo-db-gated")
class GatedDb(DbInventoryAdapter):
    """The SQLite demo inventory, its interface updates gated (``_GatedRow``)."""

    site = DbSite
    device = DbDevice
    interface = GatedInterface
