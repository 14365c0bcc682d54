"""What the console and the HTTP API show, read from the job state: plain data, no web framework here.

A diff may hold millions of elements: it is read a page at a time, straight from the records kept with the
job (``RedisJobState.diff_records``, one per top-level subtree), never rebuilt whole, and without the job's
adapter classes (the records hold values in their JSON form already). A page is elements in plan order
(pre-order: a parent before its children), each with its depth, so the console can draw the tree; the cursor
``"<top-level position>.<index in that subtree>"`` says where the next page starts.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Collection, Dict, Iterator, List, Optional, Tuple

import msgpack
from redis import Redis

from core import keys
from core.store.redis import server_time
from worker.errors import ShardsyncError
from worker.runners.celery.slots import LIVES
from worker.schedule.entries import describe_schedule, entry_name, load_schedule
from worker.schedule.ticks import running_job, skipped_ticks_by_entry
from worker.settings import get_settings
from worker.state.redis import RedisJobState

ACTIONS = ("create", "update", "delete", "none")
"""What a diff element does; ``none``: unchanged itself, shown for the changes below it."""

SCAN_ELEMENTS = 50_000
"""Elements a filtered page looks through before it returns, short, with a cursor to go on (under a second)."""


def element_action(source: Optional[Dict[str, Any]], target: Optional[Dict[str, Any]]) -> str:
    """The action of an element from its two sides' attributes, as the engine decides it."""
    if source is not None and target is None:
        return "create"
    if source is None and target is not None:
        return "delete"
    if source is not None and target is not None and source != target:
        return "update"
    return "none"


def _flatten(root: int, record: List[Any], skip: int = 0, types: Collection[str] = ()) -> Iterator[Dict[str, Any]]:
    """The elements of one kept subtree record in pre-order, with their depth and index (from ``skip`` on).

    Elements before ``skip`` or of other ``types`` are passed over without being built: a page in the middle
    of a subtree of 100,000 elements costs the walk, not 100,000 dicts.
    """
    stack: List[Tuple[List[Any], int]] = [(record, 0)]
    index = -1
    while stack:
        current, depth = stack.pop()
        index += 1
        modelname, name, ids, source, target, children = current
        stack.extend((child, depth + 1) for child in reversed(children))
        if index < skip or (types and modelname not in types):
            continue
        item = {
            "root": root,
            "index": index,
            "depth": depth,
            "type": modelname,
            "name": name,
            "keys": ids or {},
            "action": element_action(source, target),
            "source": source,
            "target": target,
            "children": len(children),
        }
        if item["action"] == "update":
            item["changes"] = {
                attr: [source.get(attr), target.get(attr)]
                for attr in sorted(set(source) | set(target))
                if source.get(attr) != target.get(attr)
            }
        yield item


def parse_cursor(cursor: Optional[str]) -> Tuple[int, int]:
    """``"root.index"`` as two numbers (``(0, 0)`` for None).

    Raises:
        ValueError: naming the cursor that is not two non-negative whole numbers.
    """
    if not cursor:
        return 0, 0
    root, _, index = cursor.partition(".")
    if not (root.isdigit() and (index or "0").isdigit()) or len(cursor) > 40:
        raise ValueError(f"cursor {cursor[:40]!r}: expected '<position>.<index>' as a page's 'next' gives it")
    return int(root), int(index or 0)


def diff_page(
    job: RedisJobState,
    cursor: Optional[str] = None,
    limit: int = 200,
    types: Collection[str] = (),
    actions: Collection[str] = (),
) -> Dict[str, Any]:
    """One page of a job's diff: up to ``limit`` elements from ``cursor`` on; ``next``: the page after's cursor.

    ``types``, ``actions``: only elements of these (when given); ``next`` is None at the end.

    A filtered page looks through about ``SCAN_ELEMENTS`` elements, so it may come back short (or empty) with a
    ``next``: the rest of the diff is still to be looked through.

    Raises:
        LookupError: if the job is unknown.
        ValueError: a bad cursor or action.
    """
    unknown = sorted(set(actions) - set(ACTIONS))
    if unknown:
        raise ValueError(f"unknown action {unknown[0]!r}; actions: {', '.join(ACTIONS)}")
    if job.spec_data() is None:
        raise LookupError(f"job {job.job_id} is unknown (or its records expired)")
    root, skip = parse_cursor(cursor)
    size = job.diff_size()
    items: List[Dict[str, Any]] = []
    walked = 0
    chunk = 1  # a top-level subtree may hold 100,000 elements: read few at first, more while they are small
    while root < size and len(items) < limit and walked < SCAN_ELEMENTS:
        positions = list(range(root, min(size, root + chunk)))
        for position, record in zip(positions, job.diff_records(positions), strict=True):
            for item in _flatten(position, record, skip, types):
                if actions and item["action"] not in actions:
                    continue
                if len(items) == limit:
                    return _page(job, size, items, f"{position}.{item['index']}")
                items.append(item)
            walked += _count(record)
            skip = 0
            root = position + 1
            if walked >= SCAN_ELEMENTS:
                break
        chunk = min(chunk * 2, 1024)
    return _page(job, size, items, f"{root}.0" if root < size else None)


