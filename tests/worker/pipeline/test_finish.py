"""The finish step (``worker.pipeline.finish``): the report, the lock and scratch data released, the end published."""

from __future__ import annotations

import pytest

from tests.worker.pipeline import _adapters
from tests.worker.pipeline._steps import HOST, DyingState, RecordingHook, RecordingRunner, drive, run_all
from worker.job.spec import JobSpec
from worker.settings import get_settings


def finished_job(jobs, runner, **fields):
    """A job run up to its finish (not run)."""
    job = jobs.new(**fields)
    assert run_all(runner, job, drive(runner, job, "finish")[1:]) is None
    return job


def test_the_finish_reports_releases_and_publishes(jobs) -> None:
    hook = RecordingHook()
    runner = RecordingRunner(hooks=[hook])
    job = finished_job(jobs, runner)
    target = JobSpec.from_data(job.spec_data()).target_identity()
    assert job.holds_lock(target) and job.marked("started")
    hook.calls.clear()

    report = runner.deliver(job, "finish")

    assert report == job.report()
    assert report["status"] == "success" and report["error"] is None and report["sync_complete"] is True
    assert report["operations"] == 11 and report["counts"]["delete"] == {"success": 7}
    assert len(report["shards"]) == 1 and HOST in report["workers"]
    assert job.info()["status"] == "success" and "finished" in job.info()
    assert not job.holds_lock(target)
    with pytest.raises(LookupError):
        job.plan()  # scratch data dropped
    assert not job.marked("started") and job.progress_count() == 0 and job.shard_results() == {}
    assert job.summary() == report["summary"]  # the diff stays with the report
    assert runner.published == [(job.job_id, report)]
    assert hook.calls == [("ended", job.job_id, "success")]
    assert runner.progressed == [("finish", 0, 1), ("finish", 1, 1)]
    assert runner.handed == []


def test_a_finish_delivered_again_publishes_only_if_not_published(jobs) -> None:
    hook = RecordingHook()
    runner = RecordingRunner(hooks=[hook])
    job = finished_job(jobs, runner)
    report = runner.deliver(job, "finish")
    hook.calls.clear()

    assert runner.deliver(job, "finish") == report

    assert runner.published == [(job.job_id, report)]  # published already
    assert hook.calls == [("ended", job.job_id, "success")]  # hooks are called again (they count once)
    assert job.report() == report

    other = RecordingRunner(hooks=[hook])  # a runner that never saw the end: the first delivery died before it
    assert other.deliver(job, "finish") == report
    assert other.published == [(job.job_id, report)]


def test_an_adapters_sync_complete_runs_with_the_whole_diff(jobs, runner) -> None:
    job = finished_job(jobs, runner, target="pipeline-test-completing")

    report = runner.deliver(job, "finish")

    assert report["status"] == "success" and report["sync_complete"] is True
    assert _adapters.COMPLETED == [report["summary"]]


def test_a_sync_complete_that_raises_is_the_reports_error(jobs, runner) -> None:
    job = finished_job(jobs, runner, target="pipeline-test-completing", target_kwargs={"sites": 4, "refuse": "no"})
    target = JobSpec.from_data(job.spec_data()).target_identity()

    report = runner.deliver(job, "finish")

    assert report["error"] == "sync_complete failed: RuntimeError: no"
    assert report["status"] == "failed" and report["sync_complete"] is False
    assert report["operations"] == 11 and report["counts"]["delete"] == {"success": 7}  # the operations stand
    assert runner.published == [(job.job_id, report)]
    assert not job.holds_lock(target)


@pytest.mark.parametrize("fields", [{"dry_run": True}, {"source_kwargs": {"sites": 4}}])
def test_no_sync_complete_without_a_change(jobs, runner, fields) -> None:
    job = finished_job(jobs, runner, target="pipeline-test-completing", **fields)

    report = runner.deliver(job, "finish")

    assert report["sync_complete"] is False and report["error"] is None
    assert _adapters.COMPLETED == []


