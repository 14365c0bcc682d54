"""The deployment files, checked by parsing them (no Docker engine or cluster needed).

Covers docker-compose.yml, every YAML document in deploy/kubernetes/ and deploy/Dockerfile: the processes
and their celery commands, the queues, a single beat, labels and selectors, the image, and that every
SHARDSYNC_* variable the files set is one the app actually reads (worker.settings.Settings).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple
from urllib.parse import urlsplit

import pytest
import yaml

from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
K8S_DIR = ROOT / "deploy" / "kubernetes"

QUEUES = {"shardsync.jobs", "shardsync.shards"}
ENV_PREFIX = "SHARDSYNC_"
# Read by the engine itself (core/_gc.py), not a worker setting, but documented for deployments too.
ENGINE_ENV = {"SHARDSYNC_GC_PAUSE"}
ENV_NAME = re.compile(r"SHARDSYNC_[A-Za-z0-9_]+")
URL_SETTINGS = ("SHARDSYNC_BROKER_URL", "SHARDSYNC_RESULT_BACKEND", "SHARDSYNC_STORE_URL")

# compose service / Kubernetes component -> celery subcommand it runs
APP_PROCESSES = {"worker-jobs": "worker", "worker-shards": "worker", "beat": "beat", "flower": "flower"}
K8S_FILES = {"configmap.yaml", "redis.yaml", "worker-jobs.yaml", "worker-shards.yaml", "beat.yaml", "flower.yaml"}
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------


def _argv(command: Any) -> List[str]:
    """A command as an argument list: YAML lists as they are, strings split like a shell would."""
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), f"command must be a list or a string, got {command!r}"
    return [str(part) for part in command]


def _celery_subcommand(argv: List[str]) -> str:
    assert argv[:3] == ["celery", "-A", "worker"], f"command does not start with 'celery -A worker': {argv}"
    assert len(argv) > 3, f"celery command without a subcommand: {argv}"
    return argv[3]


def _queues(argv: List[str]) -> List[str]:
    """The queue names of a worker command's -Q/--queues option (comma-separated, may repeat)."""
    names: List[str] = []
    for index, arg in enumerate(argv):
        value: Optional[str] = None
        if arg in ("-Q", "--queues"):
            assert index + 1 < len(argv), f"{arg} without a value: {argv}"
            value = argv[index + 1]
        elif arg.startswith("--queues="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-Q") and len(arg) > 2:
            value = arg[2:].lstrip("=")
        if value is not None:
            names.extend(name.strip() for name in value.split(",") if name.strip())
    return names


def _strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML tree, mapping keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _env_names_used(node: Any) -> Set[str]:
    return {match for text in _strings(node) for match in ENV_NAME.findall(text)}


def _allowed_env_names() -> Set[str]:
    names = set(ENGINE_ENV)
    for field_name, field in Settings.model_fields.items():
        names.add(ENV_PREFIX + field_name.upper())
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):
                names.add(alias.upper())
    return names


def _compose_environment(service: Dict[str, Any]) -> Dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


# ------------------------------------------------------------------------------------------------------------
# docker-compose.yml
# ------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> Dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "compose file without services"
    return data


@pytest.fixture(scope="module")
def services(compose) -> Dict[str, Dict[str, Any]]:
    return compose["services"]


def test_compose_has_the_stack_services(services):
    assert {"redis", *APP_PROCESSES} <= set(services)


@pytest.mark.parametrize("name", sorted(APP_PROCESSES))
def test_compose_app_services_build_from_the_deploy_dockerfile(services, name):
    build = services[name].get("build")
    assert isinstance(build, dict), f"{name}: build must name the context and deploy/Dockerfile"
    assert build.get("context") == "."
    assert build.get("dockerfile") == "deploy/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()


@pytest.mark.parametrize(("name", "subcommand"), sorted(APP_PROCESSES.items()))
def test_compose_app_services_run_the_celery_app(services, name, subcommand):
    assert "command" in services[name], f"{name} has no command (the image's default is a two-queue worker)"
    assert _celery_subcommand(_argv(services[name]["command"])) == subcommand


