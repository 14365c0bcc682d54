"""Runner settings, read from the environment (prefix ``SHARDSYNC_``) with pydantic-settings.

Producers, workers and beat read the same variables, so one environment describes one deployment.
"""

from __future__ import annotations

import difflib
import os
import warnings
from functools import lru_cache
from typing import Annotated, List, Literal, Optional

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core import keys
from core._gc import ENVIRONMENT as GC_PAUSE
from worker.errors import InvalidSetting
from worker.job.guard import parse_delete_limit


class Settings(BaseSettings):
    """Every setting of the runner; each is the environment variable ``SHARDSYNC_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SHARDSYNC_", extra="ignore", frozen=True)

    broker_url: str = "redis://127.0.0.1:6379/0"
    """Celery broker."""
    result_backend: Optional[str] = None
    """Celery result backend (job state and reports); the broker URL when not set."""
    store_url: Optional[str] = None
    """Redis holding the jobs' object stores, journals and locks; the broker URL when not set."""
    sentinel_master: str = "mymaster"
    """The primary's name in Redis Sentinel, for the URLs given as ``sentinel://host:26379;sentinel://...``
    (job state, broker, results and beat alike)."""
    namespace: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,64}$")
    """Keeps this deployment apart from others sharing its Redis databases: every key (jobs, locks, stores,
    slots, metrics, the watchdog's, beat's lock and schedule), the Celery queues and results (kombu's and
    Celery's ``global_keyprefix`` on a Redis broker) and the control and event channels live under
    ``shardsync~<namespace>``. Empty (the default): ``shardsync``. Every producer, worker, beat and console of
    one deployment sets the same one."""
    adapter_modules: Annotated[List[str], NoDecode] = []
    """Modules imported at start-up (comma-separated); importing them registers adapters."""
    schedule_file: Optional[str] = None
    """TOML (``*.toml``) or JSON (``*.json``) file of scheduled syncs for ``celery -A worker beat`` (see
    deploy/README.md)."""
    jobs_queue: str = "shardsync.jobs"
    """Queue of the short coordination tasks (start and finish of jobs)."""
    shards_queue: str = "shardsync.shards"
    """Queue of the long tasks (loads, diffs, shards)."""
    shard_size: Optional[int] = Field(None, ge=1)
    """Operations per shard of a job that does not say; unset: shards sized for the live workers' slots,
    about four per slot and wave (``core.planner.balanced_shard_size``)."""
    diff_range: int = Field(1000, ge=1)
    """Top-level elements of one side per task of a job's diff: what bounds a diff task's memory (each reads
    its range with the subtrees below it, from both sides)."""
    journal_batch: int = Field(1, ge=1)
    """Most operations a shard applies between two journal writes. 1 (the default): every operation is
    journaled, with its store writes, in one script call before the next hook runs, so after a crash only the
    operation in flight runs again (the crash contract). More trades that for fewer round trips: the
    unjournaled operations of the last batch (at most this many, or half a second's) run again, each once."""
    journal_confirm: bool = True
    """Whether a shard waits for Redis to acknowledge the last operation's journal write before its next hook
    (true, the default: a crash or a network partition re-runs only the operation in flight). False sends it
    and goes on (the reply read at the next write): about half the cost on an I/O-bound job, and a crashed
    process still loses nothing it sent, but a partition that outlives the claim re-runs two operations."""
    fence_interval: float = Field(0.0, ge=0)
    """Seconds a shard may trust its last read of the target lock before a hook. 0 (the default): the lock is
    read before every hook, so no hook ever runs after the lock is lost. More trades that for one round trip
    per interval instead of per hook: a hook may then run up to that long after another job took the lock
    (which must load and diff before it writes)."""
    lock_tracking: bool = True
    """Whether a shard's check of the target lock before each hook is answered by Redis's client-side
    tracking (one read, then Redis's invalidation messages; ``worker.state.tracking``) instead of a read per
    hook: as strict, without the round trip. Servers or proxies without ``CLIENT TRACKING`` fall back to the
    read by themselves; false forces the read."""
    claim_ttl: int = Field(30, ge=3)
    """Seconds a running step's claim lives without renewal; its heartbeat renews it every third of that. A
    claim that expires without a result means its worker is gone: the watchdog runs the step again."""
    watchdog_interval: float = Field(10.0, ge=0)
    """Seconds between two watchdog scans for steps whose worker is gone (0: no watchdog in this worker)."""
    job_deadline: int = Field(86400, ge=0)
    """Seconds after its submission a job fails (with a report) if it has not ended; 0: no deadline. A job's
    own ``deadline`` overrides it."""
    lock_ttl: int = Field(300, ge=5)
    """Seconds a job's lock on its target lives without renewal (running tasks renew it)."""
    store_ttl: int = Field(86400, ge=60)
    """Seconds a finished job's stores and report are kept."""
    pair_ttl: int = Field(7 * 86400, ge=60)
    """Seconds an incremental pair's kept stores and cursors live after its last job (then its next job is a
    full one); ``shardsync forget PAIR`` drops them at once."""
    pair_full_every: int = Field(10, ge=1)
    """An incremental pair runs a full reconcile (both sides loaded whole, everything compared) every this many
    jobs: it catches what the cursors miss (changes made to the target behind the pair's back)."""
    pair_full_age: int = Field(86400, ge=0)
    """Seconds after a pair's last full reconcile its next job is a full one again (0: only by count)."""
    result_expires: int = Field(86400, ge=60)
    """Seconds Celery keeps task results."""
    max_deliveries: int = Field(5, ge=1)
    """Times a step's worker may die under it (claims taken and never released) before its job is failed
    instead: a task that kills its worker (out of memory, say) must not loop for ever."""
    keep_stores: bool = False
    """Whether a job's two stores outlive it (for ``SHARDSYNC_STORE_TTL`` seconds) when the job does not say;
    by default they are removed at its end (its report, diff and journal are kept either way)."""
    delete_limit: str = "50%"
    """The delete guardrail: a job whose diff would delete more than this many of its target's objects (a
    count, ``"1000"``) or this share of them (``"50%"``) fails before any operation; ``"none"``: no limit. A
    job's ``delete_limit`` overrides it, and a job with ``allow_deletes`` is never stopped."""
    retry_attempts: int = Field(5, ge=1)
    """Calls in all of a hook whose remote says "try later" (``TransientError``, or an adapter's
    ``transient_errors``) before it is the hook's failure; an adapter's ``retry_budget`` or a job's ``retry``
    overrides it."""
    retry_seconds: float = Field(120.0, ge=0)
    """Most seconds one operation is tried again after its first transient failure (as retry_attempts)."""
    call_timeout: float = Field(300.0, ge=0)
    """Most seconds one call to a target's hooks (one batch call) may take, unless its adapter's or job's limits
    say otherwise: past it the call is interrupted where the pool can (prefork, solo, the embedded runner's
    main thread) and counts as a transient failure. 0: no limit."""
    load_timeout: float = Field(0.0, ge=0)
    """Most seconds one ``load()``, ``load_partition()`` or ``sync_complete()`` may take (interrupted as
    call_timeout; the job fails naming it). 0: no limit but the job's deadline."""
    redis_outage_budget: float = Field(3600.0, ge=0)
    """Seconds a step keeps being sent again (backing off up to a minute) while Redis or the broker does not
    answer, before its job is failed naming the outage (when Redis is back to record it)."""
    redis_socket_timeout: float = Field(20.0, gt=0)
    """Seconds a read or write on any Redis connection (job state, broker, results) may wait for an answer:
    a connection that went silent without closing (half-open) fails instead of blocking a thread for ever (a
    command is tried twice: under a minute in all). TCP keepalive probes the idle ones."""
    outage_budget: float = Field(600.0, ge=0)
    """Seconds a target may stay unavailable (every call failing, its circuit breaker open) before the job
    fails, naming the outage; until then its calls wait instead of hammering it."""
    redis_eviction: Literal["refuse", "warn"] = "refuse"
    """What a worker does at start when a Redis it uses may evict keys (``maxmemory-policy`` other than
    noeviction: every job key expires, so volatile-* policies can drop job state too): ``refuse`` to start,
    or ``warn`` and run (a Redis shared with a cache whose policy cannot change; jobs may then be lost)."""
    visibility_timeout: int = Field(3600, ge=60)
    """Seconds before the Redis broker redelivers an unacknowledged task: longer than the longest task."""
    history_days: float = Field(30.0, gt=0)
    """Days a finished job's report, diff and per-object log are kept for ``jobs``, ``log`` and the console,
    whatever ``store_ttl`` keeps of its stores (the job list forgets jobs older than this)."""
    history_max_mb: float = Field(64.0, gt=0)
    """Most MiB of diff and per-object log one job keeps for ``history_days``; a job that wrote more keeps its
    report and summary that long, and its diff and log only for ``store_ttl`` (the report says so)."""
    web_users_file: Optional[str] = None
    """File of the console's and HTTP API's users, one per line: ``name role token`` (role ``viewer`` or
    ``operator``; the token as ``sha256:<hex>`` of it, as ``shardsync web token`` prints, or as is). A secret,
    mounted read-only; never on the command line."""
    web_users: Optional[SecretStr] = None
    """The same lines in a variable (separated by newlines or ``;``), for platforms that inject secrets so."""
    web_secret_file: Optional[str] = None
    """File whose content signs the console's session cookies (the same on every replica); unset: a random key
    per process, so logins end when it restarts."""

    @field_validator("delete_limit")
    @classmethod
    def _delete_limit(cls, value: str) -> str:
        return str(parse_delete_limit(value))

    @field_validator("adapter_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def backend_url(self) -> str:
        """The result backend actually used."""
        return self.result_backend or self.broker_url

    @property
    def history_ttl(self) -> int:
        """Seconds a finished job's records are kept (``history_days``)."""
        return max(60, int(self.history_days * 86400))

    @property
    def redis_url(self) -> str:
        """The Redis URL of the job state and stores actually used."""
        return self.store_url or self.broker_url


PREFIX = "SHARDSYNC_"

SECRETS_DIR = "SHARDSYNC_SECRETS_DIR"
"""A directory of files named after settings (``shardsync_broker_url``...), each holding that setting's value:
mounted secrets (a Compose secret, a Kubernetes Secret volume) for the settings that hold credentials, such
as a Redis URL with its password, kept out of the environment and the command line. A variable wins over a
file."""

RESERVED = ("SHARDSYNC_TEST_", "SHARDSYNC_CI_")
"""Prefixes of variables that are not settings: the project's own tests and CI read them."""


class UnknownSettingWarning(UserWarning):
    """A ``SHARDSYNC_`` variable that no setting reads (a misspelling is otherwise silently ignored)."""


def read_settings() -> Settings:
    """The settings from the environment; a bad value is an ``InvalidSetting`` naming the variable and why.

    Every ``SHARDSYNC_`` variable that no setting reads is warned of, with the closest setting's name.
    """
    secrets = os.environ.get(SECRETS_DIR) or None
    if secrets is not None and not os.path.isdir(secrets):
        raise InvalidSetting(f"bad setting: {SECRETS_DIR}={secrets[:200]!r}: not a directory")
    try:
        settings = Settings(_secrets_dir=secrets)  # type: ignore[call-arg]
    except ValidationError as err:
        problems = []
        for error in err.errors():
            name = PREFIX + "_".join(str(part) for part in error["loc"]).upper()
            given = f"={os.environ[name][:60]!r}" if name in os.environ else ""
            problems.append(f"{name}{given}: {error['msg']}")
        raise InvalidSetting("bad setting: " + "; ".join(problems)) from None
    known = {PREFIX + name.upper() for name in Settings.model_fields} | {GC_PAUSE, SECRETS_DIR}  # and the engine's
    for name in sorted(os.environ):
        if name.startswith(PREFIX) and name not in known and not name.startswith(RESERVED):
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            message = f"{name} is not a setting and is ignored{hint}"
            warnings.warn_explicit(message, UnknownSettingWarning, filename="environment", lineno=0)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once from the environment (the key namespace applied at once).

    Raises:
        InvalidSetting: a variable holds a value its setting refuses (asked again at every call until fixed).
    """
    settings = read_settings()
    keys.configure(settings.namespace)
    return settings
