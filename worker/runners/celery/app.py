"""The Celery app (``celery -A worker worker|beat|flower``), configured from ``worker.settings``.

Messages and results are msgpack only (no pickle is accepted anywhere); tasks are acknowledged after they
ran and re-queued when a worker process dies, so a job's tasks are written to be safe to run twice.
Coordination (starting and finishing jobs) and the long work (loads, diffs, shards) have queues of their
own, so a backlog of shards never holds up the start or finish of a job.

The process signals are wired here too: a worker imports ``SHARDSYNC_ADAPTER_MODULES`` and the installed
adapters' entry points as it starts (one that does not import stops it at once), beat reads
``SHARDSYNC_SCHEDULE_FILE`` as it starts (importing ``worker`` reads no schedule file), and both route
structlog events through Celery's logging.
"""

from __future__ import annotations

import ssl
from typing import Any, Callable, Dict, Optional
from urllib.parse import parse_qs, urlsplit

import structlog
from celery import Celery, signals
from kombu import Exchange, Queue

from core import keys
from worker.adapters.registry import import_adapter_modules, registered_adapters
from worker.connection import (
    SENTINEL_SCHEME,
    SentinelUrl,
    keepalive_options,
    redis_client,
    redis_config_problems,
    safe_url,
)
from worker.errors import InvalidSetting, ShardsyncError
from worker.pipeline.step import STEPS
from worker.runners.celery.logs import log_through_stdlib
from worker.schedule.entries import SCHEDULED_TASK, load_schedule
from worker.settings import Settings, get_settings
from worker.state.base import pack

logger = structlog.get_logger("shardsync.worker")


def _router(settings: Settings) -> Callable[..., Optional[Dict[str, str]]]:
    """Celery's router of this app: a step's task to the queue its declaration names, read when it is sent.

    Read at each send, not copied into a table at start, so a step registered later is routed too.
    """
    queues = {"jobs": settings.jobs_queue, "shards": settings.shards_queue}

    def route(name: str, *_: Any, **__: Any) -> Optional[Dict[str, str]]:
        if name == SCHEDULED_TASK:
            return {"queue": queues["jobs"], "routing_key": queues["jobs"]}
        for step in STEPS.values():
            if step.task == name:
                queue = queues[step.queue]
                return {"queue": queue, "routing_key": queue}
        return None

    return route


def create_app(settings: Settings) -> Celery:
    """Build a Celery app for these settings (``worker.runners.celery.tasks`` attaches the tasks when imported)."""
    app = Celery("shardsync")
    jobs, shards = settings.jobs_queue, settings.shards_queue
    keys.configure(settings.namespace)
    # A namespace keeps this deployment's queues, results, control and event channels apart in a shared Redis
    # (kombu and Celery prefix every key and channel they use); none keeps the keys of earlier versions.
    namespaced = {"global_keyprefix": f"{keys.ROOT}:"} if settings.namespace else {}
    app.conf.update(
        broker_url=settings.broker_url,
        result_backend=settings.backend_url,
        task_serializer="msgpack",
        result_serializer="msgpack",
        accept_content=["msgpack"],
        result_accept_content=["msgpack"],
        event_serializer="json",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_track_started=True,
        result_expires=settings.result_expires,
        result_extended=True,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "socket_timeout": settings.redis_socket_timeout,
            "socket_connect_timeout": min(10.0, settings.redis_socket_timeout),
            "socket_keepalive": True,
            "socket_keepalive_options": keepalive_options(),
            **namespaced,
        },
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout, **namespaced},
        redis_socket_timeout=settings.redis_socket_timeout,
        redis_socket_connect_timeout=min(10.0, settings.redis_socket_timeout),
        redis_socket_keepalive=True,
        task_queues=(
            Queue(jobs, Exchange(jobs, type="direct"), routing_key=jobs),
            Queue(shards, Exchange(shards, type="direct"), routing_key=shards),
        ),
        task_default_queue=jobs,
        task_routes=(_router(settings),),
        worker_hijack_root_logger=False,
        # Beat's state in Redis (celery-redbeat: JSON entries, and a lock that keeps a second beat from
        # running), never in a shelve file, which is pickle.
        beat_scheduler="redbeat.RedBeatScheduler",
        redbeat_redis_url=settings.redis_url,
        redbeat_key_prefix=f"{keys.ROOT}:~beat:",
        beat_max_loop_interval=5,  # also sets redbeat's lock timeout (5x): a dead beat's successor waits 25 s
        timezone="UTC",
    )
    app.conf.update(redis_transport(settings, app.conf))
    return app


_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}


def tls_options(url: str) -> Dict[str, Any]:
    """The TLS options of a ``rediss://`` URL's query, as kombu, Celery's backend and redbeat take them.

    The certificate is verified unless the URL says ``ssl_cert_reqs=none``.
    """
    query = {name: values[-1] for name, values in parse_qs(urlsplit(url).query).items()}
    options: Dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS.get(query.get("ssl_cert_reqs", "required").lower())}
    if options["ssl_cert_reqs"] is None:
        raise InvalidSetting(f"{safe_url(url)}: ssl_cert_reqs must be required, optional or none")
    for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if query.get(name):
            options[name] = query[name]
    return options


