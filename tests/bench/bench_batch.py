"""Benchmark: single hooks against batch hooks, into a simulated remote, locally and as a job on real workers.

Run on demand (not part of the test suite)::

    python tests/bench/bench_batch.py --sites 480 --workers 2 --concurrency 2 --batch-size 100

The remote costs ``--call-ms`` per call plus ``--item-ms`` per item of the call (``time.sleep``; the call is
counted inside that time, in this process or, on workers, with ``HINCRBY`` in Redis database ``--db``).
A single hook is one call of one item; a batch hook is one call of up to ``--batch-size`` items.  The data is
a tree of sites, devices and interfaces; the target lacks a quarter of the source's sites, has a quarter the
source lacks, a quarter with every attribute changed and a quarter with some interfaces created, deleted or
changed, so creates, updates and deletes all happen (480 sites: about 20k operations).

Rows: ``target.sync_from(source)`` in this process (load, diff, sync) with the single-hook adapter and with
the batch adapter, then the same two syncs as jobs (``submit_sync`` to report) on ``--workers`` real
``celery -A worker worker`` processes of ``--concurrency`` prefork children each.  The target of the issue:
batch hooks take at most a tenth of the single-hook wall time, locally and as a job.

The workers import this file as the module ``bench_batch`` (``SHARDSYNC_ADAPTER_MODULES``), which registers
the adapters ``bench-single`` and ``bench-batch``; importing it does nothing else.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from core import Adapter, DiffSyncModel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TARGET_RATIO = 0.10
STAGES = ("load-source", "load-target", "diff", "plan", "sync", "finish", "total")

# ----------------------------------------------------------------------------------------------------
# The simulated remote
# ----------------------------------------------------------------------------------------------------

_clients: Dict[Tuple[int, str], Any] = {}


def _redis(url: str) -> Any:
    """One client per process and URL (prefork children make their own)."""
    key = (os.getpid(), url)
    client = _clients.get(key)
    if client is None:
        from redis import Redis

        client = _clients[key] = Redis.from_url(url)
    return client


class SimulatedRemote:
    """A remote API where one call costs ``call_ms`` plus ``item_ms`` per item it carries.

    Calls and items are counted here and, with ``counter_url``, in the Redis hash ``counter_key`` (fields
    ``calls`` and ``items``), inside the time the call costs: counting does not make a call slower.
    """

    def __init__(
        self, call_ms: float, item_ms: float, counter_url: Optional[str] = None, counter_key: Optional[str] = None
    ) -> None:
        self.call_ms = call_ms
        self.item_ms = item_ms
        self.counter_url = counter_url
        self.counter_key = counter_key
        self.calls = 0
        self.items = 0

    def call(self, items: int) -> None:
        """One round trip carrying ``items`` objects."""
        started = time.perf_counter()
        self.calls += 1
        self.items += items
        if self.counter_url and self.counter_key:
            pipe = _redis(self.counter_url).pipeline(transaction=False)
            pipe.hincrby(self.counter_key, "calls", 1)
            pipe.hincrby(self.counter_key, "items", items)
            pipe.execute()
        remaining = (self.call_ms + self.item_ms * items) / 1000.0 - (time.perf_counter() - started)
        if remaining > 0:
            time.sleep(remaining)


# ----------------------------------------------------------------------------------------------------
# Models: the data, then single hooks or batch hooks on top
# ----------------------------------------------------------------------------------------------------


class Site(DiffSyncModel):
    """A site, parent of its devices."""

    _modelname = "site"
    _identifiers = ("name",)
    _attributes = ("region", "status")
    _children = {"device": "devices"}

    name: str
    region: str = ""
    status: str = "active"
    devices: List[str] = []


class Device(DiffSyncModel):
    """A device at a site, parent of its interfaces."""

    _modelname = "device"
    _identifiers = ("site", "name")
    _shortname = ("name",)
    _attributes = ("model", "role")
    _children = {"interface": "interfaces"}

    site: str
    name: str
    model: str = ""
    role: str = ""
    interfaces: List[str] = []


class Interface(DiffSyncModel):
    """A network interface of a device."""

    _modelname = "interface"
    _identifiers = ("device", "name")
    _shortname = ("name",)
    _attributes = ("description", "mtu")

    device: str
    name: str
    description: str = ""
    mtu: int = 1500


class _SingleHooks:
    """One remote call per create, update and delete."""

    @classmethod
    def create(cls, adapter: Adapter, ids: Dict, attrs: Dict) -> Optional[DiffSyncModel]:
        adapter.remote.call(1)  # type: ignore[attr-defined]
        return super().create(adapter=adapter, ids=ids, attrs=attrs)  # type: ignore[misc]

    def update(self, attrs: Dict) -> Optional[DiffSyncModel]:
        self.adapter.remote.call(1)  # type: ignore[attr-defined]
        return super().update(attrs)  # type: ignore[misc]

    def delete(self) -> Optional[DiffSyncModel]:
        self.adapter.remote.call(1)  # type: ignore[attr-defined]
        return super().delete()  # type: ignore[misc]


class _BatchHooks:
    """One remote call per batch of creates, of updates or of deletes."""

    @classmethod
    def create_batch(cls, adapter: Adapter, items: Sequence[Tuple[Dict, Dict]]) -> List[Any]:
        adapter.remote.call(len(items))  # type: ignore[attr-defined]
        return [cls.create_base(adapter=adapter, ids=ids, attrs=attrs) for ids, attrs in items]  # type: ignore[attr-defined]

    @classmethod
    def update_batch(cls, adapter: Adapter, items: Sequence[Tuple[DiffSyncModel, Dict]]) -> List[Any]:
        adapter.remote.call(len(items))  # type: ignore[attr-defined]
        return [model.update_base(attrs) for model, attrs in items]

    @classmethod
    def delete_batch(cls, adapter: Adapter, items: Sequence[DiffSyncModel]) -> List[Any]:
        adapter.remote.call(len(items))  # type: ignore[attr-defined]
        return [model.delete_base() for model in items]


class SingleSite(_SingleHooks, Site):
    """A site with single hooks."""


class SingleDevice(_SingleHooks, Device):
    """A device with single hooks."""


class SingleInterface(_SingleHooks, Interface):
    """An interface with single hooks."""


class BatchSite(_BatchHooks, Site):
    """A site with batch hooks."""


class BatchDevice(_BatchHooks, Device):
    """A device with batch hooks."""


class BatchInterface(_BatchHooks, Interface):
    """An interface with batch hooks."""


# ----------------------------------------------------------------------------------------------------
# Adapters
# ----------------------------------------------------------------------------------------------------


class _BenchAdapter(Adapter):
    """One side of the benchmark's data (``side``: ``source`` or ``target``), behind a simulated remote.

    Site ``i`` is, by ``i % 4``: 0 only in the source (created), 1 only in the target (deleted), 2 in both
    with every attribute below it changed (updated), 3 in both with half its devices' roles changed and, on
    every device, interfaces created, deleted, changed and left as they are.
    """

    site = Site
    device = Device
    interface = Interface
    top_level = ["site"]

    def __init__(
        self,
        side: str = "target",
        sites: int = 480,
        devices: int = 4,
        interfaces: int = 10,
        call_ms: float = 5.0,
        item_ms: float = 0.05,
        counter_url: Optional[str] = None,
        counter_key: Optional[str] = None,
        name: Optional[str] = None,
    ) -> None:
        super().__init__(name=name or side)
        if side not in ("source", "target"):
            raise ValueError(f"side must be 'source' or 'target', not {side!r}")
        self.side = side
        self.sites = sites
        self.devices = devices
        self.interfaces = interfaces
        self.remote = SimulatedRemote(call_ms, item_ms, counter_url, counter_key)

    def load(self) -> None:
        """Build this side's data in memory."""
        source = self.side == "source"
        for i in range(self.sites):
            kind = i % 4
            if (kind == 0 and not source) or (kind == 1 and source):
                continue
            region = ("emea", "amer", "apac")[i % 3]
            site = self.site(name=f"site-{i:04d}", region="moved" if source and kind == 2 else region)
            self.add(site)
            for d in range(self.devices):
                role = "leaf" if d % 2 else "spine"
                if source and (kind == 2 or (kind == 3 and d % 2)):
                    role = "border"
                device = self.device(site=site.name, name=f"dev-{d:02d}", model="qfx5120", role=role)
                self.add(device)
                site.add_child(device)
                for j in range(self.interfaces):
                    if kind == 3 and ((j % 4 == 0 and not source) or (j % 4 == 1 and source)):
                        continue
                    changed = source and (kind == 2 or (kind == 3 and j % 4 == 2))
                    interface = self.interface(
                        device=device.get_unique_id(),
                        name=f"et-0/0/{j}",
                        description="changed in source" if changed else "uplink",
                        mtu=9192,
                    )
                    self.add(interface)
                    device.add_child(interface)


