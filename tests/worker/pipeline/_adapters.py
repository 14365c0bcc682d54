"""Small adapters for the step tests: the demo inventory with one behaviour changed each.

Registered under the names of ``ADAPTERS`` by the package's autouse fixture (``conftest.py``) for each test and
unregistered after it, so a job spec can name them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional

import structlog

from core import Adapter, DiffSyncModel
from worker.adapters.demo import InventoryAdapter, Site

LOADS: Counter = Counter()
"""``load()`` and ``load_partition()`` calls by the adapter's ``tag``."""

COMPLETED: List[Dict[str, Any]] = []
"""The summaries ``CompletingInventory.sync_complete`` was called with."""

OWN_DIFFS: List[str] = []
"""The target names ``OwnDiffInventory.diff_from`` ran for."""

CONTEXTS: List[Dict[str, Any]] = []
"""The structlog context bound while ``CountingInventory`` loaded and while ``FailingSite`` hooks ran."""


class CountingInventory(InventoryAdapter):
    """Counts its loads (whole or by partition) in ``LOADS[tag]``."""

    def __init__(self, tag: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tag = tag

    def load(self) -> None:
        LOADS[self.tag] += 1
        CONTEXTS.append(structlog.contextvars.get_contextvars())
        super().load()

    def load_partition(self, partition: Any) -> None:
        LOADS[self.tag] += 1
        CONTEXTS.append(structlog.contextvars.get_contextvars())
        super().load_partition(partition)


class BrokenLoadInventory(InventoryAdapter):
    """A source whose listing is down: every load, whole or partition, raises a RuntimeError."""

    def load(self) -> None:
        raise RuntimeError("the listing is down")

    def load_partition(self, partition: Any) -> None:
        raise RuntimeError(f"partition {partition} is down")


class FailingSite(Site):
    """A site whose hooks raise a RuntimeError (not an ObjectCrudException) for the names in ``fail_sites``."""

    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        _refuse(adapter, ids["name"])
        return super().create(adapter=adapter, ids=ids, attrs=attrs)

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        _refuse(self.adapter, self.name)
        return super().update(attrs)

    def delete(self) -> Optional[DiffSyncModel]:
        _refuse(self.adapter, self.name)
        return super().delete()


def _refuse(adapter: Any, name: str) -> None:
    CONTEXTS.append(structlog.contextvars.get_contextvars())
    if name in adapter.fail_sites:
        raise RuntimeError(f"the API dropped the connection on {name}")


class FailingHookInventory(InventoryAdapter):
    """A target whose site hooks fail for the sites named in ``fail_sites``."""

    site = FailingSite

    def __init__(self, fail_sites: Optional[List[str]] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_sites = list(fail_sites or [])


class CompletingInventory(InventoryAdapter):
    """A target with a ``sync_complete`` of its own: records the diff's summary, or raises with ``refuse``."""

    def __init__(self, refuse: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refuse = refuse

    def sync_complete(self, source: Adapter, diff: Any, flags: Any = None, logger: Any = None) -> None:
        if self.refuse:
            raise RuntimeError(self.refuse)
        COMPLETED.append(dict(diff.summary()))


class OwnDiffInventory(InventoryAdapter):
    """A target with a ``diff_from`` of its own (the engine's, recorded): diffed in one task."""

    def diff_from(self, source: Adapter, *args: Any, **kwargs: Any) -> Any:
        OWN_DIFFS.append(self.name)
        return super().diff_from(source, *args, **kwargs)


class Region(DiffSyncModel):
    """A second top-level type, before the sites: with the top-level barrier, a wave of its own."""

    _modelname = "region"
    _identifiers = ("name",)
    _attributes = ("label",)

    name: str
    label: str = ""


class RegionInventory(InventoryAdapter):
    """The demo inventory with regions first: ``regions`` names the regions it lists."""

    region = Region
    top_level = ["region", "site"]

    def __init__(self, regions: Optional[List[str]] = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.regions = list(regions or [])

    def load(self) -> None:
        for name in self.regions:
            self.add(self.region(name=name, label=name.upper()))
        super().load()


ADAPTERS = {
    "pipeline-test-counting": CountingInventory,
    "pipeline-test-broken-load": BrokenLoadInventory,
    "pipeline-test-failing-hook": FailingHookInventory,
    "pipeline-test-completing": CompletingInventory,
    "pipeline-test-own-diff": OwnDiffInventory,
    "pipeline-test-regions": RegionInventory,
}
