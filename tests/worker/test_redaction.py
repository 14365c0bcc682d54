"""What is secret in what the project shows: one list of secret words for URLs in messages and kwargs in reports."""

from __future__ import annotations

import pytest

from worker.connection import safe_url
from worker.job.report import redact
from worker.redaction import SECRET_WORDS, secret_name


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://host:6379/0?password=s3cret&db=1", "redis://host:6379/0?password=***&db=1"),
        ("rediss://host/0?ssl_check_hostname=true&Token=abc", "rediss://host/0?ssl_check_hostname=true&Token=***"),
        ("redis://host/0?api_key=k&pwd=s3cret", "redis://host/0?api_key=***&pwd=***"),  # the reports' secret words
    ],
)
def test_safe_url_masks_passwords(url, shown) -> None:
    assert safe_url(url) == shown
    assert "s3cret" not in safe_url(url)


def test_reports_and_urls_read_the_same_secret_words() -> None:
    for word in SECRET_WORDS:
        assert secret_name(word.upper()) and secret_name(f"my_{word}_here")
        assert redact({f"x_{word}": "s3cret"}) == {f"x_{word}": "***"}
        assert "s3cret" not in safe_url(f"redis://host/0?x_{word}=s3cret")
    assert not secret_name("url") and not secret_name("sites")


def test_redact_reaches_nested_kwargs_urls_and_names_an_adapter_lists() -> None:
    shown = redact(
        {"url": "https://user:pw@api.example/v1", "nested": {"token": "t", "page": 5}, "plain": [1, "x"], "x": "y"},
        secret_names=("x",),
    )
    assert shown == {
        "url": "https://user:***@api.example/v1",
        "nested": {"token": "***", "page": 5},
        "plain": [1, "x"],
        "x": "***",
    }
