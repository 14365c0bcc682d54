"""Bad and hostile input, on the real workers: refused with a clear error, nothing executed or half-applied.

- A pickle task message (protocol 2 on the jobs queue, protocol 1 on the shards queue), whose body would create
  a marker file if unpickled: the workers refuse the content type and discard the message.
- Bad specs through ``submit_sync`` / ``submit_spec`` and through the ``shardsync`` command line: refused
  before anything is enqueued, naming the problem.
- Job messages whose spec fails validation on the worker: the job fails with "invalid job: ...", holding no
  lock, loading nothing.
- Kwargs that pass validation but break the adapter's load: the job fails at the load, nothing applied.
- Hostile records in a job's stores (the target store before the diff, the kept diff before a shard): the job
  fails naming the record, nothing (more) applied, nothing unpickled.
- A 64 MiB string in kwargs: handled, no worker crash.
- Stray or malformed step messages.

Each bug these tests found in ``worker/`` was fixed; the tests keep them fixed.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import msgpack
import pytest
from _compare import REDIS_URL
from _workers import ROOT, WORKER_NAMES, poll, worker_env
from celery.result import AsyncResult
from kombu import Exchange, Producer
from redis import Redis
from ss_test_adapters import read_calls

from core import keys
from worker import InvalidJob, JobFailed, JobHandle, UnknownAdapter, app, submit_sync
from worker.api import submit_spec
from worker.job.spec import JobSpec
from worker.state import RedisJobState

pytestmark = pytest.mark.usefixtures("workers")

LONG_LIVED = {"spec", "info", "report", "times", "workers", "loads", "summary", "diff"}
"""Parts of a job's state a job that ended keeps with its report (``worker/state/redis.py``)."""


# ------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis SCAN/KEYS pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)


def job_parts(client: Redis, job_id: str) -> set:
    """The parts of a job's state that exist in Redis (``spec``, ``info``, ``report``...)."""
    prefix = keys.job_key(job_id, "")
    return {raw.decode()[len(prefix) :] for raw in client.scan_iter(match=glob_escape(prefix) + "*", count=1000)}


def store_keys(client: Redis, job_id: str) -> List[bytes]:
    """Keys of the job's side stores."""
    found: List[bytes] = []
    for side in ("source", "target"):
        found += list(client.scan_iter(match=glob_escape(keys.namespace(keys.job_store_id(job_id, side))) + "*"))
    return found


def quiet(client: Redis, job_id: str, timeout: float = 30) -> None:
    """Wait until no message of the job is queued or being run (a step's result and writes come before its ack)."""
    spellings = {job_id, json.dumps(job_id)[1:-1]}  # as it is, and JSON-escaped (in the messages' headers)
    poll(
        lambda: not any(spelling in queued_ids(client) for spelling in spellings),
        timeout=timeout,
        what=f"job {job_id!r}'s steps to be done",
    )


def forget_job(client: Redis, job_id: str) -> None:
    """Once no step of the job runs: delete every key of it (state, stores, Celery results, its lock's records)."""
    quiet(client, job_id)
    try:
        spec = RedisJobState(job_id, client).spec_data()
        target = JobSpec.from_data(
            {"source": "dataset", "target": spec["target"], "target_kwargs": spec.get("target_kwargs", {})}
        ).target_identity()
    except Exception:  # noqa: BLE001 - an invalid or unreadable spec never took a lock
        target = None
    doomed = [keys.job_key(job_id, part) for part in job_parts(client, job_id)]
    doomed += store_keys(client, job_id)
    doomed += list(client.scan_iter(match=f"celery-task-meta-{glob_escape(job_id)}*", count=1000))
    if target is not None:
        for key in (keys.lock_key(target), keys.lock_holder_key(target)):
            if client.get(key) in (job_id.encode(), b"~released"):
                doomed.append(key)
    if doomed:
        client.delete(*doomed)
    client.srem(keys.RUNNING_JOBS, job_id)


def lock_held_by(client: Redis, job_id: str) -> List[bytes]:
    """Lock keys whose value is this job (it holds the lock, or is the last job that took it)."""
    found = []
    for pattern in (keys.lock_key("*"), keys.lock_holder_key("*")):
        for raw in client.scan_iter(match=pattern, count=1000):
            if client.get(raw) == job_id.encode():
                found.append(raw)
    return found


def ended(client: Redis, job_id: str, timeout: float = 60) -> Dict[str, Any]:
    """Wait for the job's report."""
    poll(lambda: client.exists(keys.job_key(job_id, "report")), timeout=timeout, what=f"job {job_id} to end")
    return RedisJobState(job_id, client).report()


def settle(client: Redis, job_id: str, timeout: float = 30) -> None:
    """Wait until a job has ended, or its finish has failed (a job that could never end)."""
    finish = AsyncResult(f"{job_id}.finish", app=app)
    poll(
        lambda: client.exists(keys.job_key(job_id, "report")) or finish.state == "FAILURE",
        timeout=timeout,
        what=f"job {job_id} to end, or its finish to fail",
    )


