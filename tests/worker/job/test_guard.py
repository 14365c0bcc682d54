"""The delete guardrail: a job whose diff would delete too much of its target fails before any operation."""

from __future__ import annotations

import pytest

from worker import InvalidJob, JobFailed
from worker.job.guard import DeleteLimit, delete_refusal, parse_delete_limit
from worker.job.spec import JobSpec
from worker.runners.local import run_local
from worker.settings import Settings, get_settings
from worker.state import MemoryJobState


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("1000", DeleteLimit(count=1000)),
        (0, DeleteLimit(count=0)),
        ("50%", DeleteLimit(share=0.5)),
        (" 12.5% ", DeleteLimit(share=0.125)),
        ("100%", DeleteLimit(share=1.0)),
        ("none", DeleteLimit()),
        ("OFF", DeleteLimit()),
    ],
)
def test_limits_parse(text, limit):
    assert parse_delete_limit(text) == limit
    assert parse_delete_limit(str(limit)) == limit  # what a spec keeps reads back the same


@pytest.mark.parametrize("text", ["", "-1", "1.5", "101%", "half", "50 %%", True, 2.5, None, ["1"]])
def test_bad_limits_are_named(text):
    with pytest.raises(ValueError, match="delete limit"):
        parse_delete_limit(text)


def test_refusal_names_the_figures():
    assert delete_refusal(5, 10, DeleteLimit(share=0.5)) is None  # at the limit is allowed
    message = delete_refusal(6, 10, DeleteLimit(share=0.5))
    assert "delete 6 of the target's 10 objects (60%), over the delete limit 50%" in message
    assert "allow_deletes" in message
    assert delete_refusal(1001, 5000, DeleteLimit(count=1000)) is not None
    assert delete_refusal(10**6, 10**6, DeleteLimit()) is None


def test_the_default_is_half_the_target(monkeypatch):
    monkeypatch.delenv("SHARDSYNC_DELETE_LIMIT")
    assert Settings().delete_limit == "50%"
    monkeypatch.setenv("SHARDSYNC_DELETE_LIMIT", "ten")
    with pytest.raises(ValueError, match="delete limit 'ten'"):
        Settings()


def _spec(**extra) -> JobSpec:
    data = {"source": "demo", "target": "demo", "source_kwargs": {"sites": 0}, "target_kwargs": {"sites": 12}}
    data.update(extra)
    return JobSpec.from_data(data)


def test_an_empty_source_against_a_full_target_fails_before_any_operation(monkeypatch):
    """With the default limit (no setting): the job fails naming the figures; the target store is untouched."""
    monkeypatch.delenv("SHARDSYNC_DELETE_LIMIT")
    get_settings.cache_clear()
    try:
        spec = _spec()
        state = MemoryJobState(spec.job_id)
        with pytest.raises(JobFailed) as raised:
            run_local(spec, state=state)
    finally:
        get_settings.cache_clear()
    report = raised.value.report
    objects = report["loads"]["target"]["objects"]
    assert f"would delete {objects} of the target's {objects} objects (100%)" in report["error"]
    assert report["counts"] == {} and report["changed"] is False and report["sync_complete"] is False
    assert all(shard["applied"] == 0 for shard in report["shards"])
    assert state.open_store("target").count() == objects


def test_a_job_may_allow_the_deletes_or_set_its_own_limit():
    report = run_local(_spec(allow_deletes=True, delete_limit="1"))
    assert report["status"] == "success" and report["counts"]["delete"]["success"] > 0
    report = run_local(_spec(delete_limit="none"))
    assert report["status"] == "success"
    with pytest.raises(JobFailed, match="over the delete limit 3"):
        run_local(_spec(delete_limit=3))


def test_a_dry_run_is_not_stopped():
    report = run_local(_spec(dry_run=True, delete_limit="0"))
    assert report["status"] == "dry-run"


def test_a_bad_job_limit_is_refused_at_submit():
    with pytest.raises(InvalidJob, match="delete_limit: Value error, delete limit '200%'"):
        _spec(delete_limit="200%")
