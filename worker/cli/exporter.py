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


def _histogram_family(name: str, doc: str, label: str, values: Dict[str, Dict[str, float]]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for value, fields in sorted(values.items()):
        cumulated = 0.0
        buckets: List[Tuple[str, float]] = []
        for bound in BUCKETS:
            cumulated += fields.get(field_name("le", bound_name(bound)), 0.0)
            buckets.append((floatToGoString(bound), cumulated))
        buckets.append(("+Inf", fields.get("count", 0.0)))
        family.add_metric([value], buckets, sum_value=fields.get("sum", 0.0))
    return family


def families(counters: Mapping[str, float], running: Sequence[Tuple[str, float, int]], now: float) -> List[Metric]:
    """The metric families of one scrape, from the metrics hash and the running jobs."""
    ended = {status: 0.0 for status in JOB_STATUSES}
    operations: Dict[Tuple[str, str], float] = {}
    histograms: Dict[str, Dict[str, Dict[str, float]]] = {"job_seconds": {}, "stage_seconds": {}}
    for field, value in counters.items():
        parts = field.split(SEP)
        if parts[0] == "jobs_ended" and len(parts) == 2:
            ended[parts[1]] = value
        elif parts[0] == "operations" and len(parts) == 3:
            operations[(parts[1], parts[2])] = value
        elif parts[0] in histograms and len(parts) >= 3:
            histograms[parts[0]].setdefault(parts[1], {})[SEP.join(parts[2:])] = value

    started = CounterMetricFamily(
        f"{PREFIX}_jobs_started",
        "Jobs that took their target's lock and began loading.",
        counters.get("jobs_started", 0),
    )
    ended_family = CounterMetricFamily(
        f"{PREFIX}_jobs_ended", "Jobs that ended, by final status (success, failed, dry-run).", labels=["status"]
    )
    for status, value in sorted(ended.items()):
        ended_family.add_metric([status], value)
    operations_family = CounterMetricFamily(
        f"{PREFIX}_operations",
        "Operations of ended jobs, by action and status (their reports' counts).",
        labels=["action", "status"],
    )
    for (action, status), value in sorted(operations.items()):
        operations_family.add_metric([action, status], value)
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
            "Seconds from a job's submission to its end, by final status.",
            "status",
            histograms["job_seconds"],
        ),
        _histogram_family(
            f"{PREFIX}_stage_duration_seconds",
            "Seconds each stage of a job took (load-source, load-target, diff, plan, sync, finish).",
            "stage",
            histograms["stage_seconds"],
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
