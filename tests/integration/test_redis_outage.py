"""Redis itself goes away under a running job: frozen (SIGSTOP) for longer than the workers' claims and socket
timeouts, and killed (SIGKILL) and restarted on the same port from its append-only file. The job still ends,
as a local sync would.

Everything runs against a throwaway ``redis-server`` of this module (its own free port from 6391, ``appendfsync
always`` so nothing acknowledged is lost, in a temporary directory) with two real worker nodes on it; jobs are
submitted through ``python -m worker.cli`` subprocesses with an explicit environment and read back with redis-py
on that port, so this file never touches the suite's Redis (SHARDSYNC_TEST_REDIS_URL, database 13) nor its
workers, and runs the same alone or in the whole suite.

Each job (307 operations, 6 shards in 2 waves) has the first two shards of its sites wave blocked mid-shard, one
on each node, when Redis goes away: a device create waits on a gate, either a Redis key (the hook meets the
outage itself) or a file (it touches no Redis while it waits, so only the shard's own heartbeat, claim, fence and
journal meet it). Expected: the job ends with a report (success; or failed naming the outage) and a final Celery
state, releases its lock, its target store equals a local ``sync_from``'s, and every hook ran once but the two in
flight, which may have run twice. Every wait has a deadline; a hang fails with the tail of the workers' and Redis's
logs. The last test makes certain what these outages leave behind (a late duplicate step writes the ended job's
state): an expected failure naming the bug.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import msgpack
import pytest
from _compare import local_sync, target_contents
from _workers import REDIS_URL, ROOT, free_port, start_worker, stop_workers, worker_env
from redis import Redis
from redis.exceptions import RedisError
from ss_test_adapters import read_calls

from core import keys

REDIS_SERVER = shutil.which("redis-server")
FIRST_PORT = 6391
JOB_TIMEOUT = 120.0
PAUSE_SECONDS = 8.0  # longer than the workers' claims live (SHARDSYNC_CLAIM_TTL=5 in worker_env)
DOWN_SECONDS = 6.0  # killed Redis stays down this long before it is restarted
SHARD_SIZE = 75  # 8 sites (9 operations each) per shard of the sites wave

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as err:
        return f"({err})"


class Cluster:
    """A throwaway redis-server (restartable on its port, same AOF directory) and two worker nodes on it."""

    def __init__(self, base: Path, default_claims: bool = False) -> None:
        self.base = base
        self.data = base / "redis"
        self.logs = base / "logs"
        self.data.mkdir()
        self.logs.mkdir()
        self.port = free_port(FIRST_PORT)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.redis: Optional[subprocess.Popen] = None
        self.redis_starts = 0
        self.nodes: Dict[str, subprocess.Popen] = {}
        self.exited: Dict[str, str] = {}
        self.client = Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        env = worker_env()
        env["SHARDSYNC_BROKER_URL"] = self.url
        for name in ("SHARDSYNC_RESULT_BACKEND", "SHARDSYNC_STORE_URL", "SHARDSYNC_TEST_REDIS_URL"):
            env.pop(name, None)
        if default_claims:  # claims, lock and watchdog as shipped
            for name in ("SHARDSYNC_CLAIM_TTL", "SHARDSYNC_LOCK_TTL", "SHARDSYNC_WATCHDOG_INTERVAL"):
                env.pop(name, None)
        self.env = env

    # -- redis-server ---------------------------------------------------------------------------------

    def start_redis(self) -> None:
        self.redis_starts += 1
        log = open(self.logs / f"redis-{self.redis_starts}.log", "wb")  # noqa: SIM115 - closed with the process
        self.redis = subprocess.Popen(
            [
                str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1", "--daemonize", "no",
                "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.data),
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.wait(self.answers, 30, "redis-server to answer PING")

    def answers(self) -> bool:
        if self.redis is not None and self.redis.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.redis.returncode}:\n{self.redis_log()}")
        try:
            return bool(self.client.ping())
        except RedisError:
            return False

    def kill_redis(self, sig: int = signal.SIGKILL) -> None:
        assert self.redis is not None
        os.killpg(self.redis.pid, sig)
        self.redis.wait(timeout=30)

    def redis_log(self) -> str:
        return "\n".join(_tail(path, 1500) for path in sorted(self.logs.glob("redis-*.log")))

    # -- workers --------------------------------------------------------------------------------------

    def start_workers(self) -> None:
        for name in ("omega", "sigma"):
            self.nodes[name] = start_worker(name, self.logs, concurrency=1, env=self.env)

    def ensure_workers(self) -> None:
        """Start again a worker that exited in an earlier test (its log is kept, appended to)."""
        for name, proc in list(self.nodes.items()):
            if proc.poll() is not None:
                os.rename(self.logs / f"{name}.log", self.logs / f"{name}.log.{proc.pid}")
                self.nodes[name] = start_worker(name, self.logs, concurrency=1, env=self.env)
                self.exited.pop(name, None)

    def node_of(self, pid: int) -> str:
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            return "?"
        return next((name for name, proc in self.nodes.items() if proc.pid == group), "?")

    def logs_tail(self) -> str:
        parts = [f"--- {name}.log ---\n{_tail(self.logs / f'{name}.log')}" for name in self.nodes]
        parts.append(f"--- redis ---\n{self.redis_log()}")
        return "\n".join(parts)

    # -- waiting --------------------------------------------------------------------------------------

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll ``predicate`` until it returns something true; fail with the logs' tails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self.nodes.items():
                if proc.poll() is not None and name not in self.exited:
                    # Not the job's failure (the other node and the watchdog carry on), but never silent.
                    self.exited[name] = f"worker {name} exited with {proc.returncode} while waiting for {what}"
                    warnings.warn(f"{self.exited[name]}:\n{_tail(self.logs / f'{name}.log', 3000)}", stacklevel=2)
            if self.nodes and len(self.exited) == len(self.nodes):
                raise AssertionError(f"every worker exited, waiting for {what}\n{self.logs_tail()}")
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            stop_workers(list(self.nodes.values()))
        finally:
            if self.redis is not None and self.redis.poll() is None:
                try:
                    os.killpg(self.redis.pid, signal.SIGCONT)  # in case a failure left it stopped
                    os.killpg(self.redis.pid, signal.SIGTERM)
                    self.redis.wait(timeout=10)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(self.redis.pid, signal.SIGKILL)
                    self.redis.wait(timeout=10)
            self.client.close()


def _cluster(prefix: str, default_claims: bool = False) -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix=prefix))
    nodes = Cluster(base, default_claims)
    try:
        nodes.start_redis()
        nodes.start_workers()
        yield nodes
    finally:
        try:
            nodes.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)  # the logs' tails are in every failure's message


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from _cluster("shardsync-redis-outage-")


@pytest.fixture(scope="module")
def shipped_cluster() -> Iterator[Cluster]:
    """As ``cluster``, with the claims, lock and watchdog interval as shipped (claims live 30 s)."""
    yield from _cluster("shardsync-redis-pause-", default_claims=True)


def _datasets(gate_note: str) -> Tuple[Dict[str, Any], Dict[str, Any], List[str]]:
    """Source and target data (307 operations); the uids of the two gated device creates.

    Wave 0: 8 regions (4 created, 4 updated, 2 deleted). Wave 1: 32 sites created (a site, 2 devices, 6 ports:
    9 operations each; 8 sites, 72 operations, per shard) and 3 deleted; ports take a few ms each.
    """
    ports = [{"name": f"p{k}", "speed": 1000 * (k + 1), "note": "sleep:0.005"} for k in range(3)]
    sites = []
    for i in range(32):
        devices = [{"name": f"d{j}", "role": "leaf", "note": "", "ports": ports} for j in range(2)]
        sites.append({"name": f"s-{i:02d}", "region": f"r-{i % 8}", "note": "", "devices": devices})
    gated = []
    for i in (3, 11):  # the middle of the first two shards of the sites wave
        sites[i]["devices"][1] = dict(sites[i]["devices"][1], note=gate_note)
        gated.append(f"s-{i:02d}__d1")
    source = {"region": [{"name": f"r-{i}", "label": f"region {i}", "note": ""} for i in range(8)], "site": sites}
    target = {
        "region": [{"name": f"r-{i}", "label": "old", "note": ""} for i in range(4)]
        + [{"name": f"r-{i}", "label": "gone", "note": ""} for i in (8, 9)],
        "site": [
            {
                "name": f"x-{i}",
                "note": "",
                "devices": [{"name": "d0", "note": "", "ports": [{"name": "p0", "note": ""}]}],
            }
            for i in range(3)
        ],
    }
    return source, target, gated


def _submit(
    cluster: Cluster, source: Dict[str, Any], target: Dict[str, Any], calls_key: str, record_url: str = ""
) -> str:
    submitted = subprocess.run(
        [sys.executable, "-m", "worker.cli", "sync", "--no-wait", "--shard-size", str(SHARD_SIZE),
         "--source", "dataset", "--target", "dataset",
         "--source-kwargs", json.dumps({"data": source, "name": "src"}),
         "--target-kwargs", json.dumps(
             {"data": target, "record_url": record_url or cluster.url, "calls_key": calls_key, "name": "dst"}
         )],
        cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert submitted.returncode == 0, f"submit failed: {submitted.stderr}\n{cluster.logs_tail()}"
    return submitted.stdout.strip()


def _blocked(cluster: Cluster, calls_key: str, gated: List[str]) -> Dict[str, int]:
    """The gated hooks once both have been called (uid -> pid of the pool process running it)."""
    found = {call[2]: call[4] for call in read_calls(cluster.client, calls_key) if call[2] in gated}
    return found if len(found) == len(gated) else {}


def _report(cluster: Cluster, job_id: str) -> Optional[Dict[str, Any]]:
    try:
        raw = cluster.client.get(keys.job_key(job_id, "report"))
    except RedisError:
        return None
    return None if raw is None else msgpack.unpackb(raw, raw=False)


def _celery_state(cluster: Cluster, job_id: str) -> Optional[str]:
    """The job's final Celery state (what ``JobHandle.wait()`` and the CLI wait for), once it is final."""
    raw = cluster.client.get(f"celery-task-meta-{job_id}")
    state = None if raw is None else msgpack.unpackb(raw, raw=False).get("status")
    return state if state in ("SUCCESS", "FAILURE") else None