def failure_of(job_id: str, timeout: float = 60) -> JobFailed:
    """Wait for the job to end, and return the JobFailed it ended with (fails if it succeeded)."""
    try:
        report = JobHandle(job_id).wait(timeout=timeout)
    except JobFailed as failure:
        return failure
    raise AssertionError(f"job {job_id} succeeded: {report}")


def queued_ids(client: Redis) -> str:
    """Everything in the queues and the broker's unacknowledged messages, as one string (to look for ids)."""
    parts = []
    for queue in ("shardsync.jobs", "shardsync.shards"):
        parts += [raw.decode(errors="replace") for raw in client.lrange(queue, 0, -1)]
    parts += [raw.decode(errors="replace") for raw in client.hvals("unacked")]
    return "\n".join(parts)


def start_messages(client: Redis) -> set:
    """Job start messages (``shardsync.job``) in the queues or being run: what a submission adds."""
    messages = [raw.decode(errors="replace") for raw in client.lrange("shardsync.jobs", 0, -1)]
    messages += [raw.decode(errors="replace") for raw in client.hvals("unacked")]
    return {message for message in messages if '"task": "shardsync.job"' in message}


def logs_text(log_dir: Path) -> str:
    return "\n".join(path.read_text(errors="replace") for path in sorted(log_dir.glob("*.log")))


def workers_answer() -> bool:
    replies = app.control.ping(timeout=1.0) or []
    return set(WORKER_NAMES) <= {next(iter(reply)).split("@")[0] for reply in replies}


