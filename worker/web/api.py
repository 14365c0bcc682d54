"""The HTTP API under ``/api/v1``: what ``worker.api`` offers Python apps, for apps in any language.

Every route needs a user (``Authorization: Bearer <token>``, or the console's session cookie with its CSRF
header for changes); submitting, cancelling and applying need the operator role. Errors are JSON
``{"detail": "..."}`` naming the problem: 400/422 bad input, 401 no user, 403 not allowed, 404 unknown job,
409 a state that does not allow it, 503 Redis or the broker unreachable.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Literal, Optional

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, create_model

from worker import api as jobs_api
from worker.connection import reaching_redis, redis_client
from worker.errors import InvalidJob, UnknownAdapter
from worker.job.history import STATES, job_log, job_summary
from worker.job.spec import JobSpec, check_job_id
from worker.state.redis import RedisJobState
from worker.web import reads
from worker.web.auth import User
from worker.web.session import current_user, operator


class Problem(BaseModel):
    """What went wrong, in words (``errors``: the fields a 422 found wrong, as pydantic names them)."""

    detail: str
    errors: Optional[List[Dict[str, Any]]] = None


_PROBLEMS = {
    400: "a body that is not JSON",
    401: "no user: no token, an unknown one, or no session",
    403: "the user's role does not allow it, or a session's change without its CSRF token",
    404: "no such job (or its records expired), or no report yet",
    409: "the job's state does not allow it (a plan applied already, an id taken)",
    422: "the request names something invalid (each problem named)",
    424: "the console lacks the job's adapters (SHARDSYNC_ADAPTER_MODULES)",
    503: "Redis or the broker cannot be reached",
}
router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(current_user)],
    responses={code: {"model": Problem, "description": text} for code, text in _PROBLEMS.items()},
)

JobId = Path(min_length=1, max_length=200, description="a job id, as submit returned it")


def checked(job_id: str) -> str:
    """A path's job id, or 422 naming what is wrong with it."""
    try:
        return check_job_id(job_id)
    except (InvalidJob, ValueError) as err:
        raise HTTPException(422, str(err)) from None


def known(job_id: str) -> RedisJobState:
    """The job's state, or 404."""
    job = RedisJobState(checked(job_id), redis_client())
    if job.spec_data() is None:
        raise HTTPException(404, f"job {job_id} is unknown (or its records expired)")
    return job


_SPEC_FIELDS = {name: field for name, field in JobSpec.model_fields.items() if name not in ("apply_of", "job_id")}
SubmitJob = create_model(  # type: ignore[call-overload]
    "SubmitJob",
    __config__=ConfigDict(extra="forbid"),
    job_id=(Optional[str], Field(None, description="a job id of your own (letters, digits, _.-); default: new")),
    **{name: (field.annotation, field) for name, field in _SPEC_FIELDS.items()},
)
"""A job to submit: the fields of ``submit_sync`` (``JobSpec``), as JSON."""


class Submitted(BaseModel):
    """A job enqueued."""

    job_id: str
    url: str