def _check_outcome(
    cluster: Cluster,
    job_id: str,
    report: Dict[str, Any],
    source: Dict[str, Any],
    target: Dict[str, Any],
    calls_key: str,
    in_flight: List[str],
    outage: str,
    record: Optional[Redis] = None,
) -> None:
    """Success as a local sync (hooks once, but those in flight), or a failure whose report names the outage.

    ``record``: where the hooks recorded their calls (the cluster's Redis when not given).
    """
    record = record or cluster.client
    state = cluster.wait(lambda: _celery_state(cluster, job_id), 30, f"job {job_id}'s final Celery state")
    assert state == ("SUCCESS" if report["status"] == "success" else "FAILURE"), (state, report["status"])
    # Late duplicates of its steps may still be stepping down; within a few watchdog scans nothing runs.
    cluster.wait(
        lambda: (
            not cluster.client.sismember(keys.RUNNING_JOBS, job_id)
            and not cluster.client.exists(keys.job_key(job_id, "running"))
        ),
        15,
        f"the ended job {job_id} to be off the running lists",
    )
    held = [k for k in cluster.client.scan_iter(match=keys.lock_key("*")) if cluster.client.get(k) == job_id.encode()]
    assert not held, f"the ended job still holds its target lock: {held}"
    calls = read_calls(record, calls_key)
    local_state, local_calls, local_error = local_sync(source, target, [], cluster.client, cluster.url)
    assert local_error is None
    print(
        f"{outage}: job {job_id} {report['status']} ({report.get('error')}), {report['operations']} operations, "
        f"shards (index, worker, applied, replayed) "
        f"{[(s['index'], s['worker'].split('@')[0], s['applied'], s['replayed']) for s in report['shards']]}"
    )
    if report["status"] != "success":
        error = str(report.get("error") or "")
        assert any(word in error.lower() for word in ("redis", "connection", "connect", "timeout")), (
            f"the job failed after {outage}, with an error that does not name it: {error!r}\n{cluster.logs_tail()}"
        )
        return
    assert report["failures"] == [], report["failures"]
    assert target_contents(job_id, cluster.url) == local_state, "the target store differs from a local sync's"
    ran = Counter((c[0], c[1], c[2], repr(c[3])) for c in calls if c[0] != "sync_complete")
    expected = Counter((c[0], c[1], c[2], repr(c[3])) for c in local_calls if c[0] != "sync_complete")
    assert set(ran) == set(expected), (
        f"hooks missing: {sorted(set(expected) - set(ran))[:5]}; unexpected: {sorted(set(ran) - set(expected))[:5]}"
    )
    repeated = {op: count for op, count in ran.items() if count > 1}
    allowed = {op for op in repeated if op[:2] == ("create", "device") and op[2] in in_flight}
    assert all(repeated[op] == 2 for op in allowed), f"a hook in flight ran more than twice: {repeated}"
    assert set(repeated) == allowed, f"finished hooks ran again after {outage}: {sorted(set(repeated) - allowed)}"
    assert [c[0] for c in calls].count("sync_complete") == 1 and calls[-1][0] == "sync_complete"
    assert sum(sum(per.values()) for per in report["counts"].values()) == len(expected) == report["operations"]
    print(f"{outage}: hooks that ran twice: {sorted(op[2] for op in repeated) or 'none'}")


