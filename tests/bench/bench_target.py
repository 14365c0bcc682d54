"""Benchmark: a job against a remote of limited capacity, with nothing declared (issue 21's point 3).

Run on demand (pytest never collects ``tests/bench``)::

    python tests/bench/bench_target.py                              # 4, 8 and 16 slots, capacity 6
    python tests/bench/bench_target.py --slots 16 --capacity 6 --service-time 0.05 --sites 60

The remote is the tests' HTTP API (``tests/integration/_target_server.py``) run as its own process: it serves
``--capacity`` calls at once in ``--service-time`` seconds each; a call that finds no place within
``--queue-timeout`` seconds is answered 503. Workers are ``celery -A worker worker`` subprocesses (threads pools,
two workers) on Redis database ``--db`` (emptied before and after), writing through the httpx test adapter
(``tests/integration/ss_http_target.py``). For each slot count it prints the job's time against the capacity
bound (operations x service time / capacity: no sync can beat it), the share of transient answers (503/429),
the calls made again, the lowest adaptive limit, and the calls in flight sampled over the job (p50, p95, max).
Target: transient answers at most 5% of the calls, job time within 1.5x the bound. The exit code is 0 either way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT / "tests" / "integration"), str(ROOT)]

from _target_api import start_target_api  # noqa: E402
from bench_distributed import Cluster, configure_environment, redis_client  # noqa: E402


def run(args: argparse.Namespace, app: Any, url: str, slots: int) -> Dict[str, Any]:
    import httpx

    from worker import submit_sync

    api = start_target_api(capacity=args.capacity, service_time=args.service_time, queue_timeout=args.queue_timeout)
    base = api.url
    samples: List[int] = []
    stop = threading.Event()

    def sample() -> None:
        with httpx.Client(base_url=base, timeout=5) as client:
            while not stop.wait(0.1):
                samples.append(int(client.get("/stats").json()["in_flight"]))

    try:
        with Cluster(app, url, workers=2, pool="threads", concurrency=max(1, slots // 2), tag=f"t{slots}"):
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            handle = submit_sync(
                "demo", "http-target", source_kwargs={"sites": args.sites, "variant": 1},
                target_kwargs={"url": base}, shard_size=args.shard_size,
            )  # fmt: skip
            report = handle.wait(timeout=3600)
            seconds = time.monotonic() - started
            stop.set()
            sampler.join(timeout=5)
        stats = api.stats()
    finally:
        api.stop()
    statuses = {int(code): count for code, count in stats["statuses"].items()}
    calls = sum(statuses.values())
    transient = statuses.get(503, 0) + statuses.get(429, 0)
    busy = sorted(samples) or [0]
    return {
        "slots": slots,
        "seconds": seconds,
        "bound": report["operations"] * args.service_time / args.capacity,
        "operations": report["operations"],
        "status": report["status"],
        "calls": calls,
        "transient": transient / calls if calls else 0.0,
        "retries": report.get("retries", 0),
        "lowest_limit": report.get("lowest_limit"),
        "in_flight": (statistics.median(busy), busy[int(0.95 * (len(busy) - 1))], stats["most_in_flight"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=lambda s: [int(x) for x in s.split(",")], default=[4, 8, 16])
    parser.add_argument("--capacity", type=int, default=6, help="calls the API serves at once")
    parser.add_argument("--service-time", type=float, default=0.05, help="seconds per call")
    parser.add_argument("--queue-timeout", type=float, default=0.25, help="seconds a call may wait for a place")
    parser.add_argument("--sites", type=int, default=40, help="demo sites (7 operations each, about)")
    parser.add_argument("--shard-size", type=int, default=20)
    parser.add_argument("--db", type=int, default=8, help="Redis database used (emptied before and after)")
    args = parser.parse_args()
    url = configure_environment(args.db)
    import os

    os.environ["SHARDSYNC_ADAPTER_MODULES"] = "tests.integration.ss_http_target"
    from worker import app

    client = redis_client(url)
    client.flushdb()
    rows = []
    try:
        for slots in args.slots:
            rows.append(run(args, app, url, slots))
    finally:
        client.flushdb()
    print(
        f"== capacity {args.capacity}, {args.service_time * 1000:g} ms per call, queue timeout "
        f"{args.queue_timeout:g} s, nothing declared"
    )
    print("slots  ops   job s  bound s  ratio  calls  transient  retries  lowest  in flight p50/p95/max  status")
    for row in rows:
        p50, p95, most = row["in_flight"]
        print(
            f"{row['slots']:5d}  {row['operations']:4d}  {row['seconds']:6.2f}  {row['bound']:7.2f}  "
            f"{row['seconds'] / row['bound']:5.2f}  {row['calls']:5d}  {row['transient']:8.1%}  {row['retries']:7d}  "
            f"{str(row['lowest_limit'] or '-'):>6}  {p50:>5.0f}/{p95:.0f}/{most:<14d}  {row['status']}"
        )
    print("targets: transient <= 5%, job <= 1.5x bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
