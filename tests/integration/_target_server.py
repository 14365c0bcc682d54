"""A real HTTP API for the tests to sync into: a capacity, a rate limit, faults on demand, and counters.

Run as its own process (``python _target_server.py``; it prints ``PORT <n>`` once it listens) so that a test
sees what a remote sees: real sockets, real concurrency, calls from several worker processes at once. Built
on the standard library's threading HTTP server; JSON in and out.

Objects: ``GET /objects/<type>`` lists a type (``{id: attrs}``); ``PUT /objects/<type>/<id>`` writes one
(create or update), ``DELETE /objects/<type>/<id>`` removes one; ``POST /bulk/<type>`` takes a list of
``{"op": "put"|"delete", "id": ..., "attrs": {...}}`` and answers one ``{"status": ...}`` per item (an item
may be deferred with 503 on its own: ``item_error_rate``). ``GET /hang`` never answers (until the server
stops); with ``hang_writes`` N, the next N writes hang until ``POST /release`` (``{"status": 200}``: then
served, else answered 503, nothing written).

How it answers, in order, for every object call: during an outage, 503; over the rate limit (calls started
in the current second), 429 with ``Retry-After``; at random (``error_rate``), 503; then it waits for one of
``capacity`` places (at most ``queue_timeout`` seconds, else 503) and serves the call in ``service_time``.

``POST /config`` changes any of those (``{"capacity": 6, "outage_seconds": 20, ...}``); ``GET /stats`` reads
the counters: calls by status, writes per object (every item applied once?), the most calls in flight, the
most calls started in one second, and each 429's ``Retry-After`` with the first call that came after it (after
``grace`` seconds: calls already on their way as the 429 went back are not the runner's to stop);
``POST /reset`` empties objects and counters.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

DEFAULTS: Dict[str, Any] = {
    "service_time": 0.0,
    "capacity": 1000,
    "queue_timeout": 1.0,
    "rate": 0,
    "retry_after": 1,
    "error_rate": 0.0,
    "item_error_rate": 0.0,
    "outage_until": 0.0,
    "fault_reads": False,
    "grace": 0.05,
    "hang_writes": 0,
}


class Target:
    """The API's state: objects, behaviour and counters, shared by the server's threads."""

    def __init__(self, **config: Any) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.released = threading.Event()
        self.release_status = 503
        self.config = dict(DEFAULTS)
        self.configure(config)
        self.reset()

    def configure(self, changes: Dict[str, Any]) -> None:
        with self.lock:
            if "outage_seconds" in changes:
                changes = dict(changes)
                changes["outage_until"] = time.time() + float(changes.pop("outage_seconds"))
            unknown = set(changes) - set(DEFAULTS)
            if unknown:
                raise ValueError(f"unknown settings {sorted(unknown)}")
            self.config.update(changes)
            self.places = threading.BoundedSemaphore(int(self.config["capacity"]))

    def reset(self) -> None:
        with self.lock:
            self.objects: Dict[str, Dict[str, Any]] = defaultdict(dict)
            self.statuses: Counter = Counter()
            self.writes: Counter = Counter()
            self.in_flight = 0
            self.most_in_flight = 0
            self.started_per_second: Counter = Counter()
            self.retry_afters: List[Dict[str, float]] = []
            self.hanging = 0
            self.hung = 0
            self.released.clear()
            self.release_status = 503

    def admit(self, method: str) -> Tuple[Optional[int], Dict[str, str]]:
        """Whether a call may be served now: None, or the status (and headers) to answer it with at once.

        Reads (a sync's load) meet no fault unless ``fault_reads``: the tests aim their faults at the writes.
        """
        now = time.time()
        with self.lock:
            if method == "GET" and not self.config["fault_reads"]:
                return None, {}
            for pending in self.retry_afters:  # calls sent as the 429 travelled back are not counted (grace)
                if pending["first_after"] is None and now > pending["at"] + self.config["grace"]:
                    pending["first_after"] = now
            self.started_per_second[int(now)] += 1
            config = self.config
            if now < config["outage_until"]:
                return 503, {}
            if config["rate"] and self.started_per_second[int(now)] > config["rate"]:
                wait = float(config["retry_after"])
                self.retry_afters.append({"at": now, "retry_after": wait, "first_after": None})
                return 429, {"Retry-After": str(int(wait) if wait == int(wait) else wait)}
            if random.random() < config["error_rate"]:
                return 503, {}
        return None, {}

    def hang(self, method: str) -> Optional[int]:
        """Hold a write while ``hang_writes`` asks for it (a call that never returns), until ``release``.

        Returns None when the call goes on (never held, or released with 200: it is served as any call), else
        the status to answer it with (released with 503: nothing written).
        """
        with self.lock:
            if method == "GET" or self.config["hang_writes"] <= 0:
                return None
            self.config["hang_writes"] -= 1
            self.hanging += 1
            self.hung += 1
        while not (self.released.wait(0.2) or self.stopping.is_set()):
            pass
        with self.lock:
            self.hanging -= 1
            return None if self.release_status == 200 else self.release_status

    def release(self, status: int) -> None:
        """Let every held call go: served (200) or answered ``status`` at once."""
        self.release_status = status
        self.released.set()

    def serve(self, work: Any) -> Tuple[int, Any]:
        """Run ``work`` in one of the places (503 when none frees up in time), after the service time."""
        places = self.places
        if not places.acquire(timeout=float(self.config["queue_timeout"])):
            return 503, {"error": "over capacity"}
        try:
            with self.lock:
                self.in_flight += 1
                self.most_in_flight = max(self.most_in_flight, self.in_flight)
            time.sleep(float(self.config["service_time"]))
            with self.lock:
                return 200, work()
        finally:
            with self.lock:
                self.in_flight -= 1
            places.release()

    def stats(self) -> Dict[str, Any]:
        with self.lock:
            return {
                "statuses": {str(code): count for code, count in self.statuses.items()},
                "writes": dict(self.writes),
                "in_flight": self.in_flight,
                "hanging": self.hanging,
                "hung": self.hung,
                "most_in_flight": self.most_in_flight,
                "most_per_second": max(self.started_per_second.values(), default=0),
                "retry_afters": list(self.retry_afters),
                "objects": {kind: len(items) for kind, items in self.objects.items()},
                "config": dict(self.config),
            }


class Handler(BaseHTTPRequestHandler):
    """One call: routed by method and path, answered as JSON."""

    server_version = "target/1"
    protocol_version = "HTTP/1.1"
    target: Target

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Quiet: the counters say what happened."""

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null") if length else None

    def _answer(self, status: int, payload: Any, headers: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _objects(self, method: str, parts: List[str]) -> None:
        target = self.target
        body = self._body()  # read whatever the answer: the connection is kept for the client's next call
        status, headers = target.admit(method)
        if status is None:
            status = target.hang(method)
        if status is None:
            if parts[0] == "bulk" and len(parts) == 2:
                status, payload = target.serve(lambda: self._bulk(parts[1], body or []))
            elif len(parts) == 2 and method == "GET":
                status, payload = target.serve(lambda: dict(target.objects[parts[1]]))
            elif len(parts) == 3 and method in ("PUT", "DELETE"):
                status, payload = target.serve(lambda: self._write(method, parts[1], parts[2], body))
            else:
                status, payload = 404, {"error": "no such route"}
        else:
            payload = {"error": "try later"}
        with target.lock:
            target.statuses[status] += 1
        self._answer(status, payload, headers)

    def _write(self, method: str, kind: str, key: str, attrs: Any) -> Dict[str, Any]:
        self.target.writes[f"{kind}/{key}"] += 1
        if method == "PUT":
            self.target.objects[kind][key] = attrs or {}
        else:
            self.target.objects[kind].pop(key, None)
        return {"id": key}

    def _bulk(self, kind: str, items: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        answers = []
        for item in items:
            if random.random() < self.target.config["item_error_rate"]:
                answers.append({"status": 503})
                continue
            self._write("PUT" if item.get("op") == "put" else "DELETE", kind, str(item["id"]), item.get("attrs"))
            answers.append({"status": 200})
        return answers

    def _route(self, method: str) -> None:
        parts = [unquote(part) for part in urlsplit(self.path).path.split("/") if part]
        target = self.target
        if parts == ["stats"] and method == "GET":
            self._answer(200, target.stats())
        elif parts == ["config"] and method == "POST":
            try:
                target.configure(self._body() or {})
            except ValueError as err:
                self._answer(400, {"error": str(err)})
                return
            self._answer(200, target.stats()["config"])
        elif parts == ["release"] and method == "POST":
            target.release(int((self._body() or {}).get("status", 503)))
            self._answer(200, {})
        elif parts == ["reset"] and method == "POST":
            target.reset()
            self._answer(200, {})
        elif parts == ["hang"]:
            target.stopping.wait()
        elif parts and parts[0] in ("objects", "bulk"):
            self._objects(method, parts)
        else:
            self._answer(404, {"error": "no such route"})

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._route("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--config", default="{}", help="JSON of the settings to start with")
    args = parser.parse_args()
    Handler.target = Target(**json.loads(args.config))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        Handler.target.stopping.set()
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