def _count(record: List[Any]) -> int:
    """Elements in a subtree record."""
    total, stack = 0, [record]
    while stack:
        current = stack.pop()
        total += 1
        stack.extend(current[5])
    return total


def _page(job: RedisJobState, size: int, items: List[Dict[str, Any]], following: Optional[str]) -> Dict[str, Any]:
    return {"job_id": job.job_id, "subtrees": size, "summary": job.summary(), "items": items, "next": following}


def shard_states(job: RedisJobState) -> Dict[str, Any]:
    """The job's shards: how many are planned, which are done (and with what), which run now."""
    report = job.report()
    if report is not None:  # ended: the plan and the shards' records are gone, the report keeps the results
        results = {int(result["index"]): result for result in report.get("shards") or [] if "index" in result}
        total, running = max(results, default=-1) + 1, []
    else:
        results = job.shard_results()
        try:
            total = int(job.plan_head()["shards"])
        except LookupError:
            total = 0
        running = sorted(int(key.split("-", 1)[1]) for key in job.running_steps() if key.startswith("shard-"))
    done = {
        str(index): {"operations": int(result.get("operations") or 0), "applied": int(result.get("applied") or 0),
                     "worker": result.get("worker"), "error": result.get("error")}
        for index, result in sorted(results.items())
    }  # fmt: skip
    return {"total": total, "done": done, "running": running}


def live_workers(client: Redis) -> List[Dict[str, Any]]:
    """The workers that take shards, as they announced themselves (``worker.runners.celery.slots``)."""
    now = server_time(client)
    workers = []
    for hostname, raw in sorted(client.hgetall(keys.SLOTS).items()):
        try:
            entry = msgpack.unpackb(raw)
            slots, expires = int(entry["slots"]), float(entry["expires"])
        except Exception:  # noqa: BLE001 - an entry no reader can use is shown as such
            slots, expires = 0, 0.0
        workers.append(
            {"hostname": hostname.decode(errors="replace"), "slots": slots, "alive": expires > now,
             "seen": _iso(expires - LIVES) if expires else None}
        )  # fmt: skip
    return workers


def schedules(client: Redis, path: Optional[str] = None) -> Dict[str, Any]:
    """The schedule file's entries with their next run, the job running for each and their skipped ticks.

    ``path``: the schedule file (default ``SHARDSYNC_SCHEDULE_FILE``, the one beat reads). ``error`` says why
    there are none: no file set, or the file is invalid (beat refuses it too).
    """
    path = path or get_settings().schedule_file
    if not path:
        return {"file": None, "entries": [], "error": "SHARDSYNC_SCHEDULE_FILE is not set: no scheduled syncs"}
    try:
        loaded = load_schedule(path)
    except ShardsyncError as err:
        return {"file": path, "entries": [], "error": str(err)}
    skips = skipped_ticks_by_entry(client)
    now = datetime.now(timezone.utc)
    entries = []
    for beat_name, entry in loaded.items():
        name = entry_name(beat_name)
        job = entry["args"][0] if entry.get("args") else {}
        when, following = describe_schedule(entry["schedule"], now)
        entries.append(
            {"name": name, "when": when, "next": following, "source": job.get("source"), "target": job.get("target"),
             "dry_run": bool(job.get("dry_run")), "skipped": int(skips.get(name, 0)),
             "running": running_job(name, client)}
        )  # fmt: skip
    return {"file": path, "entries": entries, "error": None}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")


def parse_when(value: Optional[str], name: str) -> Optional[float]:
    """A date or time filter (``2026-12-01``, ``2026-12-01T10:00``, in UTC unless it says) as epoch seconds.

    Raises:
        ValueError: naming the filter and what it expects.
    """
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} {value[:40]!r}: expected a date or time as 2026-12-01 or 2026-12-01T10:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def now() -> float:
    """The console's clock (for the ages it shows)."""
    return time.time()


__all__ = ["ACTIONS", "diff_page", "element_action", "live_workers", "parse_cursor", "parse_when", "schedules",
           "shard_states"]  # fmt: skip
