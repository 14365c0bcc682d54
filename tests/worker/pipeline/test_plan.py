"""From the diff to the shards (``worker.pipeline.plan``): shard sizes, the delete guardrail, the waves' order."""

from __future__ import annotations

import pytest

from core.planner import DEFAULT_SHARD_SIZE, balanced_shard_size
from tests.worker.pipeline._steps import DELIVERY, RecordingRunner, drive, spec_data
from worker.job.spec import JobSpec
from worker.pipeline.context import StepContext
from worker.pipeline.plan import next_wave, shard_size_for

REGIONS = {
    "source": "pipeline-test-regions",
    "target": "pipeline-test-regions",
    "source_kwargs": {"regions": ["amer", "emea"], "sites": 4, "variant": 1},
    "target_kwargs": {"regions": ["emea", "apac"], "sites": 4},
    "shard_size": 3,
}
EMPTY_SOURCE = {"source_kwargs": {"sites": 0}, "target_kwargs": {"sites": 4}}
"""A source that came back empty: the diff deletes the whole target (4 sites, 28 objects)."""


def test_the_jobs_shard_size_comes_first() -> None:
    spec = JobSpec.from_data(spec_data(shard_size=7))
    assert shard_size_for(spec, None) == 7
    assert shard_size_for(spec, 16) == 7


def test_without_one_shards_are_sized_for_the_live_slots() -> None:
    spec = JobSpec.from_data(spec_data())
    sized = shard_size_for(spec, 4)
    assert callable(sized)
    for operations in (0, 100, 1000, 10**6):
        assert sized(operations) == balanced_shard_size(operations, 4)
    assert sized(10**6) != sized(100)  # per wave, from its operations


@pytest.mark.parametrize("slots", [None, 0])
def test_without_slots_the_default_size(slots) -> None:
    assert shard_size_for(JobSpec.from_data(spec_data()), slots) == DEFAULT_SHARD_SIZE


def test_the_join_sizes_shards_for_the_runners_slots(jobs) -> None:
    def plan_with(slots):
        runner = RecordingRunner(slots=slots)
        job = jobs.new(source_kwargs={"sites": 24, "variant": 1}, target_kwargs={"sites": 24})
        drive(runner, job, "join")
        runner.deliver(job, "join")
        jobs.release()  # the next job syncs into the same target
        return job.plan()

    default, sized = plan_with(None), plan_with(4)
    assert default["operations"] == sized["operations"] > 10
    assert len(default["shards"]) == 1  # DEFAULT_SHARD_SIZE holds them all
    size = balanced_shard_size(sized["operations"], 4)  # the wave cut into near-equal shards of about that size
    assert len(sized["shards"]) == -(-sized["operations"] // size) > 1


def test_the_delete_guardrail_stops_the_job(jobs, runner) -> None:
    job = jobs.new(delete_limit="50%", **EMPTY_SOURCE)
    drive(runner, job, "join")

    runner.deliver(job, "join")

    assert job.aborted().startswith("refused by the delete guardrail: the diff would delete 28 of the target's 28")
    assert "over the delete limit 50%" in job.aborted()
    assert runner.handed == [("finish",)]  # no shard
    assert job.plan()["operations"] == 28
    assert job.progress_count() == 0

    report = runner.deliver(job, "finish")
    assert report["status"] == "failed" and report["error"] == job.aborted() and report["shards"] == []


@pytest.mark.parametrize("fields", [{"delete_limit": "50%", "allow_deletes": True}, {"delete_limit": "none"}, {}])
def test_deletes_within_the_limit_go_on(jobs, runner, fields) -> None:
    job = jobs.new(**fields, **EMPTY_SOURCE)  # {}: SHARDSYNC_DELETE_LIMIT, none in this suite
    drive(runner, job, "join")

    runner.deliver(job, "join")

    assert job.aborted() is None
    assert runner.handed == [("shard", 0)]


def test_a_dry_run_hands_over_the_finish_after_planning(jobs, runner) -> None:
    job = jobs.new(dry_run=True, delete_limit="1", **EMPTY_SOURCE)  # a plan is never refused: it applies nothing
    drive(runner, job, "join")

    runner.deliver(job, "join")

    assert runner.handed == [("finish",)]
    assert job.aborted() is None
    plan = job.plan()
    assert plan["operations"] == 28 and len(plan["shards"]) == 1
    assert job.fingerprints()  # what an apply of the plan checks first
    assert not any(stage == "sync" for stage, _, _ in runner.progressed)

    report = runner.deliver(job, "finish")
    assert report["status"] == "dry-run" and report["shards"] == [] and job.progress_count() == 0


def test_the_last_shard_of_a_wave_hands_over_the_next_wave_once(jobs, runner) -> None:
    job = jobs.new(**REGIONS)
    first = drive(runner, job, "shard")
    waves = job.plan()["waves"]
    assert len(waves) == 2 and first == [("shard", index) for index in waves[0]]

    for _, index in first[:-1]:
        runner.deliver(job, "shard", index)
        assert runner.handed == []
    runner.deliver(job, "shard", first[-1][1])

    assert runner.handed == [("shard", index) for index in waves[1]]
    assert job.marked("wave-1")

    runner.deliver(job, "shard", first[-1][1])  # delivered again: the next wave was started already
    assert runner.handed == []

    for index in waves[1]:
        runner.deliver(job, "shard", index)
    assert runner.handed == [("finish",)]


def test_a_stopped_job_hands_over_the_finish_at_the_end_of_its_wave(jobs, runner) -> None:
    job = jobs.new(**REGIONS)
    first = drive(runner, job, "shard")
    job.abort("cancelled by the operator")

    for _, index in first:
        runner.deliver(job, "shard", index)

    assert runner.handed == [("finish",)]
    assert not job.marked("wave-1")


def test_next_wave(jobs, runner) -> None:
    job = jobs.new()
    ctx = StepContext(job, runner, DELIVERY)
    plan = {"waves": [[0, 1], [2], [3, 4]], "operations": 10, "shards": 5}
    runner.expect(job)

    next_wave(ctx, plan, 0, 1)
    assert runner.handed == []  # the wave is not complete

    next_wave(ctx, plan, 0, 2)
    assert runner.handed == [("shard", 2)] and job.marked("wave-1")

    next_wave(ctx, plan, 0, 2)
    assert runner.handed == [("shard", 2)]  # once, by its marker

    next_wave(ctx, plan, 1, 1)
    assert runner.handed == [("shard", 2), ("shard", 3), ("shard", 4)]

    runner.expect(job)
    next_wave(ctx, plan, 2, 2)
    assert runner.handed == [("finish",)]  # after the last wave
    next_wave(ctx, plan, 2, 2)
    assert runner.handed == [("finish",), ("finish",)]  # the finish is idempotent: handed over again


def test_next_wave_of_a_stopped_job_is_the_finish(jobs, runner) -> None:
    job = jobs.new()
    ctx = StepContext(job, runner, DELIVERY)
    runner.expect(job)
    job.abort("shard 0 failed: RuntimeError: boom")

    next_wave(ctx, {"waves": [[0], [1]], "operations": 2, "shards": 2}, 0, 1)

    assert runner.handed == [("finish",)]
    assert not job.marked("wave-1")
