"""Who may use the console and the HTTP API: named users with a role, each known by a token.

Users come from a secret (``SHARDSYNC_WEB_USERS_FILE``, or ``SHARDSYNC_WEB_USERS`` where a platform injects
secrets as variables), never from the command line, where ``ps`` would show them. One line per user:
``name role token``, the token kept as ``sha256:<hex>`` of itself (``shardsync web token`` prints both): random
tokens of 256 bits need no slow hash, and the file then holds nothing that signs anyone in. The file is read
again when it changes, so a rotated Kubernetes Secret takes effect without a restart.

Roles: ``viewer`` reads everything; ``operator`` also submits, cancels and approves plans.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import structlog

from worker.errors import InvalidSetting
from worker.settings import Settings

logger = structlog.get_logger("shardsync.web")

ROLES = ("viewer", "operator")
"""The roles, each allowed what the one before it is, and more."""

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class User:
    """A console or API user: the name shown in logs and pages, the role, and the digest of the token."""

    name: str
    role: str
    digest: str

    @property
    def operates(self) -> bool:
        """Whether the user may change things (submit, cancel, approve)."""
        return self.role == "operator"


def token_digest(token: str) -> str:
    """``sha256:<hex>`` of a token, as the users file keeps it."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def parse_users(text: str, where: str) -> Dict[str, User]:
    """Users by name from the lines of a users file (``#`` comments and blank lines ignored).

    Raises:
        InvalidSetting: naming the line that is not ``name role token``, an unknown role or a name given twice.
    """
    users: Dict[str, User] = {}
    for number, raw in enumerate(re.split(r"[\n;]", text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise InvalidSetting(f"{where}, entry {number}: expected 'name role token', found {len(parts)} fields")
        name, role, secret = parts
        if not _NAME.match(name):
            raise InvalidSetting(f"{where}, entry {number}: user name {name[:64]!r} (letters, digits, _.@- only)")
        if role not in ROLES:
            raise InvalidSetting(f"{where}, entry {number}: role {role!r} of {name} is not one of {', '.join(ROLES)}")
        if name in users:
            raise InvalidSetting(f"{where}, entry {number}: user {name} is listed twice")
        if secret.startswith("sha256:") and not _DIGEST.match(secret):
            raise InvalidSetting(f"{where}, entry {number}: the token of {name} is not sha256: and 64 hex digits")
        if not secret.startswith("sha256:") and len(secret) < 16:
            raise InvalidSetting(f"{where}, entry {number}: the token of {name} is shorter than 16 characters")
        digest = secret if secret.startswith("sha256:") else token_digest(secret)
        users[name] = User(name, role, digest)
    return users


class UserBook:
    """The users of a console process, from its settings; the file read again when it changes."""

    def __init__(self, settings: Settings) -> None:
        self._path = settings.web_users_file
        self._inline = settings.web_users.get_secret_value() if settings.web_users is not None else ""
        self._lock = threading.Lock()
        self._seen: Optional[Tuple[float, int]] = None
        self._users: Dict[str, User] = {}
        self._by_digest: Dict[str, User] = {}
        self._complained = ""
        self.reload()
        if not self._users:
            raise InvalidSetting(
                "the console needs users: set SHARDSYNC_WEB_USERS_FILE to a file of 'name role token' lines "
                "(`shardsync web token NAME --role operator` makes one) or SHARDSYNC_WEB_USERS"
            )

    def reload(self) -> None:
        """Read the users again if the file changed since it was read (its modification time and size)."""
        seen = None
        if self._path:
            try:
                status = os.stat(self._path)
            except OSError as err:
                raise InvalidSetting(f"SHARDSYNC_WEB_USERS_FILE={self._path!r}: {err.strerror}") from None
            seen = (status.st_mtime, status.st_size)
        with self._lock:
            if self._users and seen == self._seen:
                return
            users = parse_users(self._inline, "SHARDSYNC_WEB_USERS") if self._inline else {}
            if self._path:
                with open(self._path, encoding="utf-8") as handle:
                    from_file = parse_users(handle.read(), self._path)
                twice = sorted(set(users) & set(from_file))
                if twice:
                    raise InvalidSetting(f"user {twice[0]} is both in SHARDSYNC_WEB_USERS and in {self._path}")
                users.update(from_file)
            self._users = users
            self._by_digest = {user.digest: user for user in users.values()}
            self._seen = seen

    def by_token(self, token: str) -> Optional[User]:
        """The user whose token this is, or None."""
        self._reload_quietly()
        return self._by_digest.get(token_digest(token))

    def by_session(self, name: str, digest: str) -> Optional[User]:
        """The user a session names, if that user still has the token the session was opened with."""
        self._reload_quietly()
        user = self._users.get(name)
        if user is None or not hmac.compare_digest(user.digest, digest):
            return None
        return user

    def _reload_quietly(self) -> None:
        try:
            self.reload()
        except InvalidSetting as err:  # a file being rewritten, or broken: the users read last stay
            if str(err) != self._complained:
                self._complained = str(err)
                logger.warning("Users file not read again; the users read last stay", error=str(err))


__all__ = ["ROLES", "User", "UserBook", "new_token", "parse_users", "token_digest"]
