"""Benchmark of the distributed runner against the targets of issue 11, one scenario at a time.

Run on demand (pytest never collects it: the file is ``bench_*.py`` and ``tests/bench`` is in
``norecursedirs``)::

    python tests/bench/bench_distributed.py                          # every scenario, full sizes
    python tests/bench/bench_distributed.py --scenario io --io-sites 200 --slots 2,4
    python tests/bench/bench_distributed.py --scenario memory --memory-sites 2000

Why each scenario exists (the targets are printed as OK/MISS; the script exits 0 either way):

``io``
    Hooks that wait like a remote API (``hook_latency``): the case a distributed sync is for. The whole job
    (submit to report) on 2, 4, 8, 16 slots against one process doing ``target.sync_from(source)``.
    Target: speedup per slot >= 0.7.
``cheap``
    Hooks that cost nothing: what is left is the runner's own overhead (Redis round trips, messages,
    journal). Target: the job takes at most 2x the local ``sync_from``.
``partitioned``
    A paginated source (``page_latency`` per page of 100 objects) loaded as N partitions, one task each
    (needs the demo adapter's ``partitions``/``page_latency`` kwargs). Target: the load stage is at least
    0.7 x slots faster than the same loads in one process.
``memory``
    A large job must converge with no worker process above 1 GiB (the local ``sync_from`` of the same data
    peaks around 2.3 GiB); also Redis memory per stored object.

Everything runs on Redis database ``--db`` (9 by default) of 127.0.0.1:6379, emptied with FLUSHDB before and
after; no other database is touched. Workers are ``celery -A worker worker`` subprocesses, each in its own
process group, killed by group at the end, on errors and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("load-source", "load-target", "diff", "plan", "sync", "finish")
GIB = 1024**3
MIB = 1024**2
SCENARIOS = ("io", "cheap", "partitioned", "memory")


# ----------------------------------------------------------------------------------------------------
# Environment: point this process and every worker at one Redis database, before ``worker`` is imported
# ----------------------------------------------------------------------------------------------------


def configure_environment(db: int) -> str:
    """Point producer and workers at database ``db`` only (the Celery app reads the environment once)."""
    url = f"redis://127.0.0.1:6379/{db}"
    os.environ["SHARDSYNC_BROKER_URL"] = url
    for name in ("SHARDSYNC_RESULT_BACKEND", "SHARDSYNC_STORE_URL", "SHARDSYNC_ADAPTER_MODULES"):
        os.environ.pop(name, None)  # else results or stores could land in another database
    import structlog

    # The engine's per-object events would dominate the timings of the in-process reference.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return url


def redis_client(url: str) -> Any:
    """A client of the bench database (FLUSHDB on it only, never FLUSHALL)."""
    from redis import Redis

    return Redis.from_url(url)


# ----------------------------------------------------------------------------------------------------
# Worker processes
# ----------------------------------------------------------------------------------------------------


@dataclass
class ProcInfo:
    """One process of a worker's process group, with the largest resident set seen for it."""

    pid: int
    role: str  # "main" (the Celery worker process) or "child" (a prefork pool process)
    hwm: int = 0  # bytes, VmHWM (peak RSS) last read
    alive: bool = True
    stage: str = ""  # the job's stage when the peak last grew by more than 5% (which task made it)


@dataclass
class WorkerGroup:
    """A ``celery worker`` subprocess, the leader of its own process group (pgid == pid)."""

    index: int
    proc: subprocess.Popen
    log: Path
    procs: Dict[int, ProcInfo] = field(default_factory=dict)

    def sample(self, stage: str = "") -> None:
        """Read VmHWM of every process of the group; a pid that has gone keeps its last figure."""
        seen = set()
        for pid in _group_pids(self.proc.pid):
            hwm = _vm_hwm(pid)
            if hwm is None:
                continue
            seen.add(pid)
            info = self.procs.setdefault(pid, ProcInfo(pid, "main" if pid == self.proc.pid else "child"))
            if hwm > info.hwm * 1.05 and stage:
                info.stage = stage
            info.hwm = max(info.hwm, hwm)
        for pid, info in self.procs.items():
            if pid not in seen:
                info.alive = False


