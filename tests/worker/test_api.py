"""The producer API: submit_sync takes the spec's fields, adapters by name or as instances (no broker needed)."""

from __future__ import annotations

import pytest

from core import Adapter, Limits
from core.scope import Scope
from tests.worker._plain import Plain, plain  # noqa: F401 - plain: the autouse fixture
from worker import InvalidJob
from worker.job.spec import JobSpec


def test_submit_with_adapter_instances_uses_their_registered_name_and_kwargs(monkeypatch) -> None:
    from worker import api

    sent = []
    monkeypatch.setattr(api, "submit_spec", lambda spec: sent.append(spec) or spec.job_id)
    api.submit_sync(source=Plain(url="https://a.example", retries=2), target="plain", target_kwargs={"url": "b"})
    (spec,) = sent
    assert spec.source == "plain" and spec.source_kwargs == {"url": "https://a.example", "retries": 2}
    assert spec.target_kwargs == {"url": "b"}

    class Unregistered(Adapter):
        pass

    with pytest.raises(InvalidJob, match="Unregistered is not registered"):
        api.submit_sync(source=Unregistered(), target="plain")
    with pytest.raises(InvalidJob, match="cannot be given with an adapter instance"):
        api.submit_sync(source=Plain(), target="plain", source_kwargs={"url": "x"})
    with pytest.raises(InvalidJob, match="registered adapter name or an Adapter"):
        api.submit_sync(source=42, target="plain")


def test_submit_sync_takes_every_field_of_the_spec_by_its_name() -> None:
    """The spec's fields are read from JobSpec, not listed again: a new field needs a keyword here too."""
    import inspect

    from worker import api

    assert set(inspect.signature(api.submit_sync).parameters) == api.SUBMIT_FIELDS
    assert api.SUBMIT_FIELDS == set(JobSpec.model_fields) - {"apply_of"}


def test_submit_sync_builds_the_spec_from_its_arguments(monkeypatch) -> None:
    from worker import api

    sent = []
    monkeypatch.setattr(api, "submit_spec", lambda spec: sent.append(spec) or spec.job_id)
    api.submit_sync(
        "plain", "plain", flags=("continue_on_failure",), dry_run=True, shard_size=7, top_level_barrier=False,
        batch_size=3, delete_limit="10", allow_deletes=True, job_id="a-job", deadline=60, keep_stores=True,
        diff_range=9, source_kwargs={"url": "a"}, retry={"attempts": 2}, limits=Limits(concurrency=3),
        scope=Scope(ids=("x",), children=()),
    )  # fmt: skip
    (spec,) = sent
    assert spec.model_dump() == {
        "source": "plain", "target": "plain", "source_kwargs": {"url": "a"}, "target_kwargs": {},
        "flags": ["continue_on_failure"], "dry_run": True, "shard_size": 7, "batch_size": 3,
        "top_level_barrier": False, "diff_range": 9, "keep_stores": True, "delete_limit": "10",
        "allow_deletes": True, "apply_of": None, "deadline": 60, "job_id": "a-job",
        "retry": {"attempts": 2, "seconds": None, "initial": None, "maximum": None},
        "limits": {"concurrency": 3, "rate": None, "call_timeout": None}, "outage_budget": None,
        "scope": {"types": None, "ids": ["x"], "where": {}, "children": []}, "coalesce": None, "pair": None,
        "full": False,
    }  # fmt: skip
