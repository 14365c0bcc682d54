"""Every Redis key prefix the project writes, in one place.

All keys live under ``shardsync:`` (``shardsync~<namespace>:`` for a deployment given a namespace, see
``configure``).  A store namespace (one adapter's data) is ``shardsync:{store_id}:`` and holds the keys built
below; nothing else in the project makes up key names.
"""

from __future__ import annotations

import re

DEFAULT_ROOT = "shardsync"

ROOT = DEFAULT_ROOT
"""First component of every key: ``shardsync``, or ``shardsync~<namespace>`` (``configure``)."""

NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{0,64}$")
"""What a namespace may hold: no ``:``, ``~`` or glob characters, so no key of one deployment can be read as
another's, nor matched by another's SCAN patterns."""


def namespace(store_id: str) -> str:
    """Prefix of every key of one store namespace (ends with a colon)."""
    return f"{ROOT}:{store_id}:"


def types_key(store_id: str) -> str:
    """SET of the model names present in the namespace."""
    return f"{ROOT}:{store_id}:types"


def meta_key(store_id: str) -> str:
    """HASH describing the namespace: created, last_used (unix seconds), ttl, format version."""
    return f"{ROOT}:{store_id}:meta"


def seq_key(store_id: str) -> str:
    """STRING counter giving each new object its insertion position."""
    return f"{ROOT}:{store_id}:seq"


def objects_key(store_id: str, modelname: str) -> str:
    """HASH ``unique_id -> msgpack record`` of one model type."""
    return f"{ROOT}:{store_id}:obj:{modelname}"


def order_key(store_id: str, modelname: str) -> str:
    """ZSET ``unique_id -> insertion position`` of one model type (stores keep insertion order)."""
    return f"{ROOT}:{store_id}:order:{modelname}"


META_PATTERN = f"{ROOT}:*:meta"
"""SCAN pattern matching the meta key of every namespace (used by the stale-namespace helper only)."""


# ----------------------------------------------------------------------------------------------------
# Distributed jobs.  "~" never appears in a store id, so these can never collide with a store namespace.
# ----------------------------------------------------------------------------------------------------


def job_key(job_id: str, part: str) -> str:
    """One piece of a job's state.

    Parts: ``info`` (HASH), ``spec``, ``diff`` (HASH root -> element record), ``plan``, ``journal`` (HASH
    operation -> outcome), ``progress`` (counter), ``shards`` (HASH shard -> result),
    ``waves:{n}`` (SET of finished shards), ``claim:{n}``, ``abort``, ``report``...
    """
    return f"{ROOT}:~job:{job_id}:{part}"


def job_pattern(job_id: str) -> str:
    """SCAN pattern of every key of one job's state."""
    return f"{ROOT}:~job:{job_id}:*"


def lock_key(target: str) -> str:
    """STRING holding the id of the job syncing into ``target`` (an adapter name and a digest of its kwargs)."""
    return f"{ROOT}:~lock:{target}"


RUNNING_JOBS = f"{ROOT}:~jobs:running"
"""SET of the ids of jobs that have started and not finished (the watchdog's list)."""

JOB_INDEX = f"{ROOT}:~jobs:index"
"""ZSET of every job id submitted through Redis, scored by submission time (``shardsync jobs``, trimmed to the
retention when read)."""

JOB_LINES = f"{ROOT}:~jobs:lines"
"""HASH ``job id -> msgpack line`` of the job list (source, target, schedule, submission; once ended, its state,
summary and times), so that a history of thousands of jobs lists in one read; trimmed with ``JOB_INDEX``."""

SLOTS = f"{ROOT}:~slots"
"""HASH ``worker hostname -> msgpack {slots, expires}``: the pool slots of the live workers that take shards,
renewed by each worker's main process (the planner sizes shards from their sum)."""

WATCHDOG = f"{ROOT}:~watchdog"
"""STRING held by the worker whose watchdog scans now (one scan per interval in a deployment)."""

METRICS = f"{ROOT}:~metrics"
"""HASH of the deployment's job counters, ``field -> number`` (``worker.hooks.metrics`` names the fields).

Fields are ``|``-separated: ``jobs_started``, ``jobs_ended|<status>``, ``operations|<action>|<status>``,
``operations_skipped``,
``job_seconds|<status>|sum``, ``job_seconds|<status>|count``, ``job_seconds|<status>|le|<bound>`` (jobs whose
duration fell at or below ``bound`` and above the bound before it), and the same for ``stage_seconds|<stage>``.
"""

METRICS_RUNNING = f"{ROOT}:~metrics:running"
"""HASH ``job id -> unix time its start step counted it`` of the jobs started and not ended (the running gauge)."""


def schedule_key(name: str) -> str:
    """STRING holding the job of one scheduled sync, published by beat as it starts (messages name it only)."""
    return f"{ROOT}:~schedule:{name}"