def _group_pids(pgid: int) -> List[int]:
    """Pids of the processes whose process group is ``pgid`` (from /proc/<pid>/stat)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(b")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def _vm_hwm(pid: int) -> Optional[int]:
    """Peak resident set of a live process in bytes (VmHWM), None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Cluster:
    """``workers`` Celery worker processes on the bench database, started and stopped as process groups.

    Used as a context manager: leaving it (normally, on an exception or on Ctrl-C) reads every process's
    peak RSS and then kills each group, so no worker outlives the bench.
    """

    def __init__(
        self,
        app: Any,
        url: str,
        workers: int,
        pool: str,
        concurrency: int,
        tag: str,
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        self.app, self.url, self.workers = app, url, workers
        self.pool, self.concurrency, self.tag = pool, concurrency, tag
        self.extra_env = env or {}
        self.groups: List[WorkerGroup] = []
        self.logs = Path(tempfile.mkdtemp(prefix=f"shardsync-bench-{tag}-"))

    @property
    def slots(self) -> int:
        """Tasks the cluster runs at once."""
        return self.workers * self.concurrency

    def __enter__(self) -> Cluster:
        env = dict(os.environ, PYTHONPATH=str(ROOT), **self.extra_env)
        try:
            for index in range(self.workers):
                log = self.logs / f"w{index}.log"
                command = [
                    sys.executable, "-m", "celery", "-A", "worker", "worker",
                    "-n", f"bench-{self.tag}-{index}@%h", "-P", self.pool, "-c", str(self.concurrency),
                    "-Q", "shardsync.jobs,shardsync.shards", "-l", "warning", "--without-gossip", "--without-mingle",
                ]  # fmt: skip
                with open(log, "wb") as out:
                    proc = subprocess.Popen(
                        command, cwd=str(ROOT), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
                self.groups.append(WorkerGroup(index, proc, log))
            self._wait_ready(timeout=120)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        """Poll the workers with Celery pings until all of them answer (or one exits: its log says why)."""
        deadline = time.monotonic() + timeout
        names = {f"bench-{self.tag}-{group.index}@" for group in self.groups}
        while True:
            for group in self.groups:
                if group.proc.poll() is not None:
                    raise RuntimeError(f"worker {group.index} exited with {group.proc.returncode}; see {group.log}")
            replies = self.app.control.ping(timeout=0.5) or []
            answered = {name for reply in replies for name in reply for prefix in names if name.startswith(prefix)}
            if len(answered) >= self.workers:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not answer within {timeout} s; logs in {self.logs}")

    def sample(self, stage: str = "") -> None:
        """Record the current peak RSS of every worker process (``stage``: the job's stage now)."""
        for group in self.groups:
            group.sample(stage)

    def dead(self) -> List[str]:
        """What has died so far: worker main processes that exited, pool children that vanished."""
        problems = []
        for group in self.groups:
            if group.proc.poll() is not None:
                problems.append(f"worker {group.index} (pid {group.proc.pid}) exited with {group.proc.returncode}")
            for info in group.procs.values():
                if info.role == "child" and not info.alive:
                    problems.append(f"pool child {info.pid} of worker {group.index} died (out of memory?)")
        return problems

    def stop(self) -> None:
        """Read the processes' peaks one last time, then end each group: TERM, and KILL after 20 s."""
        for group in self.groups:
            if group.proc.poll() is None:
                group.sample()
        for group in self.groups:
            _signal_group(group.proc.pid, signal.SIGTERM)
        for group in self.groups:
            try:
                group.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _signal_group(group.proc.pid, signal.SIGKILL)
                group.proc.wait(timeout=20)
            _signal_group(group.proc.pid, signal.SIGKILL)  # any pool child left behind by a warm shutdown

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # the whole group has gone


# ----------------------------------------------------------------------------------------------------
# Running one job and watching it
# ----------------------------------------------------------------------------------------------------


@dataclass
class JobRun:
    """What the bench saw of one job: its report (or why there is none) and what it sampled meanwhile."""

    seconds: float
    report: Optional[Dict[str, Any]]
    error: Optional[str]
    loads_done: Optional[float] = None  # seconds from submit until both sides' loads were recorded
    redis_peak: int = 0  # INFO used_memory, largest sample (whole instance)
    redis_after_loads: Optional[int] = None  # INFO used_memory when both loads were recorded
    db_after_loads: Optional[int] = None  # MEMORY USAGE summed over the bench database's keys then
    problems: List[str] = field(default_factory=list)


def run_job(
    cluster: Cluster,
    spec: Dict[str, Any],
    timeout: float,
    interval: float = 0.05,
    measure_db: bool = False,
) -> JobRun:
    """Submit a job and poll it to its end; a dead worker or a timeout ends the wait with an error.

    Polling (not ``handle.wait``) because the bench also watches the loads, the workers' RSS and Redis
    memory while the job runs, and must notice a worker killed for memory instead of waiting for ever.
    """
    from worker import submit_sync
    from worker.connection import redis_client as job_client
    from worker.state.redis import RedisJobState

    client = redis_client(cluster.url)
    started = time.perf_counter()
    handle = submit_sync(**spec)
    state = RedisJobState(handle.id, job_client())
    run = JobRun(0.0, None, None)
    last_sample = 0.0
    while True:
        now = time.perf_counter()
        if now - last_sample >= 0.5:
            last_sample = now
            cluster.sample(handle.progress()[0])
            run.redis_peak = max(run.redis_peak, int(client.info("memory")["used_memory"]))
            problems = cluster.dead()
            if problems:
                run.problems = problems
                if any("exited" in problem for problem in problems):
                    run.error = "; ".join(problems)
                    break
        if run.loads_done is None and len(state.loads()) >= 2:
            run.loads_done = time.perf_counter() - started
            run.redis_after_loads = int(client.info("memory")["used_memory"])
            run.redis_peak = max(run.redis_peak, run.redis_after_loads)
            if measure_db:
                run.db_after_loads = db_memory(client)
        if handle.done():
            run.seconds = time.perf_counter() - started
            run.report = handle.report()
            if run.report is None or run.report.get("status") == "failed":
                result = handle.result
                run.error = (run.report or {}).get("error") or f"job ended {result.state}: {result.result}"
            break
        if now - started > timeout:
            run.error = f"job {handle.id} not ended after {timeout:.0f} s (progress {handle.progress()})"
            break
        time.sleep(interval)  # between two polls of the job's state in Redis
    if not run.seconds:
        run.seconds = time.perf_counter() - started
    cluster.sample()
    return run


def db_memory(client: Any) -> int:
    """Bytes used by the keys of the bench database (MEMORY USAGE of each, by SCAN): other databases excluded."""
    total = 0
    batch: List[bytes] = []
    for key in client.scan_iter(count=1000):
        batch.append(key)
        if len(batch) == 1000:
            total += _usage(client, batch)
            batch = []
    return total + (_usage(client, batch) if batch else 0)


def _usage(client: Any, batch: Sequence[bytes]) -> int:
    pipe = client.pipeline(transaction=False)
    for key in batch:
        pipe.memory_usage(key)
    return sum(value or 0 for value in pipe.execute())


def verify(report: Optional[Dict[str, Any]], expected_operations: Optional[int] = None) -> Tuple[bool, str]:
    """Whether a report says every planned operation ran and succeeded (and as many as the local sync)."""
    if report is None:
        return False, "no report"
    done = sum(sum(by_status.values()) for by_status in report.get("counts", {}).values())
    succeeded = sum(by_status.get("success", 0) for by_status in report.get("counts", {}).values())
    ops = report.get("operations", 0)
    problems = []
    if report.get("status") != "success":
        problems.append(f"status {report.get('status')}: {report.get('error')}")
    if succeeded != ops or done != ops or report.get("skipped") or report.get("failures"):
        problems.append(f"{succeeded}/{ops} succeeded, {report.get('skipped')} skipped")
    if expected_operations is not None and ops != expected_operations:
        problems.append(f"{ops} operations planned, the local sync_from did {expected_operations}")
    return not problems, "; ".join(problems) or f"{ops} operations, all succeeded"


def rediff(report: Dict[str, Any], spec: Dict[str, Any]) -> Dict[str, int]:
    """Diff the job's source store against its synced target store (both still in Redis): must be empty."""
    from worker.job.spec import JobSpec
    from worker.pipeline.context import attach_adapters
    from worker.state.redis import RedisJobState

    job = RedisJobState(report["job_id"])
    source, target = attach_adapters(job, JobSpec.from_data(spec))
    summary = target.diff_from(source).summary()
    return {action: summary.get(action, 0) for action in ("create", "update", "delete")}


# ----------------------------------------------------------------------------------------------------
# Local references
# ----------------------------------------------------------------------------------------------------


@dataclass
class LocalRun:
    """The one-process reference: ``target.sync_from(source)`` with its phases timed."""

    load: float
    diff: float
    sync: float
    operations: int
    objects: int

    @property
    def seconds(self) -> float:
        """Load both, diff, sync: what a user without the runner waits for."""
        return self.load + self.diff + self.sync


def local_sync(source_kwargs: Dict[str, Any], target_kwargs: Dict[str, Any]) -> LocalRun:
    """Time a local sync in phases (the diff is passed to ``sync_from`` so it is not computed twice)."""
    from worker.adapters.demo import InventoryAdapter

    started = time.perf_counter()
    source, target = InventoryAdapter(**source_kwargs), InventoryAdapter(**target_kwargs)
    source.load()
    target.load()
    loaded = time.perf_counter()
    diff = target.diff_from(source)
    diffed = time.perf_counter()
    target.sync_from(source, diff=diff)
    synced = time.perf_counter()
    summary = diff.summary()
    operations = sum(summary.get(action, 0) for action in ("create", "update", "delete"))
    objects = source.count() + target.count() if hasattr(source, "count") else 0
    return LocalRun(loaded - started, diffed - loaded, synced - diffed, operations, objects)


def child_local_sync(payload: str) -> int:
    """Entry point of the subprocess that measures a local sync's peak RSS on its own (``--_local-sync``)."""
    configure_environment(9)  # imports only: this child never connects to Redis
    data = json.loads(payload)
    run = local_sync(data["source"], data["target"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": run.seconds, "operations": run.operations, "peak": peak}))
    return 0


def local_sync_in_child(source_kwargs: Dict[str, Any], target_kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """Run ``local_sync`` in a fresh interpreter, so its peak RSS is its own (read with ``os.wait4``)."""
    payload = json.dumps({"source": source_kwargs, "target": target_kwargs})
    proc = subprocess.Popen(
        [sys.executable, __file__, "--_local-sync", payload], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        out = proc.stdout.read() if proc.stdout else b""
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    result: Dict[str, Any] = {"rc": proc.returncode, "peak_wait4": usage.ru_maxrss * 1024}
    if proc.returncode == 0:
        result.update(json.loads(out.decode().strip().splitlines()[-1]))
    return result


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain aligned text: numbers right-aligned, the rest left-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max(len(str(h)), *(len(row[i]) for row in cells)) if cells else len(str(h)) for i, h in enumerate(headers)
    ]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) if rows else False for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line([str(h) for h in headers]), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def stages_of(report: Optional[Dict[str, Any]]) -> str:
    """The report's stage times, in pipeline order."""
    seconds = (report or {}).get("seconds", {})
    return " ".join(f"{stage}={seconds[stage]:.2f}" for stage in STAGES if stage in seconds)


def verdict(ok: bool) -> str:
    """OK or MISS, the way every target line says it."""
    return "OK" if ok else "MISS"


def command_line(args: argparse.Namespace, scenario: str, **sizes: Any) -> str:
    """The command that reproduces one scenario's table, with every size it used spelled out."""
    parts = ["python", "tests/bench/bench_distributed.py", "--scenario", scenario]
    for name, value in sizes.items():
        if value is None:
            continue
        parts += [f"--{name.replace('_', '-')}", str(value)]
    if args.db != 9:
        parts += ["--db", str(args.db)]
    return "command: " + " ".join(shlex.quote(part) for part in parts)


def inventory(sites: int, devices: int, interfaces: int, **extra: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Source (variant 1) and target (variant 0) kwargs of the demo inventory."""
    base = {"sites": sites, "devices": devices, "interfaces": interfaces, **extra}
    return {**base, "variant": 1}, dict(base)


def job_spec(source_kwargs: Dict[str, Any], target_kwargs: Dict[str, Any], shard_size: Optional[int]) -> Dict[str, Any]:
    """A demo job; no shard size unless the bench was given one (the runner then chooses it)."""
    spec: Dict[str, Any] = {
        "source": "demo",
        "target": "demo",
        "source_kwargs": source_kwargs,
        "target_kwargs": target_kwargs,
    }
    if shard_size is not None:
        spec["shard_size"] = shard_size
    return spec


def fresh(client: Any) -> None:
    """Empty the bench database (FLUSHDB: this database only) so one run's leftovers never skew the next."""
    client.flushdb()


# ----------------------------------------------------------------------------------------------------
# Scenarios
# ----------------------------------------------------------------------------------------------------


def scenario_io(args: argparse.Namespace, app: Any, url: str) -> None:
    """I/O-bound hooks: job time on 2..16 thread slots against one process; target 0.7 speedup per slot.

    With ``--journal-batch 1,50`` each slot count runs once per journal batch, one after the other, so the
    cost of journaling every operation is read side by side (the first batch is the reference of the ratio).
    """
    source_kwargs, target_kwargs = inventory(
        args.io_sites, args.devices, args.interfaces, hook_latency=args.hook_latency
    )
    client = redis_client(url)
    local = local_sync(source_kwargs, target_kwargs)
    spec = job_spec(source_kwargs, target_kwargs, args.shard_size)
    batches: List[Optional[str]] = list(args.journal_batch) if args.journal_batch else [None]
    rows, targets = [], []
    for slots in args.slots:
        workers = min(args.io_workers, slots)
        first: Optional[float] = None
        for batch in batches:
            env = {"SHARDSYNC_JOURNAL_BATCH": str(batch).rstrip("u")} if batch is not None else {}
            if str(batch).endswith("u"):
                env["SHARDSYNC_JOURNAL_CONFIRM"] = "0"
            fresh(client)
            tag = f"io{slots}" + (f"j{batch}" if batch is not None else "")
            with Cluster(app, url, workers, "threads", max(1, slots // workers), tag, env) as cluster:
                run = run_job(cluster, spec, timeout=args.timeout)
            fresh(client)
            ok, checked = verify(run.report, local.operations)
            speedup = local.seconds / run.seconds
            per_slot = speedup / cluster.slots
            stages = stages_of(run.report) if ok else f"FAILED: {run.error or checked}"
            shards = len((run.report or {}).get("shards", []))
            first = run.seconds if first is None else first
            rows.append(
                [
                    cluster.slots, f"{workers}x{cluster.concurrency} threads", "default" if batch is None else batch,
                    run.seconds, run.seconds / first, speedup, per_slot, shards, stages,
                ]
            )  # fmt: skip
            targets.append(
                f"  {cluster.slots:>2} slots, journal batch {batch or 'default'}: speedup/slot {per_slot:.2f} >= 0.7: "
                f"{verdict(ok and per_slot >= 0.7)}"
            )
    print(
        f"\n== io: {args.io_sites} sites x {args.devices} devices x {args.interfaces} interfaces, "
        f"hook latency {args.hook_latency * 1000:g} ms, {local.operations} operations, "
        f"shard size {args.shard_size or 'chosen by the runner'}"
    )
    print(
        f"reference sync_from (one process): {local.seconds:.2f} s "
        f"(load {local.load:.2f}, diff {local.diff:.2f}, sync {local.sync:.2f})"
    )
    header = ["slots", "pool", "journal batch", "job s", "vs first batch", "speedup", "per slot", "shards"]
    print(table([*header, "stages (report, s)"], rows))
    print("targets:\n" + "\n".join(targets))
    print(
        command_line(
            args, "io", io_sites=args.io_sites, devices=args.devices, interfaces=args.interfaces,
            hook_latency=args.hook_latency, slots=",".join(map(str, args.slots)), io_workers=args.io_workers,
            shard_size=args.shard_size,
            journal_batch=",".join(map(str, args.journal_batch)) if args.journal_batch else None,
        )
    )  # fmt: skip


def scenario_cheap(args: argparse.Namespace, app: Any, url: str) -> None:
    """Free hooks: the runner's own overhead; target: job <= 2x the local sync_from."""
    source_kwargs, target_kwargs = inventory(args.cheap_sites, args.devices, args.interfaces)
    client = redis_client(url)
    local = local_sync(source_kwargs, target_kwargs)
    spec = job_spec(source_kwargs, target_kwargs, args.shard_size)
    fresh(client)
    with Cluster(app, url, args.cheap_workers, args.cheap_pool, args.cheap_concurrency, "cheap") as cluster:
        run = run_job(cluster, spec, timeout=args.timeout)
    fresh(client)
    ok, checked = verify(run.report, local.operations)
    ratio = run.seconds / local.seconds
    ops = max(1, local.operations)
    objects = sum(load.get("objects", 0) for load in (run.report or {}).get("loads", {}).values()) or 1
    seconds = (run.report or {}).get("seconds", {})
    local_parts = {"load-source": local.load / 2, "load-target": local.load / 2, "diff": local.diff, "sync": local.sync}
    rows = [
        [stage, local_parts.get(stage, 0.0), seconds.get(stage, 0.0), seconds.get(stage, 0.0) / ops * 1e6,
         seconds.get(stage, 0.0) / objects * 1e6]
        for stage in STAGES
    ]  # fmt: skip
    accounted = max(seconds.get("load-source", 0), seconds.get("load-target", 0)) + sum(
        seconds.get(stage, 0) for stage in ("diff", "plan", "sync", "finish")
    )
    rows.append(["(queues, messages)", 0.0, run.seconds - accounted, (run.seconds - accounted) / ops * 1e6, 0.0])
    rows.append(["total", local.seconds, run.seconds, run.seconds / ops * 1e6, run.seconds / objects * 1e6])
    print(
        f"\n== cheap: {args.cheap_sites} sites ({objects} objects loaded in all), hook latency 0, "
        f"{local.operations} operations; job on {args.cheap_workers} workers x {args.cheap_concurrency} "
        f"{args.cheap_pool}, {len((run.report or {}).get('shards', []))} shards"
    )
    print(
        f"reference sync_from: {local.seconds:.2f} s; job: {run.seconds:.2f} s; ratio {ratio:.2f}x"
        + ("" if ok else f"   JOB FAILED: {run.error or checked}")
    )
    print("local load is both sides in one call, shown halved per side")
    print(table(["stage", "local s", "job s", "job us/op", "job us/object"], rows))
    print(f"targets:\n  job <= 2x sync_from: {ratio:.2f}x: {verdict(ok and ratio <= 2.0)}")
    print(
        command_line(
            args, "cheap", cheap_sites=args.cheap_sites, devices=args.devices, interfaces=args.interfaces,
            cheap_workers=args.cheap_workers, cheap_concurrency=args.cheap_concurrency, cheap_pool=args.cheap_pool,
            shard_size=args.shard_size,
        )
    )  # fmt: skip


def partitions_supported() -> bool:
    """Whether the demo adapter takes ``partitions`` and ``page_latency`` (the lead's contract for issue 11)."""
    from worker.adapters.demo import InventoryAdapter

    parameters = inspect.signature(InventoryAdapter.__init__).parameters
    return "partitions" in parameters and "page_latency" in parameters


def scenario_partitioned(args: argparse.Namespace, app: Any, url: str) -> None:
    """Paginated loads split into partitions: load wall time on N slots against loading in one process."""
    sizes = dict(
        partitioned_sites=args.partitioned_sites, devices=args.devices, interfaces=args.interfaces,
        partitions=args.partitions, page_latency=args.page_latency, partitioned_slots=args.partitioned_slots,
        partitioned_workers=args.partitioned_workers, partitioned_pool=args.partitioned_pool,
    )  # fmt: skip
    print(
        f"\n== partitioned: {args.partitioned_sites} sites, {args.partitions} partitions per side, "
        f"{args.page_latency * 1000:g} ms per page of 100 objects, {args.partitioned_slots} thread slots"
    )
    if not partitions_supported():
        print(
            "SKIPPED: needs partitioned loads (worker.adapters.demo.InventoryAdapter has no `partitions`/"
            "`page_latency` kwargs in this checkout)"
        )
        print(command_line(args, "partitioned", **sizes))
        return
    from worker.adapters.demo import InventoryAdapter

    client = redis_client(url)
    paged = {"page_latency": args.page_latency}
    one_side: Dict[str, float] = {}
    sides = inventory(args.partitioned_sites, args.devices, args.interfaces, **paged)
    for side, kwargs in zip(("source", "target"), sides, strict=True):
        adapter = InventoryAdapter(**kwargs)  # partitions=0: one piece, as a plain load()
        started = time.perf_counter()
        adapter.load()
        one_side[side] = time.perf_counter() - started
        del adapter
    local_loads = one_side["source"]  # the reference: one unpartitioned load of the paginated side
    source_kwargs, _ = inventory(
        args.partitioned_sites, args.devices, args.interfaces, partitions=args.partitions, **paged
    )
    target_kwargs = {"sites": 1}  # a one-site target: the job's load time is the partitioned source's
    spec = {**job_spec(source_kwargs, target_kwargs, args.shard_size), "dry_run": True}  # the loads are measured
    workers = max(1, min(args.partitioned_workers, args.partitioned_slots))
    fresh(client)
    pool = args.partitioned_pool
    with Cluster(app, url, workers, pool, max(1, args.partitioned_slots // workers), "part") as cluster:
        run = run_job(cluster, spec, timeout=args.timeout, interval=0.01)
    fresh(client)
    report = run.report or {}
    loads = report.get("loads", {})
    seconds = report.get("seconds", {})
    job_loads = float(loads.get("source", {}).get("seconds", 0.0)) or seconds.get("load-source", 0.0)
    wall = run.loads_done or float("nan")
    rows = [
        ["one process, source load() in one piece", one_side["source"], 1.0],
        ["job: source load, partitions set up -> last ended", job_loads, local_loads / job_loads if job_loads else 0.0],
        ["job: submit -> both loads recorded", wall, local_loads / wall if wall == wall else 0.0],
    ]
    print(
        f"job on {workers} workers x {cluster.concurrency} {pool} slots = {cluster.slots} slots"
        + ("" if run.error is None else f"   JOB FAILED: {run.error}")
    )
    print(table(["load", "seconds", "speedup"], rows))
    print(
        "loads in the report: "
        + json.dumps({s: {k: v for k, v in d.items() if k != "worker"} for s, d in loads.items()})
    )
    speedup = local_loads / job_loads if job_loads else 0.0  # the load itself: its partitions set up to the last
    goal = 0.7 * cluster.slots
    print(
        f"targets:\n  load speedup {speedup:.1f}x >= 0.7 x {cluster.slots} slots = {goal:.1f}x: "
        f"{verdict(run.error is None and speedup >= goal)}"
    )
    print(command_line(args, "partitioned", **sizes))


def scenario_memory(args: argparse.Namespace, app: Any, url: str) -> None:
    """A large job: it must converge, no worker process above 1 GiB; Redis bytes per stored object."""
    source_kwargs, target_kwargs = inventory(args.memory_sites, args.devices, args.interfaces)
    spec = {**job_spec(source_kwargs, target_kwargs, args.shard_size), "keep_stores": True}  # for the re-diff
    client = redis_client(url)
    print(
        f"\n== memory: {args.memory_sites} sites ({args.memory_sites * (1 + args.devices * (1 + args.interfaces))} "
        f"objects per side), job on {args.memory_workers} workers x {args.memory_concurrency} {args.memory_pool}"
    )
    local: Dict[str, Any] = {}
    if not args.skip_local:
        local = local_sync_in_child(source_kwargs, target_kwargs)
    fresh(client)
    before = int(client.info("memory")["used_memory"])
    summary: Optional[Dict[str, int]] = None
    with Cluster(app, url, args.memory_workers, args.memory_pool, args.memory_concurrency, "mem") as cluster:
        run = run_job(cluster, spec, timeout=args.timeout, interval=0.1, measure_db=True)
        ok, checked = verify(run.report, local.get("operations"))
        if ok and not args.skip_rediff:
            summary = rediff(run.report or {}, spec)  # the stores stay until store_ttl: diff them again
        cluster.stop()  # reads every process's VmHWM last, then kills the groups
    fresh(client)
    objects = sum(load.get("objects", 0) for load in (run.report or {}).get("loads", {}).values())
    rows = []
    for group in cluster.groups:
        for info in sorted(group.procs.values(), key=lambda p: (p.role != "main", p.pid)):
            note = info.stage + ("" if info.alive else " (died)")
            rows.append([f"worker {group.index}", info.role, info.pid, info.hwm / MIB, note])
    if local:
        rows.append(["local sync_from", "child", "-", local.get("peak", local["peak_wait4"]) / MIB,
                     "" if local["rc"] == 0 else f"rc {local['rc']}"])  # fmt: skip
    print(f"job: {run.seconds:.2f} s, {stages_of(run.report)}")
    print(f"job check: {checked}" + ("" if run.error is None else f"; ERROR: {run.error}"))
    if run.problems:
        print("problems seen: " + "; ".join(run.problems))
    if summary is not None:
        print(f"re-diff of the job's stores after the job: {summary}")
    if local:
        print(f"local sync_from: {local.get('seconds', float('nan')):.2f} s, rc {local['rc']}")
    print(table(["process", "role", "pid", "peak RSS MiB", "stage when the peak grew"], rows))
    if objects:
        grown = (run.redis_after_loads or before) - before
        peak = run.redis_peak - before
        db_bytes = run.db_after_loads or 0
        print(
            f"redis: {objects} objects stored; db {args.db} keys after loads {db_bytes / MIB:.1f} MiB = "
            f"{db_bytes / objects:.0f} B/object (MEMORY USAGE); used_memory +{grown / MIB:.1f} MiB after loads = "
            f"{grown / objects:.0f} B/object, peak +{peak / MIB:.1f} MiB (used_memory is the whole instance: "
            "other databases' tests move it)"
        )
    worst = max((info.hwm for group in cluster.groups for info in group.procs.values()), default=0)
    converged = ok and (summary is None or not any(summary.values()))
    print("targets:")
    print(f"  job succeeds{' and re-diff is empty' if summary is not None else ''}: {verdict(converged)}")
    print(f"  no worker process above 1 GiB (largest {worst / MIB:.0f} MiB): {verdict(ok and worst <= GIB)}")
    print(
        command_line(
            args, "memory", memory_sites=args.memory_sites, devices=args.devices, interfaces=args.interfaces,
            memory_workers=args.memory_workers, memory_concurrency=args.memory_concurrency,
            memory_pool=args.memory_pool, shard_size=args.shard_size,
        )
        + (" --skip-local" if args.skip_local else "") + (" --skip-rediff" if args.skip_rediff else "")
    )  # fmt: skip


RUNNERS: Dict[str, Callable[[argparse.Namespace, Any, str], None]] = {
    "io": scenario_io,
    "cheap": scenario_cheap,
    "partitioned": scenario_partitioned,
    "memory": scenario_memory,
}


# ----------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Options: every size can be lowered so a scenario runs in seconds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="run this one (repeatable; default all)")
    parser.add_argument(
        "--db", type=int, default=9, help="Redis database of 127.0.0.1:6379 used (FLUSHDB before/after)"
    )
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--interfaces", type=int, default=4)
    parser.add_argument("--shard-size", type=int, default=None, help="fix the jobs' shard size (default: the runner's)")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds a job may take before the bench gives up"
    )
    group = parser.add_argument_group("io")
    group.add_argument("--io-sites", type=int, default=2060, help="2060 sites: about 20k operations")
    group.add_argument("--hook-latency", type=float, default=0.005, help="seconds per create/update/delete")
    group.add_argument("--slots", type=lambda s: [int(x) for x in s.split(",")], default=[2, 4, 8, 16])
    group.add_argument("--io-workers", type=int, default=2, help="worker processes; threads per worker = slots/this")
    group.add_argument(
        "--journal-batch",
        type=lambda s: [x.strip() for x in s.split(",")],
        default=None,
        help="run each slot count once per SHARDSYNC_JOURNAL_BATCH given (e.g. 50,1), side by side; a trailing "
        "'u' also sets SHARDSYNC_JOURNAL_CONFIRM=0 (1u: each operation's write sent, not waited for)",
    )
    group = parser.add_argument_group("cheap")
    group.add_argument("--cheap-sites", type=int, default=4000)
    group.add_argument("--cheap-workers", type=int, default=2)
    group.add_argument("--cheap-concurrency", type=int, default=2)
    group.add_argument("--cheap-pool", default="prefork", choices=("prefork", "threads", "solo"))
    group = parser.add_argument_group("partitioned")
    group.add_argument("--partitioned-sites", type=int, default=1000)
    group.add_argument("--partitions", type=int, default=16)
    group.add_argument("--page-latency", type=float, default=0.02, help="seconds per page of 100 objects loaded")
    group.add_argument("--partitioned-slots", type=int, default=16)
    group.add_argument("--partitioned-workers", type=int, default=2, help="worker processes; slots/this each")
    group.add_argument("--partitioned-pool", default="threads", choices=("prefork", "threads"))
    group = parser.add_argument_group("memory")
    group.add_argument("--memory-sites", type=int, default=20000)
    group.add_argument("--memory-workers", type=int, default=2)
    group.add_argument("--memory-concurrency", type=int, default=2)
    group.add_argument("--memory-pool", default="prefork", choices=("prefork", "threads", "solo"))
    group.add_argument("--skip-local", action="store_true", help="no local sync_from peak RSS (it needs ~2.3 GiB)")
    group.add_argument("--skip-rediff", action="store_true", help="no re-diff of the job's stores after it")
    parser.add_argument("--_local-sync", dest="local_sync", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the chosen scenarios; a scenario that breaks is reported and the next one still runs."""
    args = parse_args(argv)
    if args.local_sync:
        return child_local_sync(args.local_sync)

    def terminated(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so the clusters' __exit__ kills the worker groups

    signal.signal(signal.SIGTERM, terminated)
    url = configure_environment(args.db)
    from worker import app

    client = redis_client(url)
    client.ping()
    fresh(client)
    try:
        for name in args.scenario or SCENARIOS:
            try:
                RUNNERS[name](args, app, url)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001 - say which scenario broke, and go on with the others
                print(f"\n== {name}: ERROR {type(err).__name__}: {err}")
            sys.stdout.flush()
    except KeyboardInterrupt:
        print("\ninterrupted: workers stopped, database emptied", file=sys.stderr)
        return 130
    finally:
        fresh(client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
