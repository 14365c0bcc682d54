"""The shard step (``worker.pipeline.shard``): one shard's subtrees applied, its result, then the next wave.

The demo job of 4 sites (``spec_data``) plans 11 operations in 4 kept subtrees; with ``shard_size`` 2 that is one
wave of three shards: site-0000 (2 updates), site-0001 and site-0005 (an update, a create), site-0003 (7 deletes).
"""

from __future__ import annotations

import pytest

from core.exceptions import ObjectNotFound
from tests.worker.pipeline._steps import HOST, drive

SHARDS = [("shard", 0), ("shard", 1), ("shard", 2)]


def site(job, name):
    return job.open_store("target").get(model="site", identifier=name)


def test_a_shard_applies_its_subtrees_and_records_its_result(jobs, runner) -> None:
    job = jobs.new(shard_size=2)
    assert drive(runner, job, "shard") == SHARDS
    assert [shard["operations"] for shard in job.plan()["shards"]] == [2, 2, 7]

    outcome = runner.deliver(job, "shard", 2)

    with pytest.raises(ObjectNotFound):
        site(job, "site-0003")  # deleted, with its devices and interfaces
    assert site(job, "site-0000").status == "active"  # another shard's subtree: untouched
    result = job.shard_result(2)
    assert result["applied"] == result["operations"] == 7 and result["replayed"] == 0
    assert result["changed"] is True and result["stopped"] is False and result["error"] is None
    assert result["worker"] == HOST and result["wave"] == 0 and result["roots"] == 1
    shown = ("index", "operations", "applied", "replayed", "retries", "seconds", "error")
    assert outcome == {key: result[key] for key in shown} and result["retries"] == 0
    assert job.progress_count() == 7 and len(job.journal()) == 7
    assert all(entry[1] == "success" for entry in job.journal().values())
    assert runner.handed == []  # not the last of its wave
    assert runner.progressed[-1] == ("sync", 7, 11)
    assert not job.claim_held("shard-2")
    assert "sync_started" in job.info() and "sync_ended" in job.info()


def test_the_last_shard_of_the_wave_hands_over_the_finish(jobs, runner) -> None:
    job = jobs.new(shard_size=2)
    drive(runner, job, "shard")
    for index in (2, 0):
        runner.deliver(job, "shard", index)
        assert runner.handed == []

    runner.deliver(job, "shard", 1)

    assert runner.handed == [("finish",)]
    assert site(job, "site-0005").region == "emea" and site(job, "site-0000").status == "planned"
    assert job.progress_count() == 11 and job.finished_in_wave(0) == 3


def test_a_shard_found_done_only_hands_over(jobs, runner) -> None:
    job = jobs.new(shard_size=2)
    drive(runner, job, "shard")
    for index in (0, 1, 2):
        runner.deliver(job, "shard", index)
    result, journal = job.shard_result(0), job.journal()

    assert runner.deliver(job, "shard", 0) is None

    assert job.shard_result(0) == result and job.journal() == journal  # nothing applied again
    assert job.progress_count() == 11
    assert runner.handed == [("finish",)]  # the first delivery may have died before handing over


def test_a_shard_of_a_stopped_job_records_itself_stopped(jobs, runner) -> None:
    job = jobs.new(shard_size=2)
    drive(runner, job, "shard")
    job.abort("cancelled by the operator")

    runner.deliver(job, "shard", 2)

    result = job.shard_result(2)
    assert result["stopped"] is True and result["applied"] == 0 and result["error"] is None
    assert result["changed"] is False
    assert site(job, "site-0003").name == "site-0003"  # nothing applied
    assert job.journal() == {}
    assert job.progress_count() == 7  # its operations count as dealt with
    assert job.aborted() == "cancelled by the operator"
    assert runner.handed == []

    runner.deliver(job, "shard", 0)
    runner.deliver(job, "shard", 1)
    assert runner.handed == [("finish",)]  # the wave still ends
    assert job.progress_count() == 11


def test_a_hook_that_raises_fails_the_shard_and_the_job(jobs, runner) -> None:
    job = jobs.new(
        target="pipeline-test-failing-hook", target_kwargs={"sites": 4, "fail_sites": ["site-0005"]}, shard_size=2
    )
    drive(runner, job, "shard")

    outcome = runner.deliver(job, "shard", 1)

    error = "RuntimeError: the API dropped the connection on site-0005"
    assert job.aborted() == f"shard 1 failed: {error}"
    result = job.shard_result(1)
    assert result["error"] == outcome["error"] == error
    assert result["applied"] == 2 and result["changed"] is True  # site-0001's device update came first
    journal = sorted(job.journal().values(), key=lambda entry: entry[4])
    assert [entry[4] for entry in journal] == ["site-0001__dev-01", "site-0005"]
    # The create that raised is journaled as failed, with what it raised and where (not "not run").
    action, status, message = journal[1][:3]
    assert (action, status) == ("create", "error") and message.startswith(error)
    assert "_adapters.py:" in message and message.endswith(" in _refuse)")
    assert job.progress_count() == 2  # the create that failed is dealt with too
    assert runner.handed == []
    assert not job.claim_held("shard-1")

    runner.deliver(job, "shard", 0)
    runner.deliver(job, "shard", 2)

    assert runner.handed == [("finish",)]  # the wave still ends
    assert job.shard_result(0)["stopped"] is True and job.shard_result(2)["stopped"] is True
    assert site(job, "site-0003").name == "site-0003"  # the stopped shard applied nothing
    report = runner.deliver(job, "finish")
    assert report["status"] == "failed" and report["error"] == f"shard 1 failed: {error}"
    assert [failure["unique_id"] for failure in report["failures"]] == ["site-0005"]


def test_a_failed_shard_last_of_its_wave_hands_over_the_finish(jobs, runner) -> None:
    job = jobs.new(
        target="pipeline-test-failing-hook", target_kwargs={"sites": 4, "fail_sites": ["site-0003"]}, shard_size=2
    )
    drive(runner, job, "shard")
    runner.deliver(job, "shard", 0)
    runner.deliver(job, "shard", 1)

    runner.deliver(job, "shard", 2)

    assert job.aborted().startswith("shard 2 failed: RuntimeError: the API dropped the connection on site-0003")
    assert job.shard_result(2)["error"] is not None
    assert runner.handed == [("finish",)]
    assert job.progress_count() == 11


@pytest.mark.parametrize("index", [3, -1, "0", True, None])
def test_a_stray_shard_index_does_nothing(jobs, runner, index) -> None:
    job = jobs.new(shard_size=2)
    drive(runner, job, "shard")

    assert runner.deliver(job, "shard", index) is None

    assert runner.handed == [] and runner.progressed == []
    assert job.shard_results() == {} and job.journal() == {} and job.progress_count() == 0
    assert job.aborted() is None and job.running_steps() == {}


def test_a_shard_before_the_plan_is_a_stray(jobs, runner) -> None:
    job = jobs.new(shard_size=2)
    drive(runner, job, "diff")

    runner.deliver(job, "shard", 0)

    assert runner.handed == [] and job.shard_results() == {} and job.aborted() is None
