"""Benchmark: syncs that read only what changed, against the whole sync of the same data, side by side.

Run on demand (not part of the test suite)::

    python tests/bench/bench_incremental.py --scoped --objects 204000 --scope-share 0.01

Scoped (``--scoped``): the demo inventory (``--objects`` per side, sites of 10 devices of 19 interfaces), the
source a variant of the target; one whole job on the embedded runner (``run_local``: the pipeline's load,
ranged diff, plan and shards in this process), then the same job scoped to ``--scope-share`` of the sites
(spread over the inventory), once with the demo adapters (which load by scope) and once with adapters that do
not (they load whole, and the diff leaves the rest out). Each scoped job's result is checked against the
engine's scoped diff of the same data. Targets: a scoped job at most 5% of the whole job's time with adapters
that load by scope, 30% with adapters that do not.

Incremental (``--incremental``): the SQLite demo inventory (``worker.adapters.demo_db``, ``--objects`` per
side; ``--initial-share`` of the source edited) synced by a pair on the embedded runner (``--runner workers``: on
2 real worker processes, Redis database ``--db``): a cold (full) job, then
twice ``--change-share`` of the source changed (updates, creates, deletes) and a warm job (changes only): the
first lists the cold job's own writes from the target's feed too, the second is a pair in its stride; the
check is a full re-diff of both systems (a plan of the same sync without the pair) that must find nothing to
do, and both files' rows equal. Target: the warm job at most 5% of the cold job's time.
``--verified-target``: the target cannot list its changes (its kept state is verified where the run looks).

Events (``--events``): ``--requests`` resync requests over ``--seconds``, each scoped to one of ``--subtrees``
sites of one pair, with ``--coalesce`` seconds, sent to 2 real ``celery -A worker worker`` processes (Redis
database ``--db``, emptied before and after). Targets: at most 3 jobs run, none is refused or fails, and every
requested site is synced by a job that started after its request (the target converges).

Prints the table and the command, and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _db() -> int:
    """``--db`` read before anything imports ``worker`` (its Celery app reads the environment once)."""
    for position, arg in enumerate(sys.argv):
        if arg == "--db" and position + 1 < len(sys.argv):
            return int(sys.argv[position + 1])
        if arg.startswith("--db="):
            return int(arg.split("=", 1)[1])
    return 7


os.environ["SHARDSYNC_BROKER_URL"] = f"redis://127.0.0.1:6379/{_db()}"

from core.adapter import Adapter  # noqa: E402
from core.scope import Scope  # noqa: E402
from worker.adapters.demo import InventoryAdapter  # noqa: E402
from worker.adapters.registry import register_adapter  # noqa: E402
from worker.job.spec import JobSpec  # noqa: E402
from worker.runners.local import run_local  # noqa: E402

PER_SITE = 1 + 10 * (1 + 19)


@register_adapter("bench-whole")
class WholeInventory(InventoryAdapter):
    """The demo inventory without its scoped load: a scoped job loads it whole (as most adapters load)."""

    def load_scoped(self, scope: Scope) -> None:
        Adapter.load_scoped(self, scope)

    def partitions_in(self, scope: Scope) -> Any:
        return Adapter.partitions_in(self, scope)


def job(adapters: Tuple[str, str], sites: int, scope: Any, latency: float = 0.0) -> JobSpec:
    shape = {"sites": sites, "devices": 10, "interfaces": 19}
    return JobSpec.from_data({
        "source": adapters[0], "target": adapters[1], "source_kwargs": {**shape, "variant": 1},
        "target_kwargs": {**shape, "hook_latency": latency}, "scope": scope, "allow_deletes": True,
    })  # fmt: skip


def timed(spec: JobSpec) -> Tuple[float, Dict[str, Any]]:
    started = time.perf_counter()
    report = run_local(spec)
    return time.perf_counter() - started, report


def expected(sites: int, scope: Scope) -> Dict[str, int]:
    source = InventoryAdapter(sites=sites, devices=10, interfaces=19, variant=1)
    target = InventoryAdapter(sites=sites, devices=10, interfaces=19)
    source.load()
    target.load()
    return target.diff_from(source, scope=scope).summary()


def scoped(args: argparse.Namespace) -> List[str]:
    sites = max(1, args.objects // PER_SITE)
    count = max(1, round(sites * args.scope_share))
    ids = [f"site-{sites * index // count:04d}" for index in range(count)]
    scope = {"ids": ids}
    whole_seconds, whole = timed(job(("demo", "demo"), sites, None, args.hook_latency))
    rows = [("whole job", whole_seconds, whole, None)]
    for name, adapters, target in (("scoped, adapters load by scope", ("demo", "demo"), 0.05),
                                   ("scoped, adapters load whole", ("bench-whole", "bench-whole"), 0.30)):  # fmt: skip
        seconds, report = timed(job(adapters, sites, scope, args.hook_latency))
        rows.append((name, seconds, report, target))
    # The floor of a job whose adapters load whole: their own load() of both sides, as the job's report times it.
    loads = sum(rows[-1][2]["seconds"].get(f"load-{side}", 0.0) for side in ("source", "target"))
    rows.append(("  of which both sides' load() (floor)", loads, None, None))
    want = expected(sites, Scope.from_data(scope))
    missed = []
    print(f"{sites} sites, {sites * PER_SITE} objects per side; scope: {count} sites ({args.scope_share:.1%})")
    print(f"{'job':34} {'seconds':>8} {'share':>7} {'target':>7} {'ops':>7}")
    for name, seconds, report, target in rows:
        share = seconds / whole_seconds
        ok = target is None or share <= target
        ops = f"{report['operations']:7d}" if report is not None else " " * 7
        print(f"{name:34} {seconds:8.2f} {share:7.1%} {'' if target is None else f'{target:.0%}':>7} "
              f"{ops}{'' if ok else '  MISSED'}")  # fmt: skip
        if target is not None:
            got = {k: report["summary"][k] for k in ("create", "update", "delete")}
            if got != {k: want[k] for k in ("create", "update", "delete")}:
                missed.append(f"{name}: summary {got} is not the scoped diff's {want}")
            if not ok:
                missed.append(f"{name}: {share:.1%} of the whole job, target {target:.0%}")
    return missed


def incremental(args: argparse.Namespace) -> List[str]:
    """A pair's cold (full) job, then a warm one after ``--change-share`` of the source changed; then a check."""
    import tempfile
    import uuid

    from worker.adapters.demo_db import change_inventory_db, db_state, make_inventory_db
    from worker.state.pairs import MEMORY_PAIRS

    sites = max(1, args.objects // PER_SITE)
    folder = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    paths = {"source": str(folder / "source.sqlite"), "target": str(folder / "target.sqlite")}
    started = time.perf_counter()
    # The two systems differ by --initial-share of the objects: what the pair's first (full) run syncs.
    made = make_inventory_db(paths["source"], sites, 10, 19)
    make_inventory_db(paths["target"], sites, 10, 19)
    change_inventory_db(paths["source"], round(made * args.initial_share), seed=0)
    target = "verified" if args.verified_target else "lists its changes"
    print(f"{sites} sites, {made} objects per side (SQLite files in {folder}, {time.perf_counter() - started:.0f} s "
          f"to build); runner: {args.runner}; target {target}")  # fmt: skip
    pair = f"bench-{uuid.uuid4().hex[:8]}"
    target_kwargs = {"path": paths["target"], "changes": not args.verified_target}
    run, stop = (timed, lambda: MEMORY_PAIRS.forget(pair)) if args.runner == "embedded" else on_workers(args, pair)

    def spec(**extra: Any) -> JobSpec:
        return JobSpec.from_data({"source": "demo-db", "target": "demo-db", "source_kwargs": {"path": paths["source"]},
                                  "target_kwargs": target_kwargs, "allow_deletes": True, **extra})  # fmt: skip

    try:
        cold_seconds, cold = run(spec(pair=pair))
        edits = change_inventory_db(paths["source"], round(made * args.change_share), seed=1)
        first_seconds, first = run(spec(pair=pair))  # its target's feed also lists the cold job's own writes
        edits = change_inventory_db(paths["source"], round(made * args.change_share), seed=2)
        warm_seconds, warm = run(spec(pair=pair))  # a pair in its stride: the last run was a warm one too
        # The check: a full re-diff of both systems, each loaded whole (a plan of the same sync, no pair).
        check_seconds, check = run(spec(dry_run=True))
    finally:
        stop()
    left = {kind: check["summary"][kind] for kind in ("create", "update", "delete")}
    equal = db_state(paths["source"]) == db_state(paths["target"])
    share = warm_seconds / cold_seconds
    print(f"source changed before each warm job: {edits} objects ({edits / made:.2%})")
    print(f"{'job':34} {'seconds':>8} {'share':>7} {'target':>7} {'ops':>7}")
    print(f"{'cold (full) job of the pair':34} {cold_seconds:8.2f} {1:7.1%} {'':>7} {cold['operations']:7d}")
    print(f"{'first warm job (after the cold one)':34} {first_seconds:8.2f} {first_seconds / cold_seconds:7.1%} "
          f"{'':>7} {first['operations']:7d}")  # fmt: skip
    print(f"{'warm job (after a warm one)':34} {warm_seconds:8.2f} {share:7.1%} {'5%':>7} {warm['operations']:7d}"
          f"{'' if share <= 0.05 else '  MISSED'}")  # fmt: skip
    for stage in ("load-source", "load-target", "diff", "plan", "sync", "finish"):
        if stage in warm["seconds"]:
            print(f"  warm {stage:29} {warm['seconds'][stage]:8.2f}   (cold: {cold['seconds'].get(stage, 0.0):.2f})")
    # The floor: the warm job's writes, at what each operation cost the cold job's sync (any job that applies
    # these changes pays that); the rest of the warm job is what reading only the changes costs.
    floor = warm["operations"] * cold["seconds"].get("sync", 0.0) / max(1, cold["operations"])
    print(f"  {'floor: its writes at the cold cost':32} {floor:8.2f} {floor / cold_seconds:7.1%}")
    rest = warm_seconds - floor
    print(f"  {'the rest (above the floor)':32} {rest:8.2f} {rest / cold_seconds:7.1%}")
    print(f"{'check: full re-diff (plan)':34} {check_seconds:8.2f} {check_seconds / cold_seconds:7.1%} "
          f"{'':>7} left to do: {left}; rows equal: {equal}")  # fmt: skip
    print(f"first warm run: {first['pair']}")
    print(f"warm run: {warm['pair']}")
    missed = []
    if share > 0.05:
        missed.append(f"warm job {share:.1%} of the cold job, target 5%")
    if any(left.values()) or not equal:
        missed.append(f"the warm job's result is not a full sync's: a full re-diff finds {left}, rows equal {equal}")
    for path in paths.values():
        Path(path).unlink(missing_ok=True)
    return missed


def on_workers(args: argparse.Namespace, pair: str) -> Tuple[Any, Any]:
    """2 real worker processes with the default settings (Redis database ``--db``, emptied before and after):
    a function that runs a job on them and times it, and one that stops them."""
    import tempfile

    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from _workers import start_worker, stop_workers, wait_for_workers  # the tests' real worker processes
    from redis import Redis

    from worker import forget_pair, submit_spec

    client = Redis.from_url(os.environ["SHARDSYNC_BROKER_URL"])
    client.flushdb()
    logs = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [start_worker(name, logs, env=env) for name in ("bench1", "bench2")]
    wait_for_workers(["bench1", "bench2"], procs)

    def run(spec: JobSpec) -> Tuple[float, Dict[str, Any]]:
        started = time.perf_counter()
        report = submit_spec(spec).wait(3600)
        return time.perf_counter() - started, report

    def stop() -> None:
        forget_pair(pair)
        stop_workers(procs)
        client.flushdb()

    return run, stop


def events(args: argparse.Namespace) -> List[str]:
    import random
    import tempfile
    import uuid

    url = os.environ["SHARDSYNC_BROKER_URL"]
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from _workers import start_worker, stop_workers, wait_for_workers  # the tests' real worker processes
    from redis import Redis
    from ss_test_adapters import read_calls  # the tests' recording adapter, registered here and in the workers

    from worker import JobHandle, submit_sync

    client = Redis.from_url(url)
    client.flushdb()
    logs = Path(tempfile.mkdtemp(prefix="bench-events-"))
    procs = [start_worker(name, logs, concurrency=2) for name in ("bench1", "bench2")]
    missed: List[str] = []
    try:
        wait_for_workers(["bench1", "bench2"], procs)
        calls = f"bench:calls:{uuid.uuid4().hex}"
        source = {"region": [], "site": [{"name": f"s-{n:03d}", "devices": [{"name": f"d{d}"} for d in range(3)]}
                                         for n in range(args.subtrees)]}  # fmt: skip
        rng = random.Random(7)
        asked: Dict[str, float] = {}
        jobs: Dict[str, float] = {}
        started = time.perf_counter()
        for number in range(args.requests):
            due = started + args.seconds * number / args.requests
            time.sleep(max(0.0, due - time.perf_counter()))
            site = f"s-{rng.randrange(args.subtrees):03d}"
            handle = submit_sync("dataset", "dataset", source_kwargs={"data": source},
                                 target_kwargs={"record_url": url, "calls_key": calls}, scope={"ids": [site]},
                                 coalesce=args.coalesce)  # fmt: skip
            asked.setdefault(site, time.time())
            jobs.setdefault(handle.id, time.time())
        sent = time.perf_counter() - started
        reports = {}
        for job_id in jobs:
            try:
                reports[job_id] = JobHandle(job_id).wait(300)
            except Exception as err:  # noqa: BLE001 - a refused or failed job is what this counts
                missed.append(f"job {job_id} did not succeed: {err}")
        synced = {call[2] for call in read_calls(client, calls) if call[0] == "create" and "__" not in call[2]}
        print(f"{args.requests} requests over {sent:.1f} s, {len(asked)} sites of {args.subtrees}, "
              f"coalesce {args.coalesce:g} s")  # fmt: skip
        print(f"jobs run: {len(jobs)} (target: at most 3); failed or refused: {len(jobs) - len(reports)}; "
              f"sites synced: {len(synced)} of {len(asked)} asked")  # fmt: skip
        for job_id, report in reports.items():
            print(f"  job {job_id[:8]}: {report['status']}, {len((report.get('scope') or {}).get('ids') or [])} "
                  f"sites in scope, {report['operations']} operations, {report['seconds']['total']:.1f} s")  # fmt: skip
        if len(jobs) > 3:
            missed.append(f"{len(jobs)} jobs ran for {args.requests} requests, target at most 3")
        if set(asked) - synced:
            missed.append(f"sites asked for and never synced: {sorted(set(asked) - synced)[:5]}")
    finally:
        stop_workers(procs)
        client.flushdb()
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scoped", action="store_true", help="the scoped syncs' targets")
    parser.add_argument("--objects", type=int, default=204_000, help="objects per side")
    parser.add_argument("--scope-share", type=float, default=0.01, help="share of the top-level elements in scope")
    parser.add_argument("--hook-latency", type=float, default=0.0, help="seconds each write to the target takes")
    parser.add_argument("--incremental", action="store_true", help="the incremental pair's target")
    parser.add_argument("--change-share", type=float, default=0.005, help="share of the source changed between runs")
    parser.add_argument("--runner", choices=["embedded", "workers"], default="embedded",
                        help="--incremental on the embedded runner, or on 2 real workers (Redis database --db)")
    parser.add_argument("--initial-share", type=float, default=0.01, help="share of objects the first run syncs")
    parser.add_argument("--verified-target", action="store_true", help="a target without cursors (verified)")
    parser.add_argument("--events", action="store_true", help="the coalescing resyncs' targets (real workers)")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0, help="over how long the requests are sent")
    parser.add_argument("--subtrees", type=int, default=50)
    parser.add_argument("--coalesce", type=float, default=5.0, help="each request's coalesce window")
    parser.add_argument("--db", type=int, default=7, help="Redis database of --events (emptied)")
    args = parser.parse_args()
    if not (args.scoped or args.events or args.incremental):
        parser.error("say which targets to measure: --scoped, --incremental, --events")
    print("command: python tests/bench/bench_incremental.py " + " ".join(sys.argv[1:]))
    missed = (scoped(args) if args.scoped else []) + (incremental(args) if args.incremental else [])
    missed += events(args) if args.events else []
    for line in missed:
        print("MISSED:", line)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
