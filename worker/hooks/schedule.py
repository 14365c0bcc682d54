"""The schedule-marker hook: a scheduled run's end lets its schedule entry start its next run.

A tick of a schedule entry takes the entry's running marker for the job it starts (``worker.schedule.ticks``)
and records the entry's name in the job's info; this hook, called when the job ends however it ended (success,
failure, cancel), lets go of the marker, so the entry's next tick may start a run. It lets go only of a marker
this job holds, never of one a later run has taken since, and does so again for a finish delivered again.
"""

from __future__ import annotations

from typing import Any, Dict

from worker.schedule.ticks import release_run
from worker.state.base import JobState
from worker.state.redis import RedisJobState


class ScheduleHook:
    """Releases the running marker of the schedule entry a job ran for (scheduled runs are on Redis only)."""

    def started(self, job: JobState) -> None:
        """Nothing: the tick took the marker before the job was enqueued."""

    def ended(self, job: JobState, report: Dict[str, Any]) -> None:
        """Let go of the entry's marker if this job holds it."""
        if not isinstance(job, RedisJobState):
            return
        entry = job.info().get("schedule")
        if isinstance(entry, str) and entry:
            release_run(entry, job.job_id, job.client)
