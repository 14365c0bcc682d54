"""Batch hooks on real workers and on the embedded runner: the target a single-hook ``sync_from`` leaves.

The ``dataset-batch`` adapter has real batch hooks (no single hook runs) and the same steering as
``dataset``, so generated scenarios (failing hooks, NATURAL_DELETION_ORDER and SKIP_CHILDREN_ON_DELETE on
target objects, shard and batch sizes) compare a job with a local single-hook sync: the same target, the
same operations attempted (a failure skips exactly its subtree), parents before children.  And a worker
killed in the middle of a batch: after redelivery only that batch runs again.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import pytest
from _compare import REDIS_URL, contents, embedded_sync, local_sync, take_calls, target_contents
from _workers import poll
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from ss_test_adapters import DatasetAdapter, read_calls
from test_equivalence import NATURAL, SKIP_CHILDREN, scenarios

from core import keys
from worker import JobFailed, submit_sync
from worker.job.spec import JobSpec
from worker.runners.local import run_local
from worker.state import MemoryJobState

pytestmark = pytest.mark.usefixtures("workers")


def _items(calls: List[List[Any]]) -> List[Tuple[str, str, str]]:
    return [(c[0], c[1], c[2]) for c in calls if c[0] in ("create", "update", "delete")]


def _batches(calls: List[List[Any]]) -> List[Tuple[str, str, int]]:
    return [(c[0], c[1], c[3]["items"]) for c in calls if c[0].endswith("_batch")]


def _parent(model: str, uid: str) -> Optional[Tuple[str, str]]:
    if model in ("device", "port"):
        return ("site" if model == "device" else "device", uid.rsplit("__", 1)[0])
    return None


def _children_first(target: Dict[str, Any]) -> set:
    found = set()
    for site in target.get("site", []):
        if site.get("flags", 0) & NATURAL and not site.get("flags", 0) & SKIP_CHILDREN:
            found.add(("site", site["name"]))
        for device in site.get("devices", []):
            flags = device.get("flags", 0)
            if flags & NATURAL and not flags & SKIP_CHILDREN:
                found.add(("device", f"{site['name']}__{device['name']}"))
    return found


def assert_parent_order(calls: List[Tuple[str, str, str]], children_first: set) -> None:
    """Each item after its parent's, or before it for a children-first delete (items of one shard: one root)."""
    position = {(model, uid): index for index, (_, model, uid) in enumerate(calls)}
    for index, (_, model, uid) in enumerate(calls):
        parent = _parent(model, uid)
        if parent is None or parent not in position:
            continue
        if calls[position[parent]][0] == "delete" and parent in children_first:
            assert position[parent] > index, (parent, model, uid)
        else:
            assert position[parent] < index, (parent, model, uid)


def _job(source: Dict, target: Dict, flags: List[str], key: str, **options: Any) -> Dict[str, Any]:
    return {
        "source": "dataset-batch",
        "target": "dataset-batch",
        "source_kwargs": {"data": source, "name": "src"},
        "target_kwargs": {"data": target, "record_url": REDIS_URL, "calls_key": key, "name": "dst"},
        "flags": flags,
        **options,
    }


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    database=None,
)
@given(scenario=scenarios(), batch_size=st.one_of(st.none(), st.integers(1, 4), st.just({"device": 2, "port": 1})))
def test_batch_hooks_on_workers_and_embedded_equal_a_single_hook_sync(redis_db: Redis, scenario, batch_size) -> None:
    source, target, flags = scenario["source"], scenario["target"], scenario["flags"]
    local_state, local_calls, local_error = local_sync(source, target, flags, redis_db, REDIS_URL)
    assert local_error is None
    options = {"shard_size": scenario["shard_size"], "top_level_barrier": scenario["barrier"], "batch_size": batch_size}

    key = f"test:calls:batch-job:{uuid.uuid4().hex}"
    handle = submit_sync(**_job(source, target, flags, key, **options))
    report = handle.wait(timeout=90)
    job_calls = take_calls(redis_db, key)
    job_state = target_contents(handle.id, REDIS_URL)

    key = f"test:calls:batch-embedded:{uuid.uuid4().hex}"
    spec = JobSpec.from_data(_job(source, target, flags, key, **options))
    state = MemoryJobState(spec.job_id)
    embedded_report = run_local(spec, state=state)
    embedded_calls = take_calls(redis_db, key)
    reader = DatasetAdapter(name="reader")
    reader.attach_store(state.open_store("target"))

    expected = Counter(_items(local_calls))
    children_first = _children_first(target)
    runs = (("workers", job_state, job_calls), ("embedded", contents(reader), embedded_calls))
    for runner, state_found, calls in runs:
        assert state_found == local_state, runner
        assert Counter(_items(calls)) == expected, runner
        assert_parent_order(_items(calls), children_first)
        for _, model, size in _batches(calls):
            limit = batch_size.get(model, 100) if isinstance(batch_size, dict) else (batch_size or 100)
            assert 1 <= size <= limit, (runner, model, size)
        assert sum(size for _, _, size in _batches(calls)) == len(_items(calls)), runner
    same = ("status", "error", "summary", "operations", "counts", "failures", "changed", "sync_complete", "waves")
    assert {k: report[k] for k in same} == {k: embedded_report[k] for k in same}
    # And the report of the same job with single hooks: the same counts and per-item failures.
    _, _, single_report, _ = embedded_sync(source, target, flags, redis_db, REDIS_URL, **options)
    assert {k: report[k] for k in same} == {k: single_report[k] for k in same}
    assert sum(sum(per.values()) for per in report["counts"].values()) == len(_items(job_calls))


