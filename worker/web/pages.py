"""The console's pages: server-rendered HTML over the same reads as the API, readable without JavaScript.

A page that needs a user and has none sends the browser to ``/login``; the page's buttons are forms posting
with the session's CSRF token, and only operators see (and may use) them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from worker import api as jobs_api
from worker.connection import reaching_redis, redis_client
from worker.errors import InvalidJob, UnknownAdapter
from worker.job.history import STATES, job_summary
from worker.state.redis import RedisJobState
from worker.web import reads
from worker.web.api import checked, chosen_entries, log_entries
from worker.web.auth import User
from worker.web.session import book, check_csrf, csrf_token, session_user, sign_in

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)

LOG_STATUSES = ("success", "failure", "error", "skipped", "not run")


class SignIn(Exception):
    """No user for a page: the app's handler sends the browser to sign in, then back to ``path``."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = quote(path, safe="/?=&")


def page_user(request: Request) -> User:
    """The signed-in user of a page, or off to ``/login``."""
    user = session_user(request)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignIn(target)
    return user


def render(request: Request, name: str, user: Optional[User], status: int = 200, **context: Any) -> HTMLResponse:
    """A page, with what every page needs (the user, the CSRF token for its forms)."""
    context.update(user=user, csrf=csrf_token(request) if user else "", nav=name.split(".")[0])
    return templates.TemplateResponse(request, name, context, status_code=status)


def next_page(filters: Dict[str, str], **where: Any) -> str:
    """The query of the page after this one: the filters given, and where the next page starts."""
    return urlencode({**{name: value for name, value in filters.items() if value}, **where})


def _job(job_id: str) -> RedisJobState:
    job = RedisJobState(checked(job_id), redis_client())
    if job.spec_data() is None:
        raise HTTPException(404, f"job {job_id} is unknown (or its records expired)")
    return job


@router.get("/login")
def login_form(request: Request, next: str = Query("/jobs", max_length=500)) -> Response:  # noqa: A002
    return render(request, "login.html", None, next=_local(next), error=None)