def _run_with_outage(cluster: Cluster, gate_kind: str, outage: str, cause: Callable[[], None]) -> None:
    """One job; its two gated hooks in flight on the two nodes when ``cause`` makes the outage; then the gate opens."""
    cluster.ensure_workers()
    token = uuid.uuid4().hex
    calls_key = f"test:calls:{token}"
    gate_file = cluster.base / f"gate-{token}"
    gate_key = f"test:gate:{token}"
    # "redis": the hook polls a Redis key, so it meets the outage itself; "file": it touches no Redis while it
    # waits (a hook calling some other system), so only the shard's own machinery meets the outage.
    note = f"wait:{gate_key}" if gate_kind == "redis" else f"wait-file:{gate_file}"
    source, target, gated = _datasets(note)
    job_id = _submit(cluster, source, target, calls_key)
    blocked = cluster.wait(lambda: _blocked(cluster, calls_key, gated), 60, "both gated hooks to be in flight")
    nodes = {uid: cluster.node_of(pid) for uid, pid in blocked.items()}
    assert len(set(nodes.values())) == 2, f"the gated hooks do not run on both nodes: {nodes}"
    started = time.monotonic()
    cause()
    cluster.wait(cluster.answers, 30, "Redis to answer after the outage")
    cluster.client.set(gate_key, 1)  # the hooks in flight may finish now
    gate_file.touch()
    report = cluster.wait(lambda: _report(cluster, job_id), JOB_TIMEOUT, f"job {job_id}'s report after {outage}")
    print(f"{outage}, {gate_kind} gate: the job ended {time.monotonic() - started:.1f} s after the outage began")
    _check_outcome(cluster, job_id, report, source, target, calls_key, list(blocked), f"{outage}, {gate_kind} gate")
    cluster.client.delete(gate_key, calls_key)