class Cancel(BaseModel):
    """Why a job is cancelled (kept in its error)."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field("cancelled from the HTTP API", max_length=500)


@router.get("/me", summary="The user this request is made as")
def me(user: User = Depends(current_user)) -> Dict[str, Any]:
    return {"name": user.name, "role": user.role}


@router.get("/jobs", summary="Recent jobs, newest first (filtered, paged)")
def list_jobs(
    state: Optional[Literal[STATES]] = Query(None),  # type: ignore[valid-type]
    source: Optional[str] = Query(None, max_length=200),
    target: Optional[str] = Query(None, max_length=200),
    schedule: Optional[str] = Query(None, max_length=200, description="the schedule entry; empty: none"),
    since: Optional[str] = Query(None, max_length=40, description="submitted at or after (ISO 8601, UTC)"),
    until: Optional[str] = Query(None, max_length=40, description="submitted at or before (ISO 8601, UTC)"),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> Dict[str, Any]:
    try:
        start, end = reads.parse_when(since, "since"), reads.parse_when(until, "until")
    except ValueError as err:
        raise HTTPException(422, str(err)) from None
    with reaching_redis("list jobs"):
        found = jobs_api.list_jobs(
            state=state, source=source, target=target, schedule=schedule, since=start, until=end,
            limit=limit + 1, offset=offset,
        )  # fmt: skip
    more = len(found) > limit
    return {"items": found[:limit], "offset": offset, "next_offset": offset + limit if more else None}


@router.post("/jobs", status_code=201, summary="Submit a sync job (validated as submit_sync)")
def submit(
    request: Request, body: SubmitJob = Body(...), user: User = Depends(operator)  # type: ignore[valid-type]
) -> Submitted:
    data = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    if data.get("job_id") is None:
        data.pop("job_id", None)
    try:
        with reaching_redis("submit a job"):
            handle = jobs_api.submit_spec(JobSpec.from_data(data), info={"submitted_by": user.name})
    except UnknownAdapter as err:
        raise HTTPException(422, str(err)) from None
    except InvalidJob as err:
        raise HTTPException(409 if "already taken" in str(err) else 422, str(err)) from None
    return Submitted(job_id=handle.id, url=str(request.url_for("job_page", job_id=handle.id)))


@router.get("/jobs/{job_id}", summary="A job: its line of history and where it ran")
def show(job_id: str = JobId) -> Dict[str, Any]:
    with reaching_redis(f"read job {job_id}"):
        job = known(job_id)
        line = job_summary(job)
        info = job.info()
        return {
            **(line or {}),
            "workers": job.workers(),
            "times": job.times(),
            "history": info.get("history"),
            "submitted_by": info.get("submitted_by"),
        }


@router.get("/jobs/{job_id}/progress", summary="A job's stage, its count, its shards and its target's condition")
def progress(job_id: str = JobId) -> Dict[str, Any]:
    with reaching_redis(f"read the progress of job {job_id}"):
        job = known(job_id)
        handle = jobs_api.JobHandle(job.job_id)
        stage, current, total = handle.progress()
        line = job_summary(job) or {}
        return {
            "job_id": job.job_id,
            "state": line.get("state"),
            "stage": stage,
            "current": current,
            "total": total,
            "shards": reads.shard_states(job),
            "target": handle.target(),
        }


@router.get("/jobs/{job_id}/report", summary="A job's report, once it has ended")
def report(job_id: str = JobId) -> Dict[str, Any]:
    with reaching_redis(f"read the report of job {job_id}"):
        found = known(job_id).report()
    if found is None:
        raise HTTPException(404, f"job {job_id} has not ended: no report yet")
    return found  # type: ignore[no-any-return]


@router.get("/jobs/{job_id}/diff", summary="A page of a job's diff, elements in plan order")
def diff(
    job_id: str = JobId,
    cursor: Optional[str] = Query(None, max_length=40, description="the 'next' of the page before"),
    limit: int = Query(200, ge=1, le=2000),
    type: List[str] = Query([], max_length=50, description="only elements of these model types"),  # noqa: A002
    action: List[Literal[reads.ACTIONS]] = Query([], description="only these actions"),  # type: ignore[valid-type]
) -> Dict[str, Any]:
    with reaching_redis(f"read the diff of job {job_id}"):
        job = known(job_id)
        try:
            return reads.diff_page(job, cursor, limit, types=type, actions=action)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None


@router.get("/jobs/{job_id}/log", summary="A page of a job's per-object log, in plan order")
def log(
    job_id: str = JobId,
    status: Optional[Literal["success", "failure", "error", "skipped", "not run"]] = Query(None),
    action: Optional[Literal["create", "update", "delete"]] = Query(None),
    model: Optional[str] = Query(None, max_length=200),
    offset: int = Query(0, ge=0, le=100_000_000),
    limit: int = Query(200, ge=1, le=2000),
) -> Dict[str, Any]:
    with reaching_redis(f"read the log of job {job_id}"):
        job = known(job_id)
        entries = log_entries(job)
    chosen = chosen_entries(entries, status, action, model)
    page = chosen[offset : offset + limit]
    following = offset + limit if offset + limit < len(chosen) else None
    return {"job_id": job.job_id, "total": len(chosen), "items": page, "offset": offset, "next_offset": following}


def chosen_entries(
    entries: List[Dict[str, Any]], status: Optional[str], action: Optional[str], model: Optional[str]
) -> List[Dict[str, Any]]:
    """The log entries that match every filter given (``failure`` also takes ``error``: a hook that raised)."""
    return [
        entry for entry in entries
        if (not status or entry["status"] == status or (status == "failure" and entry["status"] == "error"))
        and (not action or entry["action"] == action) and (not model or entry["model"] == model)
    ]  # fmt: skip


def log_entries(job: RedisJobState) -> List[Dict[str, Any]]:
    """Every entry of a job's log; an ended job's (it no longer changes) kept a while, if it is not huge."""
    if job.report() is None:
        return _log(job.job_id)
    with _ENDED_LOCK:
        found = _ENDED.get(job.job_id)
    if found is None:
        found = _log(job.job_id)
        if len(found) <= CACHED_ENTRIES:
            with _ENDED_LOCK:
                _ENDED[job.job_id] = found
                while len(_ENDED) > CACHED_LOGS:
                    _ENDED.pop(next(iter(_ENDED)))
    return found


CACHED_LOGS = 8
"""Ended jobs' logs a console process keeps (the last read), so that paging through one reads it once."""

