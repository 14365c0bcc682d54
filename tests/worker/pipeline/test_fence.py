"""The shard's fence on the embedded runner: a hook runs only while the job holds the target lock.

A hook steals the lock (as another job taking it would); with ``SHARDSYNC_FENCE_INTERVAL=0`` (the default)
no hook runs after it, and the job fails saying it lost the lock; with an interval, hooks go on until the
shard reads the lock again.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import pytest

from core import Adapter, DiffSyncModel
from worker import JobFailed, register_adapter
from worker.adapters.demo import InventoryAdapter, Site
from worker.job.spec import JobSpec
from worker.runners.local import run_local
from worker.settings import get_settings
from worker.state import MemoryJobState
from worker.state.memory import _locks, _locks_guard

CALLS: List[str] = []


class StealingSite(Site):
    """Records each create; the create of ``site-0002`` hands the target lock to another job."""

    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        CALLS.append(ids["name"])
        if ids["name"] == "site-0002":
            with _locks_guard:  # the job's own lock (the only one held in this process now): another's
                for target in list(_locks):
                    _locks[target] = "intruder"
        return super().create(adapter=adapter, ids=ids, attrs=attrs)


@register_adapter("test-stealing")
class StealingInventory(InventoryAdapter):
    site = StealingSite


def _run(monkeypatch, interval: str) -> JobSpec:
    monkeypatch.setenv("SHARDSYNC_FENCE_INTERVAL", interval)
    get_settings.cache_clear()
    CALLS.clear()
    return JobSpec.from_data(
        {
            "source": "demo",
            "target": "test-stealing",
            "source_kwargs": {"sites": 8, "devices": 0},
            "target_kwargs": {"sites": 0},
            "shard_size": 1000,
        }
    )


def test_no_hook_runs_after_the_lock_is_lost(monkeypatch) -> None:
    spec = _run(monkeypatch, "0")
    try:
        with pytest.raises(JobFailed, match="lost the lock on target"):
            run_local(spec, state=MemoryJobState(spec.job_id))
        assert CALLS == ["site-0000", "site-0001", "site-0002"]  # the hook that stole it, then nothing
    finally:
        _release(spec)


def test_with_an_interval_hooks_run_until_the_lock_is_read_again(monkeypatch) -> None:
    spec = _run(monkeypatch, "3600")
    try:
        report = run_local(spec, state=MemoryJobState(spec.job_id))
        # The last read is trusted for the interval: the rest of the shard ran (what the setting trades away).
        assert CALLS == [f"site-{n:04d}" for n in range(8)]
        assert report["status"] == "success"
    finally:
        _release(spec)


def _release(spec: JobSpec) -> None:
    get_settings.cache_clear()
    with _locks_guard:
        _locks.pop(spec.target_identity(), None)
