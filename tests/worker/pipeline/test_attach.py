"""Adapter.attach_store/on_attach: an adapter re-created elsewhere rebuilds what load() built besides models."""

from __future__ import annotations

import os

import pytest

from core import Adapter
from core.store.redis import RedisStore
from worker.adapters.demo import ApiInventoryAdapter, InventoryAdapter

URL = os.environ["SHARDSYNC_BROKER_URL"]  # the suite's database (tests/conftest.py, SHARDSYNC_TEST_REDIS_URL)


@pytest.fixture
def loaded_store():
    """A target loaded by one adapter instance (as a load worker does), in Redis."""
    loader = ApiInventoryAdapter(sites=8, internal_storage_engine=RedisStore(url=URL))
    loader.load()
    store_id = loader.store.store_id
    yield store_id
    RedisStore(url=URL, store_id=store_id).clear()


def test_on_attach_rebuilds_the_state_hooks_need(loaded_store) -> None:
    source = InventoryAdapter(sites=8, variant=1)
    source.load()
    target = ApiInventoryAdapter(sites=8)  # re-created from its kwargs, never loaded
    target.attach_store(RedisStore(url=URL, store_id=loaded_store))
    assert len(target.remote_ids) == len(target)  # rebuilt from the stored models
    target.sync_from(source)
    verbs = {verb for verb, _, _ in target.client.calls}
    assert verbs == {"PATCH", "DELETE", "POST"}
    assert not target.diff_from(source).has_diffs()


def test_without_on_attach_the_hooks_have_nothing_to_work_with(loaded_store) -> None:
    class Forgetful(ApiInventoryAdapter):
        def on_attach(self) -> None:
            return Adapter.on_attach(self)

    source = InventoryAdapter(sites=8, variant=1)
    source.load()
    target = Forgetful(sites=8)
    target.attach_store(RedisStore(url=URL, store_id=loaded_store))
    with pytest.raises(AttributeError, match="remote_ids|client"):
        target.sync_from(source)


def test_attach_store_sets_both_directions() -> None:
    store = RedisStore(url=URL)
    try:
        adapter = InventoryAdapter()
        adapter.attach_store(store)
        assert adapter.store is store and store.adapter is adapter
    finally:
        store.clear()


def test_shards_reuse_a_jobs_attached_adapters_until_told_to_forget() -> None:
    """One on_attach per process (thread) per job; another job, a failed shard or an opt-out get fresh ones."""
    import threading

    from worker.job.spec import JobSpec
    from worker.pipeline.context import attach_adapters, forget_attached
    from worker.state import MemoryJobState

    def state(job_id: str) -> tuple:
        spec = JobSpec.from_data({"source": "demo", "target": "demo-api", "job_id": job_id})
        job = MemoryJobState(job_id)
        job.create(spec.to_message(), 60)
        job.fresh_store("source"), job.fresh_store("target")  # loaded (empty)
        return job, spec

    job, spec = state("reuse-a")
    first = attach_adapters(job, spec, lazy=True, reuse=True)
    assert attach_adapters(job, spec, lazy=True, reuse=True) is first
    assert attach_adapters(job, spec, lazy=True) is not first  # without reuse (the diff, the finish): fresh
    forget_attached()
    second = attach_adapters(job, spec, lazy=True, reuse=True)
    assert second is not first
    other, other_spec = state("reuse-b")
    assert attach_adapters(other, other_spec, lazy=True, reuse=True) is not second
    seen = []
    thread = threading.Thread(target=lambda: seen.append(attach_adapters(other, other_spec, lazy=True, reuse=True)))
    thread.start()
    thread.join()
    assert seen[0] is not attach_adapters(other, other_spec, lazy=True, reuse=True)  # per thread
    forget_attached()
    ApiInventoryAdapter.reuse_attached = False
    try:
        kept = attach_adapters(job, spec, lazy=True, reuse=True)
        assert attach_adapters(job, spec, lazy=True, reuse=True) is not kept
    finally:
        del ApiInventoryAdapter.reuse_attached
        forget_attached()
