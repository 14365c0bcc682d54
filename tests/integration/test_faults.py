"""Faults of a running job, on real ``celery -A worker worker`` processes and the real Redis.

What the failure model (ARCHITECTURE.md, README "Crashes" and "Every job ends") promises, one fault a test:
a load that fails while the other side still loads, a load delivered twice at once, a shard that kills its
worker every time it runs, and the target lock lost while a shard is in a hook.

Hooks and loads are held in place with the ``dataset`` adapter's steering (``wait:<key>`` gates the test
opens); every wait for the workers polls with a deadline. Each test deletes the Redis keys its job left
(after the job's last message is gone from the broker) and stops the workers it started.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from typing import Any, Callable, Dict, Iterator, List

import msgpack
import pytest
from _compare import REDIS_URL, assert_same_calls, local_sync, target_contents
from _workers import ROOT, poll, stop_workers, wait_for_workers, worker_env
from celery.result import AsyncResult
from redis import Redis
from ss_test_adapters import read_calls

from core import keys
from worker import JobFailed, JobHandle, app, submit_sync
from worker.job.spec import JobSpec
from worker.state import RedisJobState

BROKER_QUEUES = ("shardsync.jobs", "shardsync.shards", "faults.jobs", "faults.shards")


# ----------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------


class Cleanup:
    """What a test leaves in Redis: its jobs (state, stores, Celery results, lock) and its own keys."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.jobs: List[str] = []
        self.keys: List[str] = []
        self.closers: List[Callable[[], Any]] = []

    def key(self, prefix: str) -> str:
        """A fresh key name of this test (deleted at the end)."""
        name = f"test:{prefix}:{uuid.uuid4().hex}"
        self.keys.append(name)
        return name

    def job(self, job_id: str) -> str:
        """Remember a job of this test: everything it left in Redis is deleted at the end."""
        self.jobs.append(job_id)
        return job_id


def in_flight(client: Redis, job_id: str) -> List[bytes]:
    """Broker messages of a job's tasks: queued, or delivered and not acknowledged yet (running, retrying)."""
    found = [raw for raw in client.hvals("unacked") if job_id.encode() in raw]
    for queue in BROKER_QUEUES:
        found.extend(raw for raw in client.lrange(queue, 0, -1) if job_id.encode() in raw)
    return found


@pytest.fixture
def cleanup(redis_db: Redis) -> Iterator[Cleanup]:
    state = Cleanup(redis_db)
    yield state
    for close in state.closers:
        close()
    try:
        for job_id in state.jobs:
            # Tasks are acknowledged late: once no message of the job is left, no task of it runs or will run.
            poll(lambda job_id=job_id: not in_flight(redis_db, job_id), timeout=30, what=f"the last task of {job_id}")
    finally:
        for job_id in state.jobs:
            doomed = list(redis_db.scan_iter(match=keys.job_pattern(job_id)))
            for side in ("source", "target"):
                doomed.extend(redis_db.scan_iter(match=keys.namespace(keys.job_store_id(job_id, side)) + "*"))
            doomed.extend(redis_db.scan_iter(match=f"celery-task-meta-{job_id}*"))
            spec = RedisJobState(job_id, redis_db).spec_data()
            if spec is not None:
                target = JobSpec.from_data(spec).target_identity()
                doomed.extend([keys.lock_key(target), keys.lock_holder_key(target)])  # each test's own target
            if doomed:
                redis_db.delete(*doomed)
            redis_db.srem(keys.RUNNING_JOBS, job_id)
        if state.keys:
            redis_db.delete(*state.keys)


def locks_held_by(client: Redis, job_id: str) -> List[bytes]:
    """Every target lock key holding ``job_id``."""
    return [key for key in client.scan_iter(match=keys.lock_key("*")) if client.get(key) == job_id.encode()]


def calls_of(client: Redis, key: str, action: str = "") -> List[List[Any]]:
    return [call for call in read_calls(client, key) if not action or call[0] == action]