@pytest.mark.parametrize("gate_kind", ["redis", "file"])
def test_redis_frozen_longer_than_claims_and_socket_timeouts_mid_shard(cluster: Cluster, gate_kind: str) -> None:
    def freeze() -> None:
        assert cluster.redis is not None
        os.killpg(cluster.redis.pid, signal.SIGSTOP)
        try:
            time.sleep(PAUSE_SECONDS)  # holds the outage itself
        finally:
            os.killpg(cluster.redis.pid, signal.SIGCONT)

    _run_with_outage(cluster, gate_kind, f"Redis frozen {PAUSE_SECONDS:.0f} s", freeze)


@pytest.mark.parametrize("gate_kind", ["redis", "file"])
def test_redis_killed_and_restarted_from_its_aof_mid_shard(shipped_cluster: Cluster, gate_kind: str) -> None:
    """An outage shorter than the claims (as shipped: 30 s), so that no step loses its claim, however slowly the
    machine brings Redis back and the workers reconnect: nothing finished runs again. (With claims shorter than
    the outage, the frozen test's case, an operation whose journal write was in flight may run again.)"""
    cluster = shipped_cluster

    def kill_and_restart() -> None:
        cluster.kill_redis(signal.SIGKILL)
        time.sleep(DOWN_SECONDS)  # holds the outage itself
        cluster.start_redis()

    _run_with_outage(cluster, gate_kind, f"Redis killed, down {DOWN_SECONDS:.0f} s, restarted", kill_and_restart)


