"""The console and the HTTP API as one ASGI app (``shardsync web`` serves it with uvicorn).

Server-rendered pages (Jinja2) that read without JavaScript; a little script makes a running job's progress
move. The API (``/api/v1``, described at ``/api/v1/openapi.json``) is what the pages' buttons and apps in any
language use. ``/health`` answers without a user (for load balancers and probes) and says only whether
Redis answers.
"""

from __future__ import annotations

import secrets
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from worker.connection import redis_client
from worker.errors import InvalidSetting, RedisUnavailable
from worker.settings import Settings, get_settings
from worker.web import api, pages
from worker.web.auth import UserBook
from worker.web.session import session_user

logger = structlog.get_logger("shardsync.web")

HERE = Path(__file__).parent


def session_key(settings: Settings) -> str:
    """The key that signs session cookies: the secret file's content, or a random one for this process.

    Raises:
        InvalidSetting: the file cannot be read or holds under 32 characters.
    """
    path = settings.web_secret_file
    if not path:
        logger.warning(
            "No SHARDSYNC_WEB_SECRET_FILE: sessions are signed with a key of this process (they end when it stops, "
            "and several replicas do not share them)"
        )
        return secrets.token_urlsafe(32)
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise InvalidSetting(f"SHARDSYNC_WEB_SECRET_FILE={path!r}: {err.strerror}") from None
    if len(key) < 32:
        raise InvalidSetting(f"SHARDSYNC_WEB_SECRET_FILE={path!r}: the key must be at least 32 characters")
    return key


def create_app(settings: Optional[Settings] = None, secure_cookies: bool = False) -> FastAPI:
    """The console and API app for this deployment's settings.

    ``secure_cookies``: send the session cookie only over HTTPS (behind a TLS-terminating proxy, say so).

    Raises:
        InvalidSetting: no users, a bad users file or secret file.
    """
    settings = settings or get_settings()
    app = FastAPI(
        title="shardsync",
        version=_version(),
        description="Sync jobs: submit, follow, read their diff and per-object log, cancel, apply a plan.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.users = UserBook(settings)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_key(settings),
        session_cookie="shardsync_session",
        max_age=12 * 3600,
        same_site="strict",
        https_only=secure_cookies,
    )
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(RedisUnavailable)
    def _unavailable(request: Request, err: RedisUnavailable) -> Response:
        return JSONResponse({"detail": str(err)}, status_code=503)

    @app.exception_handler(RedisError)
    def _redis_error(request: Request, err: RedisError) -> Response:
        logger.error("Redis error", path=request.url.path, error=str(err))
        return JSONResponse({"detail": f"Redis: {err}"}, status_code=503)

    @app.exception_handler(StarletteHTTPException)
    def _http_error(request: Request, err: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
            return JSONResponse({"detail": err.detail}, status_code=err.status_code, headers=err.headers)
        code = err.status_code
        return pages.render(request, "error.html", session_user(request), status=code, code=code, detail=err.detail)

    @app.exception_handler(pages.SignIn)
    def _sign_in(request: Request, err: pages.SignIn) -> Response:
        return RedirectResponse(f"/login?next={err.path}", status_code=303)

    @app.exception_handler(RequestValidationError)
    def _invalid(request: Request, err: RequestValidationError) -> Response:
        problems = []
        for error in err.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
            problems.append(f"{where or 'request'}: {error.get('msg')}")
        return JSONResponse({"detail": "; ".join(problems), "errors": _plain(err.errors())}, status_code=422)

    @app.get("/health", include_in_schema=False)
    def health() -> Response:
        try:
            redis_client().ping()
        except (RedisError, RedisUnavailable) as err:
            return JSONResponse({"status": "unavailable", "detail": f"Redis: {err}"}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app


def _version() -> str:
    try:
        return version("shardsync")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "0"


def _plain(errors: object) -> object:
    """Validation errors as JSON can carry them (a ctx may hold an exception object)."""
    if isinstance(errors, dict):
        return {key: _plain(value) for key, value in errors.items() if key != "ctx"}
    if isinstance(errors, (list, tuple)):
        return [_plain(value) for value in errors]
    return errors if isinstance(errors, (str, int, float, bool, type(None))) else str(errors)


__all__ = ["create_app", "session_key"]
