"""The adapter registry: names, classes, entry points (no broker needed)."""

from __future__ import annotations

import pytest

from core import Adapter
from tests.worker._plain import Plain, plain  # noqa: F401 - plain: the autouse fixture
from worker import UnknownAdapter, register_adapter
from worker.adapters.registry import get_adapter, registered_adapters, unregister_adapter
from worker.job.spec import JobSpec


def test_register_as_decorator_and_call() -> None:
    @register_adapter("decorated")
    class Decorated(Adapter):
        pass

    try:
        assert get_adapter("decorated") is Decorated
        assert registered_adapters()["plain"] is Plain
    finally:
        unregister_adapter("decorated")


def test_registry_refuses_bad_names_classes_and_clashes() -> None:
    with pytest.raises(ValueError, match="not valid"):
        register_adapter("has space", Plain)
    with pytest.raises(TypeError, match="subclass of core.Adapter"):
        register_adapter("thing", dict)  # type: ignore[arg-type]

    class Other(Adapter):
        pass

    with pytest.raises(ValueError, match="already registered to .*Plain"):
        register_adapter("plain", Other)


def test_entry_points_register_the_demo_adapters() -> None:
    from worker.adapters.demo import ApiInventoryAdapter, InventoryAdapter

    assert get_adapter("demo") is InventoryAdapter
    assert get_adapter("demo-api") is ApiInventoryAdapter


def test_unknown_adapter_names_what_is_registered() -> None:
    with pytest.raises(UnknownAdapter, match="unknown adapter 'netbox'; registered adapters: .*plain"):
        JobSpec.from_data({"source": "netbox", "target": "plain"})
