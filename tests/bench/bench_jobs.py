"""Benchmark: one sync as a local ``sync_from``, the embedded runner, and a distributed job on real workers.

Run on demand (not part of the test suite)::

    python tests/bench/bench_jobs.py --sites 500 --workers 2 --concurrency 4 --latency-ms 5

The reference is ``target.sync_from(source)`` in this process (load both, diff, sync); the other rows are
the same demo data and the same hooks through the embedded runner (``run_local``) and as a Celery job on
``--workers`` real ``celery -A worker worker`` processes (Redis database ``--db``, emptied before and after).
``--latency-ms`` makes every create/update/delete wait like a remote API call, which is what a distributed
sync buys time on; with 0 the numbers show the runner's own overhead.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2, help="worker processes (each with --concurrency)")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="simulated remote latency per change")
    parser.add_argument("--shard-size", type=int, default=200)
    parser.add_argument("--db", type=int, default=15, help="Redis database used (emptied)")
    args = parser.parse_args()

    url = f"redis://127.0.0.1:6379/{args.db}"
    os.environ["SHARDSYNC_BROKER_URL"] = url
    import logging

    import structlog
    from redis import Redis

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from worker import app, submit_sync
    from worker.adapters.demo import InventoryAdapter
    from worker.job.spec import JobSpec
    from worker.runners.local import run_local

    latency = args.latency_ms / 1000.0
    source_kwargs = {"sites": args.sites, "devices": 10, "interfaces": 4, "variant": 1, "hook_latency": latency}
    target_kwargs = {"sites": args.sites, "devices": 10, "interfaces": 4, "hook_latency": latency}
    rows = []

    started = time.perf_counter()
    source, target = InventoryAdapter(**source_kwargs), InventoryAdapter(**target_kwargs)
    source.load()
    target.load()
    diff = target.sync_from(source)
    reference = time.perf_counter() - started
    operations = sum(v for k, v in diff.summary().items() if k in ("create", "update", "delete"))
    rows.append(("sync_from (one process)", reference, ""))
    del source, target, diff

    spec = {"source": "demo", "target": "demo", "source_kwargs": source_kwargs, "target_kwargs": target_kwargs}
    started = time.perf_counter()
    report = run_local(JobSpec.from_data({**spec, "shard_size": args.shard_size}))
    rows.append(("embedded runner", time.perf_counter() - started, _stages(report)))

    client = Redis.from_url(url)
    client.flushdb()
    logs = tempfile.mkdtemp(prefix="shardsync-bench-")
    env = dict(os.environ, SHARDSYNC_BROKER_URL=url, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "worker",
                "-n",
                f"bench{i}@%h",
                "-c",
                str(args.concurrency),
                "-Q",
                "shardsync.jobs,shardsync.shards",
                "-l",
                "warning",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=str(ROOT),
            env=env,
            stdout=open(Path(logs) / f"w{i}.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for i in range(args.workers)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(app.control.ping(timeout=0.5) or []) < args.workers:
            if time.monotonic() > deadline:
                raise SystemExit(f"workers did not start; logs in {logs}")
        started = time.perf_counter()
        handle = submit_sync(**spec, shard_size=args.shard_size)
        report = handle.wait(timeout=3600)
        distributed = time.perf_counter() - started
        rows.append((f"job on {args.workers}x{args.concurrency} workers", distributed, _stages(report)))
        shards = len(report["shards"])
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        client.flushdb()

    print(
        f"{args.sites} sites ({args.sites * 51} objects/side), {operations} operations, "
        f"{args.latency_ms} ms per change, shard size {args.shard_size} ({shards} shards)"
    )
    print(f"{'run':<32} {'seconds':>9} {'ratio':>7}  stages")
    for name, seconds, stages in rows:
        print(f"{name:<32} {seconds:>9.2f} {seconds / reference:>6.2f}x  {stages}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB (workers not included)")
    return 0


def _stages(report: dict) -> str:
    order = ("load-source", "load-target", "diff", "plan", "sync", "finish")
    return " ".join(f"{stage} {report['seconds'][stage]:.2f}" for stage in order if stage in report["seconds"])


if __name__ == "__main__":
    sys.exit(main())
