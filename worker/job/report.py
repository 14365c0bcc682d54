"""A job's report, built from its state the same way for every runner, and its diff rebuilt from the records."""

from __future__ import annotations

import heapq
import json
import time
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

from core.diff import Diff
from core.diff_codec import DiffCodec
from worker.redaction import MASK, safe_url, secret_name
from worker.state.base import JobState


def iso(epoch: Optional[float]) -> Optional[str]:
    """An epoch time as ISO 8601 in UTC (what reports and listings show), None for None."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(float(epoch), tz=timezone.utc).isoformat(timespec="seconds")


def redact(kwargs: Any, secret_names: Sequence[str] = ()) -> Any:
    """Adapter kwargs as a report shows them: secrets replaced by ``"***"``, passwords in URLs masked.

    A kwarg is secret if its name holds a word of ``worker.redaction.SECRET_WORDS`` or the adapter lists it in
    its class attribute ``secret_kwargs``; nested mappings are redacted the same way.
    """
    if isinstance(kwargs, dict):
        shown = {}
        for name, value in kwargs.items():
            if name in secret_names or secret_name(name):
                shown[name] = MASK
            else:
                shown[name] = redact(value, secret_names)
        return shown
    if isinstance(kwargs, list):
        return [redact(value, secret_names) for value in kwargs]
    if isinstance(kwargs, str) and "://" in kwargs:
        try:
            return safe_url(kwargs)
        except ValueError:  # not parseable as a URL: shown as a secret rather than guessed at
            return MASK
    return kwargs


SHOWN_BYTES = 1024
"""A kwarg value larger than this (as JSON) is summarised in reports, not copied (reports travel in the
result backend and to monitors; data passed as kwargs can be large)."""


def _shown(kwargs: Any) -> Any:
    if not isinstance(kwargs, dict):
        return kwargs
    shown = {}
    for name, value in kwargs.items():
        size = len(json.dumps(value, default=str))
        shown[name] = value if size <= SHOWN_BYTES else f"<{type(value).__name__} of {size} bytes, not shown>"
    return shown


def _secret_names(adapter_name: Any) -> Sequence[str]:
    from worker.adapters.registry import get_adapter  # pylint: disable=import-outside-toplevel

    try:
        return tuple(getattr(get_adapter(str(adapter_name)), "secret_kwargs", ()) or ())
    except Exception:  # noqa: BLE001 - an adapter this process lacks: the name rules still apply
        return ()


def _op_order(op: str) -> Tuple[int, int]:
    root, _, seq = op.partition(":")
    return int(root), int(seq)


REPORT_FAILURES = 100
"""Failed operations a report lists in full (the first, in plan order); ``failures_total`` counts them all and
the per-object log (``shardsync log JOB --status error``) has every one: 2,000 failures with 10 KiB remote
error bodies would otherwise make one Redis value and one Celery result of 20 MiB."""


def tally(
    journal: Union[Mapping[str, List[Any]], Iterable[Tuple[str, List[Any]]]],
    keep: Optional[int] = None,
) -> Tuple[Dict[str, Dict[str, int]], List[Dict[str, Any]], int]:
    """Counts per action and status, the failed operations in plan order, and the number of entries.

    Takes the entries one by one (``JobState.iter_journal``): only the failures are held, not the journal;
    with ``keep``, only the first ``keep`` of them in plan order.
    """
    counts: Dict[str, Dict[str, int]] = {}
    failed: List[Tuple[Tuple[int, int], Dict[str, Any]]] = []
    total = 0
    for op, entry in journal.items() if isinstance(journal, Mapping) else journal:
        total += 1
        action, status, message, model, uid = entry[:5]
        per_action = counts.setdefault(action, {})
        per_action[status] = per_action.get(status, 0) + 1
        if status != "success":
            failure = {"action": action, "model": model, "unique_id": uid, "status": status, "message": message}
            failed.append((_op_order(op), failure))
            if keep is not None and len(failed) > 2 * keep:  # held bounded: the first ``keep`` in plan order
                failed = heapq.nsmallest(keep, failed, key=lambda item: item[0])
    failed.sort(key=lambda item: item[0])
    if keep is not None:
        failed = failed[:keep]
    return counts, [failure for _, failure in failed], total


def compose_report(
    *,
    job_id: str,
    source: Any,
    target: Any,
    flags: List[str],
    dry_run: bool,
    error: Optional[str],
    summary: Optional[Dict[str, int]],
    loads: Dict[str, Any],
    operations: int,
    journal: Union[Mapping[str, List[Any]], Iterable[Tuple[str, List[Any]]]],
    changed: bool,
    sync_complete: bool,
    seconds: Dict[str, float],
    shards: List[Dict[str, Any]],
    waves: int,
    workers: List[str],
    stores: Dict[str, str],
    times: Optional[Dict[str, Optional[float]]] = None,
    kwargs: Optional[Dict[str, Any]] = None,
    retries: int = 0,
    throttled: int = 0,
    waited: float = 0.0,
    paused: float = 0.0,
    lowest_limit: Optional[int] = None,
    transient: int = 0,
) -> Dict[str, Any]:
    """A job's report, the same keys from the distributed and the embedded runner.

    ``retries`` counts the hook calls made again after their remote said "try later" (``core.retry``);
    ``throttled`` the calls that waited for the target's limits, ``waited`` the seconds they waited,
    ``paused`` the seconds calls waited for the target's condition (its Retry-After, its circuit breaker),
    ``lowest_limit`` the lowest adaptive limit on calls in flight (None: it never fell), ``transient`` the
    calls that met "try later" (transient errors, calls past their time limit).
    ``skipped`` counts the planned operations that never ran: under a failed parent (their own subtree is
    skipped, as in a local sync) or, in a job that failed or was cancelled, not reached. So ``counts`` plus
    ``skipped`` always add up to ``operations``; ``shardsync log`` lists each of them.
    """
    counts, failures, journaled = tally(journal, keep=REPORT_FAILURES)
    times = times or {}
    return {
        "job_id": job_id,
        "status": "failed" if error else ("dry-run" if dry_run else "success"),
        "error": error,
        "source": source,
        "target": target,
        "flags": list(flags),
        "dry_run": dry_run,
        "summary": summary,
        "loads": loads,
        "operations": operations,
        "counts": counts,
        "skipped": 0 if dry_run else max(0, operations - journaled),
        "retries": retries,
        "throttled": throttled,
        "waited": round(waited, 3),
        "paused": round(paused, 3),
        "lowest_limit": lowest_limit,
        "transient": transient,
        "failures": failures[:REPORT_FAILURES],
        "failures_total": sum(
            count for per_status in counts.values() for status, count in per_status.items() if status != "success"
        ),
        "changed": changed,
        "sync_complete": sync_complete,
        "seconds": {stage: round(value, 6) for stage, value in seconds.items()},
        "shards": shards,
        "waves": waves,
        "workers": workers,
        "stores": stores,
        "source_kwargs": (kwargs or {}).get("source", {}),
        "target_kwargs": (kwargs or {}).get("target", {}),
        "submitted": iso(times.get("submitted")),
        "started": iso(times.get("started")),
        "ended": iso(times.get("ended")),
    }


def report_summary(report: Dict[str, Any]) -> Dict[str, Any]:
    """The gist of a report as data (what Flower shows as the job task's result): small, with no kwargs."""
    seconds = report.get("seconds") or {}
    return {
        "status": report.get("status"),
        "source": report.get("source"),
        "target": report.get("target"),
        "diff": report.get("summary"),
        "operations": report.get("operations"),
        "counts": report.get("counts"),
        "failures": report.get("failures_total", 0),
        "skipped": report.get("skipped", 0),
        "shards": len(report.get("shards") or []),
        "workers": report.get("workers"),
        "seconds": seconds.get("total"),
    }


class KeptDiff(Diff):
    """A job's diff as kept: its changed top-level subtrees, with the summary of the whole diff.

    A job keeps only the subtrees with a change somewhere in them (``changed_part``): the rest is counted in
    the summary and is what ``str()`` and ``dict()`` leave out anyway, so a diff of a million unchanged
    objects costs its job nothing to keep, plan or rebuild.
    """

    def __init__(self, summary: Optional[Dict[str, int]] = None) -> None:
        super().__init__()
        self.kept_summary = dict(summary) if summary else None

    def summary(self) -> Dict[str, int]:
        """The whole diff's counts (the unchanged subtrees that were not kept included)."""
        if self.kept_summary is None:
            return super().summary()
        return dict(self.kept_summary)


def changed_part(diff: Diff) -> KeptDiff:
    """The top-level elements of ``diff`` with a change in their subtree, in its order, and its summary."""
    kept = KeptDiff(diff.summary())
    for element in diff.get_children():
        if element.has_diffs(include_children=True):
            kept.add(element)
    return kept


def rebuild_diff(
    records: Sequence[Any], codec: DiffCodec, source_name: str, dest_name: str, summary: Optional[Dict[str, int]]
) -> KeptDiff:
    """A job's diff from the element records kept with it, with the original's summary (skips included)."""
    result = KeptDiff(summary)
    for record in records:
        result.add(codec.decode(record, source_name, dest_name))
    return result


def _hostnames(values: Iterable[Any]) -> Set[str]:
    """Each worker's hostname once, from entries that may name several (``"a@h, b@h"``)."""
    return {part.strip() for value in values for part in str(value).split(",") if part.strip()}


def assemble_report(
    job: JobState, *, error: Optional[str], changed: bool, sync_complete: bool, hostname: str, started: float
) -> Dict[str, Any]:
    """The report of a job that ends now, from what its steps recorded (``started``: the finish's start)."""
    try:
        spec_data = job.spec_data()
    except Exception:  # noqa: BLE001 - unreadable: the report's error says so already
        spec_data = None
    if not isinstance(spec_data, dict):
        spec_data = {}
    info = job.info()
    shard_results = job.shard_results()
    try:
        plan: Dict[str, Any] = job.plan_head()
    except LookupError:
        plan = {}
    times = job.times()
    if "sync_started" in info:
        times["sync"] = max(0.0, float(info.get("sync_ended", info["sync_started"])) - float(info["sync_started"]))
    times["finish"] = time.perf_counter() - started
    if "submitted" in info:
        times["total"] = max(0.0, job.now() - float(info["submitted"]))
    workers = _hostnames(job.workers().values())  # a ranged diff records its hosts as one "a, b" entry
    for load in job.loads().values():  # a partitioned load's hosts are its partitions'
        workers.update(_hostnames(load.get("workers") or []))
    workers.update(result["worker"] for result in shard_results.values() if result.get("worker"))
    if hostname:
        workers.add(hostname)
    report = compose_report(
        job_id=job.job_id,
        source=spec_data.get("source"),
        target=spec_data.get("target"),
        flags=spec_data.get("flags", []),
        dry_run=bool(spec_data.get("dry_run", False)),
        error=error,
        summary=job.summary(),
        loads=job.loads(),
        operations=plan.get("operations", 0),
        journal=job.iter_journal(),
        changed=changed,
        sync_complete=sync_complete,
        seconds=times,
        shards=[shard_results[index] for index in sorted(shard_results)],
        waves=len(plan.get("waves", [])),
        workers=sorted(workers),
        stores=job.store_ids(),
        retries=sum(int(result.get("retries") or 0) for result in shard_results.values()),
        throttled=sum(int(result.get("throttled") or 0) for result in shard_results.values()),
        waited=sum(float(result.get("waited") or 0.0) for result in shard_results.values()),
        paused=sum(float(result.get("paused") or 0.0) for result in shard_results.values()),
        lowest_limit=min(
            (int(result["lowest_limit"]) for result in shard_results.values() if result.get("lowest_limit")),
            default=None,
        ),
        transient=sum(int(result.get("transient") or 0) for result in shard_results.values()),
        times={"submitted": info.get("submitted"), "started": info.get("started"), "ended": time.time()},
        kwargs={
            side: _shown(redact(spec_data.get(f"{side}_kwargs", {}), _secret_names(spec_data.get(side))))
            for side in ("source", "target")
        },
    )
    report["scope"] = _scope_shown(spec_data.get("scope"))
    return report


def _scope_shown(scope: Any) -> Optional[Dict[str, Any]]:
    """A job's scope as its report keeps it: what narrows it, its ids summarised past 100 (None: everything)."""
    if not isinstance(scope, dict):
        return None
    found = {name: value for name, value in scope.items() if value is not None and value != {}}  # [] narrows
    ids = found.get("ids")
    if isinstance(ids, list) and len(ids) > 100:
        found["ids"] = [*ids[:100], f"... and {len(ids) - 100} more"]
    return found or None
