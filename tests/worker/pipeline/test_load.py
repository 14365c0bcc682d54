"""The load steps (``worker.pipeline.load``): a side in one piece, or by partitions; then the diff."""

from __future__ import annotations

import pytest

from tests.worker.pipeline import _adapters
from tests.worker.pipeline._steps import HOST, drive
from worker.adapters.demo import InventoryAdapter
from worker.pipeline.context import Delivery


def objects(**kwargs) -> int:
    """How many objects the demo inventory of these kwargs loads."""
    adapter = InventoryAdapter(**kwargs)
    adapter.load()
    return sum(len(adapter.get_all(modelname)) for modelname in ("site", "device", "interface"))


def test_a_load_records_its_side_and_the_second_hands_over_the_diff(jobs, runner) -> None:
    job = jobs.new()
    assert drive(runner, job, "load") == [("load", "source"), ("load", "target")]

    runner.deliver(job, "load", "source")

    source = job.loads()["source"]
    assert source["objects"] == objects(sites=4, variant=1) and source["worker"] == HOST
    assert source["seconds"] >= 0 and "load-source" in job.times()
    assert job.workers()["load-source"] == HOST
    assert "target" not in job.loads()
    assert runner.handed == []
    assert runner.progressed == [("load-source", 0, 2), ("load-source", 1, 2)]

    runner.deliver(job, "load", "target", delivery=Delivery(hostname="worker-2@test"))

    assert job.loads()["target"]["objects"] == objects(sites=4)
    assert job.workers()["load-target"] == "worker-2@test"
    assert runner.handed == [("diff",)]
    assert runner.progressed[-1] == ("load-target", 2, 2)
    assert not job.claim_held("load-source") and not job.claim_held("load-target")


def test_a_load_delivered_again_does_no_work_but_hands_over(jobs, runner) -> None:
    job = jobs.new(source="pipeline-test-counting", source_kwargs={"tag": "src", "sites": 4, "variant": 1})
    drive(runner, job, "load")
    runner.deliver(job, "load", "source")
    runner.deliver(job, "load", "target")
    assert _adapters.LOADS["src"] == 1
    recorded = job.loads()["source"]

    runner.deliver(job, "load", "source")

    assert _adapters.LOADS["src"] == 1  # the store is not loaded again
    assert job.loads()["source"] == recorded
    assert runner.progressed == [("load-source", 2, 2)]
    assert runner.handed == [("diff",)]  # the first delivery may have died before handing over


def test_a_partitioned_side_is_loaded_by_its_partitions(jobs, runner) -> None:
    job = jobs.new(source_kwargs={"sites": 6, "variant": 1, "partitions": 3})
    drive(runner, job, "load")
    runner.deliver(job, "load", "target")
    assert runner.handed == []

    runner.deliver(job, "load", "source")

    assert runner.handed == [("partition", "source", 0), ("partition", "source", 1), ("partition", "source", 2)]
    assert job.partitions("source")["keys"] == [[0, 2], [2, 4], [4, 6]]
    assert "source" not in job.loads()

    for index, host in ((2, "w3"), (0, "w1")):
        runner.deliver(job, "partition", "source", index, delivery=Delivery(hostname=host))
        assert runner.handed == []
        assert "source" not in job.loads()
    assert job.partitions_done("source") == {0, 2}
    assert runner.progressed == [("load-source", 2, 3)]

    runner.deliver(job, "partition", "source", 1, delivery=Delivery(hostname="w1"))

    results = job.partition_results("source")
    assert sorted(results) == [0, 1, 2] and all(result["objects"] > 0 for result in results.values())
    source = job.loads()["source"]
    assert source["partitions"] == 3 and source["workers"] == ["w1", "w3"]
    assert source["objects"] == sum(result["objects"] for result in results.values())
    assert source["objects"] == objects(sites=6, variant=1)  # the same objects as a load in one piece
    assert runner.handed == [("diff",)]


def test_a_load_delivered_again_hands_over_only_the_partitions_left(jobs, runner) -> None:
    job = jobs.new(
        source="pipeline-test-counting", source_kwargs={"tag": "src", "sites": 6, "variant": 1, "partitions": 3}
    )
    drive(runner, job, "load")
    runner.deliver(job, "load", "source")
    runner.deliver(job, "partition", "source", 1)
    assert _adapters.LOADS["src"] == 1

    runner.deliver(job, "load", "source")

    assert runner.handed == [("partition", "source", 0), ("partition", "source", 2)]
    assert job.partitions_done("source") == {1}  # the partitions kept, never cleared
    assert _adapters.LOADS["src"] == 1


@pytest.mark.parametrize(("side", "index"), [("source", 3), ("source", -1), ("source", "0"), ("target", 0)])
def test_a_stray_partition_message_does_nothing(jobs, runner, side, index) -> None:
    job = jobs.new(source_kwargs={"sites": 6, "variant": 1, "partitions": 3})
    drive(runner, job, "load")
    runner.deliver(job, "load", "source")

    assert runner.deliver(job, "partition", side, index) is None

    assert runner.handed == [] and runner.progressed == []
    assert job.partitions_done("source") == set()
    assert job.loads() == {} and job.aborted() is None
    assert job.running_steps() == {}


def test_an_apply_of_a_plan_skips_the_source_load(jobs, runner) -> None:
    job = jobs.new(
        apply_of="an-earlier-plan", source="pipeline-test-counting", source_kwargs={"tag": "src", "sites": 4}
    )
    drive(runner, job, "load")

    runner.deliver(job, "load", "source")

    assert _adapters.LOADS["src"] == 0
    assert job.loads()["source"] == {"objects": 0, "seconds": 0.0, "worker": HOST, "skipped": True}
    assert runner.handed == []

    runner.deliver(job, "load", "target")

    assert job.loads()["target"]["objects"] == objects(sites=4)
    assert runner.handed == [("diff",)]


def test_a_load_that_raises_fails_the_job(jobs, runner) -> None:
    job = jobs.new(source="pipeline-test-broken-load")
    drive(runner, job, "load")

    assert runner.deliver(job, "load", "source") is None

    assert job.aborted() == "load-source failed: RuntimeError: the listing is down"
    assert runner.handed == [("finish",)]
    assert "source" not in job.loads()
    assert not job.claim_held("load-source")

    runner.deliver(job, "load", "target")  # the other side's load, after the failure: straight to the finish
    assert runner.handed == [("finish",)]
    assert "target" not in job.loads()


def test_a_partition_that_raises_fails_the_job(jobs, runner) -> None:
    job = jobs.new(source="pipeline-test-broken-load", source_kwargs={"sites": 4, "partitions": 2})
    drive(runner, job, "load")
    runner.deliver(job, "load", "source")

    runner.deliver(job, "partition", "source", 1)

    assert job.aborted() == "load-source partition 1 failed: RuntimeError: partition [2, 4] is down"
    assert runner.handed == [("finish",)]
    assert job.partitions_done("source") == set()