def redis_transport(settings: Settings, conf: Any) -> Dict[str, Any]:
    """Celery's, kombu's and redbeat's settings for Sentinel and TLS URLs (none for plain ``redis://``).

    Every connection of a deployment then reaches the same Redis the same way: the broker and the results
    through kombu's and Celery's own Sentinel support (the primary's name, SHARDSYNC_SENTINEL_MASTER), beat
    through redbeat's, the job state through ``worker.connection.connect``.
    """
    timeouts = {"socket_timeout": settings.redis_socket_timeout, "socket_connect_timeout": 10.0}
    update: Dict[str, Any] = {}
    broker, backend = settings.broker_url, settings.backend_url
    if broker.startswith(SENTINEL_SCHEME):
        update["broker_transport_options"] = {
            **conf.broker_transport_options,
            "master_name": settings.sentinel_master,
            "sentinel_kwargs": timeouts,
        }
    elif broker.startswith("rediss://"):
        update["broker_use_ssl"] = tls_options(broker)
    if backend.startswith(SENTINEL_SCHEME):
        update["result_backend_transport_options"] = {
            **conf.result_backend_transport_options,
            "master_name": settings.sentinel_master,
            "sentinel_kwargs": timeouts,
        }
    elif backend.startswith("rediss://"):
        update["redis_backend_use_ssl"] = tls_options(backend)
    store = settings.redis_url
    if store.startswith(SENTINEL_SCHEME):
        parsed = SentinelUrl.parse(store)
        update["redbeat_redis_url"] = "redis-sentinel://" + store[len(SENTINEL_SCHEME) :]
        update["redbeat_redis_options"] = {
            "sentinels": parsed.sentinels,
            "service_name": settings.sentinel_master,
            "password": parsed.password,
            "username": parsed.username,
            "db": parsed.db,
            "socket_timeout": settings.redis_socket_timeout,
        }
    elif store.startswith("rediss://"):
        update["redbeat_redis_use_ssl"] = tls_options(store)
    return update


def _settings_at_import() -> Settings:
    """The settings, or their defaults while one is bad: importing ``worker`` never fails on a setting.

    ``shardsync --help`` still answers; every command, ``submit_sync``, the worker and beat ask
    ``get_settings()`` themselves and stop on the bad setting with ``InvalidSetting`` naming it.
    """
    try:
        return get_settings()
    except InvalidSetting:
        return Settings.model_construct()


app = create_app(_settings_at_import())


@signals.worker_init.connect
def _import_adapters_at_start(**_: Any) -> None:
    """Fill the adapter registry in the worker's main process, before its pool processes fork.

    Each pool process then inherits the registry. Left to the first job, every process would scan the
    installed distributions for entry points on its own: ~10 ms each, and 0.1-0.2 s before the first
    partition of a job starts when 16 cold processes do it at once on two cores.
    """
    try:
        get_settings()  # a bad setting stops the worker here, named, rather than in its first job
        registered_adapters()  # SHARDSYNC_ADAPTER_MODULES imported, entry points loaded
    except ShardsyncError as err:
        # Celery logs and swallows a receiver's exceptions: the worker would run on, failing every job that
        # names one of these adapters. SystemExit is not swallowed: the worker stops, saying why.
        raise SystemExit(f"celery worker: {err}") from None


@signals.worker_init.connect
def _check_redis_config(**_: Any) -> None:
    """Refuse to start on a Redis that may evict job state; warn on one that keeps nothing on disk.

    Each Redis the worker uses (broker, result backend, job state) is asked once, at start: a policy that
    evicts would break the crash contract silently, job after job, where a refusal says it once, at once.
    """
    settings = get_settings()
    seen = set()
    for what, url in (
        ("job-state", settings.redis_url),
        ("broker", settings.broker_url),
        ("results", settings.backend_url),
    ):
        if url in seen or not url.startswith(("redis://", "rediss://", "unix://", "sentinel://")):
            continue
        seen.add(url)
        refused, warned = redis_config_problems(url, what)
        for message in warned:
            logger.warning("Redis configuration", problem=message)
        if refused and settings.redis_eviction == "refuse":
            raise SystemExit("celery worker: " + "; ".join(refused))
        for message in refused:
            logger.error("Redis configuration", problem=message)


@signals.after_setup_logger.connect
def _structlog_through_celery_logging(loglevel: Any = None, **_: Any) -> None:
    log_through_stdlib(loglevel)


@signals.beat_init.connect
def _read_schedule_at_beat_start(sender: Any = None, **_: Any) -> None:
    """Beat's schedule, from the file; a bad file stops beat at start, naming the entry and the problem.

    Beat has built its scheduler (from an empty ``beat_schedule``) when this signal comes; the entries are
    set up again in it (RedBeat stores them in Redis), so the first tick sees them.
    """
    try:
        path = get_settings().schedule_file
    except InvalidSetting as err:
        raise SystemExit(f"celery beat: {err}") from None
    if not path:
        return
    try:
        import_adapter_modules(get_settings().adapter_modules)
        schedule = load_schedule(path)
    except ShardsyncError as err:
        # Celery logs and swallows a receiver's exceptions; a beat without its schedule must not run on.
        raise SystemExit(f"celery beat: {err}") from None
    # The jobs go to Redis, the messages name them only: adapter kwargs stay out of the broker and Flower.
    client = redis_client()
    for name, entry in schedule.items():
        client.set(keys.schedule_key(name), pack(entry["args"][0]))
        entry["args"] = (name,)
    app.conf.beat_schedule = schedule
    scheduler = sender.scheduler
    if hasattr(scheduler, "update_from_dict") and type(scheduler).__module__.startswith("redbeat"):
        scheduler.setup_schedule()  # stores the entries in Redis and drops those the file no longer has
    else:  # another scheduler chosen with -S: merged as Celery's own set-up merges beat_schedule
        scheduler.merge_inplace(schedule)
        scheduler.sync()
