"""The embedded runner (no Redis, no workers) and the ``shardsync sync/status/adapters`` command line."""

from __future__ import annotations

import json

import pytest

from core.enum import DiffSyncFlags
from worker import JobFailed
from worker.adapters.demo import ApiInventoryAdapter, InventoryAdapter
from worker.cli.main import main
from worker.job.spec import JobSpec
from worker.runners.local import run_local


def spec(**extra) -> JobSpec:
    data = {
        "source": "demo",
        "target": "demo-api",
        "source_kwargs": {"sites": 12, "variant": 1},
        "target_kwargs": {"sites": 12},
        "shard_size": 7,
    }
    data.update(extra)
    return JobSpec.from_data(data)


def test_local_run_reports_what_sync_from_does() -> None:
    seen = []
    report = run_local(spec(), callback=lambda *progress: seen.append(progress))
    source, target = InventoryAdapter(sites=12, variant=1), ApiInventoryAdapter(sites=12)
    source.load()
    target.load()
    diff = target.diff_from(source)
    assert report["summary"] == diff.summary()
    assert report["status"] == "success" and report["sync_complete"] is True
    expected = {k: {"success": v} for k, v in diff.summary().items() if k in ("create", "update", "delete") and v}
    assert report["counts"] == expected
    assert report["operations"] == sum(v["success"] for v in expected.values())
    assert len(report["shards"]) > 1 and all(s["operations"] <= 7 or s["roots"] == 1 for s in report["shards"])
    stages = [stage for stage, _, _ in seen]
    assert stages[0] == "load-source" and stages[-1] == "finish" and "sync" in stages
    assert ("sync", report["operations"], report["operations"]) in seen


def test_local_dry_run() -> None:
    report = run_local(spec(dry_run=True))
    assert report["status"] == "dry-run" and report["shards"] == [] and report["counts"] == {}


def test_local_failure_without_continue_stops_with_report(monkeypatch) -> None:
    from core.exceptions import ObjectNotUpdated
    from worker.adapters import demo

    def refuse(self, attrs):
        raise ObjectNotUpdated(f"{self.get_unique_id()} refused")

    for cls in (demo.ApiSite, demo.ApiDevice, demo.ApiInterface):
        monkeypatch.setattr(cls, "update", refuse)
    with pytest.raises(JobFailed, match="refused") as caught:
        run_local(spec())
    report = caught.value.report
    assert report["status"] == "failed" and report["failures"][0]["status"] == "error"
    assert report["sync_complete"] is False
    report = run_local(spec(flags=["continue_on_failure"]))
    assert report["status"] == "success" and report["failures"]
    assert {f["action"] for f in report["failures"]} == {"update"}
    assert report["counts"]["update"] == {"error": len(report["failures"])}  # children of a failed update: skipped
    assert DiffSyncFlags.CONTINUE_ON_FAILURE


def test_cli_sync_local_json(capsys) -> None:
    code = main(
        [
            "sync",
            "--local",
            "--json",
            "--source",
            "demo",
            "--target",
            "demo",
            "--source-kwargs",
            '{"sites": 4, "variant": 1}',
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    assert report["status"] == "success" and report["workers"][0].startswith("local@")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sync", "--local", "--source", "nope", "--target", "demo"], "unknown adapter 'nope'"),
        (["sync", "--local", "--source", "demo", "--target", "demo", "--flag", "fast"], "unknown flag 'fast'"),
        (["sync", "--local", "--source", "demo", "--target", "demo", "--source-kwargs", "{"], "not valid JSON"),
        (["sync", "--local", "--source", "demo", "--target", "demo", "--source-kwargs", "[1]"], "JSON object"),
        (["sync", "--local", "--source", "demo", "--target", "demo", "--shard-size", "0"], "must be 1 or more"),
    ],
)
def test_cli_sync_bad_input(capsys, argv, message) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_adapters(capsys) -> None:
    assert main(["adapters"]) == 0
    out = capsys.readouterr().out
    assert "demo\tworker.adapters.demo.InventoryAdapter" in out and "demo-api\t" in out


def test_cli_reports_a_dead_redis(monkeypatch, capsys) -> None:
    from worker import settings as settings_module

    monkeypatch.setattr(
        settings_module, "get_settings", lambda: settings_module.Settings(broker_url="redis://:pw@127.0.0.1:1/0")
    )
    from worker import connection

    monkeypatch.setattr(connection, "_clients", {})
    monkeypatch.setattr(connection, "get_settings", settings_module.get_settings)
    code = main(["status", "some-job"])
    err = capsys.readouterr().err
    assert code == 3
    assert "Redis at redis://:***@127.0.0.1:1/0" in err and "pw" not in err


def test_cli_status_of_an_unknown_job(capsys) -> None:
    assert main(["status", "no-such-job-anywhere"]) == 2
    assert "job no-such-job-anywhere is unknown" in capsys.readouterr().err