class SingleAdapter(_BenchAdapter):
    """The benchmark's data with single hooks (registered as ``bench-single``)."""

    site = SingleSite
    device = SingleDevice
    interface = SingleInterface


class BatchAdapter(_BenchAdapter):
    """The benchmark's data with batch hooks (registered as ``bench-batch``)."""

    site = BatchSite
    device = BatchDevice
    interface = BatchInterface


def _register() -> None:
    from worker import register_adapter

    register_adapter("bench-single", SingleAdapter)
    register_adapter("bench-batch", BatchAdapter)


if __name__ != "__main__":
    # Imported (by the workers, or by main() below): register. Run as a script, main() imports this file as
    # ``bench_batch`` once the environment names the Redis database, and uses that module's classes.
    _register()


# ----------------------------------------------------------------------------------------------------
# The runs
# ----------------------------------------------------------------------------------------------------


class Row:
    """One line of the table."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seconds: Optional[float] = None
        self.operations: Optional[int] = None
        self.calls: Optional[int] = None
        self.items: Optional[int] = None
        self.stages: Dict[str, float] = {}


def _data_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    return {
        "sites": args.sites,
        "devices": args.devices,
        "interfaces": args.interfaces,
        "call_ms": args.call_ms,
        "item_ms": args.item_ms,
    }


def _operations(summary: Dict[str, int]) -> int:
    return sum(summary.get(action, 0) for action in ("create", "update", "delete"))


def run_local(adapter_cls: type, args: argparse.Namespace, row: Row) -> Tuple[Dict, Dict, Dict]:
    """Load both sides, ``target.sync_from(source)``; returns (target.dict(), source.dict(), diff summary)."""
    kwargs = _data_kwargs(args)
    started = time.perf_counter()
    source = adapter_cls(side="source", **kwargs)
    target = adapter_cls(side="target", **kwargs)
    source.load()
    target.load()
    loaded = time.perf_counter()
    diff = target.sync_from(source, batch_size=args.batch_size)
    row.seconds = time.perf_counter() - started
    row.stages = {"load": loaded - started, "diff+sync": row.seconds - (loaded - started)}
    summary = diff.summary()
    row.operations = _operations(summary)
    row.calls, row.items = target.remote.calls, target.remote.items
    return target.dict(), source.dict(), summary


def run_job(name: str, args: argparse.Namespace, url: str, row: Row) -> Dict[str, Any]:
    """Submit the sync as a job, wait for its report; returns the report."""
    from redis import Redis

    from worker import submit_sync

    key = f"bench-batch:calls:{name}:{uuid.uuid4().hex}"
    kwargs = {**_data_kwargs(args), "counter_url": url, "counter_key": key}
    started = time.perf_counter()
    handle = submit_sync(
        source=name,
        target=name,
        source_kwargs={**kwargs, "side": "source"},
        target_kwargs={**kwargs, "side": "target"},
        shard_size=args.shard_size,
        batch_size=args.batch_size,
    )
    report = handle.wait(timeout=3600, interval=0.02)
    row.seconds = time.perf_counter() - started
    counted = Redis.from_url(url).hgetall(key)
    row.calls = int(counted.get(b"calls", 0))
    row.items = int(counted.get(b"items", 0))
    row.operations = int(report["operations"])
    row.stages = dict(report["seconds"])
    return report


def _unordered(data: Dict[str, Dict[str, Dict]]) -> Dict[str, Dict[str, Dict]]:
    """``Adapter.dict()`` with child lists sorted: a sync appends created children after the others."""
    return {
        modelname: {
            uid: {field: sorted(value) if isinstance(value, list) else value for field, value in fields.items()}
            for uid, fields in objects.items()
        }
        for modelname, objects in data.items()
    }


def _successes(report: Dict[str, Any]) -> Dict[str, int]:
    return {action: statuses.get("success", 0) for action, statuses in report["counts"].items()}


# ----------------------------------------------------------------------------------------------------
# Workers
# ----------------------------------------------------------------------------------------------------


def start_workers(args: argparse.Namespace, env: Dict[str, str], logs: Path, tag: str) -> List[subprocess.Popen]:
    """Start ``--workers`` real workers, each in a process group of its own (its pool children with it)."""
    procs = []
    for index in range(args.workers):
        log = open(logs / f"w{index}.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker",
                    "worker",
                    "-n",
                    f"{tag}-{index}@%h",
                    "-P",
                    "prefork",
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
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        log.close()  # the child has its own copy
    return procs


def wait_for_workers(procs: List[subprocess.Popen], tag: str, logs: Path, timeout: float = 120.0) -> None:
    """Until every worker started here answers Celery's ping (others on the broker are not counted)."""
    from worker import app

    wanted = {f"{tag}-{index}" for index in range(len(procs))}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"a worker exited at start-up with code {proc.returncode}; logs in {logs}")
        seen = {next(iter(reply)).split("@")[0] for reply in app.control.ping(timeout=0.5) or []}
        if wanted <= seen:
            return
    raise SystemExit(f"workers did not answer within {timeout:.0f} s; logs in {logs}")


