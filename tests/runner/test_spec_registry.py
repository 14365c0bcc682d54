"""Job spec validation, the adapter registry and settings (no broker needed)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from core import Adapter
from core.enum import DiffSyncFlags
from worker import InvalidJob, UnknownAdapter, register_adapter
from worker.adapters.registry import get_adapter, registered_adapters, unregister_adapter
from worker.job.spec import JobSpec
from worker.settings import Settings


class Plain(Adapter):
    top_level: list = []

    def __init__(self, url: str = "", retries: int = 0, name: Any = None) -> None:
        super().__init__(name=name)
        self.url = url


@pytest.fixture(autouse=True)
def plain():
    register_adapter("plain", Plain)
    yield
    unregister_adapter("plain")


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


def test_spec_defaults_and_flags() -> None:
    spec = JobSpec.from_data(
        {"source": "plain", "target": "plain", "flags": ["Continue-On-Failure", "skip_unmatched_dst"]}
    )
    assert spec.flags == ["continue_on_failure", "skip_unmatched_dst"]
    assert spec.diffsync_flags == DiffSyncFlags.CONTINUE_ON_FAILURE | DiffSyncFlags.SKIP_UNMATCHED_DST
    assert spec.top_level_barrier is True and spec.dry_run is False and spec.shard_size is None
    assert len(spec.job_id) == 32
    assert JobSpec.from_data(spec.to_message()) == spec


BOTH = {"source": "plain", "target": "plain"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"source": "plain", "target": "plain", "flags": ["fast"]},
            "unknown flag 'fast'; known flags: continue_on_failure",
        ),
        (
            {"source": "plain", "target": "plain", "shard_size": 0},
            "shard_size: Input should be greater than or equal to 1",
        ),
        ({"source": "plain", "target": "plain", "dry_run": "perhaps"}, "dry_run: Input should be a valid boolean"),
        ({"source": "plain", "target": "plain", "colour": 1}, "colour: Extra inputs are not permitted"),
        ({"source": "plain", "target": "plain", "job_id": "a b"}, "job_id must be 1 to 100 letters"),
        ({"source": "plain", "target": "plain", "source_kwargs": {"url": {1, 2}}}, "source_kwargs must be plain data"),
        (
            {"source": "plain", "target": "plain", "target_kwargs": {"uri": "x"}},
            "target_kwargs do not fit adapter 'plain'",
        ),
        ({"target": "plain"}, "source: Field required"),
        ("not a mapping", "must be a mapping"),
    ],
)
def test_invalid_specs_name_the_problem(data, message) -> None:
    with pytest.raises(InvalidJob) as caught:
        JobSpec.from_data(data)
    assert message in str(caught.value)


def test_target_identity_follows_target_and_kwargs_only() -> None:
    one = JobSpec.from_data({"source": "plain", "target": "plain", "target_kwargs": {"url": "a"}})
    two = JobSpec.from_data({"source": "demo", "target": "plain", "target_kwargs": {"url": "a"}, "dry_run": True})
    three = JobSpec.from_data({"source": "plain", "target": "plain", "target_kwargs": {"url": "b"}})
    assert one.target_identity() == two.target_identity() != three.target_identity()
    assert one.target_identity().startswith("plain.")


def test_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("SHARDSYNC_BROKER_URL", "redis://broker:6379/3")
    monkeypatch.setenv("SHARDSYNC_ADAPTER_MODULES", " a.b , c ,")
    monkeypatch.setenv("SHARDSYNC_SHARD_SIZE", "42")
    settings = Settings()
    assert settings.adapter_modules == ["a.b", "c"]
    assert settings.backend_url == settings.redis_url == "redis://broker:6379/3"
    assert settings.shard_size == 42
    monkeypatch.setenv("SHARDSYNC_STORE_URL", "redis://store:6379/1")
    assert Settings().redis_url == "redis://store:6379/1"
    monkeypatch.setenv("SHARDSYNC_SHARD_SIZE", "0")
    with pytest.raises(ValueError, match="shard_size"):
        Settings()


def test_app_refuses_pickle() -> None:
    from worker import app

    assert app.conf.accept_content == ["msgpack"] and app.conf.result_accept_content == ["msgpack"]
    assert app.conf.task_serializer == app.conf.result_serializer == "msgpack"
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    (route,) = app.conf.task_routes  # read from the steps' declarations

    def queue(task: str) -> str:
        return route(task, (), {}, {})["queue"]

    assert queue("shardsync.job") == queue("shardsync.finish") == queue("shardsync.scheduled") == "shardsync.jobs"
    for task in ("shardsync.load", "shardsync.load_part", "shardsync.diff", "shardsync.diff_part", "shardsync.join"):
        assert queue(task) == queue("shardsync.shard") == "shardsync.shards"
    assert route("celery.ping", (), {}, {}) is None
    assert {queue.name for queue in app.conf.task_queues} == {"shardsync.jobs", "shardsync.shards"}


def test_submit_with_adapter_instances_uses_their_registered_name_and_kwargs(monkeypatch) -> None:
    from worker import api

    sent = []
    monkeypatch.setattr(api, "submit_spec", lambda spec: sent.append(spec) or spec.job_id)
    api.submit_sync(source=Plain(url="https://a.example", retries=2), target="plain", target_kwargs={"url": "b"})
    (spec,) = sent
    assert spec.source == "plain" and spec.source_kwargs == {"url": "https://a.example", "retries": 2}
    assert spec.target_kwargs == {"url": "b"}

    class Unregistered(Adapter):
        pass

    with pytest.raises(InvalidJob, match="Unregistered is not registered"):
        api.submit_sync(source=Unregistered(), target="plain")
    with pytest.raises(InvalidJob, match="cannot be given with an adapter instance"):
        api.submit_sync(source=Plain(), target="plain", source_kwargs={"url": "x"})
    with pytest.raises(InvalidJob, match="registered adapter name or an Adapter"):
        api.submit_sync(source=42, target="plain")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sites": "many"}, "argument 'sites' of InventoryAdapter.__init__ must be int, not 'many'"),
        ({"sites": "3"}, "argument 'sites' of InventoryAdapter.__init__ must be int, not '3'"),
        ({"sites": 2.5}, "must be int, not 2.5"),
        ({"name": 5}, "argument 'name' of InventoryAdapter.__init__ must be Optional[str], not 5"),
        ({"sitse": 3}, "unexpected keyword argument 'sitse'"),
    ],
)
def test_kwargs_of_the_wrong_type_are_refused_at_submit(kwargs, message) -> None:
    """Checked against the constructor's annotations before anything is enqueued, not later on a worker."""
    with pytest.raises(InvalidJob, match=re.escape(message)):
        JobSpec.from_data({"source": "demo", "target": "demo", "source_kwargs": kwargs})


def test_kwargs_of_a_parent_constructor_are_checked_too() -> None:
    with pytest.raises(InvalidJob, match=re.escape("argument 'sites' of InventoryAdapter.__init__ must be int")):
        JobSpec.from_data({"source": "demo", "target": "demo-api", "target_kwargs": {"sites": "x"}})
    assert JobSpec.from_data({"source": "demo", "target": "demo-api", "target_kwargs": {"hook_latency": 1}})


def test_a_worker_fills_the_registry_before_its_pool_forks(monkeypatch) -> None:
    """Entry points are read in the worker's main process at start, so pool processes inherit them."""
    from worker.adapters import registry
    from worker.runners.celery import app as celery_app

    monkeypatch.setattr(registry, "_registry", {})
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    celery_app._import_adapters_at_start()
    assert registry._entry_points_loaded
    assert registry._registry["demo"].__name__ == "InventoryAdapter"