CACHED_ENTRIES = 100_000
"""Longest log kept so (a bigger one is read again for each page, rather than held in memory)."""

_ENDED: Dict[str, List[Dict[str, Any]]] = {}
_ENDED_LOCK = threading.Lock()


def _log(job_id: str) -> List[Dict[str, Any]]:
    try:
        return job_log(job_id, client=redis_client())
    except LookupError as err:
        raise HTTPException(404, str(err)) from None
    except UnknownAdapter as err:
        raise HTTPException(
            424, f"{err}: the console lists a log with the job's adapters, as workers do (SHARDSYNC_ADAPTER_MODULES)"
        ) from None


@router.post("/jobs/{job_id}/cancel", status_code=202, summary="Stop a job (it ends failed, with its report)")
def cancel(job_id: str = JobId, body: Optional[Cancel] = Body(None), user: User = Depends(operator)) -> Dict[str, Any]:
    reason = (body.reason if body is not None else "cancelled from the HTTP API") + f" (by {user.name})"
    with reaching_redis(f"cancel job {job_id}"):
        job = known(job_id)
        ended = job.report() is not None
        if not ended:
            jobs_api.JobHandle(job.job_id).cancel(reason)
    return {"job_id": job.job_id, "cancelled": not ended, "detail": "had ended already" if ended else reason}


@router.post("/jobs/{job_id}/apply", status_code=201, summary="Apply exactly this plan (a finished dry run)")
def apply(request: Request, job_id: str = JobId, user: User = Depends(operator)) -> Submitted:
    with reaching_redis(f"apply plan {job_id}"):
        job = known(job_id)
        try:
            handle = jobs_api.JobHandle(job.job_id).apply()
        except InvalidJob as err:
            raise HTTPException(409, str(err)) from None
        except UnknownAdapter as err:
            raise HTTPException(422, str(err)) from None
        RedisJobState(handle.id, redis_client()).set_info(submitted_by=user.name)
    return Submitted(job_id=handle.id, url=str(request.url_for("job_page", job_id=handle.id)))


@router.get("/schedules", summary="Scheduled syncs: when, next run, running job, skipped ticks")
def schedules() -> Dict[str, Any]:
    with reaching_redis("read the schedules"):
        return reads.schedules(redis_client())


@router.get("/workers", summary="Live workers that take shards, and their slots")
def workers() -> Dict[str, Any]:
    with reaching_redis("read the workers"):
        found = reads.live_workers(redis_client())
    return {"workers": found, "slots": sum(entry["slots"] for entry in found if entry["alive"])}


__all__ = ["router"]
