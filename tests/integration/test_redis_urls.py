"""Every connection of a deployment through TLS (``rediss://``) and through Redis Sentinel (``sentinel://``).

Real servers of this module on their own ports from 6480: a TLS-only ``redis-server`` with a certificate made
here by ``openssl``, and a Sentinel set (a primary, a replica, one ``redis-server --sentinel``) whose replica is
promoted while a job's hook waits. A real worker, and the job submitted and waited for by ``shardsync sync``
(the producer's connections too), all reach Redis only by these URLs. The hooks' calls and the gate live in the
suite's own Redis (the test adapters' ``record_url``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterator, List

import pytest
from _workers import REDIS_URL, ROOT, free_port, poll, start_worker, stop_workers, worker_env
from redis import Redis
from ss_test_adapters import read_calls

REDIS_SERVER = shutil.which("redis-server")
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


class Servers:
    """Throwaway redis-server processes (each its own process group), stopped together."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="shardsync-urls-"))
        self.procs: List[subprocess.Popen] = []

    def start(self, *args: str, name: str) -> subprocess.Popen:
        log = open(self.base / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [REDIS_SERVER, *args], cwd=self.base, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in self.base.glob("*.log"))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def servers() -> Iterator[Servers]:
    made = Servers()
    yield made
    made.stop()


def _answers(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _job(gate: str, calls_key: str) -> List[str]:
    sites = [{"name": f"s-{i}", "note": "", "devices": [{"name": "d0", "note": ""}]} for i in range(6)]
    sites[3]["note"] = f"wait:{gate}"  # holds the job mid-shard until the test opens it
    return [
        "--source", "dataset", "--target", "dataset",
        "--source-kwargs", json.dumps({"data": {"region": [], "site": sites}}),
        "--target-kwargs", json.dumps({"record_url": REDIS_URL, "calls_key": calls_key}),
    ]  # fmt: skip


def _run_job(env: dict, tmp_path: Path, during: callable, servers: Servers) -> None:
    """``shardsync sync`` on one worker; ``during`` runs while a hook waits at its gate; then the job ends well."""
    client = Redis.from_url(REDIS_URL)
    gate, calls_key = f"test:gate:{uuid.uuid4().hex}", f"test:calls:{uuid.uuid4().hex}"
    worker = start_worker("urls", tmp_path, 2, env)
    try:
        producer = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "sync", *_job(gate, calls_key)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            poll(lambda: any(c[2] == "s-3" for c in read_calls(client, calls_key)), 120, "the gated hook")
            during()
            client.set(gate, 1)
            output, _ = producer.communicate(timeout=120)
        finally:
            if producer.poll() is None:
                os.killpg(producer.pid, signal.SIGKILL)
                producer.wait()
        worker_log = (tmp_path / "urls.log").read_text(errors="replace")[-3000:]
        assert producer.returncode == 0, f"{output}\n--- worker\n{worker_log}\n{servers.logs()}"
        calls = [c for c in read_calls(client, calls_key) if c[0] != "sync_complete"]
        assert len(calls) == len({(c[0], c[1], c[2]) for c in calls}) == 12, calls  # each hook once
    finally:
        stop_workers([worker])
        client.delete(gate, calls_key)


@pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")
def test_a_job_over_tls_as_an_acl_user(servers: Servers, tmp_path: Path) -> None:
    base = servers.base
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=shardsync-test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1"],
    ):  # fmt: skip
        subprocess.run([OPENSSL, *command], cwd=base, check=True, capture_output=True)
    (base / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    subprocess.run(
        [OPENSSL, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf"],
        cwd=base, check=True, capture_output=True,
    )  # fmt: skip
    port = free_port(6480)
    servers.start(
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt",
        "--tls-auth-clients", "no", "--user", "default", "off", "--user", "shardsync", "on", ">s3cret-acl", "~*",
        "&*", "+@all", name="tls",
    )  # fmt: skip
    # An ACL user of its own (the default user is off): every connection authenticates as it.
    url = f"rediss://shardsync:s3cret-acl@127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={base / 'ca.crt'}"
    poll(lambda: _answers(Redis.from_url(url)), 20, "the TLS Redis")
    with pytest.raises(Exception):  # noqa: B017, PT011 - plain text is refused: only TLS reaches it
        Redis(port=port, socket_timeout=2).ping()
    env = {**worker_env(), "SHARDSYNC_BROKER_URL": url}
    _run_job(env, tmp_path, lambda: None, servers)


def test_a_job_through_sentinel_with_a_failover_mid_job(servers: Servers, tmp_path: Path) -> None:
    primary, replica = free_port(6480), free_port(6490)
    sentinel_port = free_port(6500)
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    servers.start("--port", str(primary), *common, name="primary")
    servers.start("--port", str(replica), "--replicaof", "127.0.0.1", str(primary), *common, name="replica")
    conf = servers.base / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {servers.base}\n"
        f"sentinel monitor mymaster 127.0.0.1 {primary} 1\n"
        "sentinel down-after-milliseconds mymaster 2000\nsentinel failover-timeout mymaster 10000\n"
    )
    servers.start(str(conf), "--sentinel", name="sentinel")
    sentinel = Redis(port=sentinel_port, decode_responses=True)
    poll(lambda: _answers(sentinel) and sentinel.sentinel_slaves("mymaster"), 30, "the sentinel to see the replica")
    url = f"sentinel://127.0.0.1:{sentinel_port}/0"
    env = {**worker_env(), "SHARDSYNC_BROKER_URL": url, "SHARDSYNC_SENTINEL_MASTER": "mymaster"}

    def failover() -> None:
        poll(
            lambda: (
                Redis(port=primary).info("replication")["master_repl_offset"]
                == Redis(port=replica).info("replication")["slave_repl_offset"]
            ),
            10,
            "the replica to catch up",
        )  # before it is promoted: the failover then loses no acknowledged write
        sentinel.sentinel_failover("mymaster")
        poll(
            lambda: sentinel.sentinel_get_master_addr_by_name("mymaster")[1] == replica,
            30,
            "the replica to be promoted",
        )

    _run_job(env, tmp_path, failover, servers)
    assert Redis(port=replica).info("replication")["role"] == "master"
