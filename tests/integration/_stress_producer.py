"""A producer process for ``test_stress.py``: submits its share of the jobs with ``worker.submit_sync``.

Usage: ``python _stress_producer.py JOBS_FILE READY_KEY GO_KEY`` with the workers' environment
(``SHARDSYNC_BROKER_URL``, ``SHARDSYNC_ADAPTER_MODULES=ss_test_adapters``). ``JOBS_FILE`` is a JSON list of
``submit_sync`` keyword arguments (each with its ``job_id``). The producer imports everything, adds itself to
the Redis set ``READY_KEY``, waits (polling, with a deadline) for the key ``GO_KEY``, so that every producer
submits at the same moment, then submits its jobs one after the other. It prints one JSON line: a list of
``[job_id, "ok" | "error", message]``.
"""

from __future__ import annotations

import json
import os
import sys
import time

from redis import Redis

from worker import submit_sync
from worker.adapters.registry import get_adapter


def main() -> int:
    jobs_file, ready_key, go_key = sys.argv[1:4]
    with open(jobs_file, encoding="utf-8") as handle:
        jobs = json.load(handle)
    get_adapter("dataset")  # imports SHARDSYNC_ADAPTER_MODULES now, not in the middle of the burst
    client = Redis.from_url(os.environ["SHARDSYNC_BROKER_URL"])
    client.sadd(ready_key, os.getpid())
    deadline = time.monotonic() + 60
    while not client.exists(go_key):
        if time.monotonic() > deadline:
            print(json.dumps([["", "error", "no go signal within 60 s"]]))
            return 1
        time.sleep(0.005)
    results = []
    for job in jobs:
        try:
            handle = submit_sync(**job)
            results.append([handle.id, "ok", ""])
        except Exception as err:  # noqa: BLE001 - reported to the test, which fails on it
            results.append([job.get("job_id", ""), "error", f"{type(err).__name__}: {err}"])
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
