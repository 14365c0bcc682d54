"""The start step (``worker.pipeline.start``): the target's lock, then both loads; or a stop and the finish."""

from __future__ import annotations

import pytest

from tests.worker.pipeline._steps import HOST, RecordingHook, RecordingRunner, spec_data
from worker.job.spec import JobSpec


def test_start_takes_the_lock_and_hands_over_both_loads(jobs) -> None:
    hook = RecordingHook()
    runner = RecordingRunner(hooks=[hook])
    job = jobs.new()
    target = JobSpec.from_data(job.spec_data()).target_identity()

    assert runner.deliver(job, "start") is None

    assert runner.handed == [("load", "source"), ("load", "target")]
    assert runner.progressed == [("load-source", 0, 2)]
    assert job.holds_lock(target)
    info = job.info()
    assert info["lock"] == "held" and info["status"] == "running" and info["worker"] == HOST
    assert info["started"] >= info["submitted"]
    assert job.marked("started")
    assert job.aborted() is None
    assert hook.calls == [("started", job.job_id, None)]


def test_a_start_delivered_again_hands_over_nothing(jobs) -> None:
    hook = RecordingHook()
    runner = RecordingRunner(hooks=[hook])
    job = jobs.new()
    runner.deliver(job, "start")
    started = job.info()["started"]

    runner.deliver(job, "start")

    assert runner.handed == [] and runner.progressed == []
    assert job.info()["started"] == started  # not started again
    assert hook.calls == [("started", job.job_id, None)]  # the job started once


def test_a_target_locked_by_another_job_stops_the_job(jobs, runner) -> None:
    first = jobs.new()
    runner.deliver(first, "start")
    second = jobs.new()  # the same target: the same adapter and kwargs
    target = JobSpec.from_data(second.spec_data()).target_identity()

    runner.deliver(second, "start")

    assert runner.handed == [("finish",)]
    assert f"is being synced by job {first.job_id}" in second.aborted()
    assert second.info()["lock"] == "not held"
    assert not second.marked("started")
    assert first.holds_lock(target)

    report = runner.deliver(second, "finish")
    assert report["status"] == "failed" and "being synced by job" in report["error"]
    assert first.holds_lock(target)  # the finish of the refused job leaves the other job's lock alone


def test_another_target_is_no_conflict(jobs, runner) -> None:
    runner.deliver(jobs.new(), "start")
    other = jobs.new(target_kwargs={"sites": 5})  # another system behind the same adapter

    runner.deliver(other, "start")

    assert runner.handed == [("load", "source"), ("load", "target")]
    assert other.info()["lock"] == "held"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"shard_size": -1}, "shard_size"),
        ({"source": "no-such-adapter"}, "no-such-adapter"),
        ({"target_kwargs": {"sites": "many"}}, "target_kwargs"),
        ({"job_id": "another-job"}, "is not the id of job"),
    ],
)
def test_an_invalid_stored_spec_stops_the_job(jobs, runner, change, named) -> None:
    message = JobSpec.from_data(spec_data()).to_message()
    job_id = message["job_id"]
    message.update(change)
    job = jobs.raw(message, job_id=job_id)

    runner.deliver(job, "start")

    assert runner.handed == [("finish",)]
    assert job.aborted().startswith("invalid job: ")
    assert named in job.aborted()
    assert "lock" not in job.info() and not job.marked("started")

    report = runner.deliver(job, "finish")
    assert report["status"] == "failed" and report["error"] == job.aborted()


@pytest.mark.parametrize("deadline", ["soon", -5])
def test_an_invalid_stored_deadline_stops_the_job_as_invalid(jobs, runner, deadline) -> None:
    message = JobSpec.from_data(spec_data()).to_message()
    message["deadline"] = deadline
    job = jobs.raw(message)

    runner.deliver(job, "start")

    assert runner.handed == [("finish",)]
    assert job.aborted().startswith("invalid job: ") and "deadline" in job.aborted()


def test_a_job_cancelled_before_its_start_hands_over_to_the_finish_only(jobs) -> None:
    hook = RecordingHook()
    runner = RecordingRunner(hooks=[hook])
    job = jobs.new()
    target = JobSpec.from_data(job.spec_data()).target_identity()
    job.abort("cancelled by the operator")

    runner.deliver(job, "start")

    assert runner.handed == [("finish",)]
    assert job.aborted() == "cancelled by the operator"
    assert not job.holds_lock(target) and "lock" not in job.info()
    assert job.info()["status"] == "queued" and not job.marked("started")
    assert hook.calls == []  # never started


def test_a_start_of_an_ended_job_does_nothing(jobs, runner) -> None:
    job = jobs.new()
    job.abort("cancelled")
    runner.deliver(job, "finish")
    assert job.report() is not None

    runner.deliver(job, "start")

    assert runner.handed == [] and runner.progressed == []
    assert "lock" not in job.info()