class _Marker:
    """Unpickled, creates the file at ``path`` (pickle calls ``open(path, "w")``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def pickled_marker(path: Path) -> bytes:
    return pickle.dumps(_Marker(str(path)), protocol=2)


def base_spec(**changes: Any) -> Dict[str, Any]:
    spec: Dict[str, Any] = {
        "source": "dataset",
        "target": "dataset",
        "source_kwargs": {"data": {"site": [{"name": "s-0"}]}, "record_url": REDIS_URL},
        "target_kwargs": {"record_url": REDIS_URL},
    }
    spec.update(changes)
    return spec


# ------------------------------------------------------------------------------------------------------
# pickle
# ------------------------------------------------------------------------------------------------------


def test_pickle_task_messages_are_refused_and_never_executed(redis_db: Redis, worker_logs: Path, tmp_path) -> None:
    markers = {version: tmp_path / f"unpickled-v{version}-{uuid.uuid4().hex}" for version in (1, 2)}
    task_ids = {version: f"pickle-v{version}-{uuid.uuid4().hex}" for version in (1, 2)}
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    with app.connection_for_write() as connection:
        producer = Producer(connection.default_channel)
        # Protocol 2: the task name in the headers, the body (args, kwargs, embed), pickled.
        task_id = task_ids[2]
        producer.publish(
            pickle.dumps(((_Marker(str(markers[2])),), {}, embed), protocol=2),
            exchange=Exchange("shardsync.jobs", type="direct"),
            routing_key="shardsync.jobs",
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={
                "lang": "py",
                "task": "shardsync.job",
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "group": None,
                "argsrepr": "()",
                "kwargsrepr": "{}",
                "origin": "test",
                "retries": 0,
                "eta": None,
                "expires": None,
                "timelimit": [None, None],
                "shadow": None,
                "ignore_result": False,
            },
            properties={"correlation_id": task_id, "reply_to": ""},
            declare=[],
        )
        # Protocol 1: everything in the (pickled) body, no task header.
        task_id = task_ids[1]
        producer.publish(
            pickle.dumps(
                {"task": "shardsync.shard", "id": task_id, "args": (_Marker(str(markers[1])), 0), "kwargs": {}},
                protocol=2,
            ),
            exchange=Exchange("shardsync.shards", type="direct"),
            routing_key="shardsync.shards",
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={},
            properties={"correlation_id": task_id, "reply_to": ""},
            declare=[],
        )

    def refused() -> bool:
        text = logs_text(worker_logs)
        return all(str(marker) in text for marker in markers.values())

    poll(refused, timeout=30, what="the workers to log both refused messages")
    text = logs_text(worker_logs)
    assert "Refusing to deserialize untrusted content of type pickle (application/x-python-serialize)" in text
    assert "Received invalid task message" in text and "The message has been ignored and discarded" in text
    assert "Can't decode message body: ContentDisallowed" in text  # protocol 1
    for version, marker in markers.items():
        assert not marker.exists(), f"a protocol {version} pickle was unpickled"
        task_id = task_ids[version]
        assert job_parts(redis_db, task_id) == set(), "a refused message made job state"
        assert not redis_db.exists(f"celery-task-meta-{task_id}"), "a refused message has a task result"
        assert task_id not in queued_ids(redis_db), "a refused message was kept or re-queued"
    assert workers_answer()


# ------------------------------------------------------------------------------------------------------
# bad specs through the producer API
# ------------------------------------------------------------------------------------------------------


def _deep(depth: int) -> List[Any]:
    value: List[Any] = []
    for _ in range(depth):
        value = [value]
    return value


BAD_SUBMITS = [
    # (case, submit_sync arguments over a valid dry run, error type, pattern the message must match)
    (
        "unknown-source-adapter",
        {"source": "nautobot"},
        UnknownAdapter,
        r"unknown adapter 'nautobot'; registered adapters: .*dataset",
    ),
    ("unknown-target-adapter", {"target": "no-such"}, UnknownAdapter, r"unknown adapter 'no-such'"),
    (
        "adapter-name-not-a-string",
        {"source": 42},
        InvalidJob,
        r"source must be a registered adapter name or an Adapter, not 42",
    ),
    (
        "adapter-name-none",
        {"target": None},
        InvalidJob,
        r"target must be a registered adapter name or an Adapter, not None",
    ),
    ("unknown-flag", {"flags": ["continue"]}, InvalidJob, r"unknown flag 'continue'; known flags: continue_on_failure"),
    ("flag-not-a-string", {"flags": [1]}, InvalidJob, r"flags\.0: Input should be a valid string"),
    ("shard-size-0", {"shard_size": 0}, InvalidJob, r"shard_size: Input should be greater than or equal to 1"),
    ("shard-size-negative", {"shard_size": -1}, InvalidJob, r"shard_size: Input should be greater than or equal to 1"),
    (
        "shard-size-huge",
        {"shard_size": 10**12},
        InvalidJob,
        r"shard_size: Input should be less than or equal to 10000000",
    ),
    (
        "shard-size-beyond-64-bits",
        {"shard_size": 2**70},
        InvalidJob,
        r"shard_size: Input should be less than or equal to",
    ),
    (
        "shard-size-fraction",
        {"shard_size": 2.5},
        InvalidJob,
        r"shard_size: Input should be a valid integer, got a number with a fractional part",
    ),
    ("shard-size-word", {"shard_size": "ten"}, InvalidJob, r"shard_size: Input should be a valid integer"),
    ("dry-run-not-a-bool", {"dry_run": "maybe"}, InvalidJob, r"dry_run: Input should be a valid boolean"),
    ("barrier-not-a-bool", {"top_level_barrier": 2}, InvalidJob, r"top_level_barrier: Input should be a valid boolean"),
    ("deadline-negative", {"deadline": -1}, InvalidJob, r"deadline: Input should be greater than or equal to 0"),
    ("deadline-word", {"deadline": "tomorrow"}, InvalidJob, r"deadline: Input should be a valid integer"),
    (
        "kwargs-object",
        {"source_kwargs": {"data": object()}},
        InvalidJob,
        r"source_kwargs must be plain data .*can not serialize 'object' object",
    ),
    ("kwargs-set", {"target_kwargs": {"data": {1, 2}}}, InvalidJob, r"target_kwargs must be plain data .*'set'"),
    (
        "kwargs-int-beyond-64-bits",
        {"source_kwargs": {"data": 2**70}},
        InvalidJob,
        r"source_kwargs must be plain data .*out of range",
    ),
    (
        "kwargs-nested-too-deep",
        {"source_kwargs": {"data": _deep(3000)}},
        InvalidJob,
        r"source_kwargs must be plain data .*recursion limit",
    ),
    (
        "kwargs-unknown-argument",
        {"target_kwargs": {"colour": "red"}},
        InvalidJob,
        r"target_kwargs do not fit adapter 'dataset' \(DatasetAdapter\): got an unexpected keyword argument 'colour'",
    ),
    (
        "kwargs-unknown-argument-source",
        {"source_kwargs": {"data": {}, "region": "emea"}},
        InvalidJob,
        r"source_kwargs do not fit adapter 'dataset'.*'region'",
    ),
    ("job-id-empty", {"job_id": ""}, InvalidJob, r"job_id must be 1 to 100 letters, digits, '_', '\.' or '-'"),
    ("job-id-too-long", {"job_id": "x" * 101}, InvalidJob, r"job_id must be 1 to 100 letters"),
    ("job-id-space", {"job_id": "a b"}, InvalidJob, r"job_id must be 1 to 100 letters"),
    ("job-id-star", {"job_id": "a*"}, InvalidJob, r"job_id must be 1 to 100 letters"),
    ("job-id-colon", {"job_id": "a:b"}, InvalidJob, r"job_id must be 1 to 100 letters"),
    ("job-id-slash", {"job_id": "a/b"}, InvalidJob, r"job_id must be 1 to 100 letters"),
    ("job-id-not-ascii", {"job_id": "jöb"}, InvalidJob, r"job_id must be 1 to 100 letters"),
    ("job-id-not-a-string", {"job_id": 123}, InvalidJob, r"job_id: Input should be a valid string"),
]

BUGGY_SUBMITS = [
    pytest.param(
        "kwargs-typo-through-var-kwargs",
        {"source": "demo", "source_kwargs": {"sites": 1, "seeds": 2}},
        InvalidJob,
        r"source_kwargs do not fit adapter 'demo'.*'seeds'",
    ),
    pytest.param(
        "job-id-trailing-newline",
        {"job_id": "ok-id\n"},
        InvalidJob,
        r"job_id must be 1 to 100 letters",
    ),
    pytest.param(
        "kwargs-tuple-key",
        {"target_kwargs": {"data": {(1, 2): "x"}, "record_url": REDIS_URL}},
        InvalidJob,
        r"target_kwargs must be plain data",
    ),
    pytest.param(
        "kwargs-not-a-mapping",
        {"source_kwargs": ["data", "name"]},
        InvalidJob,
        r"source_kwargs",
    ),
    pytest.param(
        "flags-none",
        {"flags": None},
        InvalidJob,
        r"flags",
    ),
    pytest.param(
        "flags-a-string",
        {"flags": "continue_on_failure"},
        InvalidJob,
        r"flags.*list|list of flag names",
    ),
]


@pytest.mark.parametrize(("case", "changes", "error", "pattern"), [*BAD_SUBMITS, *BUGGY_SUBMITS])
def test_a_bad_spec_is_refused_before_anything_is_enqueued(redis_db: Redis, case, changes, error, pattern) -> None:
    job_id = changes.get("job_id", f"bad-{case}-{uuid.uuid4().hex[:8]}")
    arguments: Dict[str, Any] = {"source": "dataset", "target": "dataset", "dry_run": True, "job_id": job_id}
    arguments.update(changes)
    before = start_messages(redis_db)
    handle: Optional[JobHandle] = None
    try:
        with pytest.raises(error, match=pattern):
            handle = submit_sync(**arguments)
        if isinstance(job_id, str):
            assert job_parts(redis_db, job_id) == set(), "a refused job left state"
        assert start_messages(redis_db) - before == set(), "a job was enqueued"
    finally:
        if handle is not None:  # accepted (a bug): let it end, then forget it
            settle(redis_db, handle.id)
            forget_job(redis_db, handle.id)


@pytest.mark.parametrize(
    ("case", "data", "pattern"),
    [
        ("not-a-mapping", ["dataset", "dataset"], r"a job spec must be a mapping, not list"),
        (
            "unknown-field",
            {"source": "dataset", "target": "dataset", "colour": "red"},
            r"colour: Extra inputs are not permitted",
        ),
        ("missing-target", {"source": "dataset"}, r"target: Field required"),
        (
            "several-problems",
            {"source": "dataset", "target": "dataset", "shard_size": 0, "flags": ["nope"]},
            r"flags: .*unknown flag 'nope'.*; shard_size: |shard_size: .*; flags: .*unknown flag 'nope'",
        ),
    ],
)
def test_a_malformed_spec_is_refused_by_submit_spec(redis_db: Redis, case, data, pattern) -> None:
    before = start_messages(redis_db)
    with pytest.raises(InvalidJob, match=pattern):
        submit_spec(JobSpec.from_data(data))
    assert start_messages(redis_db) - before == set(), "a job was enqueued"


# ------------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------------

CLI_CASES = [
    # (case, arguments, pattern stderr must match)
    (
        "sync-unknown-adapter",
        ["sync", "--no-wait", "--source", "nope", "--target", "dataset"],
        r"unknown adapter 'nope'",
    ),
    (
        "sync-kwargs-not-json",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--source-kwargs", "{not json"],
        r"--source-kwargs.*not valid JSON",
    ),
    (
        "sync-kwargs-not-an-object",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--target-kwargs", "[1, 2]"],
        r"--target-kwargs.*must be a JSON object",
    ),
    (
        "sync-kwargs-do-not-fit",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--target-kwargs", '{"colour": "red"}'],
        r"unexpected keyword argument 'colour'",
    ),
    (
        "sync-unknown-flag",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--flag", "nope"],
        r"unknown flag 'nope'",
    ),
    (
        "sync-shard-size-0",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--shard-size", "0"],
        r"--shard-size.*must be 1 or more",
    ),
    (
        "sync-shard-size-negative",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--shard-size=-1"],
        r"--shard-size.*must be 1 or more",
    ),
    (
        "sync-shard-size-huge",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--shard-size", "99999999999"],
        r"shard_size: Input should be less than or equal to 10000000",
    ),
    (
        "sync-shard-size-word",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--shard-size", "ten"],
        r"--shard-size.*'ten' is not a whole number",
    ),
    (
        "sync-deadline-negative",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--deadline=-5"],
        r"deadline: Input should be greater than or equal to 0",
    ),
    (
        "sync-unknown-option",
        ["sync", "--no-wait", "--source", "dataset", "--target", "dataset", "--colour", "red"],
        r"No such option '--colour'",
    ),
    ("status-space", ["status", "a b"], r"job a b is unknown|job_id|invalid"),
    ("status-star", ["status", "a*"], r"job a\* is unknown|job_id|invalid"),
    ("status-colon", ["status", "a:b"], r"job a:b is unknown|job_id|invalid"),
    ("status-slash", ["status", "../a/b"], r"job \.\./a/b is unknown|job_id|invalid"),
    ("status-too-long", ["status", "x" * 101], r"is unknown|job_id|invalid"),
    ("cancel-empty", ["cancel", ""], r"job  is unknown|job_id|invalid"),
    ("cancel-star", ["cancel", "*"], r"job \* is unknown|job_id|invalid"),
    ("cancel-colon", ["cancel", "a:b"], r"job a:b is unknown|job_id|invalid"),
    ("cancel-slash", ["cancel", "a/b"], r"job a/b is unknown|job_id|invalid"),
    ("cancel-too-long", ["cancel", "y" * 101], r"is unknown|job_id|invalid"),
    pytest.param(
        "status-empty",
        ["status", ""],
        r"job_id|invalid|unknown",
    ),
]


def _run_cli(arguments: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *arguments],
        cwd=str(ROOT),
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def cli_results(redis_db: Redis) -> Iterable[Dict[str, Any]]:
    """Every CLI case, run at once in parallel subprocesses (each one is a real `python -m worker.cli`)."""
    cases = [case.values if hasattr(case, "values") else case for case in CLI_CASES]
    specs_before = set(redis_db.scan_iter(match=keys.job_key("*", "spec"), count=1000))
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        results = dict(zip([case[0] for case in cases], pool.map(_run_cli, [case[1] for case in cases]), strict=True))
    results["_new_specs"] = set(redis_db.scan_iter(match=keys.job_key("*", "spec"), count=1000)) - specs_before
    yield results


@pytest.mark.parametrize(("case", "arguments", "pattern"), CLI_CASES)
def test_the_cli_refuses_bad_input_with_a_clear_message(cli_results, case, arguments, pattern) -> None:
    result = cli_results[case]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)  # a usage error
    assert re.search(pattern, result.stderr), result.stderr
    assert not cli_results["_new_specs"], "a refused command submitted a job"


# ------------------------------------------------------------------------------------------------------
# job messages whose spec fails on the worker
# ------------------------------------------------------------------------------------------------------

INVALID_IN_MESSAGE = [
    (
        "unknown-field",
        base_spec(colour="red"),
        r"invalid job: InvalidJob: invalid job spec: colour: Extra inputs are not permitted",
    ),
    (
        "unknown-target",
        base_spec(target="no-such-adapter"),
        r"invalid job: UnknownAdapter: unknown adapter 'no-such-adapter'",
    ),
    ("shard-size-0", base_spec(shard_size=0), r"invalid job: .*shard_size: Input should be greater than or equal to 1"),
    (
        "shard-size-huge",
        base_spec(shard_size=2**40),
        r"invalid job: .*shard_size: Input should be less than or equal to 10000000",
    ),
    ("unknown-flag", base_spec(flags=["sometimes"]), r"invalid job: .*unknown flag 'sometimes'"),
    (
        "kwargs-do-not-fit",
        base_spec(target_kwargs={"record_url": REDIS_URL, "colour": 1}),
        r"invalid job: .*target_kwargs do not fit adapter 'dataset'.*'colour'",
    ),
    (
        "kwargs-not-a-mapping",
        base_spec(source_kwargs="abc"),
        r"invalid job: .*source_kwargs: Input should be a valid dictionary",
    ),
    ("dry-run-not-a-bool", base_spec(dry_run="perhaps"), r"invalid job: .*dry_run: Input should be a valid boolean"),
    ("spec-job-id-bad", base_spec(job_id="a b"), r"invalid job: .*job_id must be 1 to 100 letters"),
]


def test_job_messages_with_invalid_specs_fail_on_the_worker_holding_nothing(redis_db: Redis) -> None:
    run = uuid.uuid4().hex[:8]
    calls = f"test:hostile:calls:{run}"
    jobs = {}
    for case, data, pattern in INVALID_IN_MESSAGE:
        job_id = f"invalid-{case}-{run}"
        if isinstance(data, dict) and isinstance(data.get("target_kwargs"), dict):
            data = {**data, "target_kwargs": {**data["target_kwargs"], "calls_key": calls}}
        RedisJobState(job_id, redis_db).create(data, ttl=600)
        app.send_task("shardsync.job", task_id=job_id)
        jobs[job_id] = pattern
    try:
        for job_id, pattern in jobs.items():
            failure = failure_of(job_id)
            assert re.search(pattern, str(failure)), f"{job_id}: {failure}"
            report = failure.report
            assert report["status"] == "failed" and re.search(pattern, report["error"]), report
            assert report["operations"] == 0 and report["shards"] == [] and report["sync_complete"] is False
            assert "lock" not in RedisJobState(job_id, redis_db).info(), "the lock was asked for"
            assert lock_held_by(redis_db, job_id) == []
            assert store_keys(redis_db, job_id) == [], "a side was loaded"
            assert job_parts(redis_db, job_id) <= LONG_LIVED, job_parts(redis_db, job_id) - LONG_LIVED
            assert not redis_db.sismember(keys.RUNNING_JOBS, job_id)
        assert read_calls(redis_db, calls) == []
    finally:
        for job_id in jobs:
            forget_job(redis_db, job_id)
        redis_db.delete(calls)


def test_a_job_message_with_an_invalid_job_id_fails_as_an_invalid_job(redis_db: Redis) -> None:
    job_id = f"bad id {uuid.uuid4().hex[:8]}"
    RedisJobState(job_id, redis_db).create(base_spec(), ttl=600)
    app.send_task("shardsync.job", task_id=job_id)
    try:
        failure = failure_of(job_id)
        assert "invalid job:" in str(failure) and "job_id" in str(failure), failure
        assert "lock" not in RedisJobState(job_id, redis_db).info(), "a job with an invalid id asked for the lock"
    finally:
        ended(redis_db, job_id)
        forget_job(redis_db, job_id)


def test_a_job_id_with_glob_characters_touches_no_other_job(redis_db: Redis) -> None:
    run = uuid.uuid4().hex[:8]
    gate, calls = f"test:hostile:gate:{run}", f"test:hostile:calls:{run}"
    sites = [{"name": "s-0"}, {"name": "s-1", "note": f"wait:{gate}"}]  # shard 1 blocks in its hook
    victim = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": {"site": sites}, "record_url": REDIS_URL},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls, "name": f"victim-{run}"},
        shard_size=1,
    )
    claim, wave = keys.job_key(victim.id, "claim:shard-1"), keys.job_key(victim.id, "wave:0")
    try:
        poll(lambda: redis_db.exists(claim) and redis_db.scard(wave) == 1, timeout=30, what="shard 0 done, 1 running")
        RedisJobState("*", redis_db).create({"source": "no-such-adapter", "target": "dataset"}, ttl=600)
        app.send_task("shardsync.job", task_id="*")
        with pytest.raises(JobFailed, match="invalid job: .*unknown adapter 'no-such-adapter'"):
            JobHandle("*").wait(timeout=30)
        assert redis_db.exists(claim), "job '*' deleted another job's running claim"
        assert redis_db.scard(wave) == 1, "job '*' deleted another job's wave set"
    finally:
        redis_db.set(gate, 1)
        victim.cancel("test over")
        ended(redis_db, victim.id)
        for job_id in ("*", victim.id):
            forget_job(redis_db, job_id)
        redis_db.delete(gate, calls)


# ------------------------------------------------------------------------------------------------------
# kwargs that validate, but break the adapter
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "data", "pattern"),
    [
        (
            "field-of-wrong-type",
            {"site": [{"name": 5}]},
            r"load-source failed: ValidationError: .*name\s+Input should be a valid string",
        ),
        (
            "sites-not-a-list",
            {"site": "abc"},
            r"load-source failed: AttributeError: 'str' object has no attribute 'items'",
        ),
    ],
)
def test_kwargs_that_break_the_load_fail_the_job_at_the_load(redis_db: Redis, case, data, pattern) -> None:
    calls = f"test:hostile:calls:{uuid.uuid4().hex}"
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": data, "record_url": REDIS_URL},
        target_kwargs={"data": {"site": [{"name": "s-9"}]}, "record_url": REDIS_URL, "calls_key": calls},
    )
    try:
        failure = failure_of(handle.id)
        assert re.search(pattern, str(failure), re.S), failure
        report = failure.report
        assert report["operations"] == 0 and report["sync_complete"] is False and report["summary"] is None
        assert read_calls(redis_db, calls) == []
        assert lock_held_by(redis_db, handle.id) == []
    finally:
        forget_job(redis_db, handle.id)
        redis_db.delete(calls)


# ------------------------------------------------------------------------------------------------------
# hostile records in a job's stores
# ------------------------------------------------------------------------------------------------------

STORE_CORRUPTIONS = [
    # (case, what to write at the target store's site "s-0", pattern of the job's error)
    ("not-msgpack", lambda marker: b"\xc1\xc1 not msgpack", r"is not a shardsync record for model Site"),
    ("a-pickle", pickled_marker, r"is not a shardsync record for model Site"),
    ("msgpack-extension", lambda marker: msgpack.packb(msgpack.ExtType(1, b"x")), r"extension type 1 is not allowed"),
    ("wrong-shape", lambda marker: msgpack.packb({"name": "s-0"}), r"expected \[version 1, fields, fields_set\]"),
    (
        "invalid-fields",
        lambda marker: msgpack.packb([1, {"name": "s-0", "region": ["a", "list"]}, ["name", "region"]]),
        r"does not validate as model Site",
    ),
    (
        "another-object",
        lambda marker: msgpack.packb([1, {"name": "s-evil", "region": "", "note": "", "devices": []}, ["name"]]),
        r"is a Site with unique id 's-evil', not 's-0'",
    ),
]


@pytest.mark.parametrize(("case", "payload", "pattern"), STORE_CORRUPTIONS)
def test_a_hostile_record_in_a_loaded_store_fails_the_diff_and_applies_nothing(
    redis_db: Redis, tmp_path, case, payload, pattern
) -> None:
    run = uuid.uuid4().hex[:8]
    gate, calls, marker = f"test:hostile:gate:{run}", f"test:hostile:calls:{run}", tmp_path / f"unpickled-{run}"
    source = {"site": [{"name": "s-0", "region": "new"}, {"name": "s-1"}]}
    handle = submit_sync(
        source="dataset-gated",  # its on_attach (in the diff, before any read) waits for the gate
        target="dataset",
        source_kwargs={"data": source, "record_url": REDIS_URL, "attach_gate": gate},
        target_kwargs={
            "data": {"site": [{"name": "s-0", "region": "old"}]},
            "record_url": REDIS_URL,
            "calls_key": calls,
        },
    )
    objects = keys.objects_key(keys.job_store_id(handle.id, "target"), "site")
    try:
        poll(lambda: redis_db.exists(f"{gate}:waiting"), timeout=30, what="the diff to wait at the gate")
        assert redis_db.hexists(objects, "s-0"), "the target was not loaded"
        redis_db.hset(objects, "s-0", payload(marker))
        redis_db.set(gate, 1)
        failure = failure_of(handle.id)
        assert re.search(
            rf"diff failed: ObjectStoreException: Stored value at {re.escape(objects)} field 's-0' ", str(failure)
        )
        assert re.search(pattern, str(failure)), failure
        report = failure.report
        assert report["status"] == "failed" and report["operations"] == 0 and report["shards"] == []
        assert report["sync_complete"] is False
        assert read_calls(redis_db, calls) == [], "a hook ran"
        assert not marker.exists(), "a stored pickle was unpickled"
        assert lock_held_by(redis_db, handle.id) == []
    finally:
        redis_db.set(gate, 1)
        ended(redis_db, handle.id)
        forget_job(redis_db, handle.id)
        redis_db.delete(gate, f"{gate}:waiting", calls)


DIFF_CORRUPTIONS = [
    ("a-pickle", pickled_marker, r"shard \d+ failed: ExtraData"),
    (
        "wrong-shape",
        lambda marker: msgpack.packb([1, 2, 3]),
        r"shard \d+ failed: ValueError: malformed diff record: expected \[type, name, keys, source, dest, children\]",
    ),
    (
        "attributes-not-a-map",
        lambda marker: msgpack.packb(["site", "s-0", {"name": "s-0"}, ["x"], None, []]),
        r"malformed diff record: attributes must be a map",
    ),
]


@pytest.mark.parametrize(("case", "payload", "pattern"), DIFF_CORRUPTIONS)
def test_a_hostile_record_in_the_kept_diff_fails_its_shard_and_nothing_after_it_runs(
    redis_db: Redis, tmp_path, case, payload, pattern
) -> None:
    run = uuid.uuid4().hex[:8]
    gate, calls, marker = f"test:hostile:gate:{run}", f"test:hostile:calls:{run}", tmp_path / f"unpickled-{run}"
    source = {
        "region": [{"name": "r-0", "note": f"wait:{gate}"}],  # wave 0 holds in its hook
        "site": [{"name": "s-0", "devices": [{"name": "d0"}]}],  # wave 1 reads the record we change
    }
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": source, "record_url": REDIS_URL},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls},
    )
    try:
        poll(lambda: read_calls(redis_db, calls), timeout=30, what="the region's create to be running")
        plan = RedisJobState(handle.id, redis_db).plan()
        site_shard = next(shard for shard in plan["shards"] if shard["type"] == "site")
        redis_db.hset(keys.job_key(handle.id, "diff"), str(site_shard["roots"][0]), payload(marker))
        redis_db.set(gate, 1)
        failure = failure_of(handle.id)
        assert re.search(pattern, str(failure)), failure
        report = failure.report
        assert report["status"] == "failed" and report["sync_complete"] is False
        assert report["counts"] == {"create": {"success": 1}}, report["counts"]  # the region only
        assert [call[:3] for call in read_calls(redis_db, calls)] == [["create", "region", "r-0"]]
        assert not marker.exists(), "a kept diff record was unpickled"
        assert lock_held_by(redis_db, handle.id) == []
    finally:
        redis_db.set(gate, 1)
        ended(redis_db, handle.id)
        forget_job(redis_db, handle.id)
        redis_db.delete(gate, calls)


UNREADABLE_SPECS = [
    # (case, what the spec key holds)
    ("not-a-mapping", msgpack.packb(["dataset", "dataset"])),
    ("map-keyed-by-an-array", msgpack.packb(base_spec(target_kwargs={"data": {(1, 2): "x"}}))),
    ("not-msgpack", b"\xc1 not msgpack"),
]


@pytest.mark.parametrize(("case", "raw"), UNREADABLE_SPECS)
def test_a_job_whose_stored_spec_is_unreadable_still_ends_as_an_invalid_job(redis_db: Redis, case, raw) -> None:
    job_id = f"unreadable-{case}-{uuid.uuid4().hex[:8]}"
    RedisJobState(job_id, redis_db).create({}, ttl=600)
    redis_db.set(keys.job_key(job_id, "spec"), raw, ex=600)
    app.send_task("shardsync.job", task_id=job_id)
    try:
        settle(redis_db, job_id)
        finish = AsyncResult(f"{job_id}.finish", app=app)
        assert finish.state != "FAILURE", f"the finish raised {finish.result!r}: the job never ends"
        with pytest.raises(JobFailed, match="invalid job: "):
            JobHandle(job_id).wait(timeout=10)
    finally:
        forget_job(redis_db, job_id)


# ------------------------------------------------------------------------------------------------------
# oversized input
# ------------------------------------------------------------------------------------------------------


def test_a_64_mib_string_in_kwargs_is_handled_without_crashing_a_worker(redis_db: Redis, worker_logs: Path) -> None:
    big = "x" * (64 << 20)
    calls = f"test:hostile:calls:{uuid.uuid4().hex}"
    before = logs_text(worker_logs)
    handle = None
    try:
        try:
            handle = submit_sync(
                source="dataset",
                target="dataset",
                source_kwargs={"data": {"site": [{"name": "s-0"}]}, "name": big, "record_url": REDIS_URL},
                target_kwargs={"record_url": REDIS_URL, "calls_key": calls},
            )
        except InvalidJob as refused:  # also acceptable: refused at once, naming the size
            assert re.search(r"too (big|large)|size|MiB|bytes", str(refused)), refused
            return
        del big
        try:
            report = handle.wait(timeout=60)
            assert report["status"] == "success" and report["counts"] == {"create": {"success": 1}}
            assert [call[:3] for call in read_calls(redis_db, calls)][:1] == [["create", "site", "s-0"]]
        except JobFailed as failure:  # also acceptable: a clear error naming the size
            assert re.search(r"too (big|large)|size|MiB|bytes", str(failure)), failure
        assert len(repr(JobHandle(handle.id).report())) < 1 << 20, "the report carries the kwargs"
        assert workers_answer()
        new = logs_text(worker_logs)[len(before) :]
        assert "WorkerLostError" not in new and "MemoryError" not in new, new[-3000:]
        small = submit_sync(source="dataset", target="dataset", target_kwargs={"record_url": REDIS_URL})
        assert small.wait(timeout=30)["status"] == "success"
        forget_job(redis_db, small.id)
    finally:
        if handle is not None:
            ended(redis_db, handle.id)
            forget_job(redis_db, handle.id)
        redis_db.delete(calls)


# ------------------------------------------------------------------------------------------------------
# stray and malformed step messages
# ------------------------------------------------------------------------------------------------------


def test_stray_step_messages_for_an_unknown_job_run_nothing_and_leave_nothing_for_ever(redis_db: Redis) -> None:
    run = uuid.uuid4().hex[:8]
    sent = {
        f"ghost-load-{run}": ("shardsync.load", ("source",)),
        f"ghost-diff-{run}": ("shardsync.diff", ()),
        f"ghost-shard-{run}": ("shardsync.shard", (0,)),
        f"ghost-finish-{run}": ("shardsync.finish", ()),
    }
    results = {}
    for job_id, (task, args) in sent.items():
        results[job_id] = app.send_task(task, args=(job_id, *args), task_id=f"{job_id}.step")
    try:
        poll(lambda: all(result.ready() for result in results.values()), timeout=30, what="the stray steps")
        for job_id in sent:
            assert store_keys(redis_db, job_id) == [], "a stray step loaded a store"
            report = RedisJobState(job_id, redis_db).report()
            if report is not None:
                assert report["operations"] == 0 and "unknown" in str(report["error"])
            for part in job_parts(redis_db, job_id):
                ttl = redis_db.ttl(keys.job_key(job_id, part))
                assert ttl > 0, f"{job_id}: {part} never expires"
    finally:
        for job_id in sent:
            forget_job(redis_db, job_id)


def test_a_shard_message_with_a_negative_index_does_not_run_a_shard_twice(redis_db: Redis) -> None:
    run = uuid.uuid4().hex[:8]
    gate, calls = f"test:hostile:gate:{run}", f"test:hostile:calls:{run}"
    sites = [{"name": "s-0"}, {"name": "s-1", "note": f"wait:{gate}"}]
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": {"site": sites}, "record_url": REDIS_URL},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls, "name": f"neg-{run}"},
        shard_size=1,
    )
    try:
        poll(lambda: len(read_calls(redis_db, calls)) == 2, timeout=30, what="both shards to be in their hooks")
        stray = app.send_task("shardsync.shard", args=(handle.id, -1), task_id=f"{handle.id}.stray")
        poll(lambda: stray.state != "PENDING" or len(read_calls(redis_db, calls)) > 2, timeout=30, what="the stray")
        redis_db.set(gate, 1)
        report = handle.wait(timeout=30)
        poll(lambda: stray.ready(), timeout=30, what="the stray shard to end")
        creates = [call[2] for call in read_calls(redis_db, calls) if call[0] == "create"]
        assert sorted(creates) == ["s-0", "s-1"], f"hooks ran twice: {creates}"
        assert sorted(shard["index"] for shard in report["shards"]) == [0, 1]
    finally:
        redis_db.set(gate, 1)
        ended(redis_db, handle.id)
        forget_job(redis_db, handle.id)
        redis_db.delete(gate, calls)
