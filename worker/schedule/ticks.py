"""One run at a time per schedule entry: a tick that finds the entry's previous run still running is skipped.

Beat fires an entry's ticks by the clock, whatever its last run is doing. With an interval shorter than the
sync takes, runs would pile up in the jobs queue and each fail at the target lock. Instead, the tick that
starts a run takes the entry's running marker (``core.keys.schedule_run_key``), holding the new job's id, and
that job's finish lets go of it (``JobState.release_schedule``), whether the job succeeded, failed or was
cancelled. A tick that finds the marker held by a job not ended starts nothing and records no job: it logs
"Scheduled sync skipped" and counts itself in ``core.keys.SCHEDULE_SKIPS`` (``skipped_ticks``).

Race-free: a free marker is taken with SET NX, and one left by a job that ended without letting go (it has a
report: its finish died before the release) is taken over with a compare-and-set, so of two ticks processed
at once by two workers exactly one starts a job. The marker is first taken for ``RESERVE_SECONDS`` only, then
the job is recorded and enqueued, then the marker is given its full expiry (``confirm_run``): a tick whose
worker dies in between blocks the entry for a minute at most. The full expiry is the job's deadline plus the
target lock's expiry (``marker_ttl``), after which a job that vanished without a report (its message lost)
could neither run nor hold its target any more.
"""

from __future__ import annotations

from typing import Dict, Optional

import structlog
from redis import Redis

from core import keys
from worker.connection import redis_client
from worker.errors import ShardsyncError
from worker.settings import get_settings

logger = structlog.get_logger("shardsync.worker")

_TAKE_OVER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""
_CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class TickSkipped(ShardsyncError):
    """A tick of a schedule entry found the entry's previous run still running: it starts no job."""

    def __init__(self, entry: str, running_job_id: str) -> None:
        super().__init__(f"scheduled sync {entry!r} skipped: its previous run, job {running_job_id}, is still running")
        self.entry = entry
        self.running_job_id = running_job_id


def marker_ttl(deadline: Optional[int]) -> int:
    """Seconds the running marker of an enqueued job with this spec ``deadline`` lives: past any end of that job.

    The job's deadline (its own, else ``SHARDSYNC_JOB_DEADLINE``) plus ``SHARDSYNC_LOCK_TTL``: a job past its
    deadline is stopped, and one whose steps all vanished loses its target lock that much later. A job without
    a deadline keeps the marker as long as its record (``SHARDSYNC_STORE_TTL``) plus the lock's expiry; should
    such a job run longer still, the next run fails at the target lock, as two syncs into a target always do.
    """
    settings = get_settings()
    seconds = settings.job_deadline if deadline is None else deadline
    return int(seconds or settings.store_ttl) + settings.lock_ttl


RESERVE_SECONDS = 60
"""Expiry of a marker taken for a run not yet recorded and enqueued (``admit_run`` until ``confirm_run``)."""


def _ended(client: Redis, job_id: str) -> bool:
    """Whether a job has ended: it has a report. A job recorded and not ended, or not yet recorded, has none."""
    return bool(client.exists(keys.job_key(job_id, "report")))


def admit_run(entry: str, job_id: str, client: Optional[Redis] = None) -> None:
    """Take the entry's running marker for a new run, for ``RESERVE_SECONDS``; record and enqueue it next.

    Raises:
        TickSkipped: if a job not ended holds it (then ``running_job_id`` names it).
    """
    client = client if client is not None else redis_client()
    marker = keys.schedule_run_key(entry)
    holder = ""
    for _ in range(5):  # a pass fails only to a tick that took the marker meanwhile, which then holds it
        if client.set(marker, job_id, nx=True, ex=RESERVE_SECONDS):
            return
        raw = client.get(marker)
        if raw is None:
            continue  # let go of between the two commands: try to take it again
        holder = raw.decode(errors="replace")
        if holder == job_id:
            return  # taken by an earlier call for this very run
        if not _ended(client, holder):
            raise TickSkipped(entry, holder)
        if client.eval(_TAKE_OVER, 1, marker, holder, job_id, RESERVE_SECONDS):
            logger.warning(
                "Schedule marker taken over from a job that ended without letting go",
                schedule=entry,
                ended_job_id=holder,
                job_id=job_id,
            )
            return
    raw = client.get(marker)
    raise TickSkipped(entry, raw.decode(errors="replace") if raw is not None else holder)


def confirm_run(entry: str, job_id: str, ttl: int, client: Optional[Redis] = None) -> bool:
    """Give the marker of an enqueued run its full expiry (``marker_ttl``); False if the run let go of it already.

    A run quick enough to have finished before this (its finish deleted the marker), or a marker another run
    holds, is left alone.
    """
    client = client if client is not None else redis_client()
    return bool(client.eval(_CONFIRM, 1, keys.schedule_run_key(entry), job_id, ttl))


def release_run(entry: str, job_id: str, client: Optional[Redis] = None) -> bool:
    """Let go of the entry's running marker if ``job_id`` holds it; whether it did.

    Safe to call again, and after another run has taken the marker over (it is then left alone).
    """
    client = client if client is not None else redis_client()
    return bool(client.eval(_RELEASE, 1, keys.schedule_run_key(entry), job_id))


def running_job(entry: str, client: Optional[Redis] = None) -> Optional[str]:
    """The id of the job holding the entry's running marker, if any (it may have ended without letting go)."""
    client = client if client is not None else redis_client()
    raw = client.get(keys.schedule_run_key(entry))
    return None if raw is None else raw.decode(errors="replace")


def record_skip(skipped: TickSkipped, client: Optional[Redis] = None) -> int:
    """Count a skipped tick and log it; returns the entry's skipped ticks so far.

    Logged as a warning: an entry whose ticks are skipped has an interval shorter than its sync takes.
    """
    client = client if client is not None else redis_client()
    count = int(client.hincrby(keys.SCHEDULE_SKIPS, skipped.entry, 1))
    logger.warning(
        "Scheduled sync skipped", schedule=skipped.entry, running_job_id=skipped.running_job_id, skipped=count
    )
    return count


def skipped_ticks(entry: str, client: Optional[Redis] = None) -> int:
    """How many ticks of a schedule entry (its name in the file) were skipped since the count began."""
    client = client if client is not None else redis_client()
    return int(client.hget(keys.SCHEDULE_SKIPS, entry) or 0)


def skipped_ticks_by_entry(client: Optional[Redis] = None) -> Dict[str, int]:
    """Skipped ticks of every entry that has had one (a metrics exporter reads them all at once)."""
    client = client if client is not None else redis_client()
    return {name.decode(errors="replace"): int(count) for name, count in client.hgetall(keys.SCHEDULE_SKIPS).items()}