def stop_workers(procs: List[subprocess.Popen]) -> None:
    """Warm shutdown of each worker's process group, then SIGKILL for whatever is left after 30 s."""
    for proc in procs:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


# ----------------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=480, help="sites (480: about 20k operations)")
    parser.add_argument("--devices", type=int, default=4, help="devices per site")
    parser.add_argument("--interfaces", type=int, default=10, help="interfaces per device")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (each with --concurrency)")
    parser.add_argument("--concurrency", type=int, default=2, help="prefork children per worker")
    parser.add_argument("--batch-size", type=int, default=100, help="most items per batch hook call")
    parser.add_argument("--shard-size", type=int, default=None, help="operations per shard (default: the setting)")
    parser.add_argument("--call-ms", type=float, default=5.0, help="cost of one remote call")
    parser.add_argument("--item-ms", type=float, default=0.05, help="cost of each item of a remote call")
    parser.add_argument("--db", type=int, default=10, help="Redis database used (emptied before and after)")
    parser.add_argument("--skip-jobs", action="store_true", help="only the local rows")
    return parser


def _command(args: argparse.Namespace) -> str:
    parts = ["python", "tests/bench/bench_batch.py"]
    for option, value in sorted(vars(args).items()):
        flag = "--" + option.replace("_", "-")
        if isinstance(value, bool):
            if value:
                parts.append(flag)
        elif value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def main() -> int:
    """Run the benchmark and print its table; 0 when both ratios meet the target, 1 when one misses it."""
    args = _parser().parse_args()
    url = f"redis://127.0.0.1:6379/{args.db}"
    for name in ("SHARDSYNC_BROKER_URL", "SHARDSYNC_RESULT_BACKEND", "SHARDSYNC_STORE_URL"):
        os.environ[name] = url
    os.environ["SHARDSYNC_ADAPTER_MODULES"] = "bench_batch"
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sys.path.insert(0, str(HERE))
    import bench_batch  # registers the adapters, as on the workers

    rows = {
        key: Row(name)
        for key, name in (
            ("local-single", "local single"),
            ("local-batch", f"local batch ({args.batch_size})"),
            ("job-single", f"job single ({args.workers}x{args.concurrency})"),
            ("job-batch", f"job batch ({args.batch_size}, {args.workers}x{args.concurrency})"),
        )
    }

    single_dict, source_dict, single_summary = run_local(bench_batch.SingleAdapter, args, rows["local-single"])
    batch_dict, _, batch_summary = run_local(bench_batch.BatchAdapter, args, rows["local-batch"])
    assert single_summary == batch_summary, (single_summary, batch_summary)
    assert single_dict == batch_dict, "single and batch hooks left different targets"
    assert _unordered(batch_dict) == _unordered(source_dict), "the target does not match the source after the sync"
    operations = rows["local-single"].operations
    assert rows["local-single"].calls == operations and rows["local-single"].items == operations
    assert rows["local-batch"].items == operations
    del single_dict, batch_dict, source_dict

    shards = None
    if not args.skip_jobs:
        from redis import Redis

        client = Redis.from_url(url)
        client.flushdb()
        logs = Path(tempfile.mkdtemp(prefix="shardsync-bench-batch-"))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), str(ROOT), env.get("PYTHONPATH", "")) if p)
        tag = f"benchbatch{os.getpid()}"
        procs = start_workers(args, env, logs, tag)
        try:
            wait_for_workers(procs, tag, logs)
            reports = {}
            for key, name in (("job-single", "bench-single"), ("job-batch", "bench-batch")):
                reports[key] = run_job(name, args, url, rows[key])
                report = reports[key]
                assert report["status"] == "success" and not report["failures"], (report["status"], report["error"])
                assert report["summary"] == single_summary, (report["summary"], single_summary)
                assert _successes(report) == {a: single_summary[a] for a in ("create", "update", "delete")}
                assert rows[key].items == operations, (key, rows[key].items, operations)
            assert reports["job-single"]["counts"] == reports["job-batch"]["counts"]
            assert rows["job-single"].calls == operations
            shards = len(reports["job-batch"]["shards"])
        finally:
            stop_workers(procs)
            client.flushdb()

    _print(args, rows, single_summary, shards)
    ratios = [_ratio(rows["local-single"], rows["local-batch"])]
    if not args.skip_jobs:
        ratios.append(_ratio(rows["job-single"], rows["job-batch"]))
    return 0 if all(r is not None and r <= TARGET_RATIO for r in ratios) else 1


