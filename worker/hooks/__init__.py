"""Job-level hooks: what happens when a job starts and when it ends, around the pipeline's steps.

The dispatcher (``worker.pipeline.dispatch``) calls each hook of its runner after the start step took the
target's lock (``started``) and after the finish saved the report, before the end is published (``ended``).
A hook may be called again for a step delivered again, so each counts or releases once however often called;
its error is retried when the runner retries it, and otherwise only logged: a hook never decides how a job went.
"""

from __future__ import annotations

from typing import Tuple

from worker.hooks.metrics import MetricsHook
from worker.hooks.schedule import ScheduleHook

DEFAULT_HOOKS: Tuple[MetricsHook, ScheduleHook] = (MetricsHook(), ScheduleHook())
"""The hooks both runners call: the deployment's job metrics, and the schedule entry's running marker."""

__all__ = ["DEFAULT_HOOKS", "MetricsHook", "ScheduleHook"]
