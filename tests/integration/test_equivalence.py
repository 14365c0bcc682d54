"""Property: a distributed job, and the embedded runner, leave the target exactly as a ``sync_from`` does.

Generated datasets (two top-level types, a three-level tree), flags, per-object model flags on the target
(NATURAL_DELETION_ORDER, SKIP_CHILDREN_ON_DELETE) and hooks that fail now and then (raising with
CONTINUE_ON_FAILURE, returning None always), shard sizes and barrier settings; run on the real workers.
Compared: the target store's contents, the hook calls (the same calls; the same order inside each top-level
subtree, so every parent's operation before its children's or, for natural deletion order, after), waves in
order, and sync_complete with the same diff summary.
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest
from _compare import REDIS_URL, assert_same_calls, distributed_sync, embedded_sync, local_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.enum import DiffSyncModelFlags

pytestmark = pytest.mark.usefixtures("workers")

NATURAL = DiffSyncModelFlags.NATURAL_DELETION_ORDER.value
SKIP_CHILDREN = DiffSyncModelFlags.SKIP_CHILDREN_ON_DELETE.value


def side(notes: st.SearchStrategy[str]) -> st.SearchStrategy[Dict[str, Any]]:
    flags = st.sampled_from([0, 0, NATURAL, SKIP_CHILDREN])
    port = st.fixed_dictionaries(
        {"name": st.sampled_from(["p0", "p1", "p2"]), "speed": st.sampled_from([1, 10]), "note": notes}
    )
    device = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["d0", "d1", "d2"]),
            "role": st.sampled_from(["leaf", "spine"]),
            "note": notes,
            "flags": flags,
            "ports": st.lists(port, max_size=3, unique_by=lambda item: item["name"]),
        }
    )
    site = st.fixed_dictionaries(
        {
            "name": st.sampled_from(["s-a", "s-b", "s-c", "s-d", "s-e"]),
            "region": st.sampled_from(["", "r-a"]),
            "note": notes,
            "flags": flags,
            "devices": st.lists(device, max_size=3, unique_by=lambda item: item["name"]),
        }
    )
    region = st.fixed_dictionaries(
        {"name": st.sampled_from(["r-a", "r-b", "r-c"]), "label": st.sampled_from(["x", "y"]), "note": notes}
    )
    return st.fixed_dictionaries(
        {
            "region": st.lists(region, max_size=3, unique_by=lambda item: item["name"]),
            "site": st.lists(site, max_size=5, unique_by=lambda item: item["name"]),
        }
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Dict[str, Any]:
    continue_on_failure = draw(st.booleans())
    failing = ["fail-none"] + (["fail-raise"] if continue_on_failure else [])
    notes = st.sampled_from(["", "", "", "n1", "n2"] + failing)
    flags: List[str] = ["continue_on_failure"] if continue_on_failure else []
    flags += draw(st.lists(st.sampled_from(["skip_unmatched_dst", "skip_unmatched_src"]), max_size=1))
    return {
        "source": draw(side(notes)),
        "target": draw(side(notes)),
        "flags": flags,
        "shard_size": draw(st.integers(min_value=1, max_value=6)),
        "barrier": draw(st.booleans()),
        "diff_range": draw(st.integers(min_value=1, max_value=4)),
    }


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(scenario=scenarios())
def test_distributed_job_equals_local_sync(redis_db, scenario: Dict[str, Any]) -> None:
    source, target, flags = scenario["source"], scenario["target"], scenario["flags"]
    local_state, local_calls, local_error = local_sync(source, target, flags, redis_db, REDIS_URL)
    same_job = (source, target, flags, redis_db, REDIS_URL)
    options = {"shard_size": scenario["shard_size"], "top_level_barrier": scenario["barrier"]}
    distributed = distributed_sync(*same_job, diff_range=scenario["diff_range"], **options)  # a diff in ranges
    embedded = embedded_sync(*same_job, **options)
    assert local_error is None  # raising hooks only run with CONTINUE_ON_FAILURE
    for runner, (state, calls, report, failure) in (("workers", distributed), ("embedded", embedded)):
        assert failure is None, (runner, failure)
        assert state == local_state, runner
        assert_same_calls(local_calls, calls, barrier=scenario["barrier"])
        assert report["operations"] >= len([call for call in calls if call[0] != "sync_complete"])
        failed = [call for call in calls if call[0] != "sync_complete" and call[3].get("note", "").startswith("fail")]
        assert len(report["failures"]) >= len([c for c in failed if c[0] != "delete"])
    # The two runners carry the same steps: the same report but for where and how long things ran.
    same = ("status", "error", "summary", "operations", "counts", "failures", "changed", "sync_complete", "waves")
    assert {k: distributed[2][k] for k in same} == {k: embedded[2][k] for k in same}
