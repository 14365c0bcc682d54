"""A plain adapter registered as ``plain`` for the tests that need one (a URL, a retry count, nothing loaded)."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from core import Adapter
from worker.adapters.registry import register_adapter, unregister_adapter


class Plain(Adapter):
    top_level: list = []

    def __init__(self, url: str = "", retries: int = 0, name: Any = None) -> None:
        super().__init__(name=name)
        self.url = url


@pytest.fixture(autouse=True)
def plain() -> Iterator[None]:
    """``plain`` registered for the test, unregistered after it."""
    register_adapter("plain", Plain)
    yield
    unregister_adapter("plain")
