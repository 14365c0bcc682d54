"""Transient failures of the target (``core.retry``): a hook that says "try later" is called again.

Single hooks and batch hooks, in ``sync_from``: the call is made again after a backoff that is never shorter
than the remote's ``retry_after``, within the retry budget (attempts, seconds); only then is it the hook's
failure, with an ObjectCrudException's semantics (CONTINUE_ON_FAILURE: the element fails, its children are
skipped; without: the sync stops with an error naming the operation and the last remote error). The waits are
recorded, not slept: the syncer's ``backoff`` is what a runner overrides.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest
import structlog

from core import Adapter, DiffSyncModel, RetryBudget, TransientError
from core.enum import DiffSyncFlags, DiffSyncStatus
from core.exceptions import ObjectCrudException, ObjectNotCreated
from core.retry import Retrier, budget_of, is_transient, retry_after_of
from core.syncer import DiffSyncSyncer

FAST = RetryBudget(attempts=4, seconds=60, initial=0.01, maximum=0.05)


class Flaky:
    """What the remote answers: per unique id, the errors of its next calls; every call recorded."""

    def __init__(self) -> None:
        self.failures: Dict[str, List[BaseException]] = {}
        self.calls: List[Tuple[str, str]] = []

    def answer(self, action: str, uid: str) -> None:
        self.calls.append((action, uid))
        queue = self.failures.get(uid)
        if queue:
            raise queue.pop(0)


class Remote(ConnectionError):
    """A client library's own connection error, which an adapter lists as transient."""


