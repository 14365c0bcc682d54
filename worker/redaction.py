"""What is secret in what the project shows: kwarg names, URL passwords and query parameters.

One list of secret words for every place that shows configuration to a person or a log: job reports (adapter
kwargs, ``worker.job.report.redact``), error messages and logs naming a Redis or broker URL (``safe_url``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "auth", "cookie", "private", "session", "cert")
"""A name (a kwarg, a URL query parameter) holding one of these, in any case, names a secret: shown as ``***``."""

MASK = "***"


def secret_name(name: Any) -> bool:
    """Whether a kwarg or parameter of this name holds a secret (its name holds a word of SECRET_WORDS)."""
    lowered = str(name).lower()
    return any(word in lowered for word in SECRET_WORDS)


def safe_url(url: str) -> str:
    """A URL fit for messages and logs: a password, in the user part or a secret query parameter, as ``***``."""
    parsed = urlsplit(url)
    netloc = parsed.netloc
    if parsed.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{hostport}"
    query = parsed.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(secret_name(name) for name, _ in pairs):
            masked = [(name, MASK if secret_name(name) else value) for name, value in pairs]
            query = urlencode(masked, safe="*")
    return urlunsplit(parsed._replace(netloc=netloc, query=query))


def without_secrets(message: str, *urls: str) -> str:
    """A message (a library's error, say) with the passwords of these URLs replaced by ``***``."""
    for url in urls:
        password = urlsplit(url).password
        if password:
            message = message.replace(password, MASK)
    return message
