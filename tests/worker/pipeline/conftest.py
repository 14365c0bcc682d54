"""Fixtures of the step tests: the test adapters registered, memory jobs whose locks go with the test."""

from __future__ import annotations

import pytest

from tests.worker.pipeline import _adapters
from tests.worker.pipeline._steps import Jobs, RecordingRunner
from worker.adapters.registry import register_adapter, unregister_adapter
from worker.pipeline.context import forget_attached
from worker.targets import condition, limiter


@pytest.fixture(autouse=True)
def _fresh_targets():
    """Each test's embedded targets start healthy: no pause, breaker or adaptive limit left by another test."""
    condition._records.clear()
    limiter._memory_slots.clear()
    yield
    condition._records.clear()
    limiter._memory_slots.clear()


@pytest.fixture(autouse=True)
def _test_adapters():
    """Register the test adapters for one test (and forget what they recorded)."""
    for name, cls in _adapters.ADAPTERS.items():
        register_adapter(name, cls)
    _adapters.LOADS.clear()
    _adapters.COMPLETED.clear()
    _adapters.OWN_DIFFS.clear()
    _adapters.CONTEXTS.clear()
    yield
    for name in _adapters.ADAPTERS:
        unregister_adapter(name)


@pytest.fixture
def jobs():
    """Makes memory jobs; after the test, the target locks they hold are released and kept adapters dropped."""
    made = Jobs()
    yield made
    made.release()
    forget_attached()


@pytest.fixture
def runner():
    """A runner that records what each delivery hands over."""
    return RecordingRunner()
