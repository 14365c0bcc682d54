"""Job metrics for Prometheus: counted in Redis by the pipeline's steps, read at scrape time by an exporter.

Why in Redis: a job's steps run on many workers (its start on one, its finish on another), and a worker's
memory holds only the steps it ran and dies with it, so metrics kept in each process would show fractions of
jobs. The start and finish steps count instead into one Redis hash of the deployment (``core.keys.METRICS``),
through ``RedisJobState``, and each job once: the finish's increments and a marker in the job's info are
written by one Lua script, so a finish delivered again (after a crash) finds the marker and counts nothing.
The exporter (``shardsync metrics``) holds no state: a custom collector reads the hash whenever Prometheus
scrapes, so any number of exporters, restarted at will, show the same figures. Celery's own task metrics are
Flower's (``/metrics`` on Flower's port).
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple
from wsgiref.simple_server import WSGIServer

import msgpack
import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from core import keys
from worker.connection import safe_url
from worker.settings import get_settings

logger = structlog.get_logger("shardsync.metrics")

PREFIX = "shardsync"
"""First part of every metric name."""

DEFAULT_PORT = 9808
DEFAULT_ADDR = "0.0.0.0"

BUCKETS: Tuple[float, ...] = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800, 86400)
"""Upper bounds, in seconds, of the duration histograms' buckets: a stage takes a fraction of a second, a sync
into a slow API hours. Stored per bucket (not cumulated) under the bound's text, so a changed list leaves the
old fields unread and the counts and sums right."""

JOB_STATUSES = ("success", "failed", "dry-run")
"""The statuses a job ends with (``worker.job.report``); each is shown from the start, at 0."""

SEP = "|"
"""Separates the parts of a field of the metrics hash (label values never contain it: it is replaced)."""

COUNTED = "counted"
"""Field of a job's info set (to the time, msgpack) when its end was counted: the marker of idempotence."""

Increment = Tuple[str, str, str]
"""One change to the metrics hash: ``(field, "i" or "f", amount)`` (HINCRBY or HINCRBYFLOAT)."""

# KEYS: the metrics hash, the running hash, the job's info. ARGV: job id, the time now.
_COUNT_START = """
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'jobs_started', 1)
return 1
"""

# KEYS as above. ARGV: job id, the marker's value, its expiry if the info has none, the marker's field, then
# (field, kind, amount) triples. The job stops counting as running however often this runs; the marker, set
# in the same script as the increments, lets them through once.
_COUNT_END = """
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HSETNX', KEYS[3], ARGV[4], ARGV[2]) == 0 then return 0 end
if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], ARGV[3]) end
for i = 5, #ARGV, 3 do
  if ARGV[i + 1] == 'f' then
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 2])
  else
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 2])
  end
end
return 1
"""

# ----------------------------------------------------------------------------------------------------
# counting (the steps, through RedisJobState)
# ----------------------------------------------------------------------------------------------------


def _part(value: Any) -> str:
    return str(value).replace(SEP, "_")


def _field(*parts: Any) -> str:
    return SEP.join(_part(part) for part in parts)


def _bound(bound: float) -> str:
    return f"{bound:g}"


def _histogram(name: str, label: str, seconds: Any) -> List[Increment]:
    """The increments that observe one duration in a histogram of the hash (none for a value that is not one)."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return []
    if not math.isfinite(value):
        return []
    value = max(0.0, value)
    found = [(_field(name, label, "count"), "i", "1"), (_field(name, label, "sum"), "f", f"{value:.6f}")]
    for bound in BUCKETS:
        if value <= bound:
            found.append((_field(name, label, "le", _bound(bound)), "i", "1"))
            break
    return found


def end_increments(report: Mapping[str, Any]) -> List[Increment]:
    """What a job's end adds to the metrics, from its report.

    Its status; its operations by action and status (``report["counts"]``) and those planned that never ran
    (``report["skipped"]``); its duration from submission to
    the end (``seconds["total"]``) in the job histogram, by status; each other entry of ``seconds`` (the
    stages: ``load-source``, ``load-target``, ``diff``, ``plan``, ``sync``, ``finish``) in the stage histogram.
    """
    status = str(report.get("status") or "failed")
    found: List[Increment] = [(_field("jobs_ended", status), "i", "1")]
    counts = report.get("counts") or {}
    for action, per_status in sorted(counts.items()):
        for op_status, count in sorted((per_status or {}).items()):
            if int(count) > 0:
                found.append((_field("operations", action, op_status), "i", str(int(count))))
    skipped = int(report.get("skipped") or 0)
    if skipped > 0:
        found.append(("operations_skipped", "i", str(skipped)))
    for stage, seconds in sorted((report.get("seconds") or {}).items()):
        if stage == "total":
            found += _histogram("job_seconds", status, seconds)
        else:
            found += _histogram("stage_seconds", stage, seconds)
    return found


def count_job_started(client: Redis, job_id: str) -> bool:
    """Count a job as started and running; False if it was counted already, or has ended (then nothing changes)."""
    info = keys.job_key(job_id, "info")
    started = client.eval(_COUNT_START, 3, keys.METRICS, keys.METRICS_RUNNING, info, job_id, repr(time.time()), COUNTED)
    return bool(started)


def count_job_ended(client: Redis, job_id: str, report: Mapping[str, Any], ttl: int) -> bool:
    """Count a job's end from its report, once: False if it was counted before (then only its running entry goes).

    Args:
        client: The job-state Redis.
        job_id: The job.
        report: Its report (``worker.job.report``).
        ttl: Expiry given to the job's info if it has none (the marker lives in it, as long as the report).
    """
    args: List[Any] = [job_id, msgpack.packb(time.time()), int(ttl), COUNTED]
    for increment in end_increments(report):
        args.extend(increment)
    info = keys.job_key(job_id, "info")
    return bool(client.eval(_COUNT_END, 3, keys.METRICS, keys.METRICS_RUNNING, info, *args))


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
            cumulated += fields.get(_field("le", _bound(bound)), 0.0)
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
    return Redis.from_url(
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