def schedule_run_key(name: str) -> str:
    """STRING holding the id of the job running for the schedule entry ``name`` (the entry's name in the file).

    Taken with SET NX by the tick that starts the job (so of two ticks processed at once, one starts a job),
    for a minute until the job is enqueued, then with an expiry past the job's deadline; deleted by that job's
    finish. A tick that finds it held by a job that has not ended is skipped.
    """
    return f"{ROOT}:~schedule-run:{name}"


SCHEDULE_SKIPS = f"{ROOT}:~schedule-skips"
"""HASH ``entry name -> count`` of the ticks skipped because the entry's previous run was still running."""


def coalesce_key(pair: str) -> str:
    """HASH of the job that requests to sync one pair join while it waits to start (``worker.state.coalesce``).

    Fields: ``job`` (its id), ``scope`` (msgpack: the union of the requests' scopes, nil for everything),
    ``open`` (``1`` until the job starts; a request that finds it ``0`` makes the next job), ``reserved``.
    """
    return f"{ROOT}:~coalesce:{pair}"


def lock_holder_key(target: str) -> str:
    """STRING naming the last job that took the lock on ``target`` (``~released`` once it let go).

    The fence: a job may take its own expired lock back only while no other job has taken it since.
    """
    return f"{ROOT}:~lock-holder:{target}"


def pair_key(name: str) -> str:
    """HASH of an incremental sync pair (``worker.state.pairs``): what it syncs, its state and its cursors.

    Fields (msgpack values): ``identity`` (source, target, kwargs, scope, flags), ``state`` (``warm`` once a
    job of the pair succeeded, ``loading`` while a full run refills its stores), ``cursors`` (per side),
    ``runs`` (jobs since the last full reconcile), ``full_at`` (server time of that one), ``job`` (the last to
    write it), ``running`` (the run started last: ``forget`` refuses while it has no report).
    """
    return f"{ROOT}:~pair:{name}"


def pair_store_id(name: str, side: str) -> str:
    """Store id of a sync pair's kept source or target namespace."""
    return f"pair-{name}-{side}"


def job_store_id(job_id: str, side: str) -> str:
    """Store id of a job's source or target namespace."""
    return f"job-{job_id}-{side}"


def slots_key(target: str) -> str:
    """ZSET ``call token -> expiry`` of the calls in flight to one target, over every worker (its limits)."""
    return f"{ROOT}:~slots:{target}"


def target_key(target: str) -> str:
    """HASH of one target's condition, shared by every worker: pause, adaptive limit, circuit breaker."""
    return f"{ROOT}:~target:{target}"


def rate_prefix() -> str:
    """Prefix of the keys of the targets' call-rate windows (kept by the ``limits`` library)."""
    return f"{ROOT}:~rate"


def configure(namespace: str = "") -> None:
    """Put every key of this process under ``namespace`` (empty: the default root, ``shardsync``).

    Deployments sharing one Redis database keep apart by it (``SHARDSYNC_NAMESPACE``, which the runner's
    settings apply): the root becomes ``shardsync~<namespace>``, which neither the default root's patterns
    (``shardsync:*``) nor another namespace's match. Called before any key is made; the module's constants
    are rebuilt from the new root.

    Raises:
        ValueError: a namespace with characters other than letters, digits, ``_``, ``.`` and ``-``, or longer
            than 64.
    """
    if not NAMESPACE_PATTERN.match(namespace):
        raise ValueError(
            f"namespace {namespace!r}: only letters, digits, '_', '.' and '-' (at most 64), so that its keys cannot "
            f"be mistaken for another deployment's"
        )
    global ROOT, META_PATTERN, RUNNING_JOBS, JOB_INDEX, JOB_LINES, SLOTS, WATCHDOG, METRICS, METRICS_RUNNING
    global SCHEDULE_SKIPS
    ROOT = f"{DEFAULT_ROOT}~{namespace}" if namespace else DEFAULT_ROOT
    META_PATTERN = f"{ROOT}:*:meta"
    RUNNING_JOBS = f"{ROOT}:~jobs:running"
    JOB_INDEX = f"{ROOT}:~jobs:index"
    JOB_LINES = f"{ROOT}:~jobs:lines"
    SLOTS = f"{ROOT}:~slots"
    WATCHDOG = f"{ROOT}:~watchdog"
    METRICS = f"{ROOT}:~metrics"
    METRICS_RUNNING = f"{ROOT}:~metrics:running"
    SCHEDULE_SKIPS = f"{ROOT}:~schedule-skips"


def current_namespace() -> str:
    """The deployment namespace this process's keys are under (empty: none)."""
    return ROOT[len(DEFAULT_ROOT) + 1 :] if ROOT != DEFAULT_ROOT else ""
