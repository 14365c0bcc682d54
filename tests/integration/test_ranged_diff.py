"""The distributed diff (ranges of top-level elements as tasks, then a join) is one diff of everything.

Generated pairs of datasets (flags on objects, skip flags on the job, sizes of range and shard) are synced
on the real workers with their diff in ranges of 1 to 4 top-level elements, and locally with ``diff_from``: the
kept diff's text, dict, summary and element order, and the job's plan, are those of the local diff.
"""

from __future__ import annotations

from typing import Any, Dict

import pytest
from _compare import REDIS_URL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from ss_test_adapters import DatasetAdapter
from test_equivalence import scenarios

from core.planner import plan_sync
from worker import submit_sync
from worker.job.report import changed_part
from worker.job.spec import parse_flags
from worker.pipeline.plan import element_flags

pytestmark = pytest.mark.usefixtures("workers")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(scenario=scenarios(), shard_size=st.integers(1, 5))
def test_a_diff_in_ranges_is_the_diff_of_everything(redis_db: Redis, scenario: Dict[str, Any], shard_size: int) -> None:
    source_data, target_data, flags = scenario["source"], scenario["target"], scenario["flags"]
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": source_data, "name": "src"},
        target_kwargs={"data": target_data, "name": "dst", "record_url": REDIS_URL},
        flags=flags,
        diff_range=scenario["diff_range"],
        shard_size=shard_size,
        top_level_barrier=scenario["barrier"],
    )
    report = handle.wait(timeout=60)
    source, target = DatasetAdapter(data=source_data, name="src"), DatasetAdapter(data=target_data, name="dst")
    source.load()
    target.load()
    local = target.diff_from(source, flags=parse_flags(flags))
    kept = handle.diff()
    assert kept.summary() == local.summary() == report["summary"]
    assert kept.str() == local.str()
    assert kept.dict() == local.dict()
    changed = changed_part(local)
    assert [(e.type, e.name) for e in kept.get_children()] == [(e.type, e.name) for e in changed.get_children()]
    plan = plan_sync(changed, shard_size, scenario["barrier"], lambda element: element_flags(target, element))
    assert report["operations"] == plan.operations and report["waves"] == len(plan.waves)
    assert [(s["index"], s["wave"], s["type"], s["roots"], s["operations"]) for s in report["shards"]] == [
        (s.index, s.wave, s.type, len(s.roots), len(s.operations)) for s in plan.shards
    ]


def test_a_range_whose_worker_dies_is_diffed_again(redis_db: Redis) -> None:
    """A worker killed while diffing a range: the watchdog runs the range again, and the job ends as usual."""
    import uuid

    from _compare import local_sync, target_contents

    die_key = f"test:died:{uuid.uuid4().hex}"
    source = {"site": [{"name": f"s{n:02d}", "devices": [{"name": "d0"}, {"name": "d1"}]} for n in range(12)]}
    try:
        handle = submit_sync(
            source="dataset",
            target="dataset-die-in-range",
            source_kwargs={"data": source},
            target_kwargs={"record_url": REDIS_URL, "die_key": die_key},
            diff_range=3,
        )
        report = handle.wait(timeout=90)
        assert redis_db.exists(die_key), "no range's worker died: the test did not test anything"
        assert report["status"] == "success" and report["operations"] == 36
        local, _, _ = local_sync(source, {}, [], redis_db, REDIS_URL)
        assert target_contents(handle.id, REDIS_URL) == local
    finally:
        redis_db.delete(die_key)
