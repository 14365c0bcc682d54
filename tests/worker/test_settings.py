"""Settings from the environment (SHARDSYNC_*)."""

from __future__ import annotations

import pytest

from worker.settings import Settings


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
