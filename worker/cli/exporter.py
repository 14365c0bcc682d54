"""The metrics exporter (``shardsync metrics``): the job metrics read from Redis at every scrape, for Prometheus.

It holds no state: a custom collector reads the deployment's metrics hash (``worker.hooks.metrics`` counts into
it) whenever Prometheus scrapes, so any number of exporters, restarted at will, show the same figures.
Celery's own task metrics are Flower's (``/metrics`` on Flower's port).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from core import keys
from worker.connection import connect, safe_url
from worker.hooks.metrics import (
    BUCKETS,
    JOB_STATUSES,
    PREFIX,
    SEP,
    TARGET_FIGURES,
    WHO,
    bound_name,
    field_name,
)
from worker.settings import get_settings

logger = structlog.get_logger("shardsync.metrics")

DEFAULT_PORT = 9808
DEFAULT_ADDR = "0.0.0.0"

# ----------------------------------------------------------------------------------------------------
# reading (the exporter, at scrape time)
# ----------------------------------------------------------------------------------------------------


def read_counters(client: Redis) -> Dict[str, float]:
    """The metrics hash: ``field -> value``."""
    return {name.decode(): float(value) for name, value in client.hgetall(keys.METRICS).items()}


def running_jobs(client: Redis) -> List[Tuple[str, float, int]]:
    """``(job id, when its start was counted, operations done so far)`` of each job started and not ended.

    A job whose report exists is not running (its finish will count its end); one whose records expired
    without an end (never expected: every job ends) is dropped from the running hash.
    """
    entries = {name.decode(): float(value) for name, value in client.hgetall(keys.METRICS_RUNNING).items()}
    if not entries:
        return []
    pipe = client.pipeline(transaction=False)
    for job_id in entries:
        pipe.exists(keys.job_key(job_id, "spec"))
        pipe.exists(keys.job_key(job_id, "report"))
        pipe.get(keys.job_key(job_id, "progress"))
    answers = pipe.execute()
    found: List[Tuple[str, float, int]] = []
    gone: List[str] = []
    for position, (job_id, started) in enumerate(entries.items()):
        has_spec, has_report, progress = answers[3 * position : 3 * position + 3]
        if not has_spec:
            gone.append(job_id)
        elif not has_report:
            found.append((job_id, started, int(progress or 0)))
    if gone:
        client.hdel(keys.METRICS_RUNNING, *gone)
    return found


def _histogram_family(
    name: str, doc: str, labels: Sequence[str], values: Dict[Tuple[str, ...], Dict[str, float]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for label_values, fields in sorted(values.items()):
        cumulated = 0.0
        buckets: List[Tuple[str, float]] = []
        for bound in BUCKETS:
            cumulated += fields.get(field_name("le", bound_name(bound)), 0.0)
            buckets.append((floatToGoString(bound), cumulated))
        buckets.append(("+Inf", fields.get("count", 0.0)))
        family.add_metric(list(label_values), buckets, sum_value=fields.get("sum", 0.0))
    return family


_NOBODY = ("",) * len(WHO)
"""The ``WHO`` labels of what was counted before they were (fields without them): no source, target, schedule."""


def families(counters: Mapping[str, float], running: Sequence[Tuple[str, float, int]], now: float) -> List[Metric]:
    """The metric families of one scrape, from the metrics hash and the running jobs."""
    ended: Dict[Tuple[str, ...], float] = {}
    operations: Dict[Tuple[str, ...], float] = {}
    job_seconds: Dict[Tuple[str, ...], Dict[str, float]] = {}
    stage_seconds: Dict[Tuple[str, ...], Dict[str, float]] = {}
    labelled = 1 + len(WHO)
    for field, value in counters.items():
        parts = field.split(SEP)
        kind, rest = parts[0], tuple(parts[1:])
        if kind == "jobs_ended" and len(rest) in (1, labelled):
            ended[(rest + _NOBODY)[:labelled]] = value
        elif kind == "operations" and len(rest) in (2, 1 + labelled):
            operations[(rest + _NOBODY)[: 1 + labelled]] = value
        elif kind == "job_seconds" and len(rest) in (2, 3, 1 + labelled, 2 + labelled):
            # status [, who...], then "count", "sum" or "le", bound
            tail = 2 if len(rest) in (3, 2 + labelled) else 1  # by length: a label may be called "le"
            who = rest[1:-tail] or _NOBODY
            job_seconds.setdefault((rest[0], *who), {})[SEP.join(rest[-tail:])] = value
        elif kind == "stage_seconds" and len(rest) >= 2:
            stage_seconds.setdefault((rest[0],), {})[SEP.join(rest[1:])] = value
    for status in JOB_STATUSES:  # every status shown from the start, at 0
        if not any(key[0] == status for key in ended):
            ended[(status, *_NOBODY)] = 0.0

    started = CounterMetricFamily(
        f"{PREFIX}_jobs_started",
        "Jobs that took their target's lock and began loading.",
        counters.get("jobs_started", 0),
    )
    ended_family = CounterMetricFamily(
        f"{PREFIX}_jobs_ended",
        "Jobs that ended, by final status (success, failed, dry-run), source, target and schedule entry.",
        labels=["status", *WHO],
    )
    for label_values, value in sorted(ended.items()):
        ended_family.add_metric(list(label_values), value)
    operations_family = CounterMetricFamily(
        f"{PREFIX}_operations",
        "Operations of ended jobs, by action and status (their reports' counts), source, target and schedule.",
        labels=["action", "status", *WHO],
    )
    for label_values, value in sorted(operations.items()):
        operations_family.add_metric(list(label_values), value)
    skipped = CounterMetricFamily(
        f"{PREFIX}_operations_skipped",
        "Planned operations of ended jobs that never ran (under a failed parent, or after their job stopped).",
        counters.get("operations_skipped", 0),
    )
    target = [
        CounterMetricFamily(
            f"{PREFIX}_target_{name}" + ("_seconds" if kind == "f" else ""),
            doc,
            counters.get(field_name("target", name), 0),
        )
        for (name, kind), doc in zip(
            TARGET_FIGURES,
            (
                "Hook calls of ended jobs made again after their target said 'try later' (429, 503, a timeout).",
                "Hook calls of ended jobs that waited for their target's limits (calls in flight, per second).",
                "Seconds hook calls of ended jobs waited for their target's limits.",
                "Seconds hook calls of ended jobs were held back by their target's condition (a Retry-After, "
                "the circuit breaker open).",
                "Hook calls of ended jobs that met 'try later' (a transient error, a call past its time limit).",
            ),
            strict=True,
        )
    ]
    ages = [max(0.0, now - since) for _, since, _ in running]
    return [
        started,
        ended_family,
        GaugeMetricFamily(f"{PREFIX}_jobs_running", "Jobs started and not ended yet.", len(running)),
        GaugeMetricFamily(
            f"{PREFIX}_jobs_running_operations_done",
            "Operations the running jobs have applied so far, summed.",
            sum(done for _, _, done in running),
        ),
        GaugeMetricFamily(
            f"{PREFIX}_jobs_running_longest_seconds",
            "Seconds since the longest-running job started (0 when none runs).",
            max(ages, default=0.0),
        ),
        operations_family,
        skipped,
        *target,
        _histogram_family(
            f"{PREFIX}_job_duration_seconds",
            "Seconds from a job's submission to its end, by final status, source, target and schedule entry.",
            ["status", *WHO],
            job_seconds,
        ),
        _histogram_family(
            f"{PREFIX}_stage_duration_seconds",
            "Seconds each stage of a job took (load-source, load-target, diff, plan, sync, finish).",
            ["stage"],
            stage_seconds,
        ),
    ]


class RedisCollector(Collector):
    """A prometheus_client collector that reads the deployment's job metrics from Redis at every scrape."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    def collect(self) -> Iterator[Metric]:
        """``shardsync_redis_up`` (1 or 0), then, when Redis answered, every job metric."""
        up = GaugeMetricFamily(f"{PREFIX}_redis_up", "1 if this scrape read the job metrics from Redis, else 0.")
        try:
            counters = read_counters(self.client)
            running = running_jobs(self.client)
        except RedisError as err:
            logger.warning("Job metrics not read from Redis", error=str(err))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families(counters, running, time.time())


