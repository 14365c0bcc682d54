"""Fixtures of the store tests: a Redis client on the tests' own database, and store/adapter factories.

The Redis tests use database 11 of the server at 127.0.0.1:6379 only; it is flushed before and after each
test that touches Redis (never database 0).  ``make_store``/``make_adapter`` are parametrized over
LocalStore and RedisStore, so a test using them states the BaseStore contract for both.
"""

import uuid

import pytest
import redis

from core.store.local import LocalStore
from core.store.redis import RedisStore

from ._models import DB, HOST, PORT, Network


def new_store_id() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def redis_client():
    """Raw client on the tests' database; the database is emptied before and after the test."""
    client = redis.Redis(host=HOST, port=PORT, db=DB)
    try:
        client.ping()
    except redis.ConnectionError as err:  # pragma: no cover - environment problem
        pytest.fail(f"The store tests need Redis at {HOST}:{PORT} ({err})")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


class Backend:
    """Builds stores and adapters of one kind ("local" or "redis") and closes what it opened."""

    def __init__(self, kind, client=None):
        self.kind = kind
        self.client = client
        self._opened = []

    @property
    def is_redis(self):
        return self.kind == "redis"

    def store(self, store_id=None, **kwargs):
        if not self.is_redis:
            return LocalStore(**kwargs)
        store = RedisStore(host=HOST, port=PORT, db=DB, store_id=store_id or new_store_id(), **kwargs)
        self._opened.append(store)
        return store

    def adapter(self, cls=Network, store_id=None, name=None, **kwargs):
        return cls(name=name, internal_storage_engine=self.store(store_id=store_id, **kwargs))

    def reread(self, adapter):
        """What another reader sees: a fresh adapter on a fresh RedisStore (the same adapter for LocalStore).

        The writer's buffered writes are flushed first: another process sees them once they are sent.
        """
        if not self.is_redis:
            return adapter
        adapter.store.flush()
        return type(adapter)(name=adapter.name, internal_storage_engine=self.store(store_id=adapter.store.store_id))

    def close(self):
        for store in self._opened:
            store.client.close()


def _backend(kind, request):
    client = request.getfixturevalue("redis_client") if kind == "redis" else None
    return Backend(kind, client)


@pytest.fixture(params=["local", "redis"])
def backend(request):
    """Each contract test runs once on LocalStore and once on RedisStore."""
    result = _backend(request.param, request)
    yield result
    result.close()


@pytest.fixture
def local():
    result = Backend("local")
    yield result
    result.close()


@pytest.fixture
def rbackend(request):
    """RedisStore only."""
    result = _backend("redis", request)
    yield result
    result.close()
