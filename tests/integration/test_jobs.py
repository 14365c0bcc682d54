"""End-to-end jobs on two real ``celery -A worker worker`` processes and the real Redis."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any, Dict, List

import pytest
from _compare import REDIS_URL, assert_same_calls, distributed_sync, local_sync
from _workers import poll
from celery.result import AsyncResult
from ss_test_adapters import read_calls

from core import keys
from worker import InvalidJob, JobFailed, JobHandle, UnknownAdapter, app, submit_sync
from worker.job.spec import JobSpec
from worker.state import RedisJobState

pytestmark = pytest.mark.usefixtures("workers")


def dataset(sites: int, devices: int = 2, ports: int = 2, note: str = "", regions: int = 2) -> Dict[str, Any]:
    return {
        "region": [{"name": f"r-{i}", "label": f"region {i}", "note": note} for i in range(regions)],
        "site": [
            {
                "name": f"s-{i}",
                "region": f"r-{i % max(regions, 1)}",
                "note": note,
                "devices": [
                    {
                        "name": f"d{j}",
                        "role": "leaf",
                        "note": note,
                        "ports": [{"name": f"p{k}", "speed": 10, "note": note} for k in range(ports)],
                    }
                    for j in range(devices)
                ],
            }
            for i in range(sites)
        ],
    }


def test_job_matches_local_sync(redis_db) -> None:
    source = dataset(6)
    target = dataset(5, devices=3)
    target["site"][0]["region"] = "elsewhere"  # an update
    target["region"].append({"name": "r-9", "label": "gone"})  # a delete
    source["site"][1]["devices"][0]["ports"][0]["speed"] = 100  # a deep update
    local_state, local_calls, local_error = local_sync(source, target, [], redis_db, REDIS_URL)
    state, calls, report, failure = distributed_sync(source, target, [], redis_db, REDIS_URL, shard_size=4)
    assert failure is None and local_error is None
    assert state == local_state
    assert_same_calls(local_calls, calls, barrier=True)
    assert report["status"] == "success"
    assert report["operations"] == len([c for c in calls if c[0] != "sync_complete"])
    assert report["counts"]["create"]["success"] == len([c for c in calls if c[0] == "create"])
    assert report["counts"]["delete"]["success"] == len([c for c in calls if c[0] == "delete"])
    assert report["sync_complete"] is True
    assert len(report["shards"]) > 2 and report["waves"] == 2
    assert set(report["seconds"]) >= {"load-source", "load-target", "diff", "plan", "sync", "finish"}
    assert report["summary"]["create"] > 0


def test_shards_of_one_job_run_on_two_worker_processes(redis_db) -> None:
    meet = f"test:meet:{uuid.uuid4().hex}"
    source = dataset(2, devices=1, ports=0, regions=0)
    for site in source["site"]:
        site["note"] = f"meet:{meet}:2"  # each site's create waits until two processes are creating at once
    state, calls, report, failure = distributed_sync(source, {}, [], redis_db, REDIS_URL, shard_size=2)
    assert failure is None, failure
    site_calls = [call for call in calls if call[1] == "site"]
    assert len({call[4] for call in site_calls}) == 2, "the two shards did not run in two processes"
    assert {shard["worker"].split("@")[0] for shard in report["shards"]} == {"alpha", "beta"}
    assert len(report["shards"]) == 2
    redis_db.delete(meet)


def test_progress_meta_while_a_job_runs(redis_db) -> None:
    gate = f"test:gate:{uuid.uuid4().hex}"
    source = dataset(3, devices=1, ports=1, regions=0)
    source["site"][2]["note"] = f"wait:{gate}"  # the last site's create holds the sync until the gate opens
    handle = submit_sync(source="dataset", target="dataset", source_kwargs={"data": source}, shard_size=1000)
    seen = []

    def in_sync():
        result = AsyncResult(handle.id, app=app)
        if result.state == "PROGRESS":
            seen.append(dict(result.info))
            return result.info["stage"] == "sync" and result.info["current"] >= 1 and result.info
        return False

    try:
        meta = poll(in_sync, what="PROGRESS meta with stage sync")
        assert set(meta) == {"job_id", "stage", "current", "total"}
        assert meta["job_id"] == handle.id
        assert meta["total"] == 9  # 3 sites, 3 devices, 3 ports
        assert 1 <= meta["current"] < meta["total"]
        stage, current, total = handle.progress()
        assert stage == "sync" and total == 9 and current < total
        assert not handle.done()
    finally:
        redis_db.set(gate, 1)
    report = handle.wait(timeout=60)
    assert handle.progress() == ("done", 9, 9)
    assert report["operations"] == 9
    rank = {"load-source": 0, "load-target": 0, "diff": 1, "plan": 2, "sync": 3, "finish": 4}
    ranks = [rank[meta["stage"]] for meta in seen]  # loads run in parallel: same rank
    assert ranks == sorted(ranks), f"stages went backwards: {[meta['stage'] for meta in seen]}"
    sync_counts = [meta["current"] for meta in seen if meta["stage"] == "sync"]
    assert sync_counts == sorted(sync_counts)
    redis_db.delete(gate)


def test_failure_without_continue_on_failure_stops_and_reports(redis_db) -> None:
    source = dataset(4, devices=1, ports=1, regions=1)
    source["region"][0]["note"] = "fail-raise"  # the first wave fails: no site may be synced after it
    state, calls, report, failure = distributed_sync(source, {}, [], redis_db, REDIS_URL, shard_size=1)
    assert failure is not None
    assert "create of {'name': 'r-0'} refused" in str(failure)
    assert report["status"] == "failed"
    assert report["failures"] == [
        {
            "action": "create",
            "model": "region",
            "unique_id": "r-0",
            "status": "error",
            "message": "create of {'name': 'r-0'} refused",
        }
    ]
    assert [call[1] for call in calls] == ["region"], "shards of the next wave ran after the failure"
    assert "site" not in state or not state["site"]
    # The lock is released: the next job into the same target runs.
    state, calls, report, failure = distributed_sync(dataset(1, regions=0), {}, [], redis_db, REDIS_URL)
    assert failure is None and report["status"] == "success"


def test_continue_on_failure_reports_each_failure(redis_db) -> None:
    source = dataset(3, devices=1, ports=1, regions=0)
    source["site"][0]["note"] = "fail-raise"
    source["site"][1]["note"] = "fail-none"
    flags = ["continue_on_failure"]
    local_state, local_calls, _ = local_sync(source, {}, flags, redis_db, REDIS_URL)
    state, calls, report, failure = distributed_sync(source, {}, flags, redis_db, REDIS_URL, shard_size=1)
    assert failure is None
    assert state == local_state
    assert_same_calls(local_calls, calls, barrier=True)
    by_uid = {(f["unique_id"], f["status"]) for f in report["failures"]}
    assert by_uid == {("s-0", "error"), ("s-1", "failure")}
    assert report["counts"]["create"] == {"error": 1, "failure": 1, "success": 3}


def test_dry_run_changes_nothing(redis_db) -> None:
    source, target = dataset(3), dataset(2)
    before = target_state = None
    state, calls, report, failure = distributed_sync(source, target, [], redis_db, REDIS_URL, dry_run=True)
    assert failure is None and calls == []
    assert report["status"] == "dry-run" and report["summary"]["create"] > 0
    assert report["shards"] == [] and report["sync_complete"] is False
    local_state, _, _ = local_sync(target, target, [], redis_db, REDIS_URL)  # the target as loaded
    assert state == local_state, (before, target_state)


def test_one_sync_into_a_target_at_a_time(redis_db) -> None:
    kwargs = {"data": dataset(1, regions=0), "name": "locked"}
    spec = JobSpec.from_data({"source": "dataset", "target": "dataset", "target_kwargs": kwargs})
    lock = keys.lock_key(spec.target_identity())
    redis_db.set(lock, "someone-else", ex=60)
    try:
        handle = submit_sync(source="dataset", target="dataset", target_kwargs=kwargs)
        with pytest.raises(JobFailed, match="being synced by job someone-else"):
            handle.wait(timeout=60)
        assert redis_db.get(lock) == b"someone-else", "the other job's lock was touched"
    finally:
        redis_db.delete(lock)


def test_bad_jobs_are_refused_before_anything_is_enqueued(redis_db) -> None:
    before = {queue: redis_db.llen(queue) for queue in ("shardsync.jobs", "shardsync.shards")}
    with pytest.raises(UnknownAdapter, match="unknown adapter 'nautobot'; registered adapters: .*dataset"):
        submit_sync(source="nautobot", target="dataset")
    with pytest.raises(InvalidJob, match="unknown flag 'continue'"):
        submit_sync(source="dataset", target="dataset", flags=["continue"])
    with pytest.raises(InvalidJob, match="source_kwargs must be plain data"):
        submit_sync(source="dataset", target="dataset", source_kwargs={"data": object()})
    with pytest.raises(InvalidJob, match="shard_size"):
        submit_sync(source="dataset", target="dataset", shard_size=0)
    with pytest.raises(InvalidJob, match="unexpected keyword argument 'colour'"):
        submit_sync(source="dataset", target="dataset", target_kwargs={"colour": "red"})
    after = {queue: redis_db.llen(queue) for queue in ("shardsync.jobs", "shardsync.shards")}
    assert before == after


def test_job_ids_are_unique(redis_db) -> None:
    job_id = f"test-{uuid.uuid4().hex}"
    handle = submit_sync(source="dataset", target="dataset", job_id=job_id)
    handle.wait(timeout=60)
    with pytest.raises(InvalidJob, match="already taken"):
        submit_sync(source="dataset", target="dataset", job_id=job_id)


def test_adapter_state_is_rebuilt_on_workers(redis_db) -> None:
    """The demo-api adapter's hooks need the remote-id map its load() builds; on_attach rebuilds it."""
    handle = submit_sync(
        source="demo",
        target="demo-api",
        source_kwargs={"sites": 6, "variant": 1},
        target_kwargs={"sites": 6},
        shard_size=5,
    )
    report = handle.wait(timeout=60)
    assert report["failures"] == []
    assert report["counts"]["delete"]["success"] > 0 and report["counts"]["update"]["success"] > 0
    assert len(report["shards"]) > 1


