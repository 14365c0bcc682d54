"""The deployment files, parsed once, and the helpers the tests of tests/deploy/ read them with.

docker-compose.yml, every YAML document in deploy/kubernetes/, deploy/Dockerfile, deploy/make-secrets.sh and the
commands deploy/README.md tells an operator to run. Nothing here needs a Docker engine or a cluster.
"""

from __future__ import annotations

import re
import shlex
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import yaml

from worker.settings import SECRETS_DIR, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / "deploy" / "Dockerfile.dockerignore"
DEPLOY_README = ROOT / "deploy" / "README.md"
MAKE_SECRETS = ROOT / "deploy" / "make-secrets.sh"
K8S_DIR = ROOT / "deploy" / "kubernetes"

QUEUES = {"shardsync.jobs", "shardsync.shards"}
ENV_PREFIX = "SHARDSYNC_"
# Read by the engine itself (core/_gc.py), not a worker setting, but documented for deployments too; and the
# directory of secret files the settings are read from (worker.settings.SECRETS_DIR).
NON_FIELD_ENV = {"SHARDSYNC_GC_PAUSE", SECRETS_DIR}
ENV_NAME = re.compile(r"SHARDSYNC_[A-Za-z0-9_]+")
URL_SETTINGS = ("SHARDSYNC_BROKER_URL", "SHARDSYNC_RESULT_BACKEND", "SHARDSYNC_STORE_URL")
# Settings whose value is a credential (or holds one): only ever in a secret file, never in an environment.
SECRET_SETTINGS = {*URL_SETTINGS, "SHARDSYNC_WEB_USERS"}

# compose service / Kubernetes component -> celery subcommand it runs
CELERY_PROCESSES = {"worker-jobs": "worker", "worker-shards": "worker", "beat": "beat", "flower": "flower"}
# compose service / Kubernetes component -> the shardsync command it runs, and the port it serves
SHARDSYNC_PROCESSES = {
    "metrics": (["shardsync", "metrics", "--port", "9808", "--addr", "0.0.0.0"], 9808),
    "web": (["shardsync", "web", "--addr", "0.0.0.0", "--port", "8000"], 8000),
}
APP_PROCESSES = {*CELERY_PROCESSES, *SHARDSYNC_PROCESSES}
# worker process -> the node name (before '@') its -n option and its health check use
WORKER_NODES = {"worker-jobs": "jobs", "worker-shards": "shards"}
K8S_FILES = {
    "configmap.yaml",
    "redis.yaml",
    "worker-jobs.yaml",
    "worker-shards.yaml",
    "beat.yaml",
    "flower.yaml",
    "metrics.yaml",
    "web.yaml",
}
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
WORKLOAD_KINDS = {"Deployment", "StatefulSet"}
# A URL with a password in it: scheme://[user]:password@host
CREDENTIAL_URL = re.compile(r"\w+://[^/\s@]*:[^/\s@]+@")


# ------------------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------------------


def argv(command: Any) -> List[str]:
    """A command as an argument list: YAML lists as they are, strings split like a shell would."""
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), f"command must be a list or a string, got {command!r}"
    return [str(part) for part in command]


def shell_script(command: List[str]) -> Optional[str]:
    """The script of a ``sh -c SCRIPT`` command, else None."""
    if len(command) >= 3 and command[0] in ("sh", "/bin/sh") and command[1] == "-c":
        return command[2]
    return None


def process_argv(command: List[str]) -> List[str]:
    """What runs in the end: a ``sh -c`` script's last ``exec`` command, else the command itself."""
    script = shell_script(command)
    if script is None:
        return command
    execs = re.findall(r"(?:^|[;&|]\s*|\n\s*)exec\s+([^;&|\n]+)", script)
    assert execs, f"a shell command must exec its process (so that it gets the signals): {script!r}"
    return shlex.split(execs[-1])


def celery_subcommand(command: List[str]) -> str:
    assert command[:3] == ["celery", "-A", "worker"], f"command does not start with 'celery -A worker': {command}"
    assert len(command) > 3, f"celery command without a subcommand: {command}"
    return command[3]