def test_compose_workers_consume_exactly_the_two_queues(services):
    consumed: Set[str] = set()
    for name, service in services.items():
        if name == "redis" or _celery_subcommand(_argv(service["command"])) != "worker":
            continue
        queues = _queues(_argv(service["command"]))
        assert queues, f"{name}: worker without -Q would consume celery's default queue"
        assert set(queues) <= QUEUES, f"{name}: unknown queues {set(queues) - QUEUES}"
        consumed.update(queues)
    assert consumed == QUEUES


def test_compose_queues_are_split_between_the_two_workers(services):
    assert _queues(_argv(services["worker-jobs"]["command"])) == ["shardsync.jobs"]
    assert _queues(_argv(services["worker-shards"]["command"])) == ["shardsync.shards"]


def test_compose_beat_is_a_single_instance(services):
    beats = [
        name
        for name, service in services.items()
        if name != "redis" and "command" in service and _celery_subcommand(_argv(service["command"])) == "beat"
    ]
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


def test_compose_redis_has_aof_and_a_healthcheck(services):
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    argv = _argv(redis["command"])
    assert argv[0] == "redis-server"
    assert "--appendonly" in argv and argv[argv.index("--appendonly") + 1] == "yes"
    test = _argv(redis["healthcheck"]["test"])
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "redis-cli ping" in " ".join(test[1:])


def test_compose_flower_publishes_5555(services):
    ports = [str(port) for port in services["flower"].get("ports", [])]
    assert any(port.split(":")[-1].split("/")[0] == "5555" for port in ports), ports
    assert "--port=5555" in _argv(services["flower"]["command"])


@pytest.mark.parametrize("name", sorted(APP_PROCESSES))
def test_compose_app_services_use_the_compose_redis(services, name):
    env = _compose_environment(services[name])
    for setting in URL_SETTINGS:
        assert setting in env, f"{name}: {setting} not set"
        url = urlsplit(env[setting])
        assert url.scheme in ("redis", "rediss") and url.hostname == "redis", f"{name}: {setting}={env[setting]}"


def test_compose_uses_only_known_settings(compose):
    unknown = _env_names_used(compose) - _allowed_env_names()
    assert not unknown, f"docker-compose.yml sets variables the app does not read: {sorted(unknown)}"


# ------------------------------------------------------------------------------------------------------------
# deploy/kubernetes/*.yaml
# ------------------------------------------------------------------------------------------------------------


def _load_k8s_documents() -> List[Tuple[str, Dict[str, Any]]]:
    documents = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            for document in yaml.safe_load_all(handle):
                if document is not None:  # an empty document, e.g. after a trailing '---'
                    documents.append((path.name, document))
    return documents


K8S_DOCUMENTS = _load_k8s_documents()


def _doc_id(item: Tuple[str, Dict[str, Any]]) -> str:
    filename, document = item
    if not isinstance(document, dict):
        return f"{filename}:?"
    return f"{filename}:{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"


def _of_kind(*kinds: str) -> List[Dict[str, Any]]:
    return [document for _, document in K8S_DOCUMENTS if document.get("kind") in kinds]


def _workloads() -> Dict[str, Dict[str, Any]]:
    """Deployments and StatefulSets by component label."""
    found: Dict[str, Dict[str, Any]] = {}
    for document in _of_kind(*WORKLOAD_KINDS):
        component = document["metadata"]["labels"][COMPONENT_LABEL]
        assert component not in found, f"two workloads with component {component}"
        found[component] = document
    return found


