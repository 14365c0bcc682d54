"""Bundled demo: two network inventories (a source of truth and a device-facing system) that differ a little.

It gives ``shardsync demo`` something real to sync without any external system, and doubles as an example
of how adapters for the engine are written.
"""

from __future__ import annotations

import random
from typing import Dict, List, Optional

from core import Adapter, DiffSyncModel


class Site(DiffSyncModel):
    """A site, parent of its devices."""

    _modelname = "site"
    _identifiers = ("name",)
    _attributes = ("region", "status")
    _children = {"device": "devices"}

    name: str
    region: str = ""
    status: str = "active"
    devices: List[str] = []


class Device(DiffSyncModel):
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


class Interface(DiffSyncModel):
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


class InventoryAdapter(Adapter):
    """An inventory generated from a seed: ``sites`` sites of ``devices`` devices of ``interfaces`` interfaces.

    ``variant`` > 0 perturbs the data (some sites missing or extra, some attributes changed), deterministically,
    so that two adapters with the same seed and different variants differ by a few percent.
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
        name: Optional[str] = None,
        **kwargs: object,
    ) -> None:
        super().__init__(name=name, **kwargs)  # type: ignore[arg-type]
        self.sites = sites
        self.devices = devices
        self.interfaces = interfaces
        self.seed = seed
        self.variant = variant

    def load(self) -> None:
        """Build the inventory in memory."""
        rng = random.Random(self.seed * 1000 + self.variant)
        perturb = self.variant > 0
        for site_index in range(self.sites):
            if perturb and rng.random() < 0.1:
                continue  # a site the other side has and this one lacks
            site = Site(name=f"site-{site_index:04d}", region=["emea", "amer", "apac"][site_index % 3])
            if perturb and rng.random() < 0.1:
                site.status = "planned"
            self.add(site)
            for device_index in range(self.devices):
                device = Device(
                    site=site.name,
                    name=f"dev-{device_index:02d}",
                    model="qfx5120" if device_index % 2 else "mx204",
                    role="leaf" if device_index % 2 else "spine",
                    serial=f"SN{site_index:04d}{device_index:02d}",
                )
                if perturb and rng.random() < 0.1:
                    device.role = "border"
                self.add(device)
                site.add_child(device)
                for interface_index in range(self.interfaces):
                    interface = Interface(
                        device=device.get_unique_id(), name=f"et-0/0/{interface_index}", mtu=9192
                    )
                    if perturb and rng.random() < 0.1:
                        interface.description = "changed in source"
                    self.add(interface)
                    device.add_child(interface)
        if perturb:
            extra = Site(name=f"site-{self.sites + self.variant:04d}", region="emea")
            self.add(extra)


def demo_adapters(sites: int = 3, seed: int = 1) -> Dict[str, InventoryAdapter]:
    """Return a loaded source and target pair of demo inventories."""
    source = InventoryAdapter(sites=sites, seed=seed, variant=1, name="source-of-truth")
    target = InventoryAdapter(sites=sites, seed=seed, variant=0, name="network")
    source.load()
    target.load()
    return {"source": source, "target": target}
