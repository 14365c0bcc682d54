"""Schedule files for beat: valid entries become beat_schedule entries, bad ones name what is wrong."""

from __future__ import annotations

import json

import pytest
from celery.schedules import crontab

from worker import InvalidJob
from worker.schedule import load_schedule


def write(tmp_path, data) -> str:
    path = tmp_path / "schedule.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_every_and_cron_entries(tmp_path) -> None:
    path = write(
        tmp_path,
        {
            "syncs": [
                {"name": "hourly", "every": 3600, "job": {"source": "demo", "target": "demo", "dry_run": True}},
                {"name": "nightly", "cron": "30 2 * * 1-5", "job": {"source": "demo", "target": "demo-api"}},
            ]
        },
    )
    schedule = load_schedule(path)
    assert set(schedule) == {"shardsync:hourly", "shardsync:nightly"}
    hourly = schedule["shardsync:hourly"]
    assert hourly["task"] == "shardsync.scheduled" and hourly["schedule"] == 3600.0
    assert hourly["args"] == ({"source": "demo", "target": "demo", "dry_run": True},)
    nightly = schedule["shardsync:nightly"]["schedule"]
    assert isinstance(nightly, crontab)
    assert nightly.minute == {30} and nightly.hour == {2} and nightly.day_of_week == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"jobs": []}, 'expected {"syncs": [...]}'),
        ({"syncs": [{"every": 5, "job": {}}]}, "entry 0: needs a non-empty 'name'"),
        ({"syncs": [{"name": "a", "job": {"source": "demo", "target": "demo"}}]}, "exactly one of 'every'"),
        ({"syncs": [{"name": "a", "every": -1, "job": {}}]}, "'every' must be a positive number"),
        ({"syncs": [{"name": "a", "cron": "* *", "job": {}}]}, "'cron' needs five fields"),
        ({"syncs": [{"name": "a", "cron": "99 * * * *", "job": {}}]}, "bad 'cron' '99 * * * *'"),
        ({"syncs": [{"name": "a", "every": 5, "job": {"source": "nope", "target": "demo"}}]}, "unknown adapter 'nope'"),
        ({"syncs": [{"name": "a", "every": 5, "job": {"source": "demo", "target": "demo", "job_id": "x"}}]}, "job_id"),
        ({"syncs": [{"name": "a", "every": 5, "when": 1, "job": {}}]}, "unknown keys ['when']"),
        (
            {"syncs": [{"name": "a", "every": 5, "job": {"source": "demo", "target": "demo"}}] * 2},
            "the name is used twice",
        ),
    ],
)
def test_bad_schedules_are_named(tmp_path, data, message) -> None:
    with pytest.raises(InvalidJob) as caught:
        load_schedule(write(tmp_path, data))
    assert message in str(caught.value)
    assert str(tmp_path / "schedule.json") in str(caught.value)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(InvalidJob, match="cannot be read"):
        load_schedule(str(tmp_path / "absent.json"))
