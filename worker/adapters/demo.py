"""Bundled demo: two network inventories (a source of truth and a device-facing system) that differ a little.

It gives ``shardsync demo`` something real to sync without any external system, and doubles as an example
of how adapters for the engine are written.
"""

from __future__ import annotations

import random
import time
from typing import Any, Dict, List, Optional

from core import Adapter, DiffSyncModel
from core.scope import Scope


class _RemoteLatency(DiffSyncModel):
    """Hooks that wait ``adapter.hook_latency`` seconds, standing in for a remote API call (benchmarks)."""

    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        _wait(adapter)
        return super().create(adapter=adapter, ids=ids, attrs=attrs)

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        _wait(self.adapter)
        return super().update(attrs)

    def delete(self) -> Optional[DiffSyncModel]:
        _wait(self.adapter)
        return super().delete()


def _wait(adapter: Any) -> None:
    latency = getattr(adapter, "hook_latency", 0.0)
    if latency:
        time.sleep(latency)  # the simulated round trip to the remote system


class Site(_RemoteLatency):
    """A site, parent of its devices."""

    _modelname = "site"
    _identifiers = ("name",)
    _attributes = ("region", "status")
    _children = {"device": "devices"}

    name: str
    region: str = ""
    status: str = "active"
    devices: List[str] = []


class Device(_RemoteLatency):
    """A device at a site, parent of its interfaces."""

    _modelname = "device"
    _identifiers = ("site", "name")
    _shortname = ("name",)
    _attributes = ("model", "role", "serial")
    _children = {"interface": "interfaces"}

    site: str
    name: str
    model: str = ""
    role: str = ""
    serial: str = ""
    interfaces: List[str] = []


class Interface(_RemoteLatency):
    """A network interface of a device."""

    _modelname = "interface"
    _identifiers = ("device", "name")
    _shortname = ("name",)
    _attributes = ("description", "enabled", "mtu")

    device: str
    name: str
    description: str = ""
    enabled: bool = True
    mtu: int = 1500


PAGE_SIZE = 100
"""Objects per page of the simulated paginated listing (``page_latency``)."""


