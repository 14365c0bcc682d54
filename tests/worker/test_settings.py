"""Settings from the environment (SHARDSYNC_*)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import warnings

import pytest

from core import keys
from worker.connection import SentinelUrl, safe_url
from worker.errors import InvalidSetting
from worker.runners.celery.app import create_app, tls_options
from worker.settings import Settings, UnknownSettingWarning, get_settings, read_settings


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


def test_sentinel_urls_are_read_as_kombu_and_celery_write_them() -> None:
    parsed = SentinelUrl.parse("sentinel://:s3cret@h1:26379;sentinel://h2:26380/3")
    assert parsed.sentinels == [("h1", 26379), ("h2", 26380)] and parsed.db == 3 and parsed.password == "s3cret"
    assert SentinelUrl.parse("sentinel://h1").sentinels == [("h1", 26379)]
    for bad in ("sentinel://h1;redis://h2", "sentinel://h1/zero", "sentinel://:26379", "sentinel://h1:port"):
        with pytest.raises(InvalidSetting):
            SentinelUrl.parse(bad)
    assert safe_url("sentinel://:one@h1:26379;sentinel://:two@h2:26379/0") == (
        "sentinel://:***@h1:26379;sentinel://:***@h2:26379/0"
    )


def test_sentinel_and_tls_reach_every_connection(monkeypatch, default_root) -> None:
    monkeypatch.setenv("SHARDSYNC_BROKER_URL", "sentinel://:pw@h1:26379;sentinel://h2:26379/2")
    monkeypatch.setenv("SHARDSYNC_SENTINEL_MASTER", "primary")
    conf = create_app(Settings()).conf
    assert conf.broker_transport_options["master_name"] == "primary"
    assert conf.result_backend_transport_options["master_name"] == "primary"
    assert conf.redbeat_redis_url.startswith("redis-sentinel://")
    assert conf.redbeat_redis_options["sentinels"] == [("h1", 26379), ("h2", 26379)]
    assert conf.redbeat_redis_options["service_name"] == "primary" and conf.redbeat_redis_options["db"] == 2
    monkeypatch.setenv("SHARDSYNC_BROKER_URL", "rediss://h:6380/0?ssl_ca_certs=/etc/ca.pem")
    conf = create_app(Settings()).conf
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/ca.pem"}  # verified unless told not to
    assert conf.broker_use_ssl == conf.redis_backend_use_ssl == conf.redbeat_redis_use_ssl == expected
    assert tls_options("rediss://h/0?ssl_cert_reqs=none") == {"ssl_cert_reqs": ssl.CERT_NONE}
    with pytest.raises(InvalidSetting, match="ssl_cert_reqs"):
        tls_options("rediss://h/0?ssl_cert_reqs=maybe")


def test_a_bad_setting_is_named_with_its_value_and_why(monkeypatch) -> None:
    monkeypatch.setenv("SHARDSYNC_SHARD_SIZE", "0")
    monkeypatch.setenv("SHARDSYNC_CLAIM_TTL", "soon")
    with pytest.raises(InvalidSetting) as caught:
        read_settings()
    message = str(caught.value)
    assert "SHARDSYNC_SHARD_SIZE='0': Input should be greater than or equal to 1" in message
    assert "SHARDSYNC_CLAIM_TTL='soon'" in message and "Traceback" not in message


def test_a_misspelled_setting_is_warned_of_with_the_closest_name(monkeypatch) -> None:
    monkeypatch.setenv("SHARDSYNC_SHARDSIZE", "5")
    monkeypatch.setenv("SHARDSYNC_TEST_ANYTHING", "1")  # reserved for the project's tests: not a setting, not warned
    monkeypatch.setenv("SHARDSYNC_GC_PAUSE", "0")  # the engine's own variable: known, not warned
    with pytest.warns(UnknownSettingWarning) as caught:
        read_settings()
    assert [str(w.message) for w in caught] == [
        "SHARDSYNC_SHARDSIZE is not a setting and is ignored; did you mean SHARDSYNC_SHARD_SIZE?"
    ]


@pytest.mark.parametrize(
    ("arguments", "code"), [(["--help"], 0), (["status", "0123456789abcdef0123456789abcdef"], 2), (["jobs"], 2)]
)
def test_the_command_line_reports_a_bad_setting_without_a_traceback(arguments, code) -> None:
    env = {**os.environ, "SHARDSYNC_SHARD_SIZE": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", *arguments], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    if code:
        assert "SHARDSYNC_SHARD_SIZE='0'" in done.stderr


def test_settings_from_a_secrets_directory_a_variable_winning(monkeypatch, tmp_path) -> None:

    (tmp_path / "shardsync_broker_url").write_text("redis://:s3cret@redis:6379/2\n")
    (tmp_path / "SHARDSYNC_WEB_USERS").write_text("ann operator " + "a" * 20)
    monkeypatch.setenv("SHARDSYNC_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("SHARDSYNC_BROKER_URL")
    monkeypatch.setenv("SHARDSYNC_STORE_URL", "redis://other:6379/1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the directory's variable is a known one
        settings = read_settings()
    assert settings.broker_url == "redis://:s3cret@redis:6379/2" and settings.store_url == "redis://other:6379/1"
    assert settings.web_users is not None and settings.web_users.get_secret_value().startswith("ann operator")
    (tmp_path / "shardsync_shard_size").write_text("0")
    with pytest.raises(InvalidSetting, match=r"SHARDSYNC_SHARD_SIZE"):
        read_settings()
    monkeypatch.setenv("SHARDSYNC_SECRETS_DIR", str(tmp_path / "nosuch"))
    with pytest.raises(InvalidSetting, match=r"SHARDSYNC_SECRETS_DIR=.*not a directory"):
        read_settings()
