"""What is secret in what the project shows: kwarg names, URL passwords and query parameters.

One list of secret words for every place that shows configuration to a person or a log: job reports (adapter
kwargs, ``worker.job.report.redact``), error messages and logs naming a Redis or broker URL (``safe_url``), and
any error text from an adapter or a library (``mask_text``: a URL's password, ``token=...``, a ``Bearer``
header, ``"api_key": "..."``), which reaches reports, the per-object log, Flower and the workers' logs.
"""

from __future__ import annotations

import re
from typing import Any, Dict
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "auth", "cookie", "private", "session", "cert")
"""A name (a kwarg, a URL query parameter) holding one of these, in any case, names a secret: shown as ``***``."""

MASK = "***"


def secret_name(name: Any) -> bool:
    """Whether a kwarg or parameter of this name holds a secret (its name holds a word of SECRET_WORDS)."""
    lowered = str(name).lower()
    return any(word in lowered for word in SECRET_WORDS)


def safe_url(url: str) -> str:
    """A URL fit for messages and logs: a password, in the user part or a secret query parameter, as ``***``.

    A Sentinel URL (``sentinel://...;sentinel://...``) is masked part by part.
    """
    if ";" in url:
        return ";".join(safe_url(part) for part in url.split(";"))
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
        for part in url.split(";"):
            password = urlsplit(part).password
            if password:
                message = message.replace(password, MASK)
    return message


_WORDS = "|".join(SECRET_WORDS)
_TEXT_PATTERNS = (
    # scheme://user:password@host
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s@/]+@", re.IGNORECASE), r"\1" + MASK + "@"),
    # Authorization: Bearer xyz / Token xyz / Basic xyz
    (re.compile(r"\b(Bearer|Token|Basic)\s+[A-Za-z0-9._~+/=-]{4,}", re.IGNORECASE), r"\1 " + MASK),
    # "api_key": "xyz" or 'password': 'xyz' (JSON bodies, Python reprs)
    (
        re.compile(rf"""(["'][\w.-]*(?:{_WORDS})[\w.-]*["']\s*:\s*)(["'])[^"']*\2""", re.IGNORECASE),
        r"\1\2" + MASK + r"\2",
    ),
    # token=xyz, password: xyz (query strings, headers, key=value logs)
    (
        re.compile(
            rf"""(\b[\w.-]*(?:{_WORDS})[\w.-]*\s*[=:]\s*)(?!{re.escape(MASK)})[^\s&;,'")\]}}]+""", re.IGNORECASE
        ),
        r"\1" + MASK,
    ),
)

MESSAGE_LIMIT = 2000
"""Characters of one error message kept (in a report, the per-object log, a log event): the rest is cut,
saying how much (an HTTP error's whole body is no message)."""


def mask_text(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Free text (an exception's message, a remote's answer) with what looks secret as ``***``, bounded.

    Masks a URL's password, a ``Bearer``/``Token``/``Basic`` credential, and the value after any name holding
    a secret word (``token=``, ``"api_key": ``, ``Password:``). Heuristic by nature: pass secrets to adapters by
    the name of an environment variable or file, never in their kwargs or URLs.
    """
    if not text:
        return text
    if limit and len(text) > limit * 4:  # masked in what is kept only: a 10 MiB body is not scanned whole
        text = text[: limit * 4]
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    if limit and len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


def mask_event(logger: Any, method: str, event: Dict[str, Any]) -> Dict[str, Any]:
    """A structlog processor: every text field of an event, the event itself included, through ``mask_text``."""
    for name, value in event.items():
        if isinstance(value, str) and name not in ("timestamp", "level"):
            event[name] = mask_text(value)
    return event
