"""The Celery app: msgpack only, queues and routes from the steps' declarations, adapters read at start."""

from __future__ import annotations


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


def test_a_worker_fills_the_registry_before_its_pool_forks(monkeypatch) -> None:
    """Entry points are read in the worker's main process at start, so pool processes inherit them."""
    from worker.adapters import registry
    from worker.runners.celery import app as celery_app

    monkeypatch.setattr(registry, "_registry", {})
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    celery_app._import_adapters_at_start()
    assert registry._entry_points_loaded
    assert registry._registry["demo"].__name__ == "InventoryAdapter"
