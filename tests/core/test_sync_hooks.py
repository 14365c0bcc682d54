"""The syncer's published extension points (``core.syncer.SyncHooks``): when each is called and with what.

A runner (``worker.apply.ShardSyncer``) relies on exactly this; these tests pin the contract on the engine's
side, for the one-by-one path and for the level-by-level path of a type with batch hooks.
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Optional, Tuple

from core import Adapter, DiffSyncModel
from core.diff import DiffElement
from core.enum import DiffSyncFlags, DiffSyncStatus
from core.store.local import LocalStore
from core.syncer import DiffSyncSyncer, SyncHooks


class Site(DiffSyncModel):
    _modelname = "site"
    _identifiers = ("name",)
    _attributes = ("region",)
    _children = {"device": "devices"}

    name: str
    region: str = ""
    devices: List[str] = []


class Device(DiffSyncModel):
    _modelname = "device"
    _identifiers = ("site", "name")
    _attributes = ("role",)

    site: str
    name: str
    role: str = ""


class BatchDevice(Device):
    calls: ClassVar[List[int]] = []

    @classmethod
    def create_batch(cls, adapter: Adapter, items: List[Tuple[Dict, Dict]]) -> List[Any]:
        cls.calls.append(len(items))
        return [cls.create(adapter=adapter, ids=ids, attrs=attrs) for ids, attrs in items]


class Inventory(Adapter):
    site = Site
    device = Device
    top_level = ["site"]

    def __init__(self, sites: Dict[str, List[str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sites = sites

    def load(self) -> None:
        for name, devices in self.sites.items():
            site = self.site(name=name, region="r")
            self.add(site)
            for device_name in devices:
                device = self.device(site=name, name=device_name, role="leaf")
                self.add(device)
                site.add_child(device)


class BatchInventory(Inventory):
    device = BatchDevice


class Recorder(DiffSyncSyncer):
    """Records every hook call, in order."""

    def __init__(self, *args: Any, replayed: Optional[Dict[str, Tuple[bool, Any]]] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: List[Tuple[Any, ...]] = []
        self.replayed = replayed or {}
        self.stop = False

    def should_stop(self) -> bool:
        self.calls.append(("should_stop",))
        return self.stop

    def before_element(self, element: DiffElement) -> None:
        self.calls.append(("before_element", element.name))

    def replay(self, element: DiffElement) -> Optional[Tuple[bool, Optional[DiffSyncModel]]]:
        self.calls.append(("replay", element.name))
        return self.replayed.get(element.name)

    def before_hook(self) -> None:
        self.calls.append(("before_hook",))

    def operation_done(
        self,
        element: DiffElement,
        uid: str,
        action: str,
        status: DiffSyncStatus,
        message: str,
        model: Optional[DiffSyncModel],
    ) -> None:
        self.calls.append(("operation_done", element.name, uid, action, status, model is not None))

    def batch_done(self) -> None:
        self.calls.append(("batch_done",))


def _pair(adapter_cls: type = Inventory) -> Tuple[Adapter, Adapter]:
    source = adapter_cls({"s1": ["d1", "d2"], "s2": []}, name="source")
    target = adapter_cls({"s2": []}, name="target")
    source.load()
    target.load()
    return source, target


def _syncer(source: Adapter, target: Adapter, **kwargs: Any) -> Recorder:
    return Recorder(
        diff=target.diff_from(source), src_diffsync=source, dst_diffsync=target, flags=DiffSyncFlags.NONE, **kwargs
    )


def test_the_syncer_is_a_sync_hooks_whose_defaults_do_nothing() -> None:
    source, target = _pair()
    syncer = DiffSyncSyncer(
        diff=target.diff_from(source), src_diffsync=source, dst_diffsync=target, flags=DiffSyncFlags.NONE
    )
    assert SyncHooks in type(syncer).__mro__  # the defaults come from the protocol
    element = next(iter(syncer.diff.get_children()))
    assert syncer.should_stop() is False
    assert syncer.replay(element) is None
    assert syncer.before_element(element) is None
    assert syncer.before_hook() is None
    assert syncer.batch_done() is None
    assert syncer.perform_sync() is True
    assert target.get("device", "s1__d2").role == "leaf"


def test_one_by_one_hooks_in_order_with_element_and_uid() -> None:
    source, target = _pair()
    syncer = _syncer(source, target)
    assert syncer.perform_sync() is True
    success = DiffSyncStatus.SUCCESS
    assert syncer.calls == [
        ("should_stop",),
        ("before_element", "s1"),
        ("replay", "s1"),
        ("before_hook",),
        ("operation_done", "s1", "s1", "create", success, True),
        ("before_element", "s1__d1"),
        ("replay", "s1__d1"),
        ("before_hook",),
        ("operation_done", "s1__d1", "s1__d1", "create", success, True),
        ("before_element", "s1__d2"),
        ("replay", "s1__d2"),
        ("before_hook",),
        ("operation_done", "s1__d2", "s1__d2", "create", success, True),
        ("should_stop",),
        ("before_element", "s2"),  # unchanged: no replay asked, no hook
    ]


def test_a_replayed_element_runs_no_hook_and_its_children_get_the_given_parent() -> None:
    source, target = _pair()
    parent = Site(name="s1", region="r")
    target.add(parent)  # what an earlier run made
    syncer = _syncer(source, target, replayed={"s1": (True, parent)})
    assert syncer.perform_sync() is True
    assert ("operation_done", "s1", "s1", "create", DiffSyncStatus.SUCCESS, True) not in syncer.calls
    assert parent.devices == ["s1__d1", "s1__d2"]


def test_should_stop_stops_before_the_next_top_level_element() -> None:
    source, target = _pair()
    syncer = _syncer(source, target)
    syncer.stop = True
    assert syncer.perform_sync() is False
    assert syncer.stopped is True
    assert syncer.calls == [("should_stop",)]


def test_level_by_level_hooks_for_a_batched_type() -> None:
    BatchDevice.calls = []
    source, target = _pair(BatchInventory)
    syncer = _syncer(source, target)
    assert syncer.perform_sync() is True
    success = DiffSyncStatus.SUCCESS
    assert BatchDevice.calls == [2]
    assert syncer.calls == [
        ("replay", "s1"),
        ("should_stop",),
        ("before_hook",),
        ("operation_done", "s1", "s1", "create", success, True),
        ("replay", "s1__d1"),
        ("replay", "s1__d2"),
        ("should_stop",),
        ("before_hook",),
        ("operation_done", "s1__d1", "s1__d1", "create", success, True),
        ("operation_done", "s1__d2", "s1__d2", "create", success, True),
        ("batch_done",),
    ]


def test_lookup_dst_finds_the_destination_object() -> None:
    source, target = _pair()
    syncer = _syncer(source, target)
    s1, s2 = syncer.diff.get_children()
    assert syncer.lookup_dst(Site, s1) == ("s1", None)
    assert syncer.lookup_dst(Site, s2) == ("s2", target.get("site", "s2"))


def test_store_sessions_nest() -> None:
    store = LocalStore()
    with store.engine_session(), store.engine_session():
        pass
