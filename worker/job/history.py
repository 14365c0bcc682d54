"""Job history and the per-object log: what ran, when, and what happened to each object.

Operators ask "what ran last night, and what did it do to device X?". The job records answer that for as
long as they are kept (``SHARDSYNC_STORE_TTL``): an index of job ids by submission time lists the jobs, and
a job's journal, read in plan order, is its per-object log; operations that never ran (skipped under a
failed parent, or not reached by a job that failed) are listed from the kept diff, so the log accounts for
every operation of the plan.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Optional

import structlog
from redis import Redis

from core import keys
from core.diff_codec import DiffCodec
from core.planner import number_elements, subtree_operations
from core.scope import Scope
from worker.adapters.registry import get_adapter
from worker.errors import describe
from worker.job.report import iso, rebuild_diff
from worker.settings import get_settings
from worker.state.codec import unpack
from worker.state.redis import RedisJobState

logger = structlog.get_logger("shardsync.worker")

STATES = ("queued", "running", "success", "failed", "dry-run")


def job_summary(job: RedisJobState) -> Optional[Dict[str, Any]]:
    """One line of history: id, source -> target, state, diff summary, times; None if the job is unknown.

    A spec that cannot be read (not msgpack, not a table) is listed with no adapters: the job still has a line.
    """
    try:
        spec = job.spec_data()
    except Exception:  # noqa: BLE001 - unreadable: its report says so; the list shows it all the same
        spec = {}
    if spec is None:
        return None
    if not isinstance(spec, dict):
        spec = {}
    info = job.info()
    report = job.report()
    if report is not None:
        state = str(report.get("status"))
    else:
        state = "running" if info.get("status") == "running" else "queued"
    submitted = info.get("submitted")
    started = info.get("started")
    finished = info.get("finished")
    duration = None
    if submitted is not None:
        duration = float(finished if finished is not None else time.time()) - float(submitted)
    return {
        "job_id": job.job_id,
        "source": spec.get("source"),
        "target": spec.get("target"),
        "state": state,
        "dry_run": bool(spec.get("dry_run")),
        "schedule": info.get("schedule"),
        "apply_of": spec.get("apply_of"),
        "applied_by": info.get("applied_by"),
        "scope": _scope_text(spec.get("scope")),
        "pair": spec.get("pair"),
        "summary": job.summary(),
        "failures": int(report.get("failures_total", len(report.get("failures", [])))) if report else 0,
        "error": report.get("error") if report else None,
        "submitted": iso(submitted),
        "started": iso(started),
        "ended": iso(finished),
        "seconds": round(duration, 3) if duration is not None else None,
        "at": float(submitted) if submitted is not None else None,
    }


def _scope_text(data: Any) -> Optional[str]:
    """A job's scope in a few words (None: everything); never its whole list of ids."""
    try:
        scope = Scope.from_data(data)
    except ValueError:
        return "(unreadable)"
    return None if scope is None or scope.whole else scope.describe()


def record_line(job: Any) -> None:
    """Keep an ended job's line of the job list (``list_jobs`` reads thousands in one go); only in Redis."""
    if isinstance(job, RedisJobState):
        try:
            line = job_summary(job)
            if line is not None:
                job.save_line(line)
        except Exception as err:  # noqa: BLE001 - a line is for listing: the job's end never depends on it
            logger.warning("Job line not kept", job_id=job.job_id, error=describe(err))


def job_ids_starting(prefix: str, client: Optional[Redis] = None, most: int = 10) -> List[str]:
    """The ids of known jobs that start with ``prefix`` (a short id, as Flower shows 8 characters), at most ``most``.

    ``prefix`` is a checked job id (letters, digits, ``_.-``): no glob character reaches the SCAN pattern.
    """
    from worker.connection import redis_client  # pylint: disable=import-outside-toplevel

    client = client or redis_client()
    found: List[str] = []
    for raw, _ in client.zscan_iter(keys.JOB_INDEX, match=f"{prefix}*", count=1000):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if name not in found:
            found.append(name)
        if len(found) >= most:
            break
    return found


