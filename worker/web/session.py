"""Who is asking: a bearer token (apps) or the console's signed session cookie (people), and what they may do.

The session cookie (Starlette's ``SessionMiddleware``, signed with ``SHARDSYNC_WEB_SECRET_FILE``'s key) holds the
user's name, the digest of the token they signed in with (a rotated token ends the session) and a CSRF token:
a change made with the cookie must carry it (a form field, or the ``X-CSRF-Token`` header), so that another
site cannot make a signed-in browser cancel or approve. ``SameSite=Strict`` says the same a second way.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Optional

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from worker.web.auth import User, UserBook

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def book(request: Request) -> UserBook:
    """The users of this app."""
    return request.app.state.users  # type: ignore[no-any-return]


def bearer(request: Request) -> Optional[str]:
    """The token of an ``Authorization: Bearer`` header, if the request has one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def session_user(request: Request) -> Optional[User]:
    """The user the request's session cookie names, if it still holds."""
    session = request.scope.get("session") or {}
    name, digest = session.get("user"), session.get("digest")
    if not isinstance(name, str) or not isinstance(digest, str):
        return None
    return book(request).by_session(name, digest)


def sign_in(request: Request, user: User) -> None:
    """Open a session for ``user`` (a new CSRF token with it)."""
    request.session.clear()
    request.session.update(user=user.name, digest=user.digest, csrf=secrets.token_urlsafe(24))


def csrf_token(request: Request) -> str:
    """The session's CSRF token (for the forms of a page)."""
    return str(request.session.get("csrf", ""))


def check_csrf(request: Request, given: Optional[str]) -> None:
    """Refuse (403) a change made with the session cookie that does not carry the session's CSRF token."""
    expected = csrf_token(request)
    if not expected or not given or not hmac.compare_digest(expected, given):
        raise HTTPException(403, "the form or request is stale or from elsewhere (CSRF token missing or wrong)")


_BEARER = HTTPBearer(auto_error=False, description="a user's token (shardsync web token NAME)")


def current_user(request: Request, _credentials: Optional[HTTPAuthorizationCredentials] = Depends(_BEARER)) -> User:
    """The user making the request, or 401.

    A bearer token is checked first (an app's request carries no cookie to forge); with the session cookie
    instead, a change must carry the CSRF header.
    """
    token = bearer(request)
    if token is not None:
        user = book(request).by_token(token)
        if user is None:
            raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
        return user
    user = session_user(request)
    if user is None:
        message = "sign in: send 'Authorization: Bearer <token>' or use the console"
        raise HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})
    if request.method not in SAFE_METHODS and request.url.path.startswith("/api/"):
        check_csrf(request, request.headers.get("x-csrf-token"))
    return user


def operator(user: User = Depends(current_user)) -> User:
    """The user, if an operator; else 403."""
    if not user.operates:
        raise HTTPException(
            403, f"user {user.name} is a {user.role}: submitting, cancelling and approving need an operator"
        )
    return user


__all__ = ["book", "check_csrf", "csrf_token", "current_user", "operator", "session_user", "sign_in"]