def is_celery(command: List[str]) -> bool:
    return command[:3] == ["celery", "-A", "worker"]


def option(command: List[str], *names: str) -> Optional[str]:
    """The value of an option given as ``-n VALUE``, ``--name VALUE`` or ``--name=VALUE``; None if absent."""
    for index, arg in enumerate(command):
        if arg in names:
            assert index + 1 < len(command), f"{arg} without a value: {command}"
            return command[index + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def queues(command: List[str]) -> List[str]:
    """The queue names of a worker command's -Q/--queues option (comma-separated, may repeat)."""
    names: List[str] = []
    for index, arg in enumerate(command):
        value: Optional[str] = None
        if arg in ("-Q", "--queues"):
            assert index + 1 < len(command), f"{arg} without a value: {command}"
            value = command[index + 1]
        elif arg.startswith("--queues="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-Q") and len(arg) > 2:
            value = arg[2:].lstrip("=")
        if value is not None:
            names.extend(name.strip() for name in value.split(",") if name.strip())
    return names


def strings(node: Any) -> Iterator[str]:
    """Every string in a parsed YAML tree, mapping keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def env_names_used(node: Any) -> Set[str]:
    return {match for text in strings(node) for match in ENV_NAME.findall(text)}


def setting_names() -> Set[str]:
    """The variables of worker.settings.Settings."""
    names = set()
    for field_name, field in Settings.model_fields.items():
        names.add(ENV_PREFIX + field_name.upper())
        for alias in (field.alias, field.validation_alias):
            if isinstance(alias, str):
                names.add(alias.upper())
    return names


def allowed_env_names() -> Set[str]:
    return setting_names() | NON_FIELD_ENV


# ------------------------------------------------------------------------------------------------------------
# docker-compose.yml
# ------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def compose() -> Dict[str, Any]:
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "compose file without services"
    return data


def compose_environment(service: Dict[str, Any]) -> Dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def compose_unescape(text: str) -> str:
    """A string as the container sees it after Compose's interpolation, which must leave nothing to the host.

    ``$$`` is a literal ``$``; any other ``$`` is a variable of the shell that runs ``docker compose``.
    """
    assert not re.search(r"\$(?!\$)", text.replace("$$", "")), f"Compose would interpolate from the host: {text!r}"
    return text.replace("$$", "$")


def compose_command(service: Dict[str, Any]) -> List[str]:
    """A service's command, as the container gets it."""
    return [compose_unescape(part) for part in argv(service["command"])]


def compose_secret_names(service: Dict[str, Any]) -> List[str]:
    names = []
    for entry in service.get("secrets") or []:
        names.append(entry if isinstance(entry, str) else entry["source"])
    return names


def compose_healthcheck(service: Dict[str, Any]) -> Optional[List[str]]:
    """A service's own health check command (CMD form as a list; CMD-SHELL as ``["sh", "-c", script]``)."""
    check = service.get("healthcheck")
    if not check or check.get("disable"):
        return None
    test = [compose_unescape(part) for part in argv(check["test"])]
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", " ".join(test[1:])]
    assert test[0] == "CMD", f"healthcheck test must be CMD or CMD-SHELL: {test}"
    return test[1:]


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


def doc_id(item: Tuple[str, Dict[str, Any]]) -> str:
    filename, document = item
    if not isinstance(document, dict):
        return f"{filename}:?"
    return f"{filename}:{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"


def of_kind(*kinds: str) -> List[Dict[str, Any]]:
    return [document for _, document in K8S_DOCUMENTS if document.get("kind") in kinds]


def workloads() -> Dict[str, Dict[str, Any]]:
    """Deployments and StatefulSets by component label."""
    found: Dict[str, Dict[str, Any]] = {}
    for document in of_kind(*WORKLOAD_KINDS):
        component = document["metadata"]["labels"][COMPONENT_LABEL]
        assert component not in found, f"two workloads with component {component}"
        found[component] = document
    return found


def pod_spec(workload: Dict[str, Any]) -> Dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers(workload: Dict[str, Any]) -> List[Dict[str, Any]]:
    return pod_spec(workload)["containers"]


def container_argv(container: Dict[str, Any]) -> List[str]:
    return argv(container.get("command", [])) + argv(container.get("args", []))


def app_containers() -> Iterator[Tuple[str, Dict[str, Any]]]:
    found = workloads()
    for component in sorted(APP_PROCESSES):
        for container in containers(found[component]):
            yield component, container


def container_env(container: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """A container's ``env`` entries by name."""
    return {entry["name"]: entry for entry in container.get("env", [])}


def services_of(component: str) -> List[Dict[str, Any]]:
    return [service for service in of_kind("Service") if service["metadata"]["labels"][COMPONENT_LABEL] == component]


def secret_mounts(workload: Dict[str, Any], container: Dict[str, Any]) -> Dict[str, Tuple[str, Set[str]]]:
    """mountPath -> (Secret name, the file names it shows) for a container's Secret volumes."""
    volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
    found = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})  # else a volumeClaimTemplate's
        if "secret" not in volume:
            continue
        assert "subPath" not in mount, "a Secret mounted with subPath never sees a rotated value"
        items = volume["secret"].get("items")
        files = {item["path"] for item in items} if items else set()
        found[mount["mountPath"].rstrip("/")] = (volume["secret"]["secretName"], files)
    return found


def secret_references(workload: Dict[str, Any]) -> Set[Tuple[str, Optional[str]]]:
    """(Secret name, key or None for the whole Secret) of every Secret a pod uses."""
    found: Set[Tuple[str, Optional[str]]] = set()
    for volume in pod_spec(workload).get("volumes", []):
        if "secret" in volume:
            items = volume["secret"].get("items")
            name = volume["secret"]["secretName"]
            found.update({(name, item["key"]) for item in items} if items else {(name, None)})
    for container in containers(workload):
        for entry in container.get("env", []):
            ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                found.add((ref["name"], ref["key"]))
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                found.add((source["secretRef"]["name"], None))
    return found


# ------------------------------------------------------------------------------------------------------------
# deploy/make-secrets.sh and deploy/README.md
# ------------------------------------------------------------------------------------------------------------


def make_secrets_files() -> List[str]:
    """The file names deploy/make-secrets.sh writes (its ``files=`` list)."""
    found = re.findall(r'^files="([^"]+)"', MAKE_SECRETS.read_text(encoding="utf-8"), re.M)
    assert len(found) == 1, 'make-secrets.sh must list its files once, as files="..."'
    return found[0].split()


def make_secrets_redis_host() -> str:
    found = re.findall(r"^redis_host=\$\{REDIS_HOST:-([^}]+)\}", MAKE_SECRETS.read_text(encoding="utf-8"), re.M)
    assert len(found) == 1, "make-secrets.sh must default redis_host once"
    return found[0]


def readme_secret_commands() -> Dict[str, Dict[str, str]]:
    """Secret name -> {key: file path} of the ``kubectl create secret generic`` commands in deploy/README.md."""
    found: Dict[str, Dict[str, str]] = {}
    for line in DEPLOY_README.read_text(encoding="utf-8").splitlines():
        if not line.startswith("kubectl create secret generic "):
            continue
        words = shlex.split(line)
        name = words[4]
        keys: Dict[str, str] = {}
        for word in words[5:]:
            if word.startswith("--from-file="):
                value = word.split("=", 1)[1]
                key, _, path = value.rpartition("=") if "=" in value else (Path(value).name, "", value)
                keys[key] = path
            else:
                assert word.startswith("-n") or word.startswith("<") or word.startswith("--namespace"), (
                    f"deploy/README.md: kubectl create secret with {word!r}: only --from-file keeps it off the "
                    "command line"
                )
        assert name not in found, f"deploy/README.md creates Secret {name} twice"
        found[name] = keys
    return found