def _containers(workload: Dict[str, Any]) -> List[Dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def _container_argv(container: Dict[str, Any]) -> List[str]:
    return _argv(container.get("command", [])) + _argv(container.get("args", []))


def _app_containers() -> Iterator[Tuple[str, Dict[str, Any]]]:
    workloads = _workloads()
    for component in sorted(APP_PROCESSES):
        for container in _containers(workloads[component]):
            yield component, container


def test_k8s_manifest_files_are_present():
    assert K8S_FILES <= {path.name for path in K8S_DIR.glob("*.yaml")}
    assert K8S_DOCUMENTS


@pytest.mark.parametrize("item", K8S_DOCUMENTS, ids=[_doc_id(item) for item in K8S_DOCUMENTS])
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
    assert set(_workloads()) == {"redis", *APP_PROCESSES}


@pytest.mark.parametrize("component", sorted({"redis", *APP_PROCESSES}))
def test_k8s_workload_selector_matches_its_pod_labels(component):
    workload = _workloads()[component]
    selector = workload["spec"]["selector"]["matchLabels"]
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    assert selector, "empty selector"
    assert selector.items() <= pod_labels.items(), f"selector {selector} does not match pod labels {pod_labels}"
    assert pod_labels[NAME_LABEL] == "shardsync"
    assert pod_labels[COMPONENT_LABEL] == component == selector[COMPONENT_LABEL]


def test_k8s_services_select_a_workload_and_target_its_ports():
    workloads = _workloads()
    services = _of_kind("Service")
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        matching = [
            workload
            for workload in workloads.values()
            if selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, f"Service {service['metadata']['name']} selects {len(matching)} workloads"
        container_ports = {
            port.get("name"): port["containerPort"]
            for container in _containers(matching[0])
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in container_ports or target in container_ports.values(), (
                f"Service {service['metadata']['name']}: targetPort {target!r} not among {container_ports}"
            )


def test_k8s_app_containers_share_one_image():
    images = {container["image"] for _, container in _app_containers()}
    assert len(images) == 1, f"app containers use different images: {images}"
    assert all(container["image"].startswith("redis:") for container in _containers(_workloads()["redis"]))


@pytest.mark.parametrize(("component", "subcommand"), sorted(APP_PROCESSES.items()))
def test_k8s_app_containers_run_the_celery_app(component, subcommand):
    for container in _containers(_workloads()[component]):
        assert _celery_subcommand(_container_argv(container)) == subcommand


def test_k8s_workers_consume_exactly_the_two_queues():
    consumed: Set[str] = set()
    for component, container in _app_containers():
        argv = _container_argv(container)
        if _celery_subcommand(argv) != "worker":
            continue
        queues = _queues(argv)
        assert queues, f"{component}: worker without -Q would consume celery's default queue"
        assert set(queues) <= QUEUES, f"{component}: unknown queues {set(queues) - QUEUES}"
        consumed.update(queues)
    assert consumed == QUEUES


def test_k8s_beat_is_one_recreated_replica():
    beats = [
        component
        for component, container in _app_containers()
        if _celery_subcommand(_container_argv(container)) == "beat"
    ]
    assert beats == ["beat"]
    beat = _workloads()["beat"]
    assert beat["kind"] == "Deployment"
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert len(_containers(beat)) == 1


def test_k8s_shard_workers_scale_out_and_drain_slowly():
    shards = _workloads()["worker-shards"]
    assert shards["spec"]["replicas"] >= 2
    pod_spec = shards["spec"]["template"]["spec"]
    assert pod_spec["terminationGracePeriodSeconds"] >= 300, "too short for a shard to finish on warm shutdown"
    assert pod_spec["terminationGracePeriodSeconds"] >= _workloads()["worker-jobs"]["spec"]["template"]["spec"].get(
        "terminationGracePeriodSeconds", 30
    )


@pytest.mark.parametrize("component", ["worker-jobs", "worker-shards"])
def test_k8s_workers_have_resources_and_a_ping_liveness_probe(component):
    for container in _containers(_workloads()[component]):
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]
        probe = " ".join(_argv(container["livenessProbe"]["exec"]["command"]))
        assert "celery -A worker inspect ping" in probe
        assert "$HOSTNAME" in probe, "the probe must ping this pod's worker, not any worker"


def test_k8s_app_pods_run_as_non_root():
    for component in APP_PROCESSES:
        pod_spec = _workloads()[component]["spec"]["template"]["spec"]
        assert pod_spec.get("securityContext", {}).get("runAsNonRoot") is True, component
        assert pod_spec["securityContext"].get("runAsUser", 0) != 0, component


def test_k8s_configmap_holds_only_shardsync_settings():
    configmaps = _of_kind("ConfigMap")
    assert len(configmaps) == 1
    data = configmaps[0]["data"]
    assert data
    for key, value in data.items():
        assert key.startswith(ENV_PREFIX), f"ConfigMap key {key} is not a SHARDSYNC_ setting"
        assert isinstance(value, str), f"ConfigMap value of {key} must be a string, got {value!r}"


def test_k8s_app_containers_load_the_configmap():
    name = _of_kind("ConfigMap")[0]["metadata"]["name"]
    for component, container in _app_containers():
        refs = [source["configMapRef"]["name"] for source in container.get("envFrom", []) if "configMapRef" in source]
        assert name in refs, f"{component}: does not load ConfigMap {name}"


def test_k8s_configmap_points_at_the_redis_service():
    data = _of_kind("ConfigMap")[0]["data"]
    redis_ports = {
        service["metadata"]["name"]: {port["port"] for port in service["spec"]["ports"]}
        for service in _of_kind("Service")
        if service["metadata"]["labels"][COMPONENT_LABEL] == "redis"
    }
    for setting in URL_SETTINGS:
        url = urlsplit(data[setting])
        assert url.scheme in ("redis", "rediss")
        assert url.hostname in redis_ports, f"{setting}={data[setting]} names no Redis Service ({sorted(redis_ports)})"
        assert (url.port or 6379) in redis_ports[url.hostname]


def test_k8s_redis_runs_with_aof():
    (container,) = _containers(_workloads()["redis"])
    argv = _container_argv(container)
    assert "--appendonly" in argv and argv[argv.index("--appendonly") + 1] == "yes"


def test_k8s_flower_service_exposes_5555():
    (service,) = [s for s in _of_kind("Service") if s["metadata"]["labels"][COMPONENT_LABEL] == "flower"]
    assert 5555 in {port["port"] for port in service["spec"]["ports"]}
    (container,) = _containers(_workloads()["flower"])
    assert 5555 in {port["containerPort"] for port in container["ports"]}
    assert "--port=5555" in _container_argv(container)


def test_k8s_uses_only_known_settings():
    unknown = _env_names_used([document for _, document in K8S_DOCUMENTS]) - _allowed_env_names()
    assert not unknown, f"Kubernetes manifests set variables the app does not read: {sorted(unknown)}"


# ------------------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------------------


def test_settings_read_the_shardsync_prefix():
    assert str(Settings.model_config.get("env_prefix", "")).upper() == ENV_PREFIX


def test_the_url_settings_exist():
    assert set(URL_SETTINGS) <= _allowed_env_names()


def test_the_workers_queues_are_the_apps_queues(services):
    # The -Q options above name QUEUES; the app routes its tasks to the queues named by these settings.
    defaults = {Settings.model_fields[name].default for name in ("jobs_queue", "shards_queue")}
    assert defaults == QUEUES
    environments = [_of_kind("ConfigMap")[0]["data"], *(_compose_environment(services[name]) for name in APP_PROCESSES)]
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
        argv = json.loads(arguments)
        assert isinstance(argv, list) and all(isinstance(part, str) for part in argv)
        return argv
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


def test_dockerfile_installs_the_project_and_flower(dockerfile):
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
    assert "." in installed, f"no 'pip install .' (installs: {installed})"
    assert any(re.match(r"flower\b", token) for token in installed), f"flower is not installed (installs: {installed})"


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


def test_dockerfile_default_command_is_a_worker_on_both_queues(dockerfile):
    entrypoint = _last(dockerfile, "ENTRYPOINT")
    command = _last(dockerfile, "CMD")
    assert command or entrypoint
    argv = (_exec_or_shell(entrypoint) if entrypoint else []) + (_exec_or_shell(command) if command else [])
    assert _celery_subcommand(argv) == "worker"
    assert set(_queues(argv)) == QUEUES


def test_dockerfile_healthcheck_pings_the_local_worker(dockerfile):
    healthcheck = _last(dockerfile, "HEALTHCHECK")
    assert healthcheck and "CMD" in healthcheck
    assert "celery -A worker inspect ping" in healthcheck
    assert "$HOSTNAME" in healthcheck