def test_a_worker_killed_in_a_batch_runs_only_that_batch_again(redis_db: Redis) -> None:
    gate = f"test:gate:{uuid.uuid4().hex}"
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    sites = [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0", "note": ""}]} for i in range(9)]
    sites[4]["note"] = f"wait:{gate}"  # in the second batch of sites: the first batch is done and journaled
    source = {"region": [], "site": sites}
    handle = submit_sync(
        **_job(source, {}, [], calls_key, shard_size=1000, batch_size={"site": 3}),  # one shard, 3 site batches
    )
    blocked = poll(
        lambda: next((c for c in read_calls(redis_db, calls_key) if c[2] == "s-4"), None), what="the blocked item"
    )
    # The first batch is journaled as one unit as soon as its hook returned.
    assert poll(lambda: redis_db.hlen(keys.job_key(handle.id, "journal")) == 3, what="the first batch's journal")
    os.kill(blocked[4], signal.SIGKILL)  # the pool process running the shard dies inside the batch hook
    redis_db.set(gate, 1)
    report = handle.wait(timeout=120)

    items = Counter(_items(read_calls(redis_db, calls_key)))
    # The batch in flight (s-3, s-4, s-5) ran again; s-5 had not been reached. Nothing else ran twice.
    assert items.pop(("create", "site", "s-3")) == 2
    assert items.pop(("create", "site", "s-4")) == 2
    assert set(items.values()) == {1} and len(items) == 7 + 9
    assert report["status"] == "success" and report["failures"] == []
    assert report["counts"] == {"create": {"success": 18}}
    (shard,) = report["shards"]
    assert shard["replayed"] == 3 and shard["applied"] == 15
    local_state, _, _ = local_sync(source, {}, [], redis_db, REDIS_URL)
    assert target_contents(handle.id, REDIS_URL) == local_state
    redis_db.delete(gate, calls_key)


def test_a_bad_batch_size_is_refused_before_anything_is_enqueued(redis_db: Redis) -> None:
    from worker import InvalidJob

    for bad in (0, "10", {"site": 0}, {"": 3}, 2.5):
        with pytest.raises(InvalidJob, match="batch_size"):
            submit_sync(**_job({}, {}, [], "unused", batch_size=bad))


def test_a_job_whose_batch_hook_breaks_its_contract_fails_naming_it(redis_db: Redis) -> None:
    """A batch hook that returns too few results: the job fails with the hook named (nothing goes unreported)."""
    handle = submit_sync(
        source="dataset",
        target="dataset-short-batch",
        source_kwargs={"data": {"site": [{"name": "a"}, {"name": "b"}]}},
        target_kwargs={},
    )
    with pytest.raises(JobFailed) as raised:
        handle.wait(timeout=60)
    assert "create_batch returned 1 results for 2 items" in str(raised.value)