def forget_old_jobs(client: Redis) -> int:
    """Drop the jobs older than the history's retention from the index and the lines; returns how many."""
    cutoff = time.time() - get_settings().history_ttl
    old = client.zrangebyscore(keys.JOB_INDEX, "-inf", cutoff)
    for start in range(0, len(old), 1000):
        chunk = old[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        pipe.hdel(keys.JOB_LINES, *chunk)
        pipe.zrem(keys.JOB_INDEX, *chunk)
        pipe.execute()
    return len(old)


def list_jobs(
    state: Optional[str] = None,
    target: Optional[str] = None,
    source: Optional[str] = None,
    limit: Optional[int] = 50,
    client: Optional[Redis] = None,
    schedule: Optional[str] = None,
    since: Optional[float] = None,
    until: Optional[float] = None,
    offset: int = 0,
) -> List[Dict[str, Any]]:
    """Recent jobs, newest first, optionally only some of them (every filter given must hold).

    ``state``, ``target``, ``source``: exact; ``schedule``: the schedule entry that started it (``""``: none);
    ``since``/``until``: submitted between (epoch seconds).

    Each ended job is one kept line (``record_line``), so a history of thousands lists in a few reads; a job
    still queued or running is read from its state. Jobs older than the retention (``SHARDSYNC_HISTORY_DAYS``)
    are forgotten as the list is read. ``offset`` skips that many matching jobs (pages of ``limit``).

    Raises:
        ValueError: if ``state`` is not one of ``STATES``.
    """
    if state is not None and state not in STATES:
        raise ValueError(f"unknown job state {state!r}; known states: {', '.join(STATES)}")
    from worker.connection import redis_client  # pylint: disable=import-outside-toplevel

    client = client or redis_client()
    forget_old_jobs(client)
    ids = client.zrevrangebyscore(
        keys.JOB_INDEX, "+inf" if until is None else until, "-inf" if since is None else since
    )
    wanted = {"state": state, "target": target, "source": source, "schedule": schedule}
    found: List[Dict[str, Any]] = []
    skip = offset
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for raw_id, raw in zip(chunk, client.hmget(keys.JOB_LINES, chunk), strict=True):
            line = _line(raw_id.decode(), raw, client)
            if line is None:
                continue
            if any(value is not None and (line.get(name) or "") != value for name, value in wanted.items()):
                continue
            if skip:
                skip -= 1
                continue
            found.append(line)
            if limit is not None and len(found) >= limit:
                return found
    return found


def _line(job_id: str, raw: Optional[bytes], client: Redis) -> Optional[Dict[str, Any]]:
    """A job's line: the kept one once it ended, else read now; None (and forgotten) once its records are gone."""
    line = unpack(raw) if raw is not None else None
    if isinstance(line, dict) and line.get("state") not in ("queued", "running", None):
        return line
    job = RedisJobState(job_id, client)
    line = job_summary(job)
    if line is None:
        client.zrem(keys.JOB_INDEX, job_id)
        client.hdel(keys.JOB_LINES, job_id)
    elif raw is None and line["state"] not in ("queued", "running"):
        job.save_line(line)  # a job ended before lines were kept: kept from now on
    return line


def _planned(job: RedisJobState, spec: Dict[str, Any], journal: Dict[str, List[Any]]) -> Iterator[Dict[str, Any]]:
    """Every operation of a job's plan, in plan order, named as its journal names them.

    A journaled delete's model flags (kept in its entry) say whether its children were operations of their
    own (not with SKIP_CHILDREN_ON_DELETE) and in which order (NATURAL_DELETION_ORDER), as in the plan.
    """
    source_cls, target_cls = get_adapter(spec["source"]), get_adapter(spec["target"])
    records = job.diff_records(list(range(job.diff_size())))
    diff = rebuild_diff(records, DiffCodec(source_cls, target_cls), "source", "target", job.summary())
    for root, element in enumerate(diff.get_children()):
        op_ids: Dict[int, str] = {}
        number_elements(root, element, op_ids)  # the shards' numbering, so the names match the journal's
        by_op = {op_ids[id(current)]: current for current in _walk(element)}
        parent_op = {
            op_ids[id(child)]: op_ids[id(current)] for current in _walk(element) for child in current.get_children()
        }

        def flags_of(current: Any, op_ids: Dict[int, str] = op_ids) -> int:
            entry = journal.get(op_ids[id(current)])
            return int(entry[5]) if entry is not None and len(entry) > 5 else 0

        for operation in subtree_operations(root, element, flags_of):  # type: ignore[arg-type]
            op = f"{root}:{operation.seq}"
            current = by_op[op]
            model_class = getattr(target_cls, current.type, None)
            uid = model_class.create_unique_id(**current.keys) if model_class is not None else current.name
            above, up = [], parent_op.get(op)
            while up is not None:
                above.append(up)
                up = parent_op.get(up)
            yield {"op": op, "action": operation.action, "model": current.type, "unique_id": uid, "above": above}


def _walk(element: Any) -> Iterator[Any]:
    stack = [element]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.get_children())