def _job_keys(cluster: Cluster, job_id: str) -> Dict[str, int]:
    """The job's keys (by part) and their TTLs (-1: never expires)."""
    return {
        raw.decode().rsplit(":", 1)[-1]: int(cluster.client.ttl(raw))
        for raw in cluster.client.scan_iter(match=keys.job_pattern(job_id))
    }


def test_a_late_duplicate_step_after_the_end_writes_nothing(cluster: Cluster) -> None:
    """What the outages above leave behind, made certain: a shard delivered once more after its job ended.

    The README: a dead host's message, redelivered later, finds the step done and does nothing; and after the
    report exists, nothing writes the job's state again.
    """
    cluster.ensure_workers()
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    source, target, _ = _datasets("")
    job_id = _submit(cluster, source, target, calls_key)
    report = cluster.wait(lambda: _report(cluster, job_id), JOB_TIMEOUT, f"job {job_id}'s report")
    assert report["status"] == "success", report["error"]
    cluster.wait(lambda: _celery_state(cluster, job_id), 30, f"job {job_id}'s final Celery state")
    before = _job_keys(cluster, job_id)
    assert -1 not in before.values(), f"a key of the ended job never expires: {before}"
    late = f"{job_id}.shard-1.late"
    sent = subprocess.run(
        [sys.executable, "-c",
         "import sys; from worker.runners.celery.tasks import shard; "
         "shard.apply_async((sys.argv[1], 1), task_id=sys.argv[2])",
         job_id, late],
        cwd=ROOT, env=cluster.env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert cluster.wait(lambda: _celery_state(cluster, late), 30, "the late shard delivery to run") == "SUCCESS"
    after = _job_keys(cluster, job_id)
    cluster.client.delete(calls_key)
    assert set(after) == set(before) and -1 not in after.values(), (
        f"the late delivery wrote the ended job's state: keys before {sorted(before)}, after {after}"
    )


def test_redis_restarted_empty_mid_shard_ends_the_waiters_with_job_state_lost(cluster: Cluster) -> None:
    """Redis restarted without its data mid-shard: waiters say "job state lost" within a minute and exit non-zero;
    nothing of the job is left without an expiry; the same job submitted again converges."""
    cluster.ensure_workers()
    token = uuid.uuid4().hex
    calls_key = f"test:calls:{token}"
    gate_file = cluster.base / f"gate-{token}"
    source, target, gated = _datasets(f"wait-file:{gate_file}")
    job_id = _submit(cluster, source, target, calls_key)
    cluster.wait(lambda: _blocked(cluster, calls_key, gated), 60, "both gated hooks to be in flight")
    code = "import sys; from worker.api import JobHandle; print('waiting', flush=True); JobHandle(sys.argv[1]).wait()"
    waiters = {
        "wait()": subprocess.Popen(
            [sys.executable, "-c", code, job_id],
            cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ),
        "shardsync watch": subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "watch", job_id],
            cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ),
    }  # fmt: skip
    try:
        for name, waiter in waiters.items():  # each is following the job (its first line out) before Redis goes
            assert waiter.stdout is not None
            assert waiter.stdout.readline(), f"{name} ended before Redis went away: {waiter.communicate()[0]}"
        cluster.kill_redis(signal.SIGKILL)
        for path in cluster.data.iterdir():  # its data gone: a restart without persistence
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        cluster.start_redis()
        restarted = time.monotonic()
        for name, waiter in waiters.items():
            output, _ = waiter.communicate(timeout=90)
            assert waiter.returncode != 0, f"{name} exited 0:\n{output}"
            assert "job state lost" in output, f"{name}:\n{output}"
            assert time.monotonic() - restarted < 60, f"{name} took {time.monotonic() - restarted:.0f} s"
    finally:
        for waiter in waiters.values():
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait(timeout=10)
    gate_file.touch()  # the hooks in flight return, into a job Redis no longer knows

    def shards_stood_down() -> bool:
        metas = list(cluster.client.scan_iter(match=f"celery-task-meta-{job_id}.shard-*"))
        states = [msgpack.unpackb(cluster.client.get(meta) or b"\x80", raw=False).get("status") for meta in metas]
        return len([state for state in states if state in ("SUCCESS", "FAILURE")]) >= 2

    cluster.wait(shards_stood_down, 60, "the two shards in flight to end (their job unknown)")
    for name, proc in cluster.nodes.items():
        assert proc.poll() is None, f"worker {name} exited"
    lost = _job_keys(cluster, job_id)
    assert -1 not in lost.values(), f"keys of the lost job that never expire: {lost}"

    cluster.client.delete(calls_key)
    again = _submit(cluster, source, target, calls_key)  # the same sync once more: it converges
    report = cluster.wait(lambda: _report(cluster, again), JOB_TIMEOUT, f"job {again}'s report")
    assert report["status"] == "success", report["error"]
    cluster.client.delete(calls_key)


