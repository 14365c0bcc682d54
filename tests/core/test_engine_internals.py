"""Tests of the engine's own speed and memory devices: each must be invisible to users of the diffsync API."""

import gc
import logging
import os
from typing import Any, Dict, List, Optional

import pytest
import structlog
from pydantic import BaseModel, field_serializer
from structlog.testing import capture_logs
from typing_extensions import Annotated

from core import Adapter, Diff, DiffSyncModel
from core._fields import annotation_kind
from core._gc import paused_gc
from core._log import level_enabled
from core.enum import DiffSyncStatus


class Thing(DiffSyncModel):
    _modelname = "thing"
    _identifiers = ("name",)
    _attributes = ("size", "tags")

    name: str
    size: int = 0
    tags: List[str] = []


class Box(Adapter):
    thing = Thing
    top_level = ["thing"]


@pytest.fixture(autouse=True)
def _reset_structlog():
    yield
    structlog.reset_defaults()


def test_shared_fields_set_is_copied_before_a_change():
    one, two = Thing(name="a", size=1), Thing(name="b", size=2)
    assert one.__pydantic_fields_set__ is two.__pydantic_fields_set__  # shared while untouched
    one.tags = ["x"]
    assert one.model_fields_set == {"name", "size", "tags"}
    assert two.model_fields_set == {"name", "size"}
    assert two.model_dump(exclude_unset=True) == {"name": "b", "size": 2}
    assert one.model_dump(exclude_unset=True) == {"name": "a", "size": 1, "tags": ["x"]}


def test_model_copy_and_validate_keep_their_own_fields_set():
    one = Thing(name="a", size=1)
    copied = one.model_copy(update={"size": 5})
    copied.tags = ["t"]
    assert one.model_fields_set == {"name", "size"}
    validated = Thing.model_validate({"name": "v"})
    validated.size = 3
    assert Thing(name="w").model_fields_set == {"name"}


def test_status_defaults_and_sharing():
    one, two = Thing(name="a"), Thing(name="b")
    assert one.get_status() == (DiffSyncStatus.SUCCESS, "")
    one.set_status(DiffSyncStatus.UNKNOWN)
    two.set_status(DiffSyncStatus.UNKNOWN)
    one.set_status(DiffSyncStatus.ERROR, "boom")
    assert one.get_status() == (DiffSyncStatus.ERROR, "boom")
    assert two.get_status() == (DiffSyncStatus.UNKNOWN, "")
    assert one._status is DiffSyncStatus.ERROR
    two._status_message = "note"
    assert two.get_status() == (DiffSyncStatus.UNKNOWN, "note")
    assert "_status" not in two.__dict__


def test_paused_gc_is_reentrant_and_restores_state():
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: stays off
    finally:
        gc.enable()


def test_paused_gc_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("SHARDSYNC_GC_PAUSE", "0")
    with paused_gc():
        assert gc.isenabled()


def test_paused_gc_restores_state_after_an_error():
    with pytest.raises(RuntimeError):
        with paused_gc():
            raise RuntimeError("boom")
    assert gc.isenabled()


def test_level_enabled_for_filtering_and_stdlib_loggers():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    logger = structlog.get_logger().bind()
    assert not level_enabled(logger, "debug")
    assert level_enabled(logger, "info")
    structlog.reset_defaults()
    assert level_enabled(structlog.get_logger().bind(), "debug")


def _pair() -> Dict[str, Box]:
    src, dst = Box(name="src"), Box(name="dst")
    src.add(Thing(name="a", size=1))
    src.add(Thing(name="b", size=2))
    dst.add(Thing(name="a", size=1))
    dst.add(Thing(name="b", size=3))
    return {"src": src, "dst": dst}


def test_debug_events_are_skipped_but_info_events_kept_when_debug_is_filtered():
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    pair = _pair()
    with capture_logs() as logs:
        pair["dst"].sync_from(pair["src"])
    levels = {entry["log_level"] for entry in logs}
    assert "debug" not in levels
    assert any(entry["event"] == "Updated successfully" and entry["unique_id"] == "b" for entry in logs)


def test_unchanged_elements_are_snapshots():
    pair = _pair()
    diff = pair["dst"].diff_from(pair["src"])
    element = diff.children["thing"]["a"]
    pair["src"].get("thing", "a").size = 99
    assert element.source_attrs == {"size": 1, "tags": []}
    assert element.dest_attrs == {"size": 1, "tags": []}
    assert element.action is None
    assert element.get_attrs_diffs() == {"-": {}, "+": {}}


def test_snapshot_values_are_copied_when_handed_out():
    pair = _pair()
    diff = pair["dst"].diff_from(pair["src"])
    element = diff.children["thing"]["a"]
    element.source_attrs["tags"].append("mutated")
    assert pair["src"].get("thing", "a").tags == []


def test_changes_after_the_diff_reach_the_ancestors_cache():
    pair = _pair()
    diff = pair["dst"].diff_from(pair["src"])
    element = diff.children["thing"]["a"]
    assert diff.children["thing"]["b"].has_diffs()
    assert not element.has_diffs()
    element.dest_attrs = {"size": 5, "tags": []}
    assert element.has_diffs()
    assert element.action == "update"
    assert diff.dict()["thing"]["a"] == {"-": {"size": 5}, "+": {"size": 1}}


def test_diff_truthiness_matches_length():
    pair = _pair()
    assert not Diff()
    diff = pair["dst"].diff_from(pair["src"])
    assert diff and len(diff) == 2


class Inner(BaseModel):
    x: int


@pytest.mark.parametrize(
    "annotation, kind",
    [
        (str, "scalar"),
        (Optional[int], "scalar"),
        (List[str], "container"),
        (Dict[str, int], "container"),
        (list, "complex"),
        (Any, "complex"),
        (Inner, "complex"),
        (List[Inner], "complex"),
        (Annotated[int, "meta"], "scalar"),
    ],
)
def test_annotation_kinds(annotation, kind):
    assert annotation_kind(annotation) == kind


def test_models_with_serializers_take_the_model_dump_path():
    class Rounded(DiffSyncModel):
        _modelname = "rounded"
        _identifiers = ("name",)
        _attributes = ("value",)

        name: str
        value: float = 0.0

        @field_serializer("value")
        def _round(self, value: float) -> float:
            return round(value)

    assert not Rounded._ss_plan.plain
    assert Rounded(name="r", value=1.2).get_attrs() == {"value": 1}
    assert Thing._ss_plan.plain


def test_engine_module_does_not_import_the_runner():
    import subprocess
    import sys

    code = (
        "import sys, core, core.store.local; print(any(m.split('.')[0] in ('worker', 'celery') for m in sys.modules))"
    )

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "False"
