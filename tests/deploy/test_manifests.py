"""The deployment files, checked by parsing them (no Docker engine or cluster needed).

Covers docker-compose.yml, every YAML document in deploy/kubernetes/ and deploy/Dockerfile: the processes
(workers, beat, Flower, the metrics exporter, the console) and their commands, the queues, a single beat without
a schedule file, labels and selectors, the image, ports published on 127.0.0.1 only, and that every SHARDSYNC_*
variable the files set is one the app actually reads (worker.settings.Settings). Secrets: test_secrets.py; health
checks: test_health.py; deploy/README.md: test_docs.py.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Set, Tuple

import pytest

from tests.deploy.files import (
    APP_PROCESSES,
    CELERY_PROCESSES,
    COMPONENT_LABEL,
    DOCKERFILE,
    DOCKERIGNORE,
    ENV_PREFIX,
    K8S_DIR,
    K8S_DOCUMENTS,
    K8S_FILES,
    NAME_LABEL,
    QUEUES,
    ROOT,
    SHARDSYNC_PROCESSES,
    allowed_env_names,
    app_containers,
    celery_subcommand,
    compose,
    compose_command,
    compose_environment,
    container_argv,
    containers,
    doc_id,
    env_names_used,
    is_celery,
    of_kind,
    pod_spec,
    process_argv,
    queues,
    services_of,
    strings,
    workloads,
)
from worker.settings import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project supports 3.10, whose tomli is a dependency there
    import tomli as tomllib


@pytest.fixture(scope="module")
def services() -> Dict[str, Dict[str, Any]]:
    return compose()["services"]


def _runs(command: List[str]) -> List[str]:
    return process_argv(command)


# ------------------------------------------------------------------------------------------------------------
# docker-compose.yml
# ------------------------------------------------------------------------------------------------------------


def test_compose_has_the_stack_services(services):
    assert {"redis", *APP_PROCESSES} <= set(services)


@pytest.mark.parametrize("name", sorted(APP_PROCESSES))
def test_compose_app_services_build_from_the_deploy_dockerfile(services, name):
    build = services[name].get("build")
    assert isinstance(build, dict), f"{name}: build must name the context and deploy/Dockerfile"
    assert build.get("context") == "."
    assert build.get("dockerfile") == "deploy/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


@pytest.mark.parametrize(("name", "subcommand"), sorted(CELERY_PROCESSES.items()))
def test_compose_app_services_run_the_celery_app(services, name, subcommand):
    assert "command" in services[name], f"{name} has no command (the image's default is a two-queue worker)"
    assert celery_subcommand(_runs(compose_command(services[name]))) == subcommand


@pytest.mark.parametrize(("name", "expected"), sorted((name, spec[0]) for name, spec in SHARDSYNC_PROCESSES.items()))
def test_compose_runs_the_exporter_and_the_console(services, name, expected):
    assert _runs(compose_command(services[name])) == expected


def _compose_celery_commands(services: Dict[str, Dict[str, Any]]) -> Dict[str, List[str]]:
    found = {}
    for name, service in services.items():
        if name != "redis" and "command" in service and is_celery(_runs(compose_command(service))):
            found[name] = _runs(compose_command(service))
    return found


def test_compose_workers_consume_exactly_the_two_queues(services):
    consumed: Set[str] = set()
    for name, command in _compose_celery_commands(services).items():
        if celery_subcommand(command) != "worker":
            continue
        names = queues(command)
        assert names, f"{name}: worker without -Q would consume celery's default queue"
        assert set(names) <= QUEUES, f"{name}: unknown queues {set(names) - QUEUES}"
        consumed.update(names)
    assert consumed == QUEUES


def test_compose_queues_are_split_between_the_two_workers(services):
    assert queues(compose_command(services["worker-jobs"])) == ["shardsync.jobs"]
    assert queues(compose_command(services["worker-shards"])) == ["shardsync.shards"]


def test_compose_beat_is_a_single_instance(services):
    commands = _compose_celery_commands(services)
    beats = [name for name, command in commands.items() if celery_subcommand(command) == "beat"]
    assert beats == ["beat"]
    replicas = (services["beat"].get("deploy") or {}).get("replicas", 1)
    assert replicas == 1
    assert "scale" not in services["beat"]


def test_compose_shard_workers_scale_out(services):
    assert services["worker-shards"]["deploy"]["replicas"] >= 2
    assert "container_name" not in services["worker-shards"], "a fixed container name prevents replicas"


@pytest.mark.parametrize("name", sorted(APP_PROCESSES))
def test_compose_app_services_wait_for_a_healthy_redis(services, name):
    depends_on = services[name].get("depends_on")
    assert isinstance(depends_on, dict), f"{name}: depends_on must be a mapping with a condition"
    assert depends_on["redis"]["condition"] == "service_healthy"


def test_compose_redis_has_aof(services):
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    command = compose_command(redis)
    assert command[0] == "redis-server", "the image's entrypoint drops to the redis user only for redis-server"
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--maxmemory-policy") == "noeviction"


def option(command: List[str], name: str) -> Optional[str]:
    return command[command.index(name) + 1] if name in command else None


@pytest.mark.parametrize(("name", "port"), [("flower", 5555), ("web", 8000), ("metrics", 9808)])
def test_compose_publishes_the_http_ports_on_localhost(services, name, port):
    ports = [str(entry) for entry in services[name].get("ports", [])]
    assert any(entry.split(":")[-1].split("/")[0] == str(port) for entry in ports), ports


def test_compose_publishes_nothing_beyond_localhost(services):
    for name, service in services.items():
        for entry in service.get("ports", []):
            assert isinstance(entry, str), f"{name}: write ports as '127.0.0.1:HOST:CONTAINER' strings"
            assert entry.startswith("127.0.0.1:"), f"{name}: port {entry} is published on every interface"
    assert "ports" not in services["redis"], "Redis is for the stack only"


def test_compose_flower_listens_on_5555(services):
    assert "--port=5555" in _runs(compose_command(services["flower"]))


def test_compose_beat_has_no_schedule_file(services):
    command = _runs(compose_command(services["beat"]))
    assert not [arg for arg in command if arg.startswith(("--schedule", "-s"))], command


def test_compose_uses_only_known_settings():
    unknown = env_names_used(compose()) - allowed_env_names()
    assert not unknown, f"docker-compose.yml sets variables the app does not read: {sorted(unknown)}"


def test_compose_commands_leave_nothing_to_the_host_shell(services):
    # compose_command fails on a '$' that Compose would take from the shell running `docker compose`.
    for service in services.values():
        if "command" in service:
            compose_command(service)


# ------------------------------------------------------------------------------------------------------------
# deploy/kubernetes/*.yaml
# ------------------------------------------------------------------------------------------------------------


def test_k8s_manifest_files_are_present():
    assert K8S_FILES <= {path.name for path in K8S_DIR.glob("*.yaml")}
    assert K8S_DOCUMENTS


@pytest.mark.parametrize("item", K8S_DOCUMENTS, ids=[doc_id(item) for item in K8S_DOCUMENTS])
def test_k8s_document_is_a_namespace_agnostic_labelled_object(item):
    _, document = item
    assert isinstance(document, dict)
    assert isinstance(document.get("apiVersion"), str) and document["apiVersion"]
    assert isinstance(document.get("kind"), str) and document["kind"]
    metadata = document.get("metadata")
    assert isinstance(metadata, dict) and isinstance(metadata.get("name"), str) and metadata["name"]
    assert "namespace" not in metadata, "manifests must not pin a namespace"
    labels = metadata.get("labels") or {}
    assert labels.get(NAME_LABEL) == "shardsync"
    assert labels.get(COMPONENT_LABEL)


def test_k8s_object_names_are_unique_per_kind():
    keys = [(document["kind"], document["metadata"]["name"]) for _, document in K8S_DOCUMENTS]
    assert len(keys) == len(set(keys))


def test_k8s_has_a_workload_per_process():
    assert set(workloads()) == {"redis", *APP_PROCESSES}


@pytest.mark.parametrize("component", sorted({"redis", *APP_PROCESSES}))
def test_k8s_workload_selector_matches_its_pod_labels(component):
    workload = workloads()[component]
    selector = workload["spec"]["selector"]["matchLabels"]
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    assert selector, "empty selector"
    assert selector.items() <= pod_labels.items(), f"selector {selector} does not match pod labels {pod_labels}"
    assert pod_labels[NAME_LABEL] == "shardsync"
    assert pod_labels[COMPONENT_LABEL] == component == selector[COMPONENT_LABEL]


def test_k8s_services_select_a_workload_and_target_its_ports():
    found = workloads()
    services = of_kind("Service")
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        matching = [
            workload
            for workload in found.values()
            if selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, f"Service {service['metadata']['name']} selects {len(matching)} workloads"
        container_ports = {
            port.get("name"): port["containerPort"]
            for container in containers(matching[0])
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in container_ports or target in container_ports.values(), (
                f"Service {service['metadata']['name']}: targetPort {target!r} not among {container_ports}"
            )


def test_k8s_services_stay_inside_the_cluster():
    for service in of_kind("Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]["name"]


def test_k8s_app_containers_share_one_image():
    images = {container["image"] for _, container in app_containers()}
    assert len(images) == 1, f"app containers use different images: {images}"
    assert all(container["image"].startswith("redis:") for container in containers(workloads()["redis"]))


@pytest.mark.parametrize(("component", "subcommand"), sorted(CELERY_PROCESSES.items()))
def test_k8s_app_containers_run_the_celery_app(component, subcommand):
    for container in containers(workloads()[component]):
        assert celery_subcommand(_runs(container_argv(container))) == subcommand


@pytest.mark.parametrize("component", sorted(SHARDSYNC_PROCESSES))
def test_k8s_runs_the_exporter_and_the_console_behind_a_service(component):
    expected, port = SHARDSYNC_PROCESSES[component]
    (container,) = containers(workloads()[component])
    command = container_argv(container)
    assert command[: len(expected)] == expected
    assert [arg for arg in command[len(expected) :] if not arg.startswith("--secure-cookies")] == []
    assert port in {entry["containerPort"] for entry in container["ports"]}
    (service,) = services_of(component)
    assert port in {entry["port"] for entry in service["spec"]["ports"]}


def test_k8s_exporter_service_is_the_scrape_target():
    # The Prometheus scrape config of the top-level README targets shardsync-metrics:9808.
    (service,) = services_of("metrics")
    assert service["metadata"]["name"] == "shardsync-metrics"


def _k8s_celery_commands() -> List[Tuple[str, List[str]]]:
    return [
        (component, _runs(container_argv(container)))
        for component, container in app_containers()
        if is_celery(_runs(container_argv(container)))
    ]


def test_k8s_workers_consume_exactly_the_two_queues():
    consumed: Set[str] = set()
    for component, command in _k8s_celery_commands():
        if celery_subcommand(command) != "worker":
            continue
        names = queues(command)
        assert names, f"{component}: worker without -Q would consume celery's default queue"
        assert set(names) <= QUEUES, f"{component}: unknown queues {set(names) - QUEUES}"
        consumed.update(names)
    assert consumed == QUEUES


def test_k8s_beat_is_one_recreated_replica():
    beats = [component for component, command in _k8s_celery_commands() if celery_subcommand(command) == "beat"]
    assert beats == ["beat"]
    beat = workloads()["beat"]
    assert beat["kind"] == "Deployment"
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert len(containers(beat)) == 1


def test_k8s_beat_has_no_schedule_file():
    (container,) = containers(workloads()["beat"])
    command = container_argv(container)
    assert not [arg for arg in command if arg.startswith(("--schedule", "-s"))], command


def test_no_deploy_file_passes_a_beat_schedule_file():
    texts = [path.read_text(encoding="utf-8") for path in [ROOT / "docker-compose.yml", *K8S_DIR.glob("*.yaml")]]
    assert not [text for text in texts if "--schedule" in text or "celerybeat-schedule" in text]


def test_k8s_shard_workers_scale_out_and_drain_slowly():
    shards = workloads()["worker-shards"]
    assert shards["spec"]["replicas"] >= 2
    spec = pod_spec(shards)
    assert spec["terminationGracePeriodSeconds"] >= 300, "too short for a shard to finish on warm shutdown"
    assert spec["terminationGracePeriodSeconds"] >= pod_spec(workloads()["worker-jobs"]).get(
        "terminationGracePeriodSeconds", 30
    )


@pytest.mark.parametrize("component", sorted(APP_PROCESSES))
def test_k8s_app_containers_have_resources(component):
    for container in containers(workloads()[component]):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]


@pytest.mark.parametrize("component", sorted(APP_PROCESSES))
def test_k8s_app_pods_run_as_non_root_without_a_token(component):
    spec = pod_spec(workloads()[component])
    assert spec.get("securityContext", {}).get("runAsNonRoot") is True, component
    assert spec["securityContext"].get("runAsUser", 0) != 0, component
    assert spec.get("automountServiceAccountToken") is False, f"{component}: needs no Kubernetes API token"
    for container in containers(workloads()[component]):
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
        assert context["capabilities"]["drop"] == ["ALL"]


def test_k8s_configmap_holds_only_shardsync_settings():
    configmaps = of_kind("ConfigMap")
    assert len(configmaps) == 1
    data = configmaps[0]["data"]
    assert data
    for key, value in data.items():
        assert key.startswith(ENV_PREFIX), f"ConfigMap key {key} is not a SHARDSYNC_ setting"
        assert isinstance(value, str), f"ConfigMap value of {key} must be a string, got {value!r}"


def test_k8s_app_containers_load_the_configmap():
    name = of_kind("ConfigMap")[0]["metadata"]["name"]
    for component, container in app_containers():
        refs = [source["configMapRef"]["name"] for source in container.get("envFrom", []) if "configMapRef" in source]
        assert name in refs, f"{component}: does not load ConfigMap {name}"


def test_k8s_redis_runs_with_aof():
    (container,) = containers(workloads()["redis"])
    command = container_argv(container)
    assert option(command, "--appendonly") == "yes"
    assert option(command, "--maxmemory-policy") == "noeviction"


def test_k8s_flower_service_exposes_5555():
    (service,) = services_of("flower")
    assert 5555 in {port["port"] for port in service["spec"]["ports"]}
    (container,) = containers(workloads()["flower"])
    assert 5555 in {port["containerPort"] for port in container["ports"]}
    assert "--port=5555" in container_argv(container)


def test_k8s_uses_only_known_settings():
    unknown = env_names_used([document for _, document in K8S_DOCUMENTS]) - allowed_env_names()
    assert not unknown, f"Kubernetes manifests set variables the app does not read: {sorted(unknown)}"


def test_k8s_mounted_volumes_exist():
    for component, workload in workloads().items():
        volumes = {volume["name"] for volume in pod_spec(workload).get("volumes", [])}
        claims = {claim["metadata"]["name"] for claim in workload["spec"].get("volumeClaimTemplates", [])}
        for container in containers(workload):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes | claims, f"{component}: mounts unknown volume {mount['name']}"


# ------------------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------------------


def test_settings_read_the_shardsync_prefix():
    assert str(Settings.model_config.get("env_prefix", "")).upper() == ENV_PREFIX


def test_the_settings_the_files_rely_on_exist():
    assert {
        "SHARDSYNC_BROKER_URL",
        "SHARDSYNC_ADAPTER_MODULES",
        "SHARDSYNC_SCHEDULE_FILE",
        "SHARDSYNC_WEB_USERS_FILE",
        "SHARDSYNC_WEB_SECRET_FILE",
        "SHARDSYNC_SECRETS_DIR",
    } <= allowed_env_names()
    # The result backend and the store default to the broker URL, so one secret file serves all three.
    settings = Settings(broker_url="redis://:p@host:6379/0")
    assert settings.backend_url == settings.redis_url == "redis://:p@host:6379/0"


def test_the_workers_queues_are_the_apps_queues(services):
    # The -Q options above name QUEUES; the app routes its tasks to the queues named by these settings.
    defaults = {Settings.model_fields[name].default for name in ("jobs_queue", "shards_queue")}
    assert defaults == QUEUES
    environments = [of_kind("ConfigMap")[0]["data"], *(compose_environment(services[name]) for name in APP_PROCESSES)]
    for env in environments:
        overridden = {"SHARDSYNC_JOBS_QUEUE", "SHARDSYNC_SHARDS_QUEUE"} & set(env)
        assert not overridden, f"queue renamed by {sorted(overridden)} while the -Q options keep {sorted(QUEUES)}"


# ------------------------------------------------------------------------------------------------------------
# deploy/Dockerfile
# ------------------------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; comments dropped, backslash continuations joined."""
    instructions: List[Tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return instructions


def _exec_or_shell(arguments: str) -> List[str]:
    """The argv of a CMD/ENTRYPOINT in exec (JSON) or shell form."""
    if arguments.startswith("["):
        parsed = json.loads(arguments)
        assert isinstance(parsed, list) and all(isinstance(part, str) for part in parsed)
        return parsed
    return shlex.split(arguments)


def _last(instructions: List[Tuple[str, str]], keyword: str) -> Optional[str]:
    values = [arguments for name, arguments in instructions if name == keyword]
    return values[-1] if values else None


@pytest.fixture(scope="module")
def dockerfile() -> List[Tuple[str, str]]:
    return _dockerfile_instructions()


def test_dockerfile_is_based_on_python_311_slim(dockerfile):
    stages = [arguments.split() for name, arguments in dockerfile if name == "FROM"]
    assert stages, "no FROM"
    final = [part for part in stages[-1] if not part.startswith("--")]
    assert final[0] == "python:3.11-slim"


def test_dockerfile_runs_as_a_non_root_user(dockerfile):
    user = _last(dockerfile, "USER")
    assert user, "no USER: the container would run as root"
    name = user.split(":")[0]
    assert name not in ("root", "0")


def _pip_installed(dockerfile: List[Tuple[str, str]]) -> List[str]:
    installed: List[str] = []
    for name, arguments in dockerfile:
        if name != "RUN":
            continue
        for segment in re.split(r"&&|\|\||;", arguments):
            tokens = shlex.split(segment)
            if "install" not in tokens:
                continue
            at = tokens.index("install")
            if any(Path(token).name.startswith("pip") for token in tokens[:at]):  # pip, pip3, python -m pip
                installed.extend(token for token in tokens[at + 1 :] if not token.startswith("-"))
    return installed


def test_dockerfile_installs_the_project_and_flower(dockerfile):
    installed = _pip_installed(dockerfile)
    assert "." in installed, f"no 'pip install .' (installs: {installed})"
    assert any(re.match(r"flower\b", token) for token in installed), f"flower is not installed (installs: {installed})"


def test_the_image_gets_the_consoles_dependencies(dockerfile):
    # `pip install .` installs the main dependencies, which must hold the console's stack.
    assert "." in _pip_installed(dockerfile)
    with (ROOT / "pyproject.toml").open("rb") as handle:
        dependencies = tomllib.load(handle)["project"]["dependencies"]
    names = {re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower() for requirement in dependencies}
    assert {"fastapi", "uvicorn", "jinja2", "python-multipart", "itsdangerous", "prometheus_client"} <= names


def test_dockerfile_copies_existing_sources_not_ignored(dockerfile):
    ignored = [
        line.strip().rstrip("/")
        for line in (DOCKERIGNORE.read_text(encoding="utf-8").splitlines() if DOCKERIGNORE.exists() else [])
        if line.strip() and not line.strip().startswith("#")
    ]
    copies = [arguments for name, arguments in dockerfile if name in ("COPY", "ADD")]
    assert copies
    for arguments in copies:
        if "--from" in arguments:
            continue  # copies from another stage or image, not from the build context
        tokens = [token for token in shlex.split(arguments) if not token.startswith("--")]
        for source in tokens[:-1]:
            source = source.rstrip("/")
            assert list(ROOT.glob(source)), f"COPY source {source} does not exist in the build context"
            hits = [pattern for pattern in ignored if not pattern.startswith("!") and fnmatch.fnmatch(source, pattern)]
            assert not hits, f"COPY source {source} is excluded by {DOCKERIGNORE.name}: {hits}"


def test_the_secrets_stay_out_of_the_build_context():
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()}
    assert "secrets" in ignored


def test_dockerfile_default_command_is_a_worker_on_both_queues(dockerfile):
    entrypoint = _last(dockerfile, "ENTRYPOINT")
    command = _last(dockerfile, "CMD")
    assert command or entrypoint
    full = (_exec_or_shell(entrypoint) if entrypoint else []) + (_exec_or_shell(command) if command else [])
    assert celery_subcommand(full) == "worker"
    assert set(queues(full)) == QUEUES


def test_no_deploy_file_has_a_credential_in_a_command():
    # A URL with a password, --basic-auth or --requirepass on a command line shows in `ps`.
    for text in [*strings(compose()), *strings([document for _, document in K8S_DOCUMENTS])]:
        assert not re.search(r"\w+://[^/\s@]*:[^/\s@]+@", text), f"a URL with a password: {text!r}"
        assert "--basic-auth" not in text and "--requirepass" not in text and "requirepass " not in text, text
    assert "--basic-auth" not in DOCKERFILE.read_text(encoding="utf-8")
