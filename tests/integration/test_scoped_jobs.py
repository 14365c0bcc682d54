"""A scoped job on the 2 real workers does what a scoped ``sync_from`` does in one process: the same hook calls,
the same target, nothing written outside the scope (ranges of a scope's ids read from the Redis stores)."""

from __future__ import annotations

import uuid
from typing import Any, Dict, List

import pytest
from _compare import REDIS_URL, assert_same_calls, contents, distributed_sync, take_calls
from redis import Redis
from ss_test_adapters import DatasetAdapter

pytestmark = pytest.mark.usefixtures("workers")


def side(variant: int) -> Dict[str, Any]:
    sites = []
    for number in range(12):
        if (number + variant) % 5 == 0:
            continue  # a site one side lacks
        devices = [
            {"name": f"d{d}", "role": "leaf" if (number + d + variant) % 3 else "spine",
             "ports": [{"name": f"p{p}", "speed": 10 * (1 + (number + p + variant) % 2)} for p in range(2)]}
            for d in range(2)
        ]  # fmt: skip
        sites.append({"name": f"s-{number:02d}", "region": "emea" if number % 2 else "amer", "devices": devices})
    return {"region": [{"name": "emea", "label": f"v{variant}"}, {"name": "amer"}], "site": sites}


def local_scoped(source: Dict[str, Any], target: Dict[str, Any], scope: Dict[str, Any], client: Redis):
    key = f"test:calls:local:{uuid.uuid4().hex}"
    src = DatasetAdapter(data=source, name="src")
    dst = DatasetAdapter(data=target, record_url=REDIS_URL, calls_key=key, name="dst")
    src.load()
    dst.load()
    dst.sync_from(src, scope=scope)
    return contents(dst), take_calls(client, key)


SCOPES: List[Dict[str, Any]] = [
    {"ids": ["s-00", "s-04", "s-07", "s-09", "s-11", "emea"]},
    {"types": ["site"], "children": ["device"]},
    {"types": ["region"]},
]


@pytest.mark.parametrize("scope", SCOPES, ids=["ids", "sites-and-devices", "regions"])
def test_a_scoped_job_on_workers_equals_a_scoped_local_sync(redis_db: Redis, scope: Dict[str, Any]) -> None:
    source, target = side(1), side(0)
    local_state, local_calls = local_scoped(source, target, scope, redis_db)
    state, calls, report, failure = distributed_sync(source, target, [], redis_db, REDIS_URL, diff_range=2,
                                                     shard_size=3, scope=scope)  # fmt: skip
    assert failure is None, failure
    assert local_calls, "the scope holds changes"
    assert state == local_state
    assert_same_calls(local_calls, calls, barrier=True)
    assert report["scope"] == scope
    if "ids" in scope:
        assert {call[2].split("__")[0] for call in calls if call[0] != "sync_complete"} <= set(scope["ids"])
