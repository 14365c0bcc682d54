"""What is secret in what the project shows: one list of secret words for URLs in messages and kwargs in reports."""

from __future__ import annotations

import json

import pytest

from worker.connection import safe_url
from worker.errors import describe
from worker.job.report import redact
from worker.redaction import MESSAGE_LIMIT, SECRET_WORDS, mask_text, secret_name


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


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET https://bob:s3cr3t-pw@api.example.com/devices failed", "s3cr3t-pw"),
        ("POST /devices?page=2&token=tok-123456&x=1: 500", "tok-123456"),
        ("headers {'Authorization': 'Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig'}", "eyJhbGciOiJIUzI1NiJ9"),
        ('{"detail": "bad", "api_key": "k-987654"}', "k-987654"),
        ("login refused: password=hunter2!", "hunter2"),
        ("X-Auth-Token: abcdef0123456789", "abcdef0123456789"),
    ],
)
def test_error_text_loses_its_secrets(text, secret) -> None:
    masked = mask_text(text)
    assert secret not in masked and "***" in masked
    assert secret not in describe(RuntimeError(text))


def test_error_text_is_bounded() -> None:
    masked = mask_text("x" * 50_000 + " token=abc123")
    assert len(masked) < MESSAGE_LIMIT + 100 and masked.endswith("more characters)")
    assert mask_text("device eth0 not found") == "device eth0 not found"  # plain text stays as it is


def test_2000_failures_with_10_kib_bodies_make_a_bounded_report_without_the_token() -> None:
    """A mass failure with long remote error bodies carrying a token: the report is bounded, the token gone."""
    from core import Adapter, DiffSyncFlags, DiffSyncModel
    from core.exceptions import ObjectNotCreated
    from worker.adapters.registry import register_adapter, unregister_adapter
    from worker.job.spec import JobSpec
    from worker.runners.local import run_local
    from worker.state.memory import MemoryJobState

    body = "upstream said: " + "y" * 10_000 + " (request had ?token=SEKRET-TOKEN-42)"

    class Thing(DiffSyncModel):
        _modelname = "thing"
        _identifiers = ("name",)
        name: str

        @classmethod
        def create(cls, adapter, ids, attrs):
            raise ObjectNotCreated(body)

    class Source(Adapter):
        thing = Thing
        top_level = ["thing"]

        def load(self) -> None:
            for index in range(2000):
                self.add(Thing(name=f"t{index:04d}"))

    class Empty(Adapter):
        thing = Thing
        top_level = ["thing"]

    register_adapter("test-mass-source", Source)
    register_adapter("test-mass-target", Empty)
    try:
        spec = JobSpec.from_data(
            {"source": "test-mass-source", "target": "test-mass-target",
             "flags": [DiffSyncFlags.CONTINUE_ON_FAILURE.name.lower()]}
        )  # fmt: skip
        state = MemoryJobState(spec.job_id)
        report = run_local(spec, state=state)
    finally:
        unregister_adapter("test-mass-source")
        unregister_adapter("test-mass-target")
    shown = json.dumps(report)
    assert report["failures_total"] == 2000 and len(report["failures"]) == 100
    assert len(shown) < 256 * 1024, len(shown)  # the bound: 100 failures of at most ~2 KiB, and the counts
    assert "SEKRET-TOKEN-42" not in shown
    assert not any("SEKRET-TOKEN-42" in entry[2] for entry in state.journal().values())  # the per-object log