class InventoryAdapter(Adapter):
    """An inventory generated from a seed: ``sites`` sites of ``devices`` devices of ``interfaces`` interfaces.

    ``variant`` > 0 perturbs the data (some sites missing or extra, some attributes changed), deterministically,
    so that two adapters with the same seed and different variants differ by a few percent. ``hook_latency``
    (seconds) makes every create/update/delete wait that long, like a call to a remote API (for benchmarks);
    ``page_latency`` makes the load wait that long per page of PAGE_SIZE objects, like a paginated listing.
    ``partitions`` > 0 declares that many partitions (ranges of sites), which a job loads in parallel.
    """

    site = Site
    device = Device
    interface = Interface
    top_level = ["site"]

    def __init__(
        self,
        sites: int = 3,
        devices: int = 2,
        interfaces: int = 2,
        seed: int = 1,
        variant: int = 0,
        hook_latency: float = 0.0,
        name: Optional[str] = None,
        partitions: int = 0,
        page_latency: float = 0.0,
        **kwargs: object,
    ) -> None:
        super().__init__(name=name, **kwargs)  # type: ignore[arg-type]
        self.hook_latency = hook_latency
        self.sites = sites
        self.devices = devices
        self.interfaces = interfaces
        self.seed = seed
        self.variant = variant
        self.partition_count = partitions
        self.page_latency = page_latency
        self._on_page = 0
        self._scope: Optional[Scope] = None  # while load_scoped builds only what a scope holds

    def load(self) -> None:
        """Build the inventory in memory (partition by partition when it declares partitions)."""
        if self.partition_count:
            super().load()
        else:
            self._load_sites(0, self.sites)

    def load_scoped(self, scope: Scope) -> None:
        """Build only the scope's sites, each with all its children (excluded child types too: see ``Adapter``)."""
        self._scope = scope
        try:
            if self.partition_count:
                for part in self.partitions_in(scope) or []:
                    self.load_partition(part)
            else:
                self._load_sites(0, self.sites)
        finally:
            self._scope = None

    def partitions_in(self, scope: Scope) -> Optional[List[List[int]]]:
        """The ranges that hold the scope's sites, when it names them by id; else every range."""
        every = self.partitions()
        if every is None or scope.ids is None or not scope.has_type("site"):
            return every if scope.has_type("site") else ([] if every is not None else None)
        numbers = {int(uid[5:]) for uid in scope.ids if uid.startswith("site-") and uid[5:].isdigit()}
        return [[first, end] for first, end in every if any(first <= n < end for n in numbers) or end >= self.sites]

    def partitions(self) -> Optional[List[List[int]]]:
        """``partitions`` ranges ``[first, end)`` of site numbers, when asked for (benchmarks, tests)."""
        if not self.partition_count:
            return None
        count = self.partition_count
        bounds = [self.sites * index // count for index in range(count + 1)]
        return [[bounds[index], bounds[index + 1]] for index in range(count)]

    def load_partition(self, partition: Any) -> None:
        """The sites of one range, with their devices and interfaces (the last range also the extra site)."""
        first, end = partition
        self._load_sites(int(first), int(end))

    def _add(self, obj: DiffSyncModel) -> None:
        if self.page_latency and self._on_page % PAGE_SIZE == 0:
            time.sleep(self.page_latency)  # the simulated request for the next page of a listing
        self._on_page += 1
        self.add(obj)

    def _load_sites(self, first: int, end: int) -> None:
        # One random sequence for the whole inventory: the sites before ``first`` draw their numbers
        # without being built, so that a range is the same as in a load of everything.
        rng = random.Random(self.seed * 1000 + self.variant)
        perturb = self.variant > 0
        for site_index in range(end):
            build = site_index >= first
            if perturb and rng.random() < 0.1:
                continue  # a site the other side has and this one lacks
            planned = perturb and rng.random() < 0.1
            site = None
            if build:
                site = self.site(name=f"site-{site_index:04d}", region=["emea", "amer", "apac"][site_index % 3])
                if planned:
                    site.status = "planned"
                if self._in_scope(site):
                    self._add(site)
                else:
                    site = None
            for device_index in range(self.devices):
                border = perturb and rng.random() < 0.1
                changed = [perturb and rng.random() < 0.1 for _ in range(self.interfaces)]
                if site is None:
                    continue
                device = self.device(
                    site=site.name,
                    name=f"dev-{device_index:02d}",
                    model="qfx5120" if device_index % 2 else "mx204",
                    role="border" if border else "leaf" if device_index % 2 else "spine",
                    serial=f"SN{site_index:04d}{device_index:02d}",
                )
                self._add(device)
                site.add_child(device)
                for interface_index in range(self.interfaces):
                    interface = self.interface(
                        device=device.get_unique_id(), name=f"et-0/0/{interface_index}", mtu=9192
                    )
                    if changed[interface_index]:
                        interface.description = "changed in source"
                    self._add(interface)
                    device.add_child(interface)
        if perturb and end >= self.sites:
            extra = self.site(name=f"site-{self.sites + self.variant:04d}", region="emea")
            if self._in_scope(extra):
                self._add(extra)

    def _in_scope(self, site: DiffSyncModel) -> bool:
        scope = self._scope
        return scope is None or (scope.has_type("site") and scope.has_top("site", site.get_unique_id(), site))


def demo_adapters(sites: int = 3, seed: int = 1) -> Dict[str, InventoryAdapter]:
    """Return a loaded source and target pair of demo inventories."""
    source = InventoryAdapter(sites=sites, seed=seed, variant=1, name="source-of-truth")
    target = InventoryAdapter(sites=sites, seed=seed, variant=0, name="network")
    source.load()
    target.load()
    return {"source": source, "target": target}


# ----------------------------------------------------------------------------------------------------
# An adapter with state besides its models, rebuilt by on_attach on workers
# ----------------------------------------------------------------------------------------------------


class DemoApiClient:
    """Stands in for a remote system's API client: addresses records by the system's own numeric ids."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls: List[tuple] = []

    def write(self, verb: str, remote_id: int, attrs: Optional[Dict] = None) -> None:
        """Send one change to the remote record ``remote_id`` (here: remember it)."""
        self.calls.append((verb, remote_id, dict(attrs or {})))


class _ApiBacked:
    """Hooks that address the remote record through the adapter's id map and client (built by load/on_attach)."""

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        adapter = self.adapter  # type: ignore[attr-defined]
        adapter.client.write("PATCH", adapter.remote_ids[self.get_unique_id()], attrs)  # type: ignore[attr-defined]
        return super().update(attrs)  # type: ignore[misc]

    def delete(self) -> Optional[DiffSyncModel]:
        adapter = self.adapter  # type: ignore[attr-defined]
        adapter.client.write("DELETE", adapter.remote_ids.pop(self.get_unique_id()))  # type: ignore[attr-defined]
        return super().delete()  # type: ignore[misc]

    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        model = super().create(adapter=adapter, ids=ids, attrs=attrs)  # type: ignore[misc]
        if model is not None:
            remote_id = adapter.next_remote_id()  # type: ignore[attr-defined]
            adapter.client.write("POST", remote_id, attrs)  # type: ignore[attr-defined]
            adapter.remote_ids[model.get_unique_id()] = remote_id  # type: ignore[attr-defined]
        return model


class ApiSite(_ApiBacked, Site):
    """A site of the API-backed inventory."""


class ApiDevice(_ApiBacked, Device):
    """A device of the API-backed inventory."""


class ApiInterface(_ApiBacked, Interface):
    """An interface of the API-backed inventory."""


class ApiInventoryAdapter(InventoryAdapter):
    """The demo inventory behind a remote API whose records have ids of their own.

    ``load()`` builds an API client and a map from unique ids to remote ids; the hooks need both. A worker
    applying a shard of a distributed sync re-creates this adapter from its kwargs and attaches it to the
    store another worker loaded: ``load()`` does not run there, so ``on_attach()`` rebuilds the client and
    the map (from the stored models, as a real adapter would from a listing of the remote system).
    """

    site = ApiSite
    device = ApiDevice
    interface = ApiInterface

    def __init__(self, api_url: str = "memory://demo", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.api_url = api_url

    def load(self) -> None:
        """Load the inventory, then index the remote ids the hooks address records by."""
        super().load()
        self._connect()

    def load_scoped(self, scope: Scope) -> None:
        """Load the scope's part of the inventory, then index the remote ids (as ``load()``)."""
        super().load_scoped(scope)
        self._connect()

    def on_attach(self) -> None:
        """Rebuild the client and the id map for a store loaded elsewhere."""
        self._connect()

    def _connect(self) -> None:
        self.client = DemoApiClient(self.api_url)
        self.remote_ids: Dict[str, int] = {}
        for modelname in ("site", "device", "interface"):
            for obj in self.get_all(modelname):
                self.remote_ids[obj.get_unique_id()] = self._remote_id(obj.get_unique_id())

    @staticmethod
    def _remote_id(uid: str) -> int:
        # A stable number per record (a real adapter reads it from the remote system's listing).
        return sum((index + 1) * ord(char) for index, char in enumerate(uid))

    def next_remote_id(self) -> int:
        """The id the remote system gives a new record."""
        return max(self.remote_ids.values(), default=0) + 1
