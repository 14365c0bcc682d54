"""Errors the runner raises to its callers."""

from __future__ import annotations

from typing import Any, Dict, Optional

from worker.redaction import mask_text


class ShardsyncError(Exception):
    """Base of the runner's errors."""


class UnknownAdapter(ShardsyncError, LookupError):
    """A job names an adapter that is not registered."""


class InvalidJob(ShardsyncError, ValueError):
    """A job spec failed validation; the message lists what was wrong."""


class InvalidSetting(ShardsyncError, ValueError):
    """A setting (an environment variable) that cannot work, named with what is wrong."""


class RedisUnavailable(ShardsyncError):
    """Redis (broker, result backend or job state) cannot be reached; the message names where, never a password."""


class LockLost(ShardsyncError):
    """A step found that its job no longer holds the target's lock: it stops before writing to the target."""


def lock_lost_message(job_id: str, target: str) -> str:
    """Why a step stopped when its job's lock was gone."""
    return (
        f"job {job_id} lost the lock on target {target}: another job holds it or took it since (the lock "
        "expired: no step of this job ran, or its worker paused, for longer than SHARDSYNC_LOCK_TTL)"
    )


class JobFailed(ShardsyncError):
    """A job ended without applying its whole diff; ``report`` says what was done and what failed."""

    def __init__(self, message: str, report: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.report = report


class RedisOutage(ShardsyncError):
    """Redis (or the broker) stayed unreachable longer than SHARDSYNC_REDIS_OUTAGE_BUDGET while a step ran."""


class JobStateLost(JobFailed):
    """Redis has no record of a job that was submitted: it restarted empty, was flushed, or the records expired."""


def job_state_lost_message(job_id: str) -> str:
    """What a waiter is told when a job's state is gone."""
    return (
        f"job {job_id}: job state lost: Redis has no record of it (Redis restarted without persistence or was "
        "flushed, or the job's records expired); what it did is unknown: resubmit it (a sync converges)"
    )


def describe(err: BaseException) -> str:
    """An exception as one line for reports and logs: its type and message, secrets masked, bounded in size.

    An adapter's error may carry a token (in a URL, an echoed header) and a remote's whole error body: what a
    report, Flower and the logs keep is ``worker.redaction.mask_text`` of it.
    """
    message = mask_text(str(err))
    return f"{type(err).__name__}: {message}" if message else type(err).__name__