def test_cancel_stops_a_running_job_with_a_report(redis_db) -> None:
    gate = f"test:gate:{uuid.uuid4().hex}"
    source = dataset(4, devices=1, ports=0, regions=0)
    source["site"][1]["note"] = f"wait:{gate}"  # the second subtree blocks; the shard holds all four
    handle = submit_sync(source="dataset", target="dataset", source_kwargs={"data": source}, shard_size=1000)
    poll(lambda: handle.progress()[0] == "sync" and handle.progress()[1] >= 2, what="the job to be syncing")
    handle.cancel("enough")
    redis_db.set(gate, 1)
    with pytest.raises(JobFailed, match="cancelled: enough") as caught:
        handle.wait(timeout=60)
    report = caught.value.report
    assert report["status"] == "failed" and report["error"] == "cancelled: enough"
    # The subtree being applied was finished; the two after it were not started.
    assert report["counts"] == {"create": {"success": 4}}
    assert report["shards"][0]["stopped"] is True
    handle.cancel()  # an ended job: nothing happens
    with pytest.raises(InvalidJob, match="unknown"):
        JobHandle("no-such-job").cancel()
    redis_db.delete(gate)


def test_cli_sync_status_and_cancel_against_the_workers(redis_db, capsys) -> None:
    from worker.cli.main import main

    data = json.dumps({"data": dataset(2, devices=1, ports=1, regions=1)})
    assert main(["sync", "--json", "--source", "dataset", "--target", "dataset", "--source-kwargs", data]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "success" and report["counts"] == {"create": {"success": 7}}
    assert {w.split("@")[0] for w in report["workers"]} <= {"alpha", "beta"}
    assert main(["status", report["job_id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["job_id"] == report["job_id"]
    assert main(["sync", "--no-wait", "--dry-run", "--source", "dataset", "--target", "dataset"]) == 0
    job_id = capsys.readouterr().out.strip()
    JobHandle(job_id).wait(timeout=60)
    assert main(["cancel", job_id]) == 0  # ended already: nothing to stop, no error
    assert f"job {job_id} had already ended (dry-run): nothing to cancel" in capsys.readouterr().out
    assert main(["cancel", "no-such-job"]) == 2


def test_the_diff_is_kept_with_the_job(redis_db) -> None:
    from ss_test_adapters import DatasetAdapter

    source_data, target_data = dataset(3), dataset(2, devices=3)
    target_data["site"][0]["region"] = "moved"
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": source_data, "name": "src"},
        target_kwargs={"data": target_data, "name": "dst"},
        dry_run=True,
    )
    report = handle.wait(timeout=60)
    source, target = DatasetAdapter(data=source_data, name="src"), DatasetAdapter(data=target_data, name="dst")
    source.load()
    target.load()
    local = target.diff_from(source)
    kept = handle.diff()
    assert kept is not None
    assert kept.summary() == local.summary() == report["summary"]
    assert kept.str() == local.str()
    assert kept.dict() == local.dict()
    assert JobHandle("no-such-job").diff() is None


def test_a_job_message_with_a_bad_spec_ends_failed_with_a_report(redis_db) -> None:
    # A message that did not come through submit_sync (another producer, an old release): the start step
    # refuses it, and the job ends like any failed job, with a report naming the problem.
    job_id = f"bad-spec-{uuid.uuid4().hex}"
    RedisJobState(job_id, redis_db).create({"source": "no-such-adapter", "target": "dataset"}, ttl=600)
    app.send_task("shardsync.job", task_id=job_id)
    with pytest.raises(JobFailed, match="invalid job: .*unknown adapter 'no-such-adapter'") as caught:
        JobHandle(job_id).wait(timeout=60)
    report = caught.value.report
    assert report is not None and report["status"] == "failed" and report["operations"] == 0
    holders = [redis_db.get(key) for key in redis_db.scan_iter(match=keys.lock_key("*"))]
    assert job_id.encode() not in holders  # it never took a lock


def test_a_job_past_its_deadline_fails_with_a_report(redis_db) -> None:
    gate, calls_key = f"test:gate:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    sites = [{"name": f"s-{i}", "note": ""} for i in range(6)]
    sites[2]["note"] = f"wait:{gate}"  # the job is still in this hook when its deadline passes
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": {"site": sites}},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls_key},
        shard_size=1000,
        deadline=2,
    )
    try:
        # The watchdog (every second on these workers) stops the job; nothing else would until the hook ends.
        poll(lambda: redis_db.get(keys.job_key(handle.id, "abort")), timeout=30, what="the deadline's stop")
        redis_db.set(gate, 1)
        with pytest.raises(JobFailed, match="deadline passed") as caught:
            handle.wait(timeout=60)
        report = caught.value.report
        assert report["status"] == "failed" and report["sync_complete"] is False
        created = [call[2] for call in read_calls(redis_db, calls_key)]
        assert created == ["s-0", "s-1", "s-2"]  # the shard stopped after the subtree in flight
    finally:
        redis_db.delete(gate, calls_key)


def test_adapter_secrets_stay_out_of_messages_events_logs_and_the_result_backend(redis_db, worker_logs) -> None:
    marker = f"s3cret-{uuid.uuid4().hex}"
    events: List[Dict[str, Any]] = []
    receivers: List[Any] = []

    def listen() -> None:  # what Flower sees: every task event, with the arguments of each task sent
        with app.connection_for_read() as connection:
            receiver = app.events.Receiver(connection, handlers={"*": events.append})
            receivers.append(receiver)
            receiver.capture(limit=None, timeout=None, wakeup=False)  # until should_stop (checked every second)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    poll(lambda: events, timeout=30, what="the first event (workers' heartbeats): the receiver is bound")
    try:
        handle = submit_sync(
            source="dataset",
            target="dataset",
            source_kwargs={"data": {"site": [{"name": "s-1"}]}, "api_token": marker},
            target_kwargs={"name": "dst-shown", "api_token": f"dst-{marker}"},
        )
        report = handle.wait(timeout=60)
        assert report["status"] == "success"
        poll(lambda: any(e.get("uuid") == handle.id and e["type"] == "task-sent" for e in events), what="events")
    finally:
        for receiver in receivers:
            receiver.should_stop = True
        listener.join(timeout=10)
    assert marker not in repr(events)
    assert marker not in repr(report) and marker not in repr(JobHandle(handle.id).report())
    # The report shows the kwargs, secrets redacted (named like one, or listed in the adapter's secret_kwargs).
    assert report["target_kwargs"] == {"name": "dst-shown", "api_token": "***"}
    assert report["source_kwargs"] == {"data": {"site": [{"name": "s-1"}]}, "api_token": "***"}
    for log in worker_logs.glob("*.log"):
        assert marker not in log.read_text(errors="replace"), log
    # result_extended keeps every task's arguments with its result: none of them carries the kwargs.
    metas = list(redis_db.scan_iter(match="celery-task-meta-*"))
    assert any(handle.id.encode() in key for key in metas)
    for key in metas:
        assert marker.encode() not in (redis_db.get(key) or b""), key


@pytest.mark.parametrize(("target", "reused"), [("dataset-attach-counted", True), ("dataset-attach-fresh", False)])
def test_a_worker_process_attaches_a_jobs_adapters_once_for_all_its_shards(redis_db, target, reused) -> None:
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    source = dataset(8, devices=1, ports=1, regions=0)
    handle = submit_sync(
        source="dataset",
        target=target,
        source_kwargs={"data": source},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls_key},
        shard_size=1,  # one shard per site: 8 shards over the two worker processes
    )
    report = handle.wait(timeout=90)
    assert report["status"] == "success" and len(report["shards"]) == 8
    attaches = [call for call in read_calls(redis_db, calls_key) if call[0] == "attach"]
    in_shards = [call for call in attaches if call[1] == "sync"]
    # The diff's ranges and the shards attach lazily: a process keeps that pair for all of them.
    lazy = [call for call in attaches if call[1] in ("diff", "sync")]
    per_process = {pid: sum(1 for call in lazy if call[4] == pid) for pid in {c[4] for c in lazy}}
    if reused:
        assert set(per_process.values()) == {1}, per_process  # one on_attach per process for the job
    else:
        assert len(in_shards) == 8  # opted out: one per shard
    local_state, _, _ = local_sync(source, {}, [], redis_db, REDIS_URL)
    from _compare import target_contents

    assert target_contents(handle.id, REDIS_URL) == local_state
    redis_db.delete(calls_key)


def test_only_changed_subtrees_are_kept_and_the_diff_is_still_whole(redis_db) -> None:
    from ss_test_adapters import DatasetAdapter

    def data(changed: bool) -> Dict[str, Any]:
        sites = []
        for number in range(60):
            role = "spine" if changed and number in (5, 40) else "leaf"
            sites.append({"name": f"s{number:02d}", "devices": [{"name": "d0", "role": role}, {"name": "d1"}]})
        if changed:
            sites.append({"name": "s-new"})
        return {"region": [{"name": "r0"}], "site": sites}

    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": data(True), "name": "src"},
        target_kwargs={"data": data(False), "name": "dst"},
        dry_run=True,
    )
    handle.wait(timeout=60)
    # Three subtrees changed (two sites' devices, one new site): only they are kept with the job.
    assert redis_db.hlen(keys.job_key(handle.id, "diff")) == 3
    source, target = DatasetAdapter(data=data(True), name="src"), DatasetAdapter(data=data(False), name="dst")
    source.load()
    target.load()
    local = target.diff_from(source)
    kept = handle.diff()
    assert kept.summary() == local.summary()  # 58 unchanged sites, 1 region, their devices: counted
    assert kept.summary()["no-change"] == local.summary()["no-change"] > 100
    assert kept.str() == local.str()
    assert kept.dict() == local.dict()


