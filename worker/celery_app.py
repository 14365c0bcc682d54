"""The Celery app (``celery -A worker worker|beat|flower``), configured from ``worker.settings``.

Messages and results are msgpack only (no pickle is accepted anywhere); tasks are acknowledged after they
ran and re-queued when a worker process dies, so a job's tasks are written to be safe to run twice.
Coordination (starting and finishing jobs) and the long work (loads, diffs, shards) have queues of their
own, so a backlog of shards never holds up the start or finish of a job.
"""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from worker.settings import Settings, get_settings

TASK_NAMES = ("shardsync.job", "shardsync.load", "shardsync.diff", "shardsync.shard", "shardsync.finish")


def create_app(settings: Settings) -> Celery:
    """Build a Celery app for these settings (the tasks attach themselves when ``worker.tasks`` is imported)."""
    app = Celery("shardsync")
    jobs, shards = settings.jobs_queue, settings.shards_queue
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.backend_url,
        task_serializer="msgpack",
        result_serializer="msgpack",
        accept_content=["msgpack"],
        result_accept_content=["msgpack"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_track_started=True,
        result_expires=settings.result_expires,
        result_extended=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        task_queues=(
            Queue(jobs, Exchange(jobs, type="direct"), routing_key=jobs),
            Queue(shards, Exchange(shards, type="direct"), routing_key=shards),
        ),
        task_default_queue=jobs,
        task_routes={
            "shardsync.job": {"queue": jobs, "routing_key": jobs},
            "shardsync.finish": {"queue": jobs, "routing_key": jobs},
            "shardsync.scheduled": {"queue": jobs, "routing_key": jobs},
            "shardsync.load": {"queue": shards, "routing_key": shards},
            "shardsync.diff": {"queue": shards, "routing_key": shards},
            "shardsync.shard": {"queue": shards, "routing_key": shards},
        },
        worker_hijack_root_logger=False,
        timezone="UTC",
    )
    return app


app = create_app(get_settings())