def test_redis_paused_six_seconds_mid_sync_runs_no_hook_twice(shipped_cluster: Cluster) -> None:
    """Redis frozen (SIGSTOP) for 6 s while both nodes apply shards, hooks running freely: the claims (30 s)
    outlive the pause and every journal write sent before it lands after it, so nothing runs again."""
    cluster = shipped_cluster
    cluster.ensure_workers()
    calls_key = f"test:calls:{uuid.uuid4().hex}"
    source, target, _ = _datasets("")
    # The hooks record their calls in the suite's Redis: they call another system, not the one paused.
    record = Redis.from_url(REDIS_URL)
    job_id = _submit(cluster, source, target, calls_key, REDIS_URL)
    cluster.wait(lambda: len(read_calls(record, calls_key)) >= 60, 60, "the sync to be under way")
    assert cluster.redis is not None
    os.killpg(cluster.redis.pid, signal.SIGSTOP)
    try:
        time.sleep(6.0)  # holds the pause itself
    finally:
        os.killpg(cluster.redis.pid, signal.SIGCONT)
    report = cluster.wait(lambda: _report(cluster, job_id), JOB_TIMEOUT, f"job {job_id}'s report after the pause")
    assert report["status"] == "success", f"{report.get('error')}\n{cluster.logs_tail()}"
    _check_outcome(cluster, job_id, report, source, target, calls_key, [], "Redis paused 6 s", record)
    record.delete(calls_key)