def test_a_poisoned_finish_still_reports(jobs, runner) -> None:
    job = finished_job(jobs, runner, state=DyingState)
    limit = get_settings().max_deliveries
    job.dead["finish"] = limit
    target = JobSpec.from_data(job.spec_data()).target_identity()

    report = runner.deliver(job, "finish")

    assert report is not None and report == job.report()
    assert report["status"] == "failed"
    assert report["error"].startswith(f"finish was started {limit + 1} times and its worker died {limit} times")
    assert runner.published == [(job.job_id, report)]
    assert not job.holds_lock(target)
    assert report["operations"] == 11  # what the shards did is reported


def test_a_poisoned_finish_keeps_the_first_error(jobs, runner) -> None:
    job = jobs.new(state=DyingState)
    job.dead["finish"] = get_settings().max_deliveries
    job.abort("cancelled by the operator")

    report = runner.deliver(job, "finish")

    assert report["error"] == "cancelled by the operator"
    assert runner.published == [(job.job_id, report)]


def test_the_finish_of_a_job_that_never_started(jobs, runner) -> None:
    job = jobs.new()
    job.abort("cancelled by the operator")

    report = runner.deliver(job, "finish")

    assert report["status"] == "failed" and report["error"] == "cancelled by the operator"
    assert report["operations"] == 0 and report["shards"] == [] and report["summary"] is None
    assert runner.published == [(job.job_id, report)]


def test_the_end_of_a_job_with_a_hung_step_takes_its_claim_and_lock_and_names_it(jobs, runner) -> None:
    """The watchdog's ``end``: a stopped job whose shard still holds its claim (a call that never returns)."""
    job = jobs.new()
    drive(runner, job, "shard")
    target = JobSpec.from_data(job.spec_data()).target_identity()
    token = job.claim("shard-0", 30, "shard", [0])  # the hung delivery
    assert token is not None and job.holds_lock(target)
    job.abort("the job's deadline passed")

    report = runner.deliver(job, "end")

    assert report == job.report() and report["status"] == "failed" and report["hung"] == ["shard-0"]
    assert report["error"].startswith("the job's deadline passed; shard-0 had not returned")
    assert not job.claim_held("shard-0") and not job.holds_lock(target)
    assert runner.published == [(job.job_id, report)]
    # A finish that comes later (the hung shard's wave handing over) keeps the first report.
    assert runner.deliver(job, "finish") == report and job.report() == report


def test_the_finish_waits_while_another_step_holds_its_claim(jobs, runner) -> None:
    """A late duplicate step of a stopped job hands over to the finish while a shard still runs: no report."""
    job = jobs.new()
    drive(runner, job, "shard")
    token = job.claim("shard-0", 30, "shard", [0])  # running
    job.abort("cancelled")

    assert runner.deliver(job, "finish") is None
    assert job.report() is None and runner.published == [] and job.claim_held("shard-0")

    job.release_claim("shard-0", token)  # the shard ended (and hands over to the finish)
    report = runner.deliver(job, "finish")
    assert report["status"] == "failed" and report["error"] == "cancelled" and report["hung"] == []


def test_the_reports_workers_are_each_worker_once(jobs, runner) -> None:
    """A ranged diff records its hosts as one entry, a partitioned load its partitions' hosts: each is listed once."""
    job = finished_job(jobs, runner)
    job.record_worker("diff", "shards1@vm, shards2@vm")
    job.record_load("source", {**job.loads().get("source", {}), "workers": ["parts1@vm", "shards1@vm"]})

    report = runner.deliver(job, "finish")

    assert {"shards1@vm", "shards2@vm", "parts1@vm", HOST} <= set(report["workers"])
    assert not [name for name in report["workers"] if "," in name]
    assert len(report["workers"]) == len(set(report["workers"]))
