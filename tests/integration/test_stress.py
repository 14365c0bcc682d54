"""Many small jobs at once: 200 jobs from 4 producer processes, on real workers, every one correct.

Four producer processes (``_stress_producer.py``, each calling ``worker.submit_sync`` 50 times) wait for one
go signal and submit together. 192 jobs sync into targets of their own; 4 pairs of jobs share a target (one
pair member from each of two producers, submitted at the same position of their lists, so their starts meet
in the queue). Every job must end; each job into a target of its own must succeed and leave its target store
and hook calls exactly as a local ``sync_from`` on the same data; in each pair, either one job is refused at
once with "being synced by job <the other>" and applies nothing, or both succeed one after the other.

The jobs run on two extra workers of four pool processes each (``-c 4``) with a lock expiry longer than the
whole burst, so that a job waiting in the queue keeps its target's lock (``SHARDSYNC_LOCK_TTL`` must exceed the
longest time a job has no step running, as the README says); the session's own workers, if running, stop
consuming for the duration (Celery's ``cancel_consumer``) because they use a 10 s lock expiry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from _compare import REDIS_URL, assert_same_calls, contents, take_calls, target_contents
from _workers import HERE, ROOT, poll, start_worker, stop_workers, wait_for_workers, worker_env
from redis import Redis
from ss_test_adapters import DatasetAdapter

from core import keys
from core.enum import DiffSyncFlags
from worker import JobFailed, JobHandle, app
from worker.job.spec import JobSpec

PRODUCERS = 4
PER_PRODUCER = 50
PAIR_POSITIONS = (3, 17, 31, 45)
"""Positions (in every producer's list) of the pairs: pair n is producer n's job there and producer n+1's."""
QUEUES = ("shardsync.jobs", "shardsync.shards")
STRESS_WORKERS = ("stress1", "stress2")


def source_data(i: int) -> Dict[str, Any]:
    """2 or 3 sites of one device with one port, and one region; values vary with ``i``."""
    return {
        "region": [{"name": "r-0", "label": f"region {i}"}],
        "site": [
            {
                "name": f"s-{k}",
                "region": "r-0",
                "devices": [{"name": "d0", "role": f"role-{i % 3}", "ports": [{"name": "p0", "speed": i}]}],
            }
            for k in range(2 + i % 2)
        ],
    }


def target_data(i: int) -> Dict[str, Any]:
    """What the target holds before the job: updates, a deep delete, a region and a site to delete."""
    return {
        "region": [{"name": "r-0", "label": "old"}, {"name": f"r-gone-{i % 5}", "label": "gone"}],
        "site": [
            {
                "name": "s-0",
                "devices": [{"name": "d0", "role": "old", "ports": [{"name": "p0"}, {"name": "p9", "speed": 1}]}],
            },
            {"name": "s-9", "devices": [{"name": "d0", "ports": [{"name": "p0"}]}]},
        ],
    }


def local_result(i: int, client: Redis) -> Tuple[Dict[str, Any], List[List[Any]]]:
    """Target contents and hook calls of a local ``target.sync_from(source)`` on job ``i``'s data."""
    key = f"test:stress:local:{uuid.uuid4().hex}"
    source = DatasetAdapter(data=source_data(i), name="src")
    target = DatasetAdapter(data=target_data(i), record_url=REDIS_URL, calls_key=key, name="dst")
    source.load()
    target.load()
    target.sync_from(source, flags=DiffSyncFlags.NONE)
    return contents(target), take_calls(client, key)


@pytest.fixture
def stress_workers(redis_db: Redis, tmp_path: Path) -> Iterator[Path]:
    """Two extra workers (-c 4, long lock expiry); the session's workers, if any, stop consuming meanwhile."""
    others = [
        name
        for reply in (app.control.ping(timeout=0.5) or [])
        for name in reply
        if name.split("@")[0] not in STRESS_WORKERS
    ]
    for queue in QUEUES if others else ():
        app.control.cancel_consumer(queue, destination=others, reply=True, timeout=5)
    env = worker_env()
    env["SHARDSYNC_LOCK_TTL"] = "300"
    procs = [start_worker(name, tmp_path, concurrency=4, env=env) for name in STRESS_WORKERS]
    try:
        wait_for_workers(list(STRESS_WORKERS), procs)
        yield tmp_path
    finally:
        stop_workers(procs)
        for queue in QUEUES if others else ():
            app.control.add_consumer(queue, destination=others, reply=True, timeout=5)


def test_200_jobs_from_4_producers_all_end_correctly(redis_db: Redis, stress_workers: Path) -> None:
    run = uuid.uuid4().hex[:8]
    prefix = f"stress-{run}-"
    calls_prefix = f"test:stress:{run}:"
    ready, go = f"{calls_prefix}ready", f"{calls_prefix}go"

    # job n: (data index, calls key, target name); pairs share data, calls key and target name: one target.
    jobs: List[List[Dict[str, Any]]] = [[] for _ in range(PRODUCERS)]
    data_index: Dict[str, int] = {}
    pairs: List[Tuple[str, str]] = []
    counter = 0
    for producer in range(PRODUCERS):
        for position in range(PER_PRODUCER):
            job_id = f"{prefix}{producer}-{position}"
            pair = PAIR_POSITIONS.index(position) if position in PAIR_POSITIONS else None
            if pair is not None and producer in (pair % PRODUCERS, (pair + 1) % PRODUCERS):
                index, target = 1000 + pair, f"dst-pair-{pair}"
                if producer == (pair + 1) % PRODUCERS:
                    pairs.append((f"{prefix}{pair % PRODUCERS}-{position}", job_id))
            else:
                index, target = counter, f"dst-{counter}"
                counter += 1
            data_index[job_id] = index
            jobs[producer].append(
                {
                    "source": "dataset",
                    "target": "dataset",
                    "source_kwargs": {"data": source_data(index), "name": "src"},
                    "target_kwargs": {
                        "data": target_data(index),
                        "name": target,
                        "record_url": REDIS_URL,
                        "calls_key": f"{calls_prefix}calls:{index}",
                    },
                    "shard_size": 1 if index % 4 == 0 else 500,  # a quarter in one shard per subtree
                    "job_id": job_id,
                }
            )
    assert len(data_index) == PRODUCERS * PER_PRODUCER and len(pairs) == len(PAIR_POSITIONS)
    singles = [job_id for job_id, index in data_index.items() if index < 1000]
    assert len(singles) == PRODUCERS * PER_PRODUCER - 2 * len(pairs)

    producers = []
    try:
        for producer, share in enumerate(jobs):
            path = stress_workers / f"jobs-{producer}.json"
            path.write_text(json.dumps(share))
            producers.append(
                subprocess.Popen(
                    [sys.executable, str(HERE / "_stress_producer.py"), str(path), ready, go],
                    cwd=str(ROOT),
                    env=worker_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        poll(lambda: redis_db.scard(ready) == PRODUCERS, timeout=60, what="the producers to be ready")
        started = time.monotonic()
        redis_db.set(go, 1)
        submitted = []
        for proc in producers:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            submitted.extend(json.loads(out))
        refused = [entry for entry in submitted if entry[1] != "ok"]
        assert refused == [], refused
        assert sorted(entry[0] for entry in submitted) == sorted(data_index)

        # Every job ends: its report exists (the finish saves it before publishing the job's end).
        pending = sorted(data_index)

        def all_ended() -> bool:
            found = redis_db.mget([keys.job_key(job_id, "report") for job_id in pending])
            pending[:] = [job_id for job_id, raw in zip(pending, found, strict=True) if raw is None]
            return not pending

        poll(all_ended, timeout=80, what="every job to end")
        elapsed = time.monotonic() - started

        outcomes: Dict[str, Tuple[Dict[str, Any], Any]] = {}
        for job_id in data_index:
            try:
                outcomes[job_id] = (JobHandle(job_id).wait(timeout=10), None)
            except JobFailed as failure:
                outcomes[job_id] = (failure.report or {}, failure)

        # Each job into a target of its own: success, and exactly what a local sync does.
        for job_id in singles:
            report, failure = outcomes[job_id]
            assert failure is None, f"{job_id}: {failure}"
            assert report["status"] == "success" and report["failures"] == []
            index = data_index[job_id]
            local_state, local_calls = local_result(index, redis_db)
            assert target_contents(job_id, REDIS_URL) == local_state, job_id
            calls = take_calls(redis_db, f"{calls_prefix}calls:{index}")
            assert_same_calls(local_calls, calls, barrier=True)
            assert report["operations"] == len([call for call in calls if call[0] != "sync_complete"]) > 0

        # Pairs into one target: one refused at once (nothing applied), or both, one after the other.
        for first, second in pairs:
            index = data_index[first]
            local_state, local_calls = local_result(index, redis_db)
            calls = take_calls(redis_db, f"{calls_prefix}calls:{index}")
            succeeded = [job_id for job_id in (first, second) if outcomes[job_id][1] is None]
            assert succeeded, f"pair {first}, {second}: neither succeeded: {outcomes[first][1]}; {outcomes[second][1]}"
            for job_id in succeeded:
                assert outcomes[job_id][0]["status"] == "success"
                assert target_contents(job_id, REDIS_URL) == local_state, job_id
            if len(succeeded) == 1:
                winner = succeeded[0]
                loser = second if winner == first else first
                report, failure = outcomes[loser]
                assert f"target dataset is being synced by job {winner}" in str(failure), failure
                assert report["status"] == "failed" and report["operations"] == 0 and report["shards"] == []
                assert report["sync_complete"] is False
                assert target_contents(loser, REDIS_URL) == {}, "the refused job loaded its target"
                assert_same_calls(local_calls, calls, barrier=True)  # the winner's calls only
            else:
                size = len(calls) // 2  # one whole sync, then the other: never interleaved
                assert len(calls) == 2 * len(local_calls)
                assert_same_calls(local_calls, calls[:size], barrier=True)
                assert_same_calls(local_calls, calls[size:], barrier=True)

        # Nothing is left running or locked, and no message is left in the queues.
        ours = set(data_index)
        running = {raw.decode() for raw in redis_db.smembers(keys.RUNNING_JOBS)}
        assert not running & ours, sorted(running & ours)[:5]
        holders = {redis_db.get(key) for key in redis_db.scan_iter(match=keys.lock_key("*"), count=1000)}
        assert not {holder.decode() for holder in holders if holder} & ours
        poll(
            lambda: all(redis_db.llen(queue) == 0 for queue in QUEUES) and not redis_db.hlen("unacked"),
            timeout=30,
            what="the queues to be empty",
        )
        refusals = sum(1 for first, second in pairs if (outcomes[first][1] is None) != (outcomes[second][1] is None))
        used = {worker.split("@")[0] for report, _ in outcomes.values() for worker in report.get("workers", [])}
        assert used == set(STRESS_WORKERS), f"jobs ran on {sorted(used)}"
        sys.stderr.write(
            f"\n{len(data_index)} jobs ended {elapsed:.1f} s after the go signal; pairs: {refusals} refused at once, "
            f"{len(pairs) - refusals} both succeeded\n"
        )
    finally:
        for proc in producers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        identities = set()
        for share in jobs:
            for job in share:
                spec = JobSpec.from_data({key: job[key] for key in ("source", "target", "target_kwargs")})
                identities.add(spec.target_identity())
        doomed = [keys.lock_key(identity) for identity in identities]
        doomed += [keys.lock_holder_key(identity) for identity in identities]
        for pattern in (f"shardsync:~job:{prefix}*", f"shardsync:job-{prefix}*", f"celery-task-meta-{prefix}*"):
            doomed += list(redis_db.scan_iter(match=pattern, count=1000))
        doomed += list(redis_db.scan_iter(match=f"{calls_prefix}*", count=1000))
        for start in range(0, len(doomed), 1000):
            redis_db.delete(*doomed[start : start + 1000])
        redis_db.srem(keys.RUNNING_JOBS, *data_index)
