"""The embedded runner: a job's whole pipeline in this process, without Redis, Celery or workers.

The same steps as the distributed pipeline (load both sides, diff, plan with ``core.planner``, apply the
shards wave by wave through the same journaling syncer, ``sync_complete``, the same report), on in-memory
stores.  For a first try, small jobs, and tests of adapters before they meet a cluster.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import structlog

from core.diff import Diff
from core.planner import plan_sync
from worker.apply import ShardSyncer, number_elements
from worker.report import compose_report
from worker.spec import JobSpec

ProgressCallback = Callable[[str, int, int], None]


class MemoryJournal:
    """The journal and progress counter of a job that runs in one process."""

    def __init__(self) -> None:
        self.entries: Dict[str, List[Any]] = {}
        self.count = 0
        self.error: Optional[str] = None

    def write_journal(self, entries: Dict[str, List[Any]], counted: int) -> int:
        """Record finished operations; returns the progress count."""
        self.entries.update(entries)
        self.count += counted
        return self.count

    def aborted(self) -> Optional[str]:
        """The error that stopped the job, if any."""
        return self.error

    def progress_count(self) -> int:
        """Operations finished so far."""
        return self.count


def run_local(spec: JobSpec, callback: Optional[ProgressCallback] = None) -> Dict[str, Any]:
    """Run a job in this process and return its report (the distributed runner's report, same keys).

    Raises:
        JobFailed: if an operation raised without CONTINUE_ON_FAILURE, or a step failed; ``report`` says
            what had been done.
    """
    from worker.errors import JobFailed  # pylint: disable=import-outside-toplevel
    from worker.tasks import build_adapter, describe, element_flags  # pylint: disable=import-outside-toplevel

    report_progress = callback or (lambda stage, current, total: None)
    hostname = f"local@{socket.gethostname()}"
    seconds: Dict[str, float] = {}
    started_job = time.perf_counter()
    journal = MemoryJournal()
    adapters = {}
    loads = {}
    for side in ("source", "target"):
        report_progress(f"load-{side}", len(loads), 2)
        started = time.perf_counter()
        adapter = build_adapter(spec, side)
        adapter.load()
        seconds[f"load-{side}"] = time.perf_counter() - started
        loads[side] = {"objects": len(adapter), "seconds": seconds[f"load-{side}"], "worker": hostname}
        adapters[side] = adapter
    source, target = adapters["source"], adapters["target"]
    report_progress("load-target", 2, 2)

    started = time.perf_counter()
    diff = target.diff_from(source, flags=spec.diffsync_flags, callback=lambda _s, c, t: report_progress("diff", c, t))
    seconds["diff"] = time.perf_counter() - started
    started = time.perf_counter()
    report_progress("plan", 0, 1)

    plan = plan_sync(
        diff,
        shard_size=spec.shard_size,
        barrier=spec.top_level_barrier,
        model_flags=lambda element: element_flags(target, element),
    )
    seconds["plan"] = time.perf_counter() - started
    report_progress("plan", 1, 1)

    shard_results: List[Dict[str, Any]] = []
    changed = False
    error: Optional[str] = None
    if not spec.dry_run and plan.shards:
        started = time.perf_counter()
        roots = list(diff.get_children())
        report_progress("sync", 0, plan.operations)
        for wave in plan.waves:
            for index in wave:
                shard = plan.shards[index]
                result, shard_changed = _apply(
                    spec, shard, roots, source, target, journal, report_progress, plan.operations
                )
                result["worker"] = hostname
                shard_results.append(result)
                changed |= shard_changed
                if result["error"]:
                    error = journal.error = f"shard {index} failed: {result['error']}"
                    break
            if error:
                break
        seconds["sync"] = time.perf_counter() - started
    sync_complete = False
    if changed and not error:
        started = time.perf_counter()
        try:
            target.sync_complete(source, diff, spec.diffsync_flags, structlog.get_logger().new(job_id=spec.job_id))
            sync_complete = True
        except Exception as err:  # noqa: BLE001 - reported, as on workers
            error = f"sync_complete failed: {describe(err)}"
        seconds["finish"] = time.perf_counter() - started
    seconds["total"] = time.perf_counter() - started_job
    report = compose_report(
        job_id=spec.job_id,
        source=spec.source,
        target=spec.target,
        flags=spec.flags,
        dry_run=spec.dry_run,
        error=error,
        summary=diff.summary(),
        loads=loads,
        operations=plan.operations,
        journal=journal.entries,
        changed=changed,
        sync_complete=sync_complete,
        seconds=seconds,
        shards=shard_results,
        waves=len(plan.waves),
        workers=[hostname],
        stores={},
    )
    report_progress("finish", 1, 1)
    if error:
        raise JobFailed(f"job {spec.job_id} failed: {error}", report)
    return report


def _apply(
    spec: JobSpec,
    shard: Any,
    roots: List[Any],
    source: Any,
    target: Any,
    journal: MemoryJournal,
    report_progress: ProgressCallback,
    total: int,
) -> Tuple[Dict[str, Any], bool]:
    from worker.tasks import describe  # pylint: disable=import-outside-toplevel

    started = time.perf_counter()
    sub_diff = Diff()
    op_ids: Dict[int, str] = {}
    for root in shard.roots:
        number_elements(root, roots[root], op_ids)
        sub_diff.add(roots[root])
    syncer = ShardSyncer(
        diff=sub_diff,
        src=source,
        dst=target,
        flags=spec.diffsync_flags,
        job=journal,  # type: ignore[arg-type]
        op_ids=op_ids,
        done={},
        redelivered=False,
        on_checkpoint=lambda current: report_progress("sync", current, total),
        checkpoint_every=1000,
    )
    result: Dict[str, Any] = {
        "index": shard.index,
        "wave": shard.wave,
        "type": shard.type,
        "roots": len(shard.roots),
        "operations": len(shard.operations),
        "changed": False,
        "stopped": False,
        "error": None,
    }
    changed = False
    try:
        changed, result["stopped"] = syncer.run()
    except Exception as err:  # noqa: BLE001 - as a shard on a worker: the job stops with a report
        result["error"] = describe(err)
    syncer.finish()
    remainder = len(shard.operations) - syncer.applied - syncer.replayed
    if remainder > 0:
        report_progress("sync", journal.write_journal({}, remainder), total)
    changed = changed or syncer.attempted
    result.update(changed=changed, applied=syncer.applied, replayed=0, seconds=time.perf_counter() - started)
    return result, changed
