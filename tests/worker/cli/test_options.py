"""How the command line takes a job: every spec field has its option (and job file key), read from JobSpec."""

from __future__ import annotations

import json

import pytest

from worker.cli.main import cli
from worker.cli.options import GROUPED, JOB_FILE_KEYS, OPTION_NAMES, SPEC_FIELDS, read_job_file, spec_data
from worker.job.spec import JobSpec


def test_every_spec_field_has_an_option_of_sync_and_plan() -> None:
    for command in ("sync", "plan"):
        names = {param.name for param in cli.commands[command].params}
        plain = [field for field in SPEC_FIELDS if field != "dry_run" and field not in GROUPED]
        wanted = [OPTION_NAMES.get(field, field) for field in plain]
        wanted += [option for options in GROUPED.values() for option in options]
        missing = [name for name in wanted if name not in names]
        assert not missing, f"shardsync {command} has no option for {missing}"
    assert "dry_run" in {param.name for param in cli.commands["sync"].params}


def test_spec_data_turns_options_into_a_valid_spec() -> None:
    options = {name: None for name in JOB_FILE_KEYS}
    options.update(source="demo", target="demo-api", flags=("continue-on-failure",), no_barrier=True,
                   batch_size=((None, 5),), diff_range=3, keep_stores=False)  # fmt: skip
    options.update(retry_seconds=0.0, max_rate=2.5)
    spec = JobSpec.from_data(spec_data(options, dry_run=True))
    assert spec.dry_run and not spec.top_level_barrier and spec.batch_size == 5 and spec.diff_range == 3
    assert spec.flags == ["continue_on_failure"] and spec.keep_stores is False and spec.shard_size is None
    assert spec.source_kwargs == {} and spec.allow_deletes is False
    assert spec.retry is not None and spec.retry.seconds == 0 and spec.retry.attempts is None
    assert spec.limits is not None and spec.limits.rate == 2.5 and spec.limits.concurrency is None


def test_a_job_file_takes_the_same_keys(tmp_path) -> None:
    path = tmp_path / "job.toml"
    path.write_text('source = "demo"\ntarget = "demo-api"\ndiff_range = 4\nno_barrier = true\nretry = {attempts = 3}\n')
    spec = JobSpec.from_data(spec_data(read_job_file(str(path)), dry_run=False))
    assert spec.diff_range == 4 and not spec.top_level_barrier and spec.retry.attempts == 3
    path.write_text('source = "demo"\ntarget = "demo-api"\ntop_level_barrier = false\n')
    with pytest.raises(ValueError, match="unknown key 'top_level_barrier'"):
        read_job_file(str(path))


def test_a_job_file_may_be_json_as_schedule_files_are(tmp_path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"source": "demo", "target": "demo-api", "diff_range": 4, "retry": {"attempts": 3}}))
    spec = JobSpec.from_data(spec_data(read_job_file(str(path)), dry_run=False))
    assert spec.diff_range == 4 and spec.retry.attempts == 3
    for name, text, problem in (
        ("bad.json", "{", "not valid JSON"),
        ("list.json", "[]", "holds one object"),
        ("job.yaml", "source: demo", "TOML .*or JSON"),
    ):
        other = tmp_path / name
        other.write_text(text)
        with pytest.raises(ValueError, match=problem):
            read_job_file(str(other))
