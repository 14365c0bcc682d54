"""What monitors see of a job: its progress as Celery task state, and task events for Flower's task list.

A job's own Celery task (``shardsync.job``) ends as soon as it has enqueued the loads; its steps then write
the job's state under its id: ``PROGRESS`` with meta ``{job_id, stage, current, total}`` (and, while the
shards run, ``target``: the adaptive limit, retries, transient errors, throttled calls, whether the target is
unavailable and until when), then ``SUCCESS`` with the report or ``FAILURE`` with a ``JobFailed``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import structlog
from celery import current_task, states
from celery.result import AsyncResult

from worker.errors import JobFailed, describe
from worker.job.report import report_summary
from worker.runners.celery.app import app

logger = structlog.get_logger("shardsync.worker")


def publish_progress(job_id: str, stage: str, current: int, total: int, extra: Optional[Dict[str, Any]] = None) -> None:
    """Publish the job's progress as its Celery task state, and as a task event.

    ``extra`` goes into the state's meta too (``target``: the target's live figures while the shards run).
    """
    meta: Dict[str, Any] = {
        **(extra or {}),
        "job_id": job_id,
        "stage": stage,
        "current": int(current),
        "total": int(total),
    }
    app.backend.store_result(job_id, meta, "PROGRESS")
    job_event("task-progress", job_id, result=f"{stage} {int(current)}/{int(total)}")


def publish_end(job_id: str, report: Dict[str, Any]) -> None:
    """Set the job's final Celery state from its report (again, if a finish died after saving the report)."""
    runtime = report.get("seconds", {}).get("total", 0.0)
    error = report.get("error")
    if error:
        app.backend.store_result(job_id, JobFailed(f"job {job_id} failed: {error}"), states.FAILURE)
        job_event("task-failed", job_id, exception=f"JobFailed('{error}')", traceback="", runtime=runtime)
    else:
        app.backend.store_result(job_id, report, states.SUCCESS)
        job_event("task-succeeded", job_id, result=repr(report_summary(report)), runtime=runtime)


def end_published(job_id: str) -> bool:
    """Whether the job's Celery state is final already."""
    return AsyncResult(job_id, app=app).state in (states.SUCCESS, states.FAILURE)


def job_event(event: str, job_id: str, **fields: Any) -> None:
    """Send a task event about the job's own task, whose body ended long before the job does.

    Events are best effort: a monitor missing one must never fail a job.
    """
    if not app.conf.worker_send_task_events:
        return
    try:
        # The node name of the worker running this step: the default (gen<pid>@host) would make monitors list
        # a worker that does not exist, and move the job's task under it.
        with app.events.default_dispatcher(hostname=_node_name()) as dispatcher:
            dispatcher.send(event, uuid=job_id, retry=False, **fields)
    except Exception as err:  # noqa: BLE001 - monitoring only
        logger.debug("Task event not sent", event=event, job_id=job_id, error=describe(err))


def _node_name() -> Optional[str]:
    """The worker node name (``alpha@host``) of the task running in this process, if any."""
    request = getattr(current_task, "request", None)
    hostname = getattr(request, "hostname", None)
    return hostname if isinstance(hostname, str) and hostname else None