class StateWrites:
    """Every write of a job's Celery state, in order, as the result backend publishes it (its pub/sub)."""

    SENTINEL = "~end-of-capture"

    def __init__(self, cleanup: Cleanup, job_id: str) -> None:
        self.client = cleanup.client
        self.channel = f"celery-task-meta-{job_id}"
        self.states: List[str] = []
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(self.channel)
        poll(lambda: self.client.pubsub_numsub(self.channel)[0][1] >= 1, what="the subscription")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()
        cleanup.closers.append(self._abandon)

    def _abandon(self) -> None:
        if not self._done.is_set():
            self._done.set()
            self._thread.join(timeout=5)
            self._pubsub.close()

    def _listen(self) -> None:
        while not self._done.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message and message["type"] == "message":
                status = str(msgpack.unpackb(message["data"], raw=False)["status"])
                if status == self.SENTINEL:
                    self._done.set()
                    return
                self.states.append(status)

    def close(self) -> List[str]:
        """The states written so far: every write made before this call (a message of our own marks the end)."""
        self.client.publish(self.channel, msgpack.packb({"status": self.SENTINEL}))
        poll(lambda: not self._thread.is_alive(), timeout=10, what="the end of the state capture")
        self._pubsub.close()
        return self.states


def sites(count: int, devices: int = 1) -> List[Dict[str, Any]]:
    return [
        {"name": f"s-{i}", "note": "", "devices": [{"name": f"d{j}", "note": ""} for j in range(devices)]}
        for i in range(count)
    ]


