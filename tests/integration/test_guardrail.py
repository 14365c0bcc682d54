"""The delete guardrail on real workers: a source that loads nothing against a full target changes nothing."""

from __future__ import annotations

import uuid

import pytest
from _compare import REDIS_URL, target_contents
from redis import Redis
from ss_test_adapters import read_calls

from worker import JobFailed, submit_sync

pytestmark = pytest.mark.usefixtures("workers")

FULL = {
    "region": [{"name": f"r-{i}"} for i in range(3)],
    "site": [{"name": f"s-{i}", "devices": [{"name": "d0", "ports": [{"name": "p0"}]}]} for i in range(5)],
}


def test_an_empty_source_fails_before_any_hook_runs(redis_db: Redis) -> None:
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": {}},
        target_kwargs={"data": FULL, "record_url": REDIS_URL, "calls_key": calls_key},
        delete_limit="50%",  # the workers of this suite run with SHARDSYNC_DELETE_LIMIT=none
    )
    with pytest.raises(JobFailed) as raised:
        handle.wait(timeout=60)
    report = raised.value.report
    assert "would delete 18 of the target's 18 objects (100%), over the delete limit 50%" in report["error"]
    assert read_calls(redis_db, calls_key) == []  # no hook, no sync_complete
    assert report["counts"] == {} and report["shards"] == [] and report["sync_complete"] is False
    assert sum(len(objects) for objects in target_contents(handle.id, REDIS_URL).values()) == 18


def test_allowed_deletes_run(redis_db: Redis) -> None:
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": {}},
        target_kwargs={"data": FULL, "record_url": REDIS_URL, "calls_key": calls_key},
        delete_limit="50%",
        allow_deletes=True,
    )
    report = handle.wait(timeout=60)
    assert report["counts"] == {"delete": {"success": 18}}
    assert len([c for c in read_calls(redis_db, calls_key) if c[0] == "delete"]) == 18
    redis_db.delete(calls_key)