class Device(DiffSyncModel):
    _modelname = "device"
    _identifiers = ("site", "name")
    _attributes = ("role",)

    site: str
    name: str
    role: str = ""

    @classmethod
    def create(cls, adapter: Any, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        adapter.remote.answer("create", f"{ids['site']}__{ids['name']}")
        return super().create(adapter=adapter, ids=ids, attrs=attrs)


class Site(DiffSyncModel):
    _modelname = "site"
    _identifiers = ("name",)
    _attributes = ("region",)
    _children = {"device": "devices"}

    name: str
    region: str = ""
    devices: List[str] = []

    @classmethod
    def create(cls, adapter: Any, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        adapter.remote.answer("create", ids["name"])
        return super().create(adapter=adapter, ids=ids, attrs=attrs)

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        self.adapter.remote.answer("update", self.name)
        return super().update(attrs)


class BatchSite(Site):
    """Sites created with one call for many (its remote answers per item)."""

    @classmethod
    def create_batch(cls, adapter: Any, items: List[Tuple[Dict, Dict]]) -> List[Any]:
        adapter.remote.calls.append(("create_batch", ",".join(ids["name"] for ids, _ in items)))
        results: List[Any] = []
        whole = adapter.remote.failures.get("*")
        if whole:
            raise whole.pop(0)
        for ids, attrs in items:
            queue = adapter.remote.failures.get(ids["name"])
            results.append(queue.pop(0) if queue else super().create(adapter=adapter, ids=ids, attrs=attrs))
        return results


class Inventory(Adapter):
    site = Site
    device = Device
    top_level = ["site"]
    transient_errors = (Remote,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remote = Flaky()


class BatchInventory(Inventory):
    site = BatchSite


def pair(cls: type = Inventory, sites: int = 3) -> Tuple[Inventory, Inventory]:
    source, target = cls(name="source"), cls(name="target")
    for index in range(sites):
        site = source.site(name=f"s{index}", region="emea")
        source.add(site)
        device = source.device(site=f"s{index}", name="leaf", role="leaf")
        source.add(device)
        site.add_child(device)
    return source, target


class Recorded(DiffSyncSyncer):
    """The syncer, its waits recorded instead of slept (as a runner would wait its own way)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: List[float] = []

    def backoff(self, seconds: float) -> None:
        self.waits.append(seconds)


def sync(source: Inventory, target: Inventory, flags=DiffSyncFlags.NONE, retry=FAST) -> Recorded:
    syncer = Recorded(target.diff_from(source), source, target, flags, retry=retry)
    syncer.perform_sync()
    return syncer


def test_a_transient_error_is_called_again_and_the_sync_converges() -> None:
    source, target = pair()
    target.remote.failures = {"s1": [TransientError("503"), Remote("reset")]}
    syncer = sync(source, target)
    assert target.remote.calls.count(("create", "s1")) == 3
    assert syncer.retries == 2 and len(syncer.waits) == 2
    assert not target.diff_from(source).has_diffs()


def test_waits_grow_and_are_never_shorter_than_retry_after() -> None:
    source, target = pair(sites=1)
    target.remote.failures = {"s0": [TransientError("429", retry_after=2.5), TransientError("503")]}
    syncer = sync(source, target, retry=RetryBudget(attempts=3, seconds=60, initial=0.01, maximum=0.05))
    assert syncer.waits[0] >= 2.5 and syncer.waits[1] <= 0.05 + 0.01
    retrier = Retrier(RetryBudget(initial=1.0, maximum=8.0))
    waits = [retrier.wait(attempt, None) for attempt in range(1, 6)]
    assert all(1.0 <= wait <= 9.0 for wait in waits) and waits[3] >= 8.0 - 1e-9  # 1, 2, 4, 8, 8 (+ jitter)


def test_a_spent_budget_fails_the_element_and_skips_its_children_with_continue_on_failure() -> None:
    source, target = pair()
    target.remote.failures = {"s1": [TransientError("503 Service Unavailable")] * 10}
    with structlog.testing.capture_logs() as logs:
        syncer = sync(source, target, flags=DiffSyncFlags.CONTINUE_ON_FAILURE)
    assert target.remote.calls.count(("create", "s1")) == FAST.attempts
    assert ("create", "s1__leaf") not in target.remote.calls  # its child skipped, as after any failed create
    assert target.get_or_none("site", "s1") is None and target.get_or_none("site", "s2") is not None
    failed = [log for log in logs if log.get("status") == DiffSyncStatus.ERROR.value]
    assert len(failed) == 1 and failed[0]["unique_id"] == "s1"
    assert "create site s1 failed after 4 calls" in failed[0]["event"]
    assert "503 Service Unavailable" in failed[0]["event"]
    retried = [log for log in logs if log["event"] == "Transient error, calling again"]
    assert [log["attempt"] for log in retried] == [1, 2, 3] and syncer.retries == 3


def test_a_spent_budget_stops_the_sync_without_continue_on_failure() -> None:
    source, target = pair()
    target.remote.failures = {"s1": [Remote("connection reset")] * 10}
    with pytest.raises(TransientError, match=r"create site s1 failed after 4 calls in .* s: Remote: connection reset"):
        sync(source, target)
    assert ("create", "s2") not in target.remote.calls


def test_the_budget_in_seconds_ends_the_calls_before_a_wait_that_would_outlast_it() -> None:
    source, target = pair(sites=1)
    target.remote.failures = {"s0": [TransientError("429", retry_after=30)]}
    with pytest.raises(TransientError, match="failed after 1 call"):
        sync(source, target, retry=RetryBudget(attempts=5, seconds=10))
    assert target.remote.calls == [("create", "s0")]


def test_other_errors_are_not_called_again() -> None:
    source, target = pair(sites=1)
    target.remote.failures = {"s0": [ObjectNotCreated("refused"), ValueError("bug")]}
    sync(source, target, flags=DiffSyncFlags.CONTINUE_ON_FAILURE)
    assert target.remote.calls.count(("create", "s0")) == 1
    source, target = pair(sites=1)
    target.remote.failures = {"s0": [ValueError("bug")]}
    with pytest.raises(ValueError, match="bug"):
        sync(source, target, flags=DiffSyncFlags.CONTINUE_ON_FAILURE)


def test_updates_are_called_again_too_and_sync_from_takes_a_budget() -> None:
    source, target = pair(sites=1)
    target.sync_from(source)
    source.get("site", "s0").region = "apac"
    target.remote.failures = {"s0": [TransientError("timeout")]}
    target.sync_from(source, retry=RetryBudget(attempts=2, seconds=5, initial=0.001, maximum=0.001))
    assert target.remote.calls.count(("update", "s0")) == 2
    assert target.get("site", "s0").region == "apac"


def test_the_adapters_budget_is_the_default_and_no_retry_is_one_call() -> None:
    class Strict(Inventory):
        retry_budget = RetryBudget(attempts=1)

    source, target = pair(Strict, sites=1)
    target.remote.failures = {"s0": [TransientError("503")]}
    with pytest.raises(TransientError, match="failed after 1 call"):
        target.sync_from(source)
    assert target.remote.calls == [("create", "s0")]


def test_a_batch_sends_again_only_the_items_its_remote_deferred() -> None:
    source, target = pair(BatchInventory, sites=4)
    target.remote.failures = {"s1": [TransientError("429", retry_after=0.2)], "s3": [TransientError("503")] * 2}
    syncer = sync(source, target)
    batches = [names for action, names in target.remote.calls if action == "create_batch"]
    assert batches == ["s0,s1,s2,s3", "s1,s3", "s3"]
    assert syncer.waits[0] >= 0.2 and syncer.retries == 2
    assert not target.diff_from(source).has_diffs()  # every item applied once, the children after them


def test_a_batch_call_failing_as_a_whole_is_made_again_and_a_spent_budget_fails_its_items() -> None:
    source, target = pair(BatchInventory, sites=2)
    target.remote.failures = {"*": [Remote("reset")]}
    sync(source, target)
    assert [c for c in target.remote.calls if c[0] == "create_batch"] == [("create_batch", "s0,s1")] * 2
    assert not target.diff_from(source).has_diffs()

    source, target = pair(BatchInventory, sites=2)
    target.remote.failures = {"s1": [TransientError("503")] * 10}
    with structlog.testing.capture_logs() as logs:
        sync(source, target, flags=DiffSyncFlags.CONTINUE_ON_FAILURE)
    assert target.get_or_none("site", "s0") is not None and target.get_or_none("site", "s1") is None
    assert ("create", "s1__leaf") not in target.remote.calls
    failed = [log for log in logs if log.get("status") == DiffSyncStatus.ERROR.value]
    assert [log["unique_id"] for log in failed] == ["s1"] and "failed after 4 calls" in failed[0]["event"]


def test_budgets_and_helpers() -> None:
    assert budget_of({"attempts": 2, "seconds": 3}) == RetryBudget(attempts=2, seconds=3)
    assert budget_of(None) is None
    for bad in ({"attempts": 0}, {"seconds": -1}, {"tries": 2}, {"initial": 5, "maximum": 1}, "often"):
        with pytest.raises(ValueError):
            budget_of(bad)
    assert is_transient(TransientError("x")) and is_transient(Remote(), (Remote,)) and not is_transient(Remote())
    assert issubclass(TransientError, ObjectCrudException)  # spent: any CRUD failure's semantics
    assert retry_after_of(TransientError("x", retry_after=3)) == 3 and retry_after_of(ValueError()) == 0
