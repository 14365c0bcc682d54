"""Structlog set-up for worker and beat processes: engine and runner events through Celery's logging."""

from __future__ import annotations

import logging
from typing import Any

import structlog

from worker.redaction import mask_event


def log_through_stdlib(loglevel: Any = None) -> None:
    """Send structlog events (engine and runner) through the process's logging, at its level.

    Without this every engine event, debug included, would be printed and captured as a warning. Events
    render as ``key=value`` with job id, stage, model and unique id first (the fields bound by the steps).
    """
    level = loglevel if isinstance(loglevel, int) else logging.getLevelName(str(loglevel or "WARNING").upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            mask_event,  # an adapter's error text may carry a token: masked, bounded, as in reports
            structlog.processors.KeyValueRenderer(key_order=["event", "job_id", "stage", "model", "unique_id"]),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level if isinstance(level, int) else logging.WARNING),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