def _ratio(single: Row, batch: Row) -> Optional[float]:
    if single.seconds is None or batch.seconds is None or not single.seconds:
        return None
    return batch.seconds / single.seconds


def _print(args: argparse.Namespace, rows: Dict[str, Row], summary: Dict[str, int], shards: Optional[int]) -> None:
    print(f"command: {_command(args)}")
    print(
        f"data: {args.sites} sites x {args.devices} devices x {args.interfaces} interfaces; "
        f"{_operations(summary)} operations (create {summary.get('create', 0)}, update {summary.get('update', 0)}, "
        f"delete {summary.get('delete', 0)}); remote: {args.call_ms} ms per call + {args.item_ms} ms per item"
    )
    if shards is not None:
        from worker import get_settings

        size = args.shard_size if args.shard_size is not None else f"{get_settings().shard_size} (the setting)"
        print(
            f"jobs: {args.workers} workers x {args.concurrency} prefork children, shard size {size} ({shards} shards)"
        )
    print()
    header = f"{'run':<30} {'wall s':>9} {'operations':>11} {'remote calls':>13} {'batch/single':>13}"
    print(header)
    print("-" * len(header))
    for key, row in rows.items():
        if row.seconds is None:
            print(f"{row.name:<30} {'skipped':>9}")
            continue
        ratio = ""
        if key.endswith("batch"):
            value = _ratio(rows[key.replace("batch", "single")], row)
            ratio = f"{value:.3f}" if value is not None else ""
        print(f"{row.name:<30} {row.seconds:>9.2f} {row.operations:>11} {row.calls:>13} {ratio:>13}")
    print()
    for label, single, batch in (
        ("local", rows["local-single"], rows["local-batch"]),
        ("job", rows["job-single"], rows["job-batch"]),
    ):
        value = _ratio(single, batch)
        if value is None:
            print(f"{label}: skipped")
            continue
        verdict = "PASS" if value <= TARGET_RATIO else "MISS"
        print(f"{label}: batch/single = {value:.3f} (target <= {TARGET_RATIO:.2f}) {verdict}")
    print()
    print("where the time goes (seconds; remote = simulated remote time summed over all processes):")
    for row in rows.values():
        if row.seconds is None:
            continue
        remote = (row.calls * args.call_ms + row.items * args.item_ms) / 1000.0
        stages = " ".join(
            f"{name} {row.stages[name]:.2f}" for name in (*STAGES, "load", "diff+sync") if name in row.stages
        )
        print(f"  {row.name:<30} remote {remote:8.2f}  {stages}")


if __name__ == "__main__":
    sys.exit(main())
