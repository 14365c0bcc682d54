"""Job metrics for Prometheus, counted in Redis when a job starts and ends (a job-level hook), once per job.

Why in Redis: a job's steps run on many workers (its start on one, its finish on another), and a worker's
memory holds only the steps it ran and dies with it, so metrics kept in each process would show fractions of
jobs. The dispatcher calls ``MetricsHook`` when a job starts and when it ends, and it counts into one Redis hash
of the deployment (``core.keys.METRICS``), each job once: the end's increments and a marker in the job's info
are written by one Lua script, so a finish delivered again (after a crash) finds the marker and counts nothing.
The exporter (``worker.cli.exporter``, ``shardsync metrics``) reads the hash at scrape time. A job on the
embedded runner's memory state counts nothing: the metrics are a deployment's.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

import msgpack
from redis import Redis

from core import keys
from worker.settings import get_settings
from worker.state.base import JobState
from worker.state.redis import RedisJobState

PREFIX = "shardsync"
"""First part of every metric name."""

BUCKETS: Tuple[float, ...] = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
"""Upper bounds, in seconds, of the duration histograms' buckets: a stage takes a fraction of a second, a sync
into a slow API hours. Stored per bucket (not cumulated) under the bound's text, so a changed list leaves the
old fields unread and the counts and sums right."""

JOB_STATUSES = ("success", "failed", "dry-run")

TARGET_FIGURES = (("retries", "i"), ("throttled", "i"), ("waited", "f"), ("paused", "f"), ("transient", "i"))
"""What ended jobs' reports say of their targets (``worker.targets``): calls made again after "try later",
calls that waited for the limits, seconds they waited, seconds calls were held back (pause, breaker), calls
that met "try later"."""
"""The statuses a job ends with (``worker.job.report``); each is shown from the start, at 0."""

SEP = "|"
"""Separates the parts of a field of the metrics hash (label values never contain it: it is replaced)."""

COUNTED = "counted"
"""Field of a job's info set (to the time, msgpack) when its end was counted: the marker of idempotence."""

Increment = Tuple[str, str, str]
"""One change to the metrics hash: ``(field, "i" or "f", amount)`` (HINCRBY or HINCRBYFLOAT)."""

# KEYS: the metrics hash, the running hash, the job's info. ARGV: job id, the time now.
_COUNT_START = """
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'jobs_started', 1)
return 1
"""

# KEYS as above. ARGV: job id, the marker's value, its expiry if the info has none, the marker's field, then
# (field, kind, amount) triples. The job stops counting as running however often this runs; the marker, set
# in the same script as the increments, lets them through once.
_COUNT_END = """
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[2]) == 0 then return 0 end
if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
for i = 5, #ARGV, 3 do
  if ARGV[i + 1] == 'f' then
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 2])
  else
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 2])
  end
end
return 1
"""

# ----------------------------------------------------------------------------------------------------
# counting (the hook)
# ----------------------------------------------------------------------------------------------------


def _part(value: Any) -> str:
    return str(value).replace(SEP, "_")


def field_name(*parts: Any) -> str:
    """A field of the metrics hash from its parts (the exporter reads the fields it names)."""
    return SEP.join(_part(part) for part in parts)


def bound_name(bound: float) -> str:
    """A histogram bucket's bound as it is written in a field."""
    return f"{bound:g}"


def _histogram(name: str, labels: Tuple[str, ...], seconds: Any) -> List[Increment]:
    """The increments that observe one duration in a histogram of the hash (none for a value that is not one)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return []
    if not math.isfinite(value):
        return []
    value = max(0.0, value)
    found = [(field_name(name, *labels, "count"), "i", "1"), (field_name(name, *labels, "sum"), "f", f"{value:.6f}")]
    for bound in BUCKETS:
        if value <= bound:
            found.append((field_name(name, *labels, "le", bound_name(bound)), "i", "1"))
            break
    return found


WHO = ("source", "target", "schedule")
"""The labels that say which sync a job was: its adapters by registered name and its schedule entry (empty when
none started it). Few values each, so they keep the series few."""


def end_increments(report: Mapping[str, Any], schedule: Optional[str] = None) -> List[Increment]:
    """What a job's end adds to the metrics, from its report (and the schedule entry that started it).

    Its status; its operations by action and status (``report["counts"]``) and those planned that never ran
    (``report["skipped"]``); what its target made it do (``TARGET_FIGURES``); its duration from submission to
    the end (``seconds["total"]``) in the job histogram, by status; each other entry of ``seconds`` (the
    stages: ``load-source``, ``load-target``, ``diff``, ``plan``, ``sync``, ``finish``) in the stage histogram.
    The job counts, operations and durations carry the ``WHO`` labels too, as the fields' last parts.
    """
    status = str(report.get("status") or "failed")
    who = (report.get("source") or "", report.get("target") or "", schedule or "")
    found: List[Increment] = [(field_name("jobs_ended", status, *who), "i", "1")]
    counts = report.get("counts") or {}
    for action, per_status in sorted(counts.items()):
        for op_status, count in sorted((per_status or {}).items()):
            if int(count) > 0:
                found.append((field_name("operations", action, op_status, *who), "i", str(int(count))))
    skipped = int(report.get("skipped") or 0)
    if skipped > 0:
        found.append(("operations_skipped", "i", str(skipped)))
    for name, kind in TARGET_FIGURES:
        try:
            value = float(report.get(name) or 0)
        except (TypeError, ValueError):
            continue
        if value > 0:
            found.append((field_name("target", name), kind, str(int(value)) if kind == "i" else f"{value:.6f}"))
    for stage, seconds in sorted((report.get("seconds") or {}).items()):
        if stage == "total":
            found += _histogram("job_seconds", (status, *who), seconds)
        else:
            found += _histogram("stage_seconds", (stage,), seconds)
    return found


def count_job_started(client: Redis, job_id: str) -> bool:
    """Count a job as started and running; False if it was counted already, or has ended (then nothing changes)."""
    info = keys.job_key(job_id, "info")
    started = client.eval(_COUNT_START, 3, keys.METRICS, keys.METRICS_RUNNING, info, job_id, repr(time.time()), COUNTED)
    return bool(started)


def count_job_ended(
    client: Redis, job_id: str, report: Mapping[str, Any], ttl: int, schedule: Optional[str] = None
) -> bool:
    """Count a job's end from its report, once: False if it was counted before (then only its running entry goes).

    Args:
        client: The job-state Redis.
        job_id: The job.
        report: Its report (``worker.job.report``).
        ttl: Expiry given to the job's info if it has none (the marker lives in it, as long as the report).
        schedule: The schedule entry that started the job (its ``schedule`` label), if one did.
    """
    args: List[Any] = [job_id, msgpack.packb(time.time()), int(ttl), COUNTED]
    for increment in end_increments(report, schedule):
        args.extend(increment)
    info = keys.job_key(job_id, "info")
    return bool(client.eval(_COUNT_END, 3, keys.METRICS, keys.METRICS_RUNNING, info, *args))


class MetricsHook:
    """Counts a job's start and end in the deployment's metrics hash (jobs on the Redis state only)."""

    def started(self, job: JobState) -> None:
        """Count the job as started and running (once, however often called, and never after its end)."""
        if isinstance(job, RedisJobState):
            count_job_started(job.client, job.job_id)

    def ended(self, job: JobState, report: Dict[str, Any]) -> None:
        """Count the job's end from its report, once; it no longer counts as running."""
        if isinstance(job, RedisJobState):
            schedule = job.info().get("schedule")
            count_job_ended(job.client, job.job_id, report, get_settings().store_ttl, schedule)
