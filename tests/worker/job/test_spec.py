"""Job spec validation: defaults, flags, kwargs checked against the adapters' constructors, the lock identity."""

from __future__ import annotations

import re

import pytest

from core import Adapter
from core.enum import DiffSyncFlags
from tests.worker._plain import Plain, plain  # noqa: F401 - plain: the autouse fixture
from worker import InvalidJob
from worker.adapters.registry import get_adapter, register_adapter, unregister_adapter
from worker.job.spec import JobSpec


def test_spec_defaults_and_flags() -> None:
    spec = JobSpec.from_data(
        {"source": "plain", "target": "plain", "flags": ["Continue-On-Failure", "skip_unmatched_dst"]}
    )
    assert spec.flags == ["continue_on_failure", "skip_unmatched_dst"]
    assert spec.diffsync_flags == DiffSyncFlags.CONTINUE_ON_FAILURE | DiffSyncFlags.SKIP_UNMATCHED_DST
    assert spec.top_level_barrier is True and spec.dry_run is False and spec.shard_size is None
    assert len(spec.job_id) == 32
    assert JobSpec.from_data(spec.to_message()) == spec


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"source": "plain", "target": "plain", "flags": ["fast"]},
            "unknown flag 'fast'; known flags: continue_on_failure",
        ),
        (
            {"source": "plain", "target": "plain", "shard_size": 0},
            "shard_size: Input should be greater than or equal to 1",
        ),
        ({"source": "plain", "target": "plain", "dry_run": "perhaps"}, "dry_run: Input should be a valid boolean"),
        ({"source": "plain", "target": "plain", "colour": 1}, "colour: Extra inputs are not permitted"),
        ({"source": "plain", "target": "plain", "job_id": "a b"}, "job_id must be 1 to 100 letters"),
        ({"source": "plain", "target": "plain", "source_kwargs": {"url": {1, 2}}}, "source_kwargs must be plain data"),
        (
            {"source": "plain", "target": "plain", "target_kwargs": {"uri": "x"}},
            "target_kwargs do not fit adapter 'plain'",
        ),
        ({"target": "plain"}, "source: Field required"),
        ("not a mapping", "must be a mapping"),
    ],
)
def test_invalid_specs_name_the_problem(data, message) -> None:
    with pytest.raises(InvalidJob) as caught:
        JobSpec.from_data(data)
    assert message in str(caught.value)


def test_target_identity_follows_target_and_kwargs_only() -> None:
    one = JobSpec.from_data({"source": "plain", "target": "plain", "target_kwargs": {"url": "a"}})
    two = JobSpec.from_data({"source": "demo", "target": "plain", "target_kwargs": {"url": "a"}, "dry_run": True})
    three = JobSpec.from_data({"source": "plain", "target": "plain", "target_kwargs": {"url": "b"}})
    assert one.target_identity() == two.target_identity() != three.target_identity()
    assert one.target_identity().startswith(f"{get_adapter('plain').__name__}.")


def test_target_identity_is_the_adapters_to_say_and_aliases_share_it() -> None:
    class Api(Adapter):
        identity_kwargs = ("url",)

        def __init__(self, url: str, timeout: float = 10, token: str = "", name=None) -> None:
            super().__init__(name=name)

    class Tenant(Api):
        identity_kwargs = None

        @classmethod
        def target_identity(cls, kwargs):
            return kwargs["url"].rstrip("/").lower()

    register_adapter("test-identity-api", Api)
    register_adapter("test-identity-alias", Api)
    register_adapter("test-identity-tenant", Tenant)
    try:

        def identity(target: str, **kwargs) -> str:
            return JobSpec.from_data({"source": "plain", "target": target, "target_kwargs": kwargs}).target_identity()

        first = identity("test-identity-api", url="https://a", timeout=5, token="x")
        assert first == identity("test-identity-api", url="https://a", timeout=30, token="rotated")
        assert first == identity("test-identity-alias", url="https://a")  # another name of the same class
        assert first != identity("test-identity-api", url="https://b")
        assert identity("test-identity-tenant", url="https://A/") == identity("test-identity-tenant", url="https://a")
        assert identity("test-identity-tenant", url="https://a") != first  # another class, another system
    finally:
        for name in ("test-identity-api", "test-identity-alias", "test-identity-tenant"):
            unregister_adapter(name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sites": "many"}, "argument 'sites' of InventoryAdapter.__init__ must be int, not 'many'"),
        ({"sites": "3"}, "argument 'sites' of InventoryAdapter.__init__ must be int, not '3'"),
        ({"sites": 2.5}, "must be int, not 2.5"),
        ({"name": 5}, "argument 'name' of InventoryAdapter.__init__ must be Optional[str], not 5"),
        ({"sitse": 3}, "unexpected keyword argument 'sitse'"),
    ],
)
def test_kwargs_of_the_wrong_type_are_refused_at_submit(kwargs, message) -> None:
    """Checked against the constructor's annotations before anything is enqueued, not later on a worker."""
    with pytest.raises(InvalidJob, match=re.escape(message)):
        JobSpec.from_data({"source": "demo", "target": "demo", "source_kwargs": kwargs})


def test_kwargs_of_a_parent_constructor_are_checked_too() -> None:
    with pytest.raises(InvalidJob, match=re.escape("argument 'sites' of InventoryAdapter.__init__ must be int")):
        JobSpec.from_data({"source": "demo", "target": "demo-api", "target_kwargs": {"sites": "x"}})
    assert JobSpec.from_data({"source": "demo", "target": "demo-api", "target_kwargs": {"hook_latency": 1}})