@pytest.fixture
def queue_worker(redis_db, tmp_path) -> Iterator[Callable[..., None]]:
    """Start a worker of its own queues (``faults.jobs``, ``faults.shards``) with settings of its own.

    The session's workers never run the jobs sent there (``send_to_queue_worker``); it runs no watchdog.
    Stopped (its process group) at the end, its queues deleted.
    """
    procs: List[subprocess.Popen] = []

    def start(name: str, concurrency: int = 1, **settings: str) -> None:
        env = worker_env()
        env.update({f"SHARDSYNC_{key.upper()}": value for key, value in settings.items()})
        env.update(
            SHARDSYNC_WATCHDOG_INTERVAL="0", SHARDSYNC_JOBS_QUEUE="faults.jobs", SHARDSYNC_SHARDS_QUEUE="faults.shards"
        )
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        command = [sys.executable, "-m", "celery", "-A", "worker", "worker", "-n", f"{name}@%h",
                   "-c", str(concurrency), "-Q", "faults.jobs,faults.shards",
                   "--without-gossip", "--without-mingle", "-l", "warning"]  # fmt: skip
        # As _workers.start_worker, with other queues: a process group of its own (a node).
        procs.append(
            subprocess.Popen(
                command, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
        wait_for_workers([name], procs[-1:])

    try:
        yield start
    finally:
        stop_workers(procs)
        redis_db.delete("faults.jobs", "faults.shards", "_kombu.binding.faults.jobs", "_kombu.binding.faults.shards")


def send_to_queue_worker(client: Redis, data: Dict[str, Any]) -> JobHandle:
    """``submit_sync`` for the ``queue_worker``: the job recorded, its start sent to ``faults.jobs``."""
    spec = JobSpec.from_data(data)
    assert RedisJobState(spec.job_id, client).create(spec.to_message(), ttl=600)
    app.send_task("shardsync.job", task_id=spec.job_id, queue="faults.jobs")
    return JobHandle(spec.job_id)


@pytest.fixture
def no_watchdog(redis_db) -> Iterator[None]:
    """No watchdog scans while the test runs, as in a deployment with SHARDSYNC_WATCHDOG_INTERVAL=0.

    The session's workers run one (every second); the test holds its turn, the key every worker's watchdog
    must take before a scan, so none of them re-enqueues a step of this test's job onto their own queues.
    """
    turn = f"test_faults-{uuid.uuid4().hex}"
    poll(lambda: redis_db.set(keys.WATCHDOG, turn, nx=True, ex=120), timeout=10, what="the watchdog's turn")
    try:
        yield
    finally:
        if redis_db.get(keys.WATCHDOG) == turn.encode():
            redis_db.delete(keys.WATCHDOG)


# ----------------------------------------------------------------------------------------------------
# 1. a failed load while the other side still loads
# ----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("workers")
def test_a_failed_load_ends_the_job_and_the_slow_load_never_revives_it(redis_db, cleanup) -> None:
    """The source load fails while the target load is in ``load()``: the job ends FAILURE at once, with a
    report and its lock free, and is still FAILURE, with the same report and no lock, once the slow load
    has ended (having recorded itself and published progress, or stood down on its lost claim: either)."""
    gate_source, gate_target = cleanup.key("gate"), cleanup.key("gate")
    source_calls, target_calls = cleanup.key("calls"), cleanup.key("calls")
    handle = submit_sync(
        source="dataset",
        target="dataset",
        # The source load fails, but only once the target load is under way (both wait for their gates).
        source_kwargs={
            "data": {"site": sites(2)},
            "record_url": REDIS_URL,
            "calls_key": source_calls,
            "load_steer": [f"wait:{gate_source}", "fail"],
        },
        target_kwargs={"record_url": REDIS_URL, "calls_key": target_calls, "load_steer": f"wait:{gate_target}"},
    )
    job_id = cleanup.job(handle.id)
    writes = StateWrites(cleanup, job_id)
    poll(lambda: calls_of(redis_db, target_calls, "load"), what="the target load to begin")
    poll(lambda: calls_of(redis_db, source_calls, "load"), what="the source load to begin")
    redis_db.set(gate_source, 1)  # the source load fails now; the target load is still in load()

    with pytest.raises(JobFailed, match="load-source failed: RuntimeError: load of .* refused") as caught:
        handle.wait(timeout=30)
    report = caught.value.report
    assert report is not None and report["status"] == "failed" and report["operations"] == 0
    assert AsyncResult(job_id, app=app).state == "FAILURE"
    assert locks_held_by(redis_db, job_id) == [], "the failed job still holds its target's lock"
    assert calls_of(redis_db, target_calls, "load") and not calls_of(redis_db, target_calls, "create")

    # Now the slow load ends, after its job did: whatever it does then, the job's end stays as it was.
    redis_db.set(gate_target, 1)
    load_task = AsyncResult(f"{job_id}.load-target", app=app)
    poll(lambda: load_task.state == "SUCCESS", timeout=30, what="the slow load's task to end")
    assert len(calls_of(redis_db, target_calls, "load")) == 1, "the target was loaded again"
    states = writes.close()
    result = AsyncResult(job_id, app=app)
    assert result.state == "FAILURE", f"the job's state went back to {result.state}"
    assert "load-source failed" in str(result.result)
    assert JobHandle(job_id).report() == report, "the report changed after the job ended"
    assert RedisJobState(job_id, redis_db).info()["status"] == "failed"
    assert locks_held_by(redis_db, job_id) == [], "the slow load's heartbeat took the released lock back"
    assert states[-1] == "FAILURE", states


def test_a_load_that_ends_after_its_job_writes_nothing_of_the_job(redis_db, queue_worker, cleanup) -> None:
    """As above, and stricter: after the report nothing writes the job's state (ARCHITECTURE.md), and a step
    still running never turns the job's final state back into PROGRESS, even for a moment (README)."""
    # The default claim and lock expiries: the slow load's heartbeat beats every 10 s, so it does not beat
    # between the finish and the load's end (a beat that finds the claim gone makes the load stand down).
    queue_worker("loads", concurrency=2, claim_ttl="30", lock_ttl="300")
    gate_source, gate_target = cleanup.key("gate"), cleanup.key("gate")
    source_calls, target_calls = cleanup.key("calls"), cleanup.key("calls")
    handle = send_to_queue_worker(
        redis_db,
        {
            "source": "dataset",
            "target": "dataset",
            "source_kwargs": {
                "data": {"site": sites(2)},
                "record_url": REDIS_URL,
                "calls_key": source_calls,
                "load_steer": [f"wait:{gate_source}", "fail"],
            },
            "target_kwargs": {
                "data": {"site": sites(1)},
                "record_url": REDIS_URL,
                "calls_key": target_calls,
                "load_steer": f"wait:{gate_target}",
            },
        },
    )
    job_id = cleanup.job(handle.id)
    writes = StateWrites(cleanup, job_id)
    poll(lambda: calls_of(redis_db, target_calls, "load"), what="the target load to begin")
    poll(lambda: calls_of(redis_db, source_calls, "load"), what="the source load to begin")
    redis_db.set(gate_source, 1)
    with pytest.raises(JobFailed, match="load-source failed"):
        handle.wait(timeout=30)
    ended = {part: redis_db.hgetall(keys.job_key(job_id, part)) for part in ("loads", "times", "workers")}
    redis_db.set(gate_target, 1)
    poll(lambda: AsyncResult(f"{job_id}.load-target", app=app).state == "SUCCESS", what="the slow load to end")
    states = writes.close()
    assert AsyncResult(job_id, app=app).state == "FAILURE"
    assert "PROGRESS" not in states[states.index("FAILURE") :], f"the job's state after its end: {states}"
    after = {part: redis_db.hgetall(keys.job_key(job_id, part)) for part in ("loads", "times", "workers")}
    assert after == ended, "the slow load recorded itself in the job's state after the report"


# ----------------------------------------------------------------------------------------------------
# 2. a load delivered twice at once
# ----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("workers")
def test_a_load_delivered_twice_at_once_never_clears_the_store_in_use(redis_db, cleanup) -> None:
    """A second ``shardsync.load`` of the target, sent while the first is in ``load()``: it finds the load
    claimed and waits (never clears the store, never loads), and the job ends as a local sync does."""
    gate, calls_key = cleanup.key("gate"), cleanup.key("calls")
    source_data = {"region": [{"name": "r-0", "label": "new"}], "site": sites(5, devices=2)}
    target_data = {"region": [{"name": "r-0", "label": "old"}, {"name": "r-9"}], "site": sites(3, devices=3)}
    source_data["site"][1]["region"] = "r-0"  # an update
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": source_data, "name": "src"},
        target_kwargs={
            "data": target_data,
            "record_url": REDIS_URL,
            "calls_key": calls_key,
            "name": "dst",
            "load_steer": f"wait:{gate}",
        },
        shard_size=3,
    )
    job_id = cleanup.job(handle.id)
    poll(lambda: calls_of(redis_db, calls_key, "load"), what="the target load to be in load()")
    duplicate = f"{job_id}.load-target-dup"
    app.send_task("shardsync.load", args=(job_id, "target"), task_id=duplicate, queue="shardsync.shards")
    # The duplicate ran on the other worker, found the running load's claim and asked to be retried.
    poll(lambda: AsyncResult(duplicate, app=app).state == "RETRY", what="the duplicate to find the load claimed")
    assert len(calls_of(redis_db, calls_key, "load")) == 1, "the duplicate started loading the store in use"
    redis_db.set(gate, 1)

    report = handle.wait(timeout=60)
    poll(lambda: AsyncResult(duplicate, app=app).state == "SUCCESS", timeout=30, what="the duplicate to end")
    assert report["status"] == "success" and report["failures"] == []
    assert len(calls_of(redis_db, calls_key, "load")) == 1, "the target was loaded twice"
    calls = [call for call in read_calls(redis_db, calls_key) if call[0] != "load"]
    local_state, local_calls, local_error = local_sync(source_data, target_data, [], redis_db, REDIS_URL)
    assert local_error is None
    assert target_contents(job_id, REDIS_URL) == local_state
    assert_same_calls(local_calls, calls, barrier=True)  # no hook missing, none spurious or repeated
    assert report["operations"] == len([call for call in calls if call[0] != "sync_complete"])
    assert report["loads"]["target"]["objects"] == 2 + 3 + 3 * 3


# ----------------------------------------------------------------------------------------------------
# 3. a shard that kills its worker every time it runs
# ----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("workers", "no_watchdog")
def test_a_shard_that_kills_its_worker_every_time_fails_its_job(redis_db, queue_worker, cleanup) -> None:
    """A hook that SIGKILLs its process every time: with SHARDSYNC_MAX_DELIVERIES=2 the job fails, with a
    report naming the limit, after 2 kills (``wait()`` raises JobFailed)."""
    # A worker of its own, so that every delivery meets the limit of 2 (the session's workers have 5). A
    # death counts once the dead delivery's claim has expired (3 s here): the redelivery waits for it.
    queue_worker("poison", max_deliveries="2", claim_ttl="3")
    calls_key = cleanup.key("calls")
    handle = send_to_queue_worker(
        redis_db,
        {
            "source": "dataset",
            "target": "dataset",
            "source_kwargs": {"data": {"site": [{"name": "s-0", "note": "die"}, {"name": "s-1"}]}},
            "target_kwargs": {"record_url": REDIS_URL, "calls_key": calls_key},
        },
    )
    cleanup.job(handle.id)
    try:
        poll(lambda: calls_of(redis_db, calls_key), timeout=30, what="the first hook to kill its worker")
        # Start 2 takes the claim once the first one's expired (3 s) and dies too; start 3 gives up.
        with pytest.raises(JobFailed, match=r"SHARDSYNC_MAX_DELIVERIES=2") as caught:
            handle.wait(timeout=30)
        report = caught.value.report
        assert report is not None and report["status"] == "failed"
        assert "shard-0 was started 3 times and its worker died 2 times" in report["error"]
        assert report["sync_complete"] is False and report["counts"] == {}
        kills = [call for call in read_calls(redis_db, calls_key) if call[2] == "s-0"]
        assert len(kills) == 2, f"the poisonous shard killed {len(kills)} worker processes"
        assert locks_held_by(redis_db, handle.id) == []
    finally:
        if not handle.done():
            handle.cancel("the test is over")  # the next delivery to take the claim stops instead of dying
            redis_db.delete(keys.job_key(handle.id, "claim:shard-0"))  # the dead one's: it would expire in 3 s
            poll(handle.done, timeout=30, what="the cancelled job to end")


# ----------------------------------------------------------------------------------------------------
# 4. the target lock lost mid-job
# ----------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("workers")
def test_a_shard_that_lost_the_target_lock_stops_before_its_next_hook(redis_db, cleanup) -> None:
    """The lock expires while a shard is in a hook and another job takes it: no hook runs after the one in
    flight, the job fails saying it lost the lock, and the other job's lock is left as it is."""
    gate, calls_key = cleanup.key("gate"), cleanup.key("calls")
    data = sites(4, devices=2)
    data[1]["note"] = f"wait:{gate}"  # s-1's create blocks; its devices and the sites after it are to come
    handle = submit_sync(
        source="dataset",
        target="dataset",
        source_kwargs={"data": {"site": data}},
        target_kwargs={"record_url": REDIS_URL, "calls_key": calls_key},
        shard_size=1000,  # one shard holds every site
    )
    job_id = cleanup.job(handle.id)
    poll(lambda: any(call[2] == "s-1" for call in read_calls(redis_db, calls_key)), what="the blocked hook")
    assert in_flight(redis_db, job_id), "the running shard's message is not where the clean-up looks"
    target = JobSpec.from_data(RedisJobState(job_id, redis_db).spec_data()).target_identity()
    lock = keys.lock_key(target)
    assert redis_db.get(lock) == job_id.encode()

    # The lock expires (deleted here) and another job takes it, with the start step's own script. The job's
    # heartbeat may take its expired lock back in between (nobody had taken it): then expire it again.
    intruder = RedisJobState(f"intruder-{uuid.uuid4().hex}", redis_db)

    def take_lock() -> bool:
        redis_db.delete(lock)
        return intruder.acquire_lock(target, 120) is None

    poll(take_lock, timeout=10, what="another job to take the lock")
    before = read_calls(redis_db, calls_key)
    assert [call[2] for call in before] == ["s-0", "s-0__d0", "s-0__d1", "s-1"]
    redis_db.set(gate, 1)  # the hook in flight ends; the next one must not start

    with pytest.raises(JobFailed, match="lost the lock on target") as caught:
        handle.wait(timeout=60)
    report = caught.value.report
    assert report is not None and report["status"] == "failed"
    assert f"job {job_id} lost the lock on target {target}" in report["error"]
    assert report["sync_complete"] is False
    assert read_calls(redis_db, calls_key) == before, "a hook ran after the lock was lost"
    assert redis_db.get(lock) == intruder.job_id.encode(), "the job touched the lock another job holds"
    assert redis_db.get(keys.lock_holder_key(target)) == intruder.job_id.encode()
