"""Batch hooks with real batch implementations (no single hook is called), against single-hook syncs.

Generated three-level trees under two top-level types, per-object model flags (NATURAL_DELETION_ORDER,
SKIP_CHILDREN_ON_DELETE), objects whose hook fails (None, an ObjectCrudException, with and without
CONTINUE_ON_FAILURE) and batch sizes from 1 up.  The same sync made with single hooks is the reference:
the final target, the operations attempted, statuses, summary and progress must be the same; every
parent's operation comes before its children's (after them for a children-first delete); an object that
fails skips exactly its own subtree.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from core import Adapter, DiffSyncModel
from core.batch import BatchHookError, batch_size_of, batched_actions, check_batch_size
from core.enum import DiffSyncFlags, DiffSyncModelFlags
from core.exceptions import ObjectCrudException, ObjectNotCreated

NATURAL = DiffSyncModelFlags.NATURAL_DELETION_ORDER.value
SKIP_CHILDREN = DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE.value


class Log:
    """What the hooks saw, per sync: ``(action, model, uid)`` per item, and the size of every batch call."""

    calls: ClassVar[List[Tuple[str, str, str]]] = []
    batches: ClassVar[List[Tuple[str, str, int]]] = []


def _outcome(model: str, uid: str, action: str, note: str) -> Any:
    Log.calls.append((action, model, uid))
    if note == "raise":
        return ObjectCrudException(f"{action} of {model} {uid} refused")
    if note == "none":
        return None
    return "ok"


class Single(DiffSyncModel):
    """Single hooks that fail as ``note`` says."""

    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        outcome = _outcome(cls.get_type(), cls.create_unique_id(**ids), "create", attrs.get("note", ""))
        if isinstance(outcome, Exception):
            raise outcome
        return None if outcome is None else super().create(adapter=adapter, ids=ids, attrs=attrs)

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        outcome = _outcome(self.get_type(), self.get_unique_id(), "update", attrs.get("note", ""))
        if isinstance(outcome, Exception):
            raise outcome
        return None if outcome is None else super().update(attrs)

    def delete(self) -> Optional[DiffSyncModel]:
        outcome = _outcome(self.get_type(), self.get_unique_id(), "delete", self.note)
        if isinstance(outcome, Exception):
            raise outcome
        return None if outcome is None else super().delete()


class Batched(Single):
    """Real batch hooks: one call per batch, results built without the single hooks."""

    @classmethod
    def create_batch(cls, adapter: Adapter, items: Any) -> List[Any]:
        Log.batches.append(("create", cls.get_type(), len(items)))
        results = []
        for ids, attrs in items:
            outcome = _outcome(cls.get_type(), cls.create_unique_id(**ids), "create", attrs.get("note", ""))
            results.append(cls.create_base(adapter=adapter, ids=ids, attrs=attrs) if outcome == "ok" else outcome)
        return results

    @classmethod
    def update_batch(cls, adapter: Adapter, items: Any) -> List[Any]:
        Log.batches.append(("update", cls.get_type(), len(items)))
        results = []
        for model, attrs in items:
            outcome = _outcome(cls.get_type(), model.get_unique_id(), "update", attrs.get("note", ""))
            results.append(model.update_base(attrs) if outcome == "ok" else outcome)
        return results

    @classmethod
    def delete_batch(cls, adapter: Adapter, items: Any) -> List[Any]:
        Log.batches.append(("delete", cls.get_type(), len(items)))
        results = []
        for model in items:
            outcome = _outcome(cls.get_type(), model.get_unique_id(), "delete", model.note)
            results.append(model.delete_base() if outcome == "ok" else outcome)
        return results


def _models(base: type) -> Dict[str, type]:
    class Group(base):
        _modelname = "group"
        _identifiers = ("name",)
        _attributes = ("note",)
        name: str
        note: str = ""

    class Site(base):
        _modelname = "site"
        _identifiers = ("name",)
        _attributes = ("region", "note")
        _children = {"device": "devices"}
        name: str
        region: str = ""
        note: str = ""
        devices: List[str] = []

    class Device(base):
        _modelname = "device"
        _identifiers = ("site", "name")
        _attributes = ("role", "note")
        _children = {"port": "ports"}
        site: str
        name: str
        role: str = ""
        note: str = ""
        ports: List[str] = []

    class Port(base):
        _modelname = "port"
        _identifiers = ("device", "name")
        _attributes = ("speed", "note")
        device: str
        name: str
        speed: int = 0
        note: str = ""

    return {"group": Group, "site": Site, "device": Device, "port": Port}


def _adapter_class(models: Dict[str, type]) -> type:
    class Tree(Adapter):
        group = models["group"]
        site = models["site"]
        device = models["device"]
        port = models["port"]
        top_level = ["site", "group"]

        def load_data(self, data: Dict[str, Any]) -> None:
            for group in data["group"]:
                self.add(self.group(**group))
            for site_data in data["site"]:
                site = self.site(**{k: v for k, v in site_data.items() if k not in ("devices", "flags")})
                site.model_flags = DiffSyncModelFlags(site_data.get("flags", 0))
                self.add(site)
                for device_data in site_data["devices"]:
                    fields = {k: v for k, v in device_data.items() if k not in ("ports", "flags")}
                    device = self.device(site=site.name, **fields)
                    device.model_flags = DiffSyncModelFlags(device_data.get("flags", 0))
                    self.add(device)
                    site.add_child(device)
                    for port_data in device_data["ports"]:
                        port = self.port(device=device.get_unique_id(), **port_data)
                        self.add(port)
                        device.add_child(port)

    return Tree


SINGLE = _adapter_class(_models(Single))
BATCHED = _adapter_class(_models(Batched))


def side(notes: st.SearchStrategy[str]) -> st.SearchStrategy[Dict[str, Any]]:
    flags = st.sampled_from([0, 0, NATURAL, SKIP_CHILDREN])
    port = st.fixed_dictionaries(
        {"name": st.sampled_from(["p0", "p1", "p2"]), "speed": st.sampled_from([1, 10]), "note": notes}
    )
    device = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["d0", "d1", "d2"]),
            "role": st.sampled_from(["leaf", "spine"]),
            "note": notes,
            "flags": flags,
            "ports": st.lists(port, max_size=3, unique_by=lambda item: item["name"]),
        }
    )
    site = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["s0", "s1", "s2", "s3", "s4"]),
            "region": st.sampled_from(["", "r"]),
            "note": notes,
            "flags": flags,
            "devices": st.lists(device, max_size=3, unique_by=lambda item: item["name"]),
        }
    )
    group = st.fixed_dictionaries({"name": st.sampled_from(["g0", "g1", "g2", "g3"]), "note": notes})
    return st.fixed_dictionaries(
        {
            "group": st.lists(group, max_size=4, unique_by=lambda item: item["name"]),
            "site": st.lists(site, max_size=5, unique_by=lambda item: item["name"]),
        }
    )


def _sync(adapter_class: type, scenario: Dict[str, Any]) -> Dict[str, Any]:
    Log.calls, Log.batches = [], []
    source, target = adapter_class(name="src"), adapter_class(name="dst")
    source.load_data(scenario["source"])
    target.load_data(scenario["target"])
    progress: List[Tuple[str, int, int]] = []
    error = None
    with capture_logs() as logs:
        try:
            diff = target.sync_from(
                source,
                flags=scenario["flags"],
                callback=lambda stage, current, total: progress.append((stage, current, total)),
                batch_size=scenario["batch_size"],
            )
        except ObjectCrudException as err:
            error, diff = str(err), None
    statuses = {
        (name, obj.get_unique_id()): obj.get_status()
        for name in ("group", "site", "device", "port")
        for obj in target.get_all(name)
    }
    return {
        "target": target.dict(),
        "calls": list(Log.calls),
        "batches": list(Log.batches),
        "error": error,
        "summary": diff.summary() if diff is not None else None,
        "progress": [entry for entry in progress if entry[0] == "sync"],
        "statuses": statuses,
        "logs": Counter(
            (e["event"], e["log_level"], e.get("action"), e.get("model"), e.get("unique_id"), e.get("status"))
            for e in logs
        ),
    }


@st.composite
def scenarios(draw: st.DrawFn) -> Dict[str, Any]:
    continue_on_failure = draw(st.booleans())
    failing = ["none"] + (["raise"] if continue_on_failure else [])
    notes = st.sampled_from(["", "", "", "n1", "n2", *failing])
    return {
        "source": draw(side(notes)),
        "target": draw(side(notes)),
        "flags": DiffSyncFlags.CONTINUE_ON_FAILURE if continue_on_failure else DiffSyncFlags.NONE,
        "batch_size": draw(st.one_of(st.none(), st.integers(1, 5), st.just({"port": 2, "site": 1}))),
    }


def _parent_of(model: str, uid: str) -> Optional[Tuple[str, str]]:
    if model == "device":
        return ("site", uid.split("__")[0])
    if model == "port":
        return ("device", uid.rsplit("__", 1)[0])
    return None


@settings(
    max_examples=250,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
def test_batch_hooks_give_the_single_hook_result(scenario: Dict[str, Any]) -> None:
    single = _sync(SINGLE, scenario)
    batched = _sync(BATCHED, scenario)
    assert single["error"] is None  # raising hooks only with CONTINUE_ON_FAILURE
    for key in ("target", "error", "summary", "progress", "statuses", "logs"):
        assert batched[key] == single[key], key
    # The same operations attempted: a failed object skipped exactly its own subtree in both.
    assert Counter(batched["calls"]) == Counter(single["calls"])
    # Every parent before its children; a children-first delete after them.
    position = {(model, uid): index for index, (_, model, uid) in enumerate(batched["calls"])}
    target_flags = _sync_flags(scenario["target"])
    for index, (_action, model, uid) in enumerate(batched["calls"]):
        parent = _parent_of(model, uid)
        if parent is None or parent not in position:
            continue
        parent_action = batched["calls"][position[parent]][0]
        flags = target_flags.get(parent, 0)
        if parent_action == "delete" and flags & NATURAL and not flags & SKIP_CHILDREN:
            assert position[parent] > index, (parent, model, uid)
        else:
            assert position[parent] < index, (parent, model, uid)
    # Batches: never more items than the batch size, and as few calls as the levels allow.
    for action, model, size in batched["batches"]:
        assert 1 <= size <= batch_size_of(BATCHED.__dict__[model], scenario["batch_size"]), (action, model)
    assert sum(size for _, _, size in batched["batches"]) == len(batched["calls"])


def _sync_flags(data: Dict[str, Any]) -> Dict[Tuple[str, str], int]:
    flags = {}
    for site in data["site"]:
        flags[("site", site["name"])] = site.get("flags", 0)
        for device in site["devices"]:
            flags[("device", f"{site['name']}__{device['name']}")] = device.get("flags", 0)
    return flags


def _tree(sites: int, devices: int, ports: int, note: str = "") -> Dict[str, Any]:
    return {
        "group": [],
        "site": [
            {
                "name": f"s{s}",
                "note": note if s == 1 else "",
                "devices": [
                    {"name": f"d{d}", "ports": [{"name": f"p{p}"} for p in range(ports)]} for d in range(devices)
                ],
            }
            for s in range(sites)
        ],
    }


def test_one_call_per_level_and_model():
    """100 sites with 3 devices of 4 ports: three batch calls per 100 objects, level by level."""
    scenario = {"source": _tree(100, 3, 4), "target": _tree(0, 0, 0), "flags": DiffSyncFlags.NONE, "batch_size": None}
    result = _sync(BATCHED, scenario)
    assert (
        result["batches"]
        == [("create", "site", 100)] + [("create", "device", 100)] * 3 + [("create", "port", 100)] * 12
    )
    assert result["summary"]["create"] == 100 + 300 + 1200


def test_failed_parent_without_continue_stops_after_its_batch():
    """Without CONTINUE_ON_FAILURE an exception item ends the sync once its batch is recorded; no child ran."""
    scenario = {
        "source": _tree(3, 1, 1, note="raise"),
        "target": _tree(0, 0, 0),
        "flags": DiffSyncFlags.NONE,
        "batch_size": None,
    }
    with pytest.raises(ObjectCrudException, match="create of site s1 refused"):
        target = BATCHED(name="dst")
        source = BATCHED(name="src")
        source.load_data(scenario["source"])
        Log.calls, Log.batches = [], []
        with capture_logs() as logs:
            try:
                target.sync_from(source)
            finally:
                assert [uid for _, _, uid in Log.calls] == ["s0", "s1", "s2"]
                assert sorted(obj.name for obj in target.get_all("site")) == ["s0", "s2"]
                assert target.get_all("device") == []
                statuses = [(e["unique_id"], e["status"]) for e in logs if e.get("status")]
                assert statuses == [("s0", "success"), ("s1", "error"), ("s2", "success")]


class _Broken(Batched):
    _modelname = "site"
    _identifiers = ("name",)
    name: str
    note: str = ""

    @classmethod
    def create_batch(cls, adapter: Adapter, items: Any) -> List[Any]:
        return [cls.create_base(adapter=adapter, ids=ids, attrs=attrs) for ids, attrs in items][:-1]


def test_a_batch_hook_with_too_few_results_is_named():
    class Target(Adapter):
        site = _Broken
        top_level = ["site"]

    source, target = Target(name="src"), Target(name="dst")
    source.add(_Broken(name="a"))
    source.add(_Broken(name="b"))
    with pytest.raises(BatchHookError, match=r"_Broken.create_batch returned 1 results for 2 items"):
        target.sync_from(source)


def test_whole_call_exception_fails_every_item():
    class Refusing(Batched):
        _modelname = "site"
        _identifiers = ("name",)
        name: str
        note: str = ""

        @classmethod
        def create_batch(cls, adapter: Adapter, items: Any) -> List[Any]:
            raise ObjectNotCreated("bulk endpoint refused the batch")

    class Target(Adapter):
        site = Refusing
        top_level = ["site"]

    source, target = Target(name="src"), Target(name="dst")
    for name in "abc":
        source.add(Refusing(name=name))
    with capture_logs() as logs:
        target.sync_from(source, flags=DiffSyncFlags.CONTINUE_ON_FAILURE)
    errors = [e["unique_id"] for e in logs if e.get("status") == "error"]
    assert errors == ["a", "b", "c"]
    assert target.get_all("site") == []


def test_only_overridden_actions_are_grouped():
    class OnlyCreates(Single):
        _modelname = "group"
        _identifiers = ("name",)
        _attributes = ("note",)
        name: str
        note: str = ""

        @classmethod
        def create_batch(cls, adapter: Adapter, items: Any) -> List[Any]:
            return super().create_batch(adapter, items)

    assert batched_actions(OnlyCreates) == {"create"}
    assert batched_actions(Single) == frozenset()
    assert batched_actions(DiffSyncModel) == frozenset()


@pytest.mark.parametrize("bad", [0, -1, "5", 2.5, True, {"site": 0}, {3: 4}, {"site": "x"}])
def test_bad_batch_sizes_are_named(bad):
    with pytest.raises(ValueError, match="batch_size"):
        check_batch_size(bad)
    target = BATCHED(name="dst")
    with pytest.raises(ValueError, match="batch_size"):
        target.sync_from(BATCHED(name="src"), batch_size=bad)


def test_batch_size_precedence():
    site = BATCHED.site
    assert batch_size_of(site, None) == 100
    assert batch_size_of(site, 7) == 7
    assert batch_size_of(site, {"site": 3}) == 3
    assert batch_size_of(site, {"port": 3}) == 100


def test_a_batch_size_for_a_model_the_target_lacks_is_named():
    with pytest.raises(ValueError, match="batch_size names 'sitee', which is no model of .*Tree"):
        BATCHED(name="dst").sync_from(BATCHED(name="src"), batch_size={"sitee": 3})
