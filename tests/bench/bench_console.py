"""Benchmark: the console's two big reads, a page of a huge diff and the job list of a long history.

Run on demand (not part of the test suite)::

    python tests/bench/bench_console.py --elements 200000 --jobs 10000

Writes, straight into the job state of Redis database ``--db`` (emptied before and after), one ended job
whose kept diff has ``--elements`` elements in two shapes (flat: that many top-level elements; deep: 20
top-level subtrees of ``elements/20``), and ``--jobs`` ended jobs of history. Then times, through the HTTP
API in this process (Starlette's test client: the whole ASGI app, without a socket), each request an
operator's browser makes, and prints each beside its reference in the same run:

- a diff page (first, middle, last, and a filter matching only the last element) against rebuilding the
  whole diff as ``JobHandle.diff()`` does (what a console without paging would have to do);
- the job list (newest 50, a filter matching only the oldest job, the HTML page) against reading every
  job's state as the list did before the kept lines (``job_summary`` per job).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, List

ROOT = Path(__file__).resolve().parents[2]


def timed(call: Callable[[], Any], repeat: int = 5) -> float:
    """Median seconds of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elements", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=200, help="elements per diff page (the console's is 300)")
    parser.add_argument("--db", type=int, default=8, help="Redis database used (emptied before and after)")
    args = parser.parse_args()
    os.environ["SHARDSYNC_BROKER_URL"] = f"redis://127.0.0.1:6379/{args.db}"
    sys.path.insert(0, str(ROOT))

    from fastapi.testclient import TestClient
    from redis import Redis

    from core import keys
    from worker.job.history import job_summary, record_line
    from worker.settings import Settings
    from worker.state.codec import pack
    from worker.state.redis import RedisJobState
    from worker.web.app import create_app
    from worker.web.auth import token_digest

    client = Redis.from_url(os.environ["SHARDSYNC_BROKER_URL"])
    client.flushdb()
    token = "bench-" + "b" * 20
    api = TestClient(create_app(Settings(web_users=f"bench viewer {token_digest(token)}")))
    headers = {"Authorization": f"Bearer {token}"}
    try:
        print(f"{'read':58} {'shardsync':>10} {'reference':>10} {'ratio':>7}")
        for shape, roots in (("flat", args.elements), ("deep", 20)):
            per_root = args.elements // roots
            job = RedisJobState(f"bench-diff-{shape}", client)
            job.create({"job_id": job.job_id, "source": "src", "target": "dst"}, 3600)

            def record(index: int, per_root: int = per_root, roots: int = roots) -> List[Any]:
                children = [["port", f"p{child}", {"name": f"p{child}"}, {"speed": child}, None, []]
                            for child in range(per_root - 1)]  # fmt: skip
                last = index == roots - 1
                return ["site", f"s{index}", {"name": f"s{index}"}, None if last else {"n": index}, {"n": -1}, children]

            batch: List[Any] = []
            for index in range(roots):
                batch.append(record(index))
                if len(batch) * per_root >= 20_000 or index == roots - 1:
                    start = index + 1 - len(batch)
                    client.hset(job.key("diff"), mapping={str(start + n): pack(item) for n, item in enumerate(batch)})
                    batch = []
            job.save_summary({"create": args.elements - roots, "update": roots - 1, "delete": 1, "skip": 0})
            job.save_report({"status": "success"}, 3600)
            base = f"/api/v1/jobs/{job.job_id}/diff?limit={args.page}"
            middle = f"{roots // 2}.{per_root // 2}" if roots < 1000 else f"{roots // 2}.0"
            reference = timed(lambda job=job: job.diff_records(list(range(job.diff_size()))), repeat=1)
            rows = [("first page", base), ("middle page", f"{base}&cursor={middle}"),
                    ("last page", f"{base}&cursor={roots - 1}.0"), ("filtered: action=delete (one, at the end)",
                    f"{base}&action=delete")]  # fmt: skip
            for name, url in rows:
                answer = api.get(url, headers=headers)
                assert answer.status_code == 200, answer.text
                seconds = timed(lambda url=url: api.get(url, headers=headers))
                label = f"diff {shape} ({roots} top-level, {args.elements} elements): {name}"
                print(f"{label:58} {seconds * 1000:8.1f}ms {reference * 1000:8.0f}ms {reference / seconds:6.0f}x")
            print(f"{'  (reference: every record of the diff read and decoded, not yet rebuilt)':58}")

        started = time.perf_counter()
        now = time.time()
        pipe = client.pipeline(transaction=False)
        ids = []
        for number in range(args.jobs):
            job_id = f"bench-{number:06d}-{uuid.uuid4().hex[:8]}"
            ids.append(job_id)
            job = RedisJobState(job_id, client)
            at = now - (args.jobs - number) * 60
            pipe.set(job.key("spec"), pack({"job_id": job_id, "source": "nautobot", "target": f"netbox-{number % 7}"}))
            pipe.hset(job.key("info"), mapping={"submitted": pack(at), "finished": pack(at + 30),
                                                "status": pack("success"),
                                                "schedule": pack("nightly" if number % 2 else None)})  # fmt: skip
            pipe.set(job.key("report"), pack({"status": "success" if number else "failed", "failures": []}))
            pipe.set(job.key("summary"), pack({"create": number, "update": 1, "delete": 0}))
            pipe.zadd(keys.JOB_INDEX, {job_id: at})
            if len(pipe) > 5000:
                pipe.execute()
        pipe.execute()
        for job_id in ids:
            record_line(RedisJobState(job_id, client))
        print(f"({args.jobs} jobs of history written in {time.perf_counter() - started:.1f} s)")
        reference = timed(lambda: [job_summary(RedisJobState(job_id, client)) for job_id in ids], repeat=1)
        rows = [
            ("newest 50", "/api/v1/jobs?limit=50"),
            ("filter: only the oldest (state=failed)", "/api/v1/jobs?state=failed"),
            ("filter: schedule=nightly, target=netbox-3", "/api/v1/jobs?schedule=nightly&target=netbox-3"),
        ]
        for name, url in rows:
            answer = api.get(url, headers=headers)
            assert answer.status_code == 200 and answer.json()["items"], answer.text
            seconds = timed(lambda url=url: api.get(url, headers=headers))
            label = f"job list of {args.jobs}: {name}"
            print(f"{label:58} {seconds * 1000:8.1f}ms {reference * 1000:8.0f}ms {reference / seconds:6.0f}x")
        api.post("/login", data={"token": token})
        seconds = timed(lambda: api.get("/jobs?state=failed"))
        label = f"job list of {args.jobs}: the HTML page, only the oldest"
        print(f"{label:58} {seconds * 1000:8.1f}ms {reference * 1000:8.0f}ms {reference / seconds:6.0f}x")
        print("  (reference: each job's state read, as the list did before the kept lines)")
    finally:
        client.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