# ----------------------------------------------------------------------------------------------------
# serving
# ----------------------------------------------------------------------------------------------------


def exporter_client(url: Optional[str] = None) -> Redis:
    """A Redis client for scrapes: short timeouts and one retry, so that a Redis down shows in time.

    ``shardsync_redis_up 0`` well within a scrape's timeout, rather than the scrape timing out.
    """
    return connect(
        url or get_settings().redis_url, socket_connect_timeout=3, socket_timeout=5, retry=Retry(NoBackoff(), 1)
    )


def serve(
    port: int = DEFAULT_PORT, addr: str = DEFAULT_ADDR, client: Optional[Redis] = None
) -> Tuple[WSGIServer, threading.Thread]:
    """Serve the job metrics over HTTP (every path; ``/metrics`` by convention) from a background thread.

    Args:
        port: TCP port.
        addr: Address to listen on.
        client: The job-state Redis (``exporter_client()`` when not given).

    Returns:
        The server (``shutdown()`` stops it) and its thread.

    Raises:
        OSError: if the address cannot be bound.
    """
    registry = CollectorRegistry()
    registry.register(RedisCollector(client if client is not None else exporter_client()))
    return start_http_server(port, addr=addr, registry=registry)


def run_exporter(port: int = DEFAULT_PORT, addr: str = DEFAULT_ADDR) -> int:
    """``shardsync metrics``: serve until SIGTERM or SIGINT, then return 0; 2 if the address cannot be bound."""
    try:
        server, thread = serve(port, addr)
    except OSError as err:
        print(f"shardsync metrics: cannot listen on {addr}:{port}: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    url = safe_url(get_settings().redis_url)
    print(f"shardsync metrics: serving http://{addr}:{port}/metrics from Redis at {url}", file=sys.stderr, flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    return 0
