"""The diff steps (``worker.pipeline.diff``): ranges per type and side, then the join into one plan."""

from __future__ import annotations

import pytest

from tests.worker.pipeline import _adapters
from tests.worker.pipeline._adapters import RegionInventory
from tests.worker.pipeline._steps import HOST, drive
from worker.adapters.demo import InventoryAdapter
from worker.pipeline.context import Delivery

REGIONS = {
    "source": "pipeline-test-regions",
    "target": "pipeline-test-regions",
    "source_kwargs": {"regions": ["amer", "emea"], "sites": 4, "variant": 1},
    "target_kwargs": {"regions": ["emea", "apac"], "sites": 4},
    "shard_size": 3,
}


def local_diff(cls, source_kwargs, target_kwargs):
    source, target = cls(**source_kwargs), cls(**target_kwargs)
    source.load()
    target.load()
    return target.diff_from(source)


def test_the_diff_sets_up_one_range_per_type_and_side(jobs, runner) -> None:
    job = jobs.new(**REGIONS)
    drive(runner, job, "diff")

    assert runner.deliver(job, "diff") is None

    counts = {side: job.open_store(side).count(model="site") for side in ("source", "target")}
    assert job.ranges()["parts"] == [
        {"type": "region", "side": "source", "first": 0, "end": 2},
        {"type": "region", "side": "target", "first": 0, "end": 2},
        {"type": "site", "side": "source", "first": 0, "end": counts["source"]},
        {"type": "site", "side": "target", "first": 0, "end": counts["target"]},
    ]
    assert runner.handed == [("range", index) for index in range(4)]
    assert runner.progressed == [("diff", 0, 0), ("diff", 0, 4)]
    assert job.ranges_done() == set()
    with pytest.raises(LookupError):
        job.plan()


def test_each_range_records_its_result_and_the_last_hands_over_the_join(jobs, runner) -> None:
    job = jobs.new(**REGIONS)
    assert drive(runner, job, "range") == [("range", index) for index in range(4)]

    for index, host in ((3, "w2"), (0, "w1"), (1, "w1")):
        runner.deliver(job, "range", index, delivery=Delivery(hostname=host))
        assert runner.handed == []
    assert job.ranges_done() == {0, 1, 3}
    assert runner.progressed == [("diff", 3, 4)]
    region_source = job.range_results()[0]
    assert region_source["summary"]["create"] == 1 and region_source["summary"]["no-change"] == 1  # amer; emea
    assert region_source["operations"] == [["region", 1]] and region_source["worker"] == "w1"
    assert job.range_results()[1]["summary"]["delete"] == 1  # apac: in the target only

    runner.deliver(job, "range", 2)

    assert runner.handed == [("join",)]
    assert runner.progressed == [("diff", 4, 4)]
    assert not any(job.claim_held(f"diff-{index}") for index in range(4))


def test_the_join_saves_the_plan_and_hands_over_the_first_wave(jobs, runner) -> None:
    job = jobs.new(**REGIONS)
    assert drive(runner, job, "join") == [("join",)]

    runner.deliver(job, "join")

    expected = local_diff(RegionInventory, REGIONS["source_kwargs"], REGIONS["target_kwargs"])
    assert job.summary() == expected.summary()
    plan = job.plan()
    assert plan["operations"] == sum(shard["operations"] for shard in plan["shards"]) > 0
    assert sorted(index for wave in plan["waves"] for index in wave) == list(range(len(plan["shards"])))
    assert [job.plan()["shards"][index]["type"] for index in plan["waves"][0]] == ["region"]  # the barrier
    assert {shard["type"] for shard in plan["shards"]} == {"region", "site"} and len(plan["waves"]) == 2
    assert all(shard["operations"] <= 3 or len(shard["roots"]) == 1 for shard in plan["shards"])
    roots = sorted(root for shard in plan["shards"] for root in shard["roots"])
    assert roots == list(range(job.diff_size()))  # every kept subtree in one shard
    assert runner.handed == [("shard", index) for index in plan["waves"][0]]
    assert ("sync", 0, plan["operations"]) in runner.progressed
    assert "diff" in job.times() and "plan" in job.times()
    assert job.workers()["diff"] == HOST


def test_a_diff_delivered_again_after_the_plan_hands_over_the_first_wave_again(jobs, runner) -> None:
    job = jobs.new(**REGIONS)
    first_wave = drive(runner, job, "shard")
    ranges, results, plan = job.ranges(), job.range_results(), job.plan()

    for step in ("diff", "join"):
        runner.deliver(job, step)

        assert runner.handed == first_wave
        assert job.ranges() == ranges and job.range_results() == results  # nothing diffed again
        assert job.plan() == plan
        assert not any(stage in ("diff", "plan") for stage, _, _ in runner.progressed)
        assert ("sync", 0, plan["operations"]) not in runner.progressed  # no fresh start of the sync shown


def test_a_diff_delivered_again_before_the_join_hands_over_the_ranges_left(jobs, runner) -> None:
    job = jobs.new(**REGIONS)
    drive(runner, job, "range")
    runner.deliver(job, "range", 1)
    started = job.ranges()["started"]

    runner.deliver(job, "diff")

    assert runner.handed == [("range", 0), ("range", 2), ("range", 3)]
    assert job.ranges_done() == {1}  # the ranges stand, with their results
    assert job.ranges()["started"] == started


def test_adapters_with_their_own_diff_are_diffed_in_one_task(jobs, runner) -> None:
    job = jobs.new(target="pipeline-test-own-diff", target_kwargs={"sites": 4, "name": "own"}, shard_size=5)
    drive(runner, job, "diff")

    runner.deliver(job, "diff")

    assert _adapters.OWN_DIFFS == ["own"]
    assert job.ranges() is None  # no ranges
    expected = local_diff(InventoryAdapter, {"sites": 4, "variant": 1}, {"sites": 4})
    assert job.summary() == expected.summary()
    plan = job.plan()
    assert plan["operations"] > 0 and len(plan["shards"]) > 1
    assert runner.handed == [("shard", index) for index in plan["waves"][0]]
    assert "diff" in job.times() and job.workers()["diff"] == HOST


@pytest.mark.parametrize("index", [2, -1, "0", None])
def test_a_stray_range_message_does_nothing(jobs, runner, index) -> None:
    job = jobs.new()
    drive(runner, job, "range")  # the demo has one top-level type: ranges 0 and 1

    assert runner.deliver(job, "range", index) is None

    assert runner.handed == [] and runner.progressed == []
    assert job.ranges_done() == set() and job.aborted() is None
    assert job.running_steps() == {}


def test_a_range_before_the_ranges_are_set_up_is_a_stray(jobs, runner) -> None:
    job = jobs.new()
    drive(runner, job, "diff")

    runner.deliver(job, "range", 0)

    assert runner.handed == [] and job.ranges() is None and job.aborted() is None


def test_no_change_plans_no_shard_and_hands_over_the_finish(jobs, runner) -> None:
    job = jobs.new(source_kwargs={"sites": 4})
    drive(runner, job, "join")

    runner.deliver(job, "join")

    assert job.plan() == {"waves": [], "operations": 0, "shards": []}
    assert job.summary()["no-change"] > 0 and job.summary()["create"] == 0
    assert runner.handed == [("finish",)]
