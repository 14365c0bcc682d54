"""Schedule files for beat: valid entries become beat_schedule entries, bad ones name what is wrong."""

from __future__ import annotations

import json

import pytest
from celery.schedules import crontab

from worker import InvalidJob
from worker.schedule.entries import load_schedule


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
            {"syncs": [{"name": "a", "every": 5, "job": {"source": "demo", "target": "demo", "coalesce": 5}}]},
            "coalesce",
        ),
        (
            {"syncs": [{"name": "a", "every": 5, "job": {"source": "demo", "target": "demo", "scope": {"ids": "x"}}}]},
            "scope.ids",
        ),
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


# -- TOML ---------------------------------------------------------------------------------------------------

GOOD_TOML = """
[[syncs]]
name = "hourly"
every = 3600
job = { source = "demo", target = "demo", dry_run = true }

[[syncs]]
name = "nightly"
cron = "30 2 * * 1-5"
[syncs.job]
source = "demo"
target = "demo-api"
flags = ["continue_on_failure"]
source_kwargs = { sites = 2 }
"""


def write_toml(tmp_path, text: str, name: str = "schedule.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_toml_file_gives_the_entries_its_json_twin_gives(tmp_path) -> None:
    from_toml = load_schedule(write_toml(tmp_path, GOOD_TOML))
    twin = {
        "syncs": [
            {"name": "hourly", "every": 3600, "job": {"source": "demo", "target": "demo", "dry_run": True}},
            {
                "name": "nightly",
                "cron": "30 2 * * 1-5",
                "job": {
                    "source": "demo",
                    "target": "demo-api",
                    "flags": ["continue_on_failure"],
                    "source_kwargs": {"sites": 2},
                },
            },
        ]
    }
    from_json = load_schedule(write(tmp_path, twin))
    assert set(from_toml) == set(from_json) == {"shardsync:hourly", "shardsync:nightly"}
    for name in from_toml:
        assert from_toml[name]["args"] == from_json[name]["args"]
        assert from_toml[name]["options"] == from_json[name]["options"]
        assert from_toml[name]["task"] == "shardsync.scheduled"
    assert from_toml["shardsync:hourly"]["schedule"] == 3600.0
    nightly = from_toml["shardsync:nightly"]["schedule"]
    assert isinstance(nightly, crontab) and nightly.minute == {30} and nightly.day_of_week == {1, 2, 3, 4, 5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[syncs]\nname = 'a'", "not valid TOML"),
        ("[[jobs]]\nname = 'a'", "expected [[syncs]] tables"),
        ("syncs = 3", "expected [[syncs]] tables"),
        ("[[syncs]]\nevery = 5\njob = {}", "entry 0: needs a non-empty 'name'"),
        ("[[syncs]]\nname = 'a'\njob = { source = 'demo', target = 'demo' }", "entry 'a': give exactly one of"),
        ("[[syncs]]\nname = 'a'\nevery = 0\njob = {}", "entry 'a': 'every' must be a positive number"),
        ("[[syncs]]\nname = 'a'\nevery = inf\njob = {}", "entry 'a': 'every' must be a positive number"),
        ("[[syncs]]\nname = 'a'\nevery = '5'\njob = {}", "entry 'a': 'every' must be a positive number"),
        ("[[syncs]]\nname = 'a'\ncron = 5\njob = {}", "entry 'a': 'cron' must be a string"),
        ("[[syncs]]\nname = 'a'\ncron = '* * *'\njob = {}", "entry 'a': 'cron' needs five fields"),
        ("[[syncs]]\nname = 'a'\nevery = 5\njob = 'demo'", "entry 'a': needs a 'job' mapping"),
        ("[[syncs]]\nname = 'a'\nevery = 5\nwhen = 1\njob = {}", "entry 'a': unknown keys ['when']"),
        ("[[syncs]]\nname = 'a'\nevery = 5\njob = { source = 'nope', target = 'demo' }", "unknown adapter 'nope'"),
        (
            "[[syncs]]\nname = 'a'\nevery = 5\njob = { source = 'demo', target = 'demo', shard_size = 0 }",
            "entry 'a': invalid job spec: shard_size",
        ),
        (  # TOML has dates; a job's kwargs must be plain data that msgpack carries
            "[[syncs]]\nname = 'a'\nevery = 5\njob = { source = 'demo', target = 'demo', "
            "source_kwargs = { since = 2024-01-01T00:00:00Z } }",
            "entry 'a': invalid job spec",
        ),
        (
            "[[syncs]]\nname = 'a'\nevery = 5\njob = { source = 'demo', target = 'demo' }\n" * 2,
            "entry 'a': the name is used twice",
        ),
    ],
)
def test_bad_toml_schedules_are_named(tmp_path, text, message) -> None:
    path = write_toml(tmp_path, text)
    with pytest.raises(InvalidJob) as caught:
        load_schedule(path)
    assert message in str(caught.value)
    assert f"schedule file {path}" in str(caught.value)


@pytest.mark.parametrize("name", ["schedule.yaml", "schedule.tml", "schedule", "schedule.json.bak"])
def test_an_unknown_extension_is_refused(tmp_path, name) -> None:
    path = write_toml(tmp_path, '{"syncs": []}', name)
    with pytest.raises(InvalidJob) as caught:
        load_schedule(path)
    assert f"schedule file {path}: unknown format" in str(caught.value)
    assert "*.toml or *.json" in str(caught.value)


def test_the_extension_decides_the_format(tmp_path) -> None:
    # A JSON text in a .toml file is read as TOML (and fails as such), never guessed.
    with pytest.raises(InvalidJob, match="not valid TOML"):
        load_schedule(write_toml(tmp_path, '{"syncs": []}'))
    assert load_schedule(write_toml(tmp_path, "syncs = []", "upper.TOML")) == {}
    with pytest.raises(InvalidJob, match="cannot be read"):
        load_schedule(str(tmp_path / "absent.toml"))
