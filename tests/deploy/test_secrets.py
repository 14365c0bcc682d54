"""The deployment's secrets: made by deploy/make-secrets.sh, mounted as files, never in an environment block, a
ConfigMap or on a command line.

Compose mounts the files under ./secrets/ at /run/secrets; Kubernetes takes them as the Secrets that
deploy/README.md's `kubectl create secret` commands make. Every shardsync process reads the Redis URL from its
SHARDSYNC_SECRETS_DIR, Redis requires the password, Flower's basic auth reaches it through its environment only,
and the console's users and session key are mounted files. The last tests run make-secrets.sh itself (and, when a
redis-server binary is at hand, start Redis with the ACL file it made).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from tests.deploy.files import (
    APP_PROCESSES,
    CREDENTIAL_URL,
    K8S_DOCUMENTS,
    MAKE_SECRETS,
    SECRET_SETTINGS,
    compose,
    compose_command,
    compose_environment,
    compose_healthcheck,
    compose_secret_names,
    container_argv,
    container_env,
    containers,
    make_secrets_files,
    make_secrets_redis_host,
    of_kind,
    readme_secret_commands,
    secret_mounts,
    secret_references,
    services_of,
    shell_script,
    workloads,
)
from worker.settings import SECRETS_DIR, Settings

BROKER_FILE = "shardsync_broker_url"
COMPOSE_SECRETS = "/run/secrets"


@pytest.fixture(scope="module")
def services() -> Dict[str, Dict]:
    return compose()["services"]


def _looks_secret(name: str, value: str) -> bool:
    """A literal value that is, or carries, a credential."""
    upper = name.upper()
    if upper in SECRET_SETTINGS or CREDENTIAL_URL.search(value):
        return True
    named_secret = any(word in upper for word in ("PASSWORD", "TOKEN", "SECRET", "BASIC_AUTH", "API_KEY"))
    return named_secret and not upper.endswith(("_FILE", "_DIR")) and bool(value)


# ------------------------------------------------------------------------------------------------------------
# One set of files
# ------------------------------------------------------------------------------------------------------------


def test_compose_secrets_are_the_files_make_secrets_writes():
    declared = compose()["secrets"]
    assert set(declared) == set(make_secrets_files())
    for name, secret in declared.items():
        assert secret == {"file": f"./secrets/{name}"}, f"secret {name} must be the file ./secrets/{name}"


def test_compose_services_use_only_declared_secrets_and_every_one_is_used(services):
    declared = set(compose()["secrets"])
    used = {name for service in services.values() for name in compose_secret_names(service)}
    assert used <= declared, f"undeclared secrets: {sorted(used - declared)}"
    assert used == declared, f"secrets no service uses: {sorted(declared - used)}"


def test_readme_commands_make_every_kubernetes_secret_from_those_files():
    commands = readme_secret_commands()
    assert commands, "deploy/README.md names no `kubectl create secret generic` command"
    files = set(make_secrets_files())
    for name, keys in commands.items():
        for key, path in keys.items():
            assert Path(path).name in files, f"Secret {name}: {path} is not a file make-secrets.sh writes"
            assert key == Path(path).name, f"Secret {name}: key {key} differs from its file {path}"
    made = {(name, key) for name, keys in commands.items() for key in keys}
    used = set().union(*(secret_references(workload) for workload in workloads().values()))
    for name, key in used:
        assert name in commands, f"the manifests use Secret {name}, which deploy/README.md does not create"
        assert key is None or (name, key) in made, f"Secret {name} is made without the key {key}"
    assert {name for name, _ in used} == set(commands), "a Secret is created that nothing uses"
    assert {path for keys in commands.values() for path in keys.values()} == {f"secrets/{name}" for name in files}


def test_no_secret_object_is_shipped_with_the_manifests():
    # Applying deploy/kubernetes/ again (an upgrade) must never replace the operator's Secrets with placeholders.
    assert not of_kind("Secret")
    for _, document in K8S_DOCUMENTS:
        assert "stringData" not in document and not (document.get("kind") == "Secret"), document["metadata"]["name"]


# ------------------------------------------------------------------------------------------------------------
# The app's processes
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(APP_PROCESSES))
def test_compose_app_services_read_the_redis_url_from_a_secret_file(services, name):
    service = services[name]
    env = compose_environment(service)
    assert env.get(SECRETS_DIR) == COMPOSE_SECRETS
    assert BROKER_FILE in compose_secret_names(service)


@pytest.mark.parametrize("name", sorted(compose()["services"]))
def test_compose_environment_holds_no_credential(services, name):
    for key, value in compose_environment(services[name]).items():
        assert not _looks_secret(key, value), f"{name}: {key} is a credential in the environment block"
        assert key != "FLOWER_BASIC_AUTH", f"{name}: Flower's auth belongs in a secret file"


def test_the_generated_url_names_the_compose_redis_and_the_kubernetes_service(services):
    host = make_secrets_redis_host()
    aliases = services["redis"]["networks"]["default"]["aliases"]
    assert host in aliases, f"compose's redis is not reachable as {host}"
    assert host in {service["metadata"]["name"] for service in services_of("redis")}
    assert 6379 in {port["port"] for service in services_of("redis") for port in service["spec"]["ports"]}
    assert "redis://:%s@%s:6379/0" in MAKE_SECRETS.read_text(encoding="utf-8")


@pytest.mark.parametrize("component", sorted(APP_PROCESSES))
def test_k8s_app_containers_read_the_redis_url_from_the_mounted_secret(component):
    workload = workloads()[component]
    for container in containers(workload):
        env = container_env(container)
        directory = env[SECRETS_DIR]["value"].rstrip("/")
        mounts = secret_mounts(workload, container)
        assert directory in mounts, f"{component}: {SECRETS_DIR}={directory} is no Secret mount"
        secret, files = mounts[directory]
        assert secret in readme_secret_commands()
        assert BROKER_FILE in readme_secret_commands()[secret], f"{component}: Secret {secret} has no {BROKER_FILE}"
        assert not files or BROKER_FILE in files


def test_k8s_configmap_holds_no_credential():
    (configmap,) = of_kind("ConfigMap")
    for key, value in configmap["data"].items():
        assert not _looks_secret(key, value), f"ConfigMap {key} is a credential: put it in a Secret"


@pytest.mark.parametrize("component", sorted({"redis", *APP_PROCESSES}))
def test_k8s_env_literals_hold_no_credential(component):
    for container in containers(workloads()[component]):
        for name, entry in container_env(container).items():
            if "value" in entry:
                assert not _looks_secret(name, str(entry["value"])), f"{component}: {name} is a literal credential"
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, f"{component}: a Secret as variables; mount it as files"


# ------------------------------------------------------------------------------------------------------------
# Redis requires a password
# ------------------------------------------------------------------------------------------------------------


def test_compose_redis_reads_its_password_from_an_acl_file(services):
    redis = services["redis"]
    command = compose_command(redis)
    assert command[command.index("--aclfile") + 1] == f"{COMPOSE_SECRETS}/redis_acl"
    assert {"redis_acl", "redis_password"} <= set(compose_secret_names(redis))


def _authenticated_ping(check: List[str], password_file: str) -> None:
    script = shell_script(check)
    assert script is not None, f"the check must read the password in a shell: {check}"
    assert f'REDISCLI_AUTH="$(cat {password_file})"' in script, script
    assert "redis-cli ping" in script and "grep -qx PONG" in script, "redis-cli exits 0 on NOAUTH: check the reply"
    assert " -a " not in script and "--pass" not in script, "a password option shows in ps"


def test_compose_redis_health_check_authenticates(services):
    _authenticated_ping(compose_healthcheck(services["redis"]), f"{COMPOSE_SECRETS}/redis_password")


def test_k8s_redis_reads_its_password_from_the_secret():
    workload = workloads()["redis"]
    (container,) = containers(workload)
    command = container_argv(container)
    aclfile = command[command.index("--aclfile") + 1]
    mounts = secret_mounts(workload, container)
    directory, _, filename = aclfile.rpartition("/")
    assert directory in mounts and filename == "redis_acl"
    secret, _ = mounts[directory]
    assert {"redis_acl", "redis_password"} <= set(readme_secret_commands()[secret])
    for probe in ("readinessProbe", "livenessProbe"):
        _authenticated_ping(container[probe]["exec"]["command"], f"{directory}/redis_password")


def test_make_secrets_gives_the_default_user_a_password():
    text = MAKE_SECRETS.read_text(encoding="utf-8")
    assert "user default on #%s ~* &* +@all" in text
    assert "nopass" not in text


# ------------------------------------------------------------------------------------------------------------
# Flower and the console
# ------------------------------------------------------------------------------------------------------------


def test_compose_flower_reads_its_auth_from_the_secret_into_its_environment(services):
    flower = services["flower"]
    assert "flower_basic_auth" in compose_secret_names(flower)
    script = shell_script(compose_command(flower))
    assert script is not None
    assert 'FLOWER_BASIC_AUTH="$(cat /run/secrets/flower_basic_auth)"' in script
    assert "set -eu" in script, "a missing file must stop Flower, not start it without auth"
    assert "export FLOWER_BASIC_AUTH" in script
    assert "basic-auth" not in script and "basic_auth" not in script.replace("flower_basic_auth", "")


def test_k8s_flower_gets_its_auth_from_a_secret_key():
    (container,) = containers(workloads()["flower"])
    ref = container_env(container)["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]
    assert ref["key"] in readme_secret_commands()[ref["name"]]
    assert not [arg for arg in container_argv(container) if "basic" in arg or "auth" in arg]


def test_compose_console_reads_its_users_and_key_from_secret_files(services):
    web = services["web"]
    env = compose_environment(web)
    mounted = set(compose_secret_names(web))
    for setting, name in (("SHARDSYNC_WEB_USERS_FILE", "web_users"), ("SHARDSYNC_WEB_SECRET_FILE", "web_session_key")):
        assert env[setting] == f"{COMPOSE_SECRETS}/{name}" and name in mounted
    assert "SHARDSYNC_WEB_USERS" not in env


def test_k8s_console_reads_its_users_and_key_from_the_mounted_secret():
    workload = workloads()["web"]
    (container,) = containers(workload)
    env = container_env(container)
    mounts = secret_mounts(workload, container)
    for setting in ("SHARDSYNC_WEB_USERS_FILE", "SHARDSYNC_WEB_SECRET_FILE"):
        directory, _, filename = env[setting]["value"].rpartition("/")
        assert directory in mounts, f"{setting}: {directory} is no Secret mount"
        secret, files = mounts[directory]
        assert filename in readme_secret_commands()[secret] and (not files or filename in files)
    assert "SHARDSYNC_WEB_USERS" not in env


# ------------------------------------------------------------------------------------------------------------
# deploy/make-secrets.sh, run
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    if shutil.which("od") is None or not (shutil.which("sha256sum") or shutil.which("shasum")):
        pytest.skip("od and sha256sum are needed")
    directory = tmp_path_factory.mktemp("deploy") / "secrets"
    cli = f"{sys.executable} -m worker.cli"
    result = subprocess.run(
        ["sh", str(MAKE_SECRETS), str(directory)],
        env={**os.environ, "MAKE_SECRETS_CLI": cli},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "token (give it to admin" in result.stderr
    return directory


def test_make_secrets_writes_every_file_privately(made):
    assert sorted(path.name for path in made.iterdir() if not path.name.startswith(".")) == sorted(make_secrets_files())
    assert (made.stat().st_mode & 0o777) == 0o700
    assert (made / ".gitignore").read_text() == "*\n"
    for name in make_secrets_files():
        assert ((made / name).stat().st_mode & 0o777) == 0o644, name


def test_make_secrets_files_agree(made, monkeypatch):
    import hashlib

    from worker.web.auth import parse_users

    password = (made / "redis_password").read_text().strip()
    assert len(password) == 64
    digest = hashlib.sha256(password.encode()).hexdigest()
    assert (made / "redis_acl").read_text() == f"user default on #{digest} ~* &* +@all\n"
    assert (made / BROKER_FILE).read_text() == f"redis://:{password}@{make_secrets_redis_host()}:6379/0\n"
    for name in ("SHARDSYNC_BROKER_URL", "SHARDSYNC_RESULT_BACKEND", "SHARDSYNC_STORE_URL"):
        monkeypatch.delenv(name, raising=False)  # a variable wins over a file
    settings = Settings(_secrets_dir=str(made))  # type: ignore[call-arg]
    assert settings.broker_url == settings.redis_url == f"redis://:{password}@{make_secrets_redis_host()}:6379/0"
    users = parse_users((made / "web_users").read_text(), "web_users")
    assert [(user.name, user.role) for user in users.values()] == [("admin", "operator")]
    assert len((made / "web_session_key").read_text().strip()) >= 32
    user, _, secret = (made / "flower_basic_auth").read_text().partition(":")
    assert user == "admin" and len(secret) >= 32 and secret.strip() == secret and "," not in secret


def test_make_secrets_never_overwrites(made):
    before = {name: (made / name).read_text() for name in make_secrets_files()}
    result = subprocess.run(["sh", str(MAKE_SECRETS), str(made)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "exists" in result.stderr
    assert before == {name: (made / name).read_text() for name in make_secrets_files()}


def test_make_secrets_writes_nothing_when_the_token_cannot_be_made(tmp_path):
    result = subprocess.run(
        ["sh", str(MAKE_SECRETS), str(tmp_path / "secrets")],
        env={**os.environ, "MAKE_SECRETS_CLI": "false"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "nothing was written" in result.stderr
    assert [path.name for path in (tmp_path / "secrets").iterdir()] == [".gitignore"]


@pytest.fixture
def redis_with_acl(made) -> Iterator[int]:
    server = shutil.which("redis-server")
    if server is None or shutil.which("redis-cli") is None:
        pytest.skip("no redis-server here")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--aclfile", str(made / "redis_acl")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_with_the_generated_acl_requires_the_password(made, redis_with_acl):
    import redis

    def ping(password: str) -> str:
        env = {key: value for key, value in os.environ.items() if key != "REDISCLI_AUTH"}
        if password:
            env["REDISCLI_AUTH"] = password
        command = ["redis-cli", "-p", str(redis_with_acl), "ping"]
        return subprocess.run(command, env=env, capture_output=True, text=True).stdout.strip()

    assert ping("") != "PONG"
    assert ping("wrong") != "PONG"
    assert ping((made / "redis_password").read_text().strip()) == "PONG"
    url = (
        (made / BROKER_FILE)
        .read_text()
        .strip()
        .replace(make_secrets_redis_host(), "127.0.0.1")
        .replace(":6379/", f":{redis_with_acl}/")
    )
    assert redis.Redis.from_url(url).ping()