def job_log(
    job_id: str,
    action: Optional[str] = None,
    model: Optional[str] = None,
    status: Optional[str] = None,
    offset: int = 0,
    limit: Optional[int] = None,
    client: Optional[Redis] = None,
) -> List[Dict[str, Any]]:
    """The per-object log of a job: one entry per operation (op, action, model, unique_id, status, message).

    Operations journaled so far come with their outcome; once the job has ended, the rest of its plan is
    listed too: ``skipped`` (under a failed parent, in a job that completed) or ``not run`` (a failed or
    cancelled job stopped first). Filters are exact matches; ``offset``/``limit`` page the filtered entries.

    Raises:
        LookupError: if the job is unknown (or its records expired).
        UnknownAdapter: if this process lacks the job's adapters (needed to list operations that never ran).
    """
    from worker.connection import redis_client  # pylint: disable=import-outside-toplevel

    job = RedisJobState(job_id, client or redis_client())
    spec = job.spec_data()
    if spec is None:
        raise LookupError(f"job {job_id} is unknown (or its records expired)")
    journal = job.journal()
    report = job.report()
    entries: List[Dict[str, Any]] = []
    if report is not None and job.diff_size():
        missing = "skipped" if report.get("status") == "success" else "not run"
        for planned in _planned(job, spec, journal):
            above = planned.pop("above")
            entry = journal.get(planned["op"])
            if entry is not None:
                entries.append(_entry(planned["op"], entry))
                continue
            # Under a parent that failed it was skipped (the report counts it so), whatever became of the job.
            failed_above = any(op in journal and journal[op][1] != "success" for op in above)
            entries.append({**planned, "status": "skipped" if failed_above else missing, "message": ""})
    else:
        ordered = sorted(journal, key=lambda op: tuple(int(part) for part in op.split(":")))
        entries = [_entry(op, journal[op]) for op in ordered]
    chosen = [
        entry
        for entry in entries
        if (action is None or entry["action"] == action)
        and (model is None or entry["model"] == model)
        and (status is None or entry["status"] == status)
    ]
    return chosen[offset : None if limit is None else offset + limit]


def _entry(op: str, entry: List[Any]) -> Dict[str, Any]:
    action, status, message, model, uid = entry[:5]
    found = {"op": op, "action": action, "model": model, "unique_id": uid, "status": status, "message": message}
    if len(entry) > 6 and entry[6]:
        found["traceback"] = entry[6]  # a hook that raised (``OperationJournal.operation_raised``)
    return found


__all__ = ["STATES", "forget_old_jobs", "iso", "job_log", "job_summary", "list_jobs", "record_line"]
