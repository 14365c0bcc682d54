"""Every health check tests the process it belongs to.

Workers have explicit node names (`-n jobs@%h`, `-n shards@%h`) and their checks ping exactly that node: the
image's HEALTHCHECK through CELERY_NODE_NAME (compose), the Kubernetes liveness probes by name. The exporter is
checked on /metrics, the console on /health, Flower on /healthcheck; services that are no worker never inherit
the image's worker ping.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any, Dict, List, Optional

import pytest

from tests.deploy.files import (
    APP_PROCESSES,
    DOCKERFILE,
    WORKER_NODES,
    compose,
    compose_command,
    compose_environment,
    compose_healthcheck,
    container_argv,
    container_env,
    containers,
    option,
    process_argv,
    shell_script,
    workloads,
)

NODE_ENV = "CELERY_NODE_NAME"
# process -> (port, path) its HTTP health check reads
HTTP_CHECKS = {"flower": (5555, "/healthcheck"), "metrics": (9808, "/metrics"), "web": (8000, "/health")}


@pytest.fixture(scope="module")
def services() -> Dict[str, Dict[str, Any]]:
    return compose()["services"]


def _node_prefix(command: List[str]) -> Optional[str]:
    name = option(command, "-n", "--hostname")
    if name is None:
        return None
    prefix, at, host = name.partition("@")
    assert at and host == "%h", f"a node name must be <name>@%h, so that each container's is its own: {name}"
    return prefix


def _dockerfile_healthcheck() -> str:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK")]
    return line


def _pinged_node(script: str) -> str:
    """The -d destination of a `celery -A worker inspect ping` in a shell command, unquoted."""
    assert "celery -A worker inspect ping" in script, script
    destination = re.search(r"inspect ping\s+-d\s+(\"[^\"]+\"|\S+)", script)
    assert destination, f"the ping names no node (-d): {script}"
    return shlex.split(destination.group(1))[0]


# ------------------------------------------------------------------------------------------------------------
# The image
# ------------------------------------------------------------------------------------------------------------


def test_the_image_healthcheck_pings_the_node_named_by_its_environment():
    line = _dockerfile_healthcheck()
    assert _pinged_node(line) == "${" + NODE_ENV + ":-celery}@$HOSTNAME"
    assert not NODE_ENV.startswith("SHARDSYNC_"), "the app warns about SHARDSYNC_ variables it does not read"


def test_the_image_default_command_keeps_celerys_default_node_name():
    cmd = [line for line in DOCKERFILE.read_text(encoding="utf-8").splitlines() if line.startswith("CMD")][-1]
    command = json.loads(cmd[len("CMD") :].strip())
    assert _node_prefix(command) in (None, "celery"), "the HEALTHCHECK's default is celery@<hostname>"


# ------------------------------------------------------------------------------------------------------------
# docker-compose.yml
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "node"), sorted(WORKER_NODES.items()))
def test_compose_workers_have_a_node_name_their_health_check_pings(services, name, node):
    service = services[name]
    assert _node_prefix(compose_command(service)) == node
    check = compose_healthcheck(service)
    if check is None:  # the image's HEALTHCHECK, which reads the name from the environment
        assert "healthcheck" not in service, f"{name}: a disabled check hides a stuck worker"
        assert compose_environment(service).get(NODE_ENV) == node
    else:
        assert _pinged_node(shell_script(check) or " ".join(check)) == f"{node}@$HOSTNAME"


def test_compose_services_that_are_no_worker_do_not_inherit_the_worker_ping(services):
    for name in sorted(APP_PROCESSES - set(WORKER_NODES)):
        assert "healthcheck" in services[name], f"{name} would run the image's worker ping and never be healthy"
        assert NODE_ENV not in compose_environment(services[name])


def test_compose_node_names_are_unique(services):
    prefixes = [_node_prefix(process_argv(compose_command(services[name]))) for name in WORKER_NODES]
    assert len(set(prefixes)) == len(prefixes)


@pytest.mark.parametrize("name", sorted(HTTP_CHECKS))
def test_compose_http_services_check_their_own_endpoint(services, name):
    port, path = HTTP_CHECKS[name]
    check = compose_healthcheck(services[name])
    assert check is not None, f"{name}: no health check"
    assert f"http://127.0.0.1:{port}{path}'" in " ".join(check), check


def test_compose_beat_has_no_worker_ping(services):
    assert services["beat"]["healthcheck"] == {"disable": True}


# ------------------------------------------------------------------------------------------------------------
# Kubernetes
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("component", "node"), sorted(WORKER_NODES.items()))
def test_k8s_workers_have_a_node_name_their_liveness_probe_pings(component, node):
    for container in containers(workloads()[component]):
        assert _node_prefix(container_argv(container)) == node
        command = container["livenessProbe"]["exec"]["command"]
        script = shell_script(command)
        assert script is not None, "the probe needs a shell to read $HOSTNAME (the pod's name, as %h)"
        assert _pinged_node(script) == f"{node}@$HOSTNAME", "the probe must ping this pod's worker, not any worker"
        env = container_env(container)
        assert env.get(NODE_ENV, {}).get("value", node) == node


@pytest.mark.parametrize("component", sorted(HTTP_CHECKS))
def test_k8s_http_processes_are_probed_on_their_endpoint(component):
    port, path = HTTP_CHECKS[component]
    (container,) = containers(workloads()[component])
    ports = {entry.get("name"): entry["containerPort"] for entry in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] == port or ports.get(get["port"]) == port
