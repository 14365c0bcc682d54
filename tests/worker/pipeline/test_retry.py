"""Transient failures in a job's shards: the hook is called again, journaled once, within the job's budget.

On the embedded runner (the very shard step workers run): a site hook that says "try later" a few times
succeeds and the job converges, its report counting the calls made again; a job's ``retry`` overrides the
adapter's and the settings' budget; a spent budget is the hook's failure; a job stopped while a hook waits
to be called again stops its shard there, the operation left unmade.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, List, Optional

import pytest

from core import Adapter, DiffSyncModel, RetryBudget, TransientError
from worker.adapters.demo import InventoryAdapter, Site
from worker.adapters.registry import register_adapter, unregister_adapter
from worker.errors import JobFailed
from worker.job.spec import JobSpec
from worker.pipeline.shard import retry_budget
from worker.runners.local import run_local
from worker.settings import get_settings
from worker.state.memory import MemoryJobState

CALLS: Counter = Counter()
"""Hook calls by site name."""

THROTTLE: Dict[str, List[TransientError]] = {}
"""The "try later" answers each site's next calls get."""

STATES: List[MemoryJobState] = []
"""The running job's state, for a hook that cancels its job."""


class ThrottledSite(Site):
    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        _answer(ids["name"])
        return super().create(adapter=adapter, ids=ids, attrs=attrs)

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        _answer(self.name)
        return super().update(attrs)


def _answer(name: str) -> None:
    CALLS[name] += 1
    queue = THROTTLE.get(name)
    if queue:
        error = queue.pop(0)
        if "cancel" in str(error):
            STATES[-1].abort("cancelled: while the remote throttled")
        raise error


class ThrottledInventory(InventoryAdapter):
    site = ThrottledSite
    retry_budget = RetryBudget(attempts=2, seconds=30, initial=0.01, maximum=0.02)


@pytest.fixture(autouse=True)
def throttled():
    register_adapter("pipeline-test-throttled", ThrottledInventory)
    CALLS.clear()
    THROTTLE.clear()
    STATES.clear()
    yield
    unregister_adapter("pipeline-test-throttled")


def run(**spec: Any) -> Dict[str, Any]:
    data = {
        "source": "demo",
        "target": "pipeline-test-throttled",
        "source_kwargs": {"sites": 3, "variant": 1},
        "target_kwargs": {"sites": 3},
        "shard_size": 1000,
        **spec,
    }
    job_spec = JobSpec.from_data(data)
    state = MemoryJobState(job_spec.job_id)
    STATES.append(state)
    return run_local(job_spec, state=state)


def changed_site() -> str:
    """A site the demo's variant 1 changes (created or updated), whose hook the test throttles."""
    source, target = InventoryAdapter(sites=3, variant=1), InventoryAdapter(sites=3)
    source.load()
    target.load()
    return next(element.name for element in target.diff_from(source).get_children() if element.has_diffs())


def test_a_throttled_hook_is_called_again_and_journaled_once() -> None:
    name = changed_site()
    THROTTLE[name] = [TransientError("429 Too Many Requests", retry_after=0.05)]
    report = run()
    assert report["status"] == "success" and report["retries"] == 1 and not report["failures"]
    assert CALLS[name] == 2
    assert sum(sum(per.values()) for per in report["counts"].values()) == report["operations"]
    assert report["shards"][0]["retries"] == 1


def test_the_adapters_budget_spent_fails_the_operation() -> None:
    name = changed_site()
    THROTTLE[name] = [TransientError("503 Service Unavailable")] * 5
    with pytest.raises(
        JobFailed, match=rf"shard 0 failed: TransientError: \w+ site {name} failed after 2 calls"
    ) as failed:
        run()
    assert CALLS[name] == 2  # the adapter's budget: two calls in all
    report = failed.value.report
    assert report["failures"][0]["unique_id"] == name and "503 Service Unavailable" in report["failures"][0]["message"]


def test_a_jobs_budget_overrides_the_adapters_and_continue_on_failure_goes_on() -> None:
    name = changed_site()
    THROTTLE[name] = [TransientError("503")] * 3
    report = run(retry={"attempts": 4, "initial": 0.01}, flags=["continue_on_failure"])
    assert report["status"] == "success" and CALLS[name] == 4 and report["retries"] == 3
    THROTTLE[name] = [TransientError("503")] * 3
    CALLS.clear()
    report = run(retry={"attempts": 1}, flags=["continue_on_failure"])
    assert CALLS[name] == 1 and [failure["unique_id"] for failure in report["failures"]] == [name]


def test_a_job_stopped_while_its_hook_waits_stops_there() -> None:
    name = changed_site()
    THROTTLE[name] = [TransientError("cancel me", retry_after=5)]
    with pytest.raises(JobFailed, match="cancelled: while the remote throttled") as failed:
        run(retry={"seconds": 60})
    assert CALLS[name] == 1  # not called again for a job that has stopped
    report = failed.value.report
    assert report["shards"][0]["stopped"] and report["skipped"] > 0


def test_the_budget_resolves_job_over_adapter_over_settings() -> None:
    settings = get_settings()
    plain = JobSpec.from_data({"source": "demo", "target": "demo"})
    assert retry_budget(plain, InventoryAdapter()) == RetryBudget(
        attempts=settings.retry_attempts, seconds=settings.retry_seconds
    )
    assert retry_budget(plain, ThrottledInventory()) == ThrottledInventory.retry_budget
    own = JobSpec.from_data({"source": "demo", "target": "demo", "retry": {"seconds": 5, "maximum": 0.01}})
    assert retry_budget(own, ThrottledInventory()) == RetryBudget(attempts=2, seconds=5, initial=0.01, maximum=0.01)
    with pytest.raises(Exception, match="initial wait 9.0 is longer than its maximum 1.0"):
        JobSpec.from_data({"source": "demo", "target": "demo", "retry": {"initial": 9, "maximum": 1}})
