"""The shard's fence answered by Redis's client-side tracking (``worker.state.tracking.LockWatch``).

Against a throwaway ``redis-server`` of this module (its own port from 6421), so that its command counts are
this test's alone and it can be killed and restarted: a held lock is answered without a read per check; any
change of the key (another job taking it, a delete, a renewal) is seen, by polling with a deadline, since
the invalidation travels as a GET's reply would; and a server restart makes the watch fall back to a read per
check rather than trust what it knew.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Iterator

import pytest
from _workers import free_port, poll
from redis import Redis
from redis.exceptions import RedisError

from tests.core.store._proxy import Proxy
from worker.connection import connection_options
from worker.state.tracking import TRUST_FOR, LockWatch

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
KEY = "shardsync:lock:test-target"


class Server:
    """A redis-server without persistence on its own port, killed by process group."""

    def __init__(self) -> None:
        self.port = free_port(6421)
        self.process: subprocess.Popen | None = None
        self.client = Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        poll(self._answers, timeout=30, what="redis-server to answer PING")

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except RedisError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def gets(self) -> int:
        """GET commands the server ran so far."""
        stats = self.client.info("commandstats").get("cmdstat_get", {})
        return int(stats.get("calls", 0))


@pytest.fixture()
def server() -> Iterator[Server]:
    running = Server()
    running.start()
    try:
        yield running
    finally:
        running.kill()


def test_a_held_lock_is_answered_without_a_read_per_check(server: Server) -> None:
    server.client.set(KEY, "job-1", px=60_000)
    with LockWatch(Redis(port=server.port), KEY, b"job-1") as watch:
        assert watch.tracking
        before = server.gets()
        assert all(watch.holds() for _ in range(200))
        assert server.gets() - before == 1, "a held lock was read more than once"


def test_another_job_taking_the_lock_is_seen_at_a_check(server: Server) -> None:
    server.client.set(KEY, "job-1", px=60_000)
    with LockWatch(Redis(port=server.port), KEY, b"job-1") as watch:
        assert watch.holds()
        server.client.delete(KEY)  # it expired...
        server.client.set(KEY, "intruder", nx=True, px=60_000)  # ...and another job took it
        poll(lambda: not watch.holds(), timeout=10, what="the watch to see the lock taken")
        reads = server.gets()
        assert not watch.holds() and not watch.holds()
        assert server.gets() - reads == 2, "a lock another job holds must be read at every check"
        server.client.set(KEY, "job-1", px=60_000)  # taken back (the renewal script's case)
        assert watch.holds()
        assert watch.tracking


def test_a_renewal_is_read_again_and_still_held(server: Server) -> None:
    server.client.set(KEY, "job-1", px=60_000)
    with LockWatch(Redis(port=server.port), KEY, b"job-1") as watch:
        assert watch.holds()
        reads = server.gets()
        server.client.pexpire(KEY, 90_000)  # the heartbeat's renewal touches the key
        poll(lambda: watch.holds() and server.gets() > reads, timeout=10, what="the renewed lock to be read again")
        assert watch.holds() and watch.tracking


def test_a_lock_that_expires_is_seen_gone(server: Server) -> None:
    server.client.set(KEY, "job-1", px=300)
    with LockWatch(Redis(port=server.port), KEY, b"job-1") as watch:
        assert watch.holds()
        poll(lambda: not watch.holds(), timeout=10, what="the expired lock to be seen gone")


def test_a_restarted_server_makes_the_watch_read_at_every_check(server: Server) -> None:
    server.client.set(KEY, "job-1", px=60_000)
    with LockWatch(Redis(port=server.port, socket_timeout=5), KEY, b"job-1") as watch:
        assert watch.holds()
        server.kill()
        with pytest.raises(RedisError):
            watch.holds()  # Redis is gone: the check fails as a GET would, it never answers from memory
        assert not watch.tracking
        server.start()  # empty: nothing persisted
        assert not watch.holds()
        server.client.set(KEY, "job-1", px=60_000)
        before = server.gets()
        assert watch.holds() and watch.holds()
        assert server.gets() - before == 2, "after the fall back, every check reads the lock"


def test_tracking_can_be_turned_off(server: Server) -> None:
    server.client.set(KEY, "job-1", px=60_000)
    with LockWatch(Redis(port=server.port), KEY, b"job-1", tracking=False) as watch:
        before = server.gets()
        assert watch.holds() and watch.holds() and watch.holds()
        assert not watch.tracking
        assert server.gets() - before == 3


def test_a_watch_that_cannot_set_up_falls_back_to_reads(server: Server) -> None:
    server.client.set(KEY, "job-1", px=60_000)
    client = Redis(port=server.port)
    server.client.config_set("maxclients", len(server.client.client_list()) + 1)  # room for one more only
    try:
        with LockWatch(client, KEY, b"job-1") as watch:
            assert not watch.tracking
            assert watch.holds()
    finally:
        server.client.config_set("maxclients", 10000)


def test_a_silent_connection_is_never_taken_for_a_held_lock(server: Server) -> None:
    """The path to Redis goes silent without closing (a userspace proxy stops forwarding): within TRUST_FOR plus
    the socket timeout the watch stops answering "held" (it raises, as a GET would), and no check blocks long."""
    proxy = Proxy("127.0.0.1", server.port)
    client = Redis(host="127.0.0.1", port=proxy.port, **connection_options(1.0))  # the project's, 1 s timeout
    server.client.set(KEY, b"job-1")
    try:
        with LockWatch(client, KEY, b"job-1") as watch:
            assert watch.holds() and watch.tracking
            proxy.freeze()
            server.client.set(KEY, b"job-2")  # another job took it: its invalidation is held in the silent path
            deadline = time.monotonic() + 30
            while True:
                started = time.monotonic()
                try:
                    held = watch.holds()
                except RedisError:
                    held = None  # what a GET on a dead connection does
                assert time.monotonic() - started < 5, "a check blocked on the silent connection"
                if held is not True:
                    break
                assert time.monotonic() < deadline, "the watch kept answering 'held' over a silent connection"
                time.sleep(0.05)
            assert time.monotonic() - deadline + 30 < TRUST_FOR + 4
    finally:
        proxy.close()
        client.close()