def test_a_job_drops_its_stores_at_its_end_unless_it_keeps_them(redis_db) -> None:
    source = {"site": [{"name": f"s{n}", "devices": [{"name": "d0"}]} for n in range(5)]}
    dropped = submit_sync(source="dataset", target="dataset", source_kwargs={"data": source}, keep_stores=False)
    report = dropped.wait(timeout=60)
    assert report["stores"] == {}
    for side in ("source", "target"):
        store_id = keys.job_store_id(dropped.id, side)
        assert redis_db.keys(f"{keys.namespace(store_id)}*") == []
    # What the job's history needs stays: report, diff, journal.
    assert dropped.diff().summary()["create"] == 10
    assert len(RedisJobState(dropped.id).journal()) == 10
    kept = submit_sync(source="dataset", target="dataset", source_kwargs={"data": source}, keep_stores=True)
    report = kept.wait(timeout=60)
    assert set(report["stores"]) == {"source", "target"}
    assert redis_db.hlen(keys.objects_key(report["stores"]["target"], "site")) == 5


def test_stores_are_dropped_by_default() -> None:
    from worker.settings import Settings

    assert JobSpec.from_data({"source": "dataset", "target": "dataset"}).keep_stores is None
    assert Settings.model_fields["keep_stores"].default is False
