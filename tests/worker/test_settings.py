"""Settings from the environment (SHARDSYNC_*)."""

from __future__ import annotations

import pytest

from core import keys
from worker.runners.celery.app import create_app
from worker.settings import Settings, get_settings


def test_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("SHARDSYNC_BROKER_URL", "redis://broker:6379/3")
    monkeypatch.setenv("SHARDSYNC_ADAPTER_MODULES", " a.b , c ,")
    monkeypatch.setenv("SHARDSYNC_SHARD_SIZE", "42")
    settings = Settings()
    assert settings.adapter_modules == ["a.b", "c"]
    assert settings.backend_url == settings.redis_url == "redis://broker:6379/3"
    assert settings.shard_size == 42
    monkeypatch.setenv("SHARDSYNC_STORE_URL", "redis://store:6379/1")
    assert Settings().redis_url == "redis://store:6379/1"
    monkeypatch.setenv("SHARDSYNC_SHARD_SIZE", "0")
    with pytest.raises(ValueError, match="shard_size"):
        Settings()


@pytest.fixture
def default_root():
    yield
    keys.configure("")  # the suite's keys are under the default root


def test_a_namespace_puts_every_key_queue_and_channel_apart(monkeypatch, default_root) -> None:
    monkeypatch.setenv("SHARDSYNC_NAMESPACE", "blue-1")
    settings = get_settings.__wrapped__()  # applies it to the keys, as a worker's first read does
    assert settings.namespace == "blue-1" and keys.current_namespace() == "blue-1"
    assert keys.job_key("j", "info") == "shardsync~blue-1:~job:j:info"
    assert keys.RUNNING_JOBS == "shardsync~blue-1:~jobs:running" and keys.SLOTS == "shardsync~blue-1:~slots"
    assert keys.META_PATTERN == "shardsync~blue-1:*:meta" and keys.namespace("s") == "shardsync~blue-1:s:"
    conf = create_app(settings).conf
    assert conf.broker_transport_options["global_keyprefix"] == "shardsync~blue-1:"
    assert conf.result_backend_transport_options["global_keyprefix"] == "shardsync~blue-1:"
    assert conf.redbeat_key_prefix == "shardsync~blue-1:~beat:"  # its lock and entries too
    monkeypatch.delenv("SHARDSYNC_NAMESPACE")
    assert "global_keyprefix" not in create_app(Settings()).conf.broker_transport_options  # keys as before
    assert keys.RUNNING_JOBS == "shardsync:~jobs:running" and keys.current_namespace() == ""


@pytest.mark.parametrize("bad", ["a:b", "a~b", "a*", "x" * 65, "blue green"])
def test_a_namespace_that_could_be_read_as_another_is_refused(monkeypatch, bad, default_root) -> None:
    monkeypatch.setenv("SHARDSYNC_NAMESPACE", bad)
    with pytest.raises(ValueError, match="namespace"):
        Settings()
    with pytest.raises(ValueError, match="only letters, digits"):
        keys.configure(bad)