@router.post("/login")
def login(
    request: Request, token: str = Form("", max_length=500), next: str = Form("/jobs", max_length=500)  # noqa: A002
) -> Response:
    user = book(request).by_token(token.strip()) if token.strip() else None
    if user is None:
        return render(request, "login.html", None, status=401, next=_local(next), error="Unknown token.")
    sign_in(request, user)
    return RedirectResponse(_local(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    if session_user(request) is not None:
        check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def _local(path: str) -> str:
    """Only a path of this site as where to go after signing in (never another site)."""
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/jobs"


@router.get("/")
def home() -> Response:
    return RedirectResponse("/jobs", status_code=303)


@router.get("/jobs", name="jobs_page")
def jobs_page(
    request: Request,
    user: User = Depends(page_user),
    state: str = Query("", max_length=20),
    source: str = Query("", max_length=200),
    target: str = Query("", max_length=200),
    schedule: str = Query("", max_length=200),
    since: str = Query("", max_length=40),
    until: str = Query("", max_length=40),
    offset: int = Query(0, ge=0, le=1_000_000),
) -> Response:
    filters = {"state": state, "source": source, "target": target, "schedule": schedule, "since": since, "until": until}
    error = None
    found: List[Dict[str, Any]] = []
    limit = 50
    try:
        if state and state not in STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
        with reaching_redis("list jobs"):
            found = jobs_api.list_jobs(
                state=state or None, source=source or None, target=target or None, schedule=schedule or None,
                since=reads.parse_when(since, "since"), until=reads.parse_when(until, "until"), limit=limit + 1,
                offset=offset,
            )  # fmt: skip
    except ValueError as err:
        error = str(err)
    following = next_page(filters, offset=offset + limit) if len(found) > limit else None
    return render(
        request, "jobs.html", user, jobs=found[:limit], filters=filters, states=STATES, error=error,
        following=following, status=422 if error else 200,
    )  # fmt: skip


@router.get("/jobs/{job_id}", name="job_page")
def job_page(request: Request, job_id: str, user: User = Depends(page_user), error: Optional[str] = None) -> Response:
    with reaching_redis(f"read job {job_id}"):
        job = _job(job_id)
        line = job_summary(job) or {}
        info = job.info()
        handle = jobs_api.JobHandle(job.job_id)
        stage, current, total = handle.progress()
        context = {
            "job": line,
            "info": info,
            "report": job.report(),
            "progress": {"stage": stage, "current": current, "total": total},
            "shards": reads.shard_states(job),
            "target_state": handle.target(),
            "error": error,
        }
    return render(request, "job.html", user, status=409 if error else 200, **context)


def operating(request: Request, csrf: str, user: User, doing: str) -> None:
    """A page's form that changes something: the session's own (CSRF) and an operator's, else 403."""
    check_csrf(request, csrf)
    if not user.operates:
        raise HTTPException(403, f"user {user.name} is a {user.role}: {doing} needs an operator")


@router.post("/jobs/{job_id}/cancel")
def cancel_job(request: Request, job_id: str, csrf: str = Form(""), user: User = Depends(page_user)) -> Response:
    operating(request, csrf, user, "cancelling")
    with reaching_redis(f"cancel job {job_id}"):
        job = _job(job_id)
        if job.report() is None:
            jobs_api.JobHandle(job.job_id).cancel(f"cancelled in the console by {user.name}")
    return RedirectResponse(f"/jobs/{job.job_id}", status_code=303)


@router.post("/jobs/{job_id}/approve")
def approve(request: Request, job_id: str, csrf: str = Form(""), user: User = Depends(page_user)) -> Response:
    operating(request, csrf, user, "approving a plan")
    with reaching_redis(f"apply plan {job_id}"):
        job = _job(job_id)
        try:
            handle = jobs_api.JobHandle(job.job_id).apply()
        except (InvalidJob, UnknownAdapter) as err:
            return job_page(request, job.job_id, user, error=str(err))
        RedisJobState(handle.id, redis_client()).set_info(submitted_by=user.name)
    return RedirectResponse(f"/jobs/{handle.id}", status_code=303)


@router.get("/jobs/{job_id}/diff")
def diff_view(
    request: Request,
    job_id: str,
    user: User = Depends(page_user),
    cursor: str = Query("", max_length=40),
    type: str = Query("", max_length=200),  # noqa: A002
    action: str = Query("", max_length=20),
) -> Response:
    types = [part.strip() for part in type.split(",") if part.strip()]
    with reaching_redis(f"read the diff of job {job_id}"):
        job = _job(job_id)
        try:
            page = reads.diff_page(job, cursor or None, 300, types=types, actions=[action] if action else [])
            error = None
        except ValueError as err:
            page, error = {"items": [], "next": None, "subtrees": 0, "summary": job.summary()}, str(err)
        line = job_summary(job) or {}
    following = next_page({"type": type, "action": action}, cursor=page["next"]) if page["next"] else None
    flat = bool(types or action)  # filtered: elements out of their tree, each indented by its depth
    rows, closing = tree_rows(page["items"], flat)
    return render(
        request, "diff.html", user, job=line, page=page, filters={"type": type, "action": action},
        actions=reads.ACTIONS, following=following, error=error, status=422 if error else 200, rows=rows,
        closing=closing, flat=flat,
    )  # fmt: skip


def tree_rows(items: List[Dict[str, Any]], flat: bool) -> Tuple[List[Tuple[Dict[str, Any], int, bool]], int]:
    """Each element with how many folds to close before it and whether it opens one; and the folds left open.

    Elements come in pre-order with their depth: an element with children opens a fold (``<details>``) that
    closes before the next element at its depth or above. A page may start or end inside a subtree.
    """
    rows = []
    open_depths: List[int] = []
    for item in items:
        closes = 0
        while open_depths and open_depths[-1] >= item["depth"]:
            open_depths.pop()
            closes += 1
        opens = bool(item["children"]) and not flat
        if opens:
            open_depths.append(item["depth"])
        rows.append((item, closes, opens))
    return rows, len(open_depths)


@router.get("/jobs/{job_id}/log")
def log_view(
    request: Request,
    job_id: str,
    user: User = Depends(page_user),
    status: str = Query("", max_length=20),
    action: str = Query("", max_length=20),
    model: str = Query("", max_length=200),
    offset: int = Query(0, ge=0, le=100_000_000),
) -> Response:
    with reaching_redis(f"read the log of job {job_id}"):
        job = _job(job_id)
        line = job_summary(job) or {}
        error = None
        try:
            entries = log_entries(job)
        except HTTPException as err:
            entries, error = [], str(err.detail)
    chosen = chosen_entries(entries, status, action, model)
    limit = 300
    filters = {"status": status, "action": action, "model": model}
    following = next_page(filters, offset=offset + limit) if offset + limit < len(chosen) else None
    return render(
        request, "log.html", user, job=line, entries=chosen[offset : offset + limit], total=len(chosen),
        filters=filters, statuses=LOG_STATUSES, following=following,
        error=error,
    )  # fmt: skip


@router.get("/schedules")
def schedules_view(request: Request, user: User = Depends(page_user)) -> Response:
    with reaching_redis("read the schedules"):
        found = reads.schedules(redis_client())
    return render(request, "schedules.html", user, schedules=found)


@router.get("/workers")
def workers_view(request: Request, user: User = Depends(page_user)) -> Response:
    with reaching_redis("read the workers"):
        found = reads.live_workers(redis_client())
        running = jobs_api.list_jobs(state="running", limit=100)
    return render(request, "workers.html", user, workers=found, running=running)


__all__ = ["SignIn", "router"]
