"""The job state in Redis: every worker of a deployment reads and writes the same keys.

Every key name comes from ``core.keys``; every value is msgpack or a plain Redis number; each write is safe
to repeat (tasks may run twice).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from redis import Redis

from core import keys
from core.store.redis import RedisStore, server_time
from worker.connection import redis_client
from worker.settings import get_settings
from worker.state.base import Entry, JobState, pack, unpack
from worker.state.claims import RedisClaims
from worker.state.parts import RedisParts

_pack = pack

_LONG_LIVED = ("spec", "info", "times", "workers", "loads", "summary", "diff", "journal", "fingerprints")
"""Parts of a job's state kept with its report; renewed while the job runs, so a long job outlives none."""


class RedisJobState(RedisClaims, RedisParts, JobState):
    """One job's state as keys of the job-state Redis, shared by every worker of the deployment."""

    def __init__(self, job_id: str, client: Optional[Redis] = None) -> None:
        super().__init__(job_id)
        self.client = client if client is not None else redis_client()

    # -- spec and info --------------------------------------------------------------------------------

    def create(self, spec: Dict[str, Any], ttl: int, info: Optional[Dict[str, Any]] = None) -> bool:
        """Record a new job (with the ``info`` fields given); False if a job with this id exists already."""
        created = self.client.set(self.key("spec"), _pack(spec), nx=True, ex=ttl)
        if created:
            now = self.now()
            fields = {name: _pack(value) for name, value in (info or {}).items()}
            fields.update(submitted=_pack(now), status=_pack("queued"))
            self.client.hset(self.key("info"), mapping=fields)  # type: ignore[arg-type]
            self.client.expire(self.key("info"), ttl)
            self.client.zadd(keys.JOB_INDEX, {self.job_id: now})
        return bool(created)

    def now(self) -> float:
        """Redis's clock (``TIME``)."""
        return server_time(self.client)

    def forget(self) -> None:
        """Undo ``create`` for a job that could not be enqueued, so that its id may be used again."""
        self.client.delete(self.key("spec"), self.key("info"))
        self.client.zrem(keys.JOB_INDEX, self.job_id)

    def spec_data(self) -> Optional[Dict[str, Any]]:
        """The spec as submitted, or None if this job is unknown (or expired)."""
        return unpack(self.client.get(self.key("spec")))

    def set_info(self, **fields: Any) -> None:
        """Set fields of the job's info hash (status, stage...)."""
        self.client.hset(self.key("info"), mapping={name: _pack(value) for name, value in fields.items()})

    def info(self) -> Dict[str, Any]:
        """The job's info hash, decoded."""
        raw = self.client.hgetall(self.key("info"))
        result: Dict[str, Any] = {}
        for name, value in raw.items():
            result[name.decode()] = unpack(value)
        return result

    def mark_sync_started(self, when: float) -> None:
        """Record when the first shard began (kept if set already)."""
        self.client.hsetnx(self.key("info"), "sync_started", _pack(when))

    def mark_sync_ended(self, when: float) -> None:
        """Record when a shard ended (the last one's time stays)."""
        self.client.hset(self.key("info"), "sync_ended", _pack(when))

    def marked(self, marker: str) -> bool:
        """Whether ``mark(marker)`` was called for this job."""
        return bool(self.client.hexists(self.key("once"), marker))

    def mark(self, marker: str) -> None:
        """Record that something was done (after the enqueue it guards)."""
        self.client.hsetnx(self.key("once"), marker, time.time())

    def record_time(self, stage: str, seconds: float) -> None:
        """Record how long a stage took."""
        self.client.hset(self.key("times"), stage, repr(float(seconds)))

    def times(self) -> Dict[str, float]:
        """Seconds per stage."""
        return {name.decode(): float(value) for name, value in self.client.hgetall(self.key("times")).items()}

    def record_worker(self, role: str, hostname: str) -> None:
        """Remember which worker ran a step (for the report)."""
        self.client.hset(self.key("workers"), role, hostname)

    def workers(self) -> Dict[str, str]:
        """Worker hostname per step."""
        return {name.decode(): value.decode() for name, value in self.client.hgetall(self.key("workers")).items()}

    # -- abort ----------------------------------------------------------------------------------------

    def abort(self, message: str) -> None:
        """Stop the job: the first error wins, shards not started yet will not start."""
        self.client.set(self.key("abort"), message.encode(), nx=True)

    def aborted(self) -> Optional[str]:
        """The error that stopped the job, if any."""
        raw = self.client.get(self.key("abort"))
        return None if raw is None else raw.decode(errors="replace")

    def _keep_records(self) -> None:
        ttl = get_settings().store_ttl
        pipe = self.client.pipeline(transaction=False)
        for part in _LONG_LIVED:
            pipe.expire(self.key(part), ttl)
        pipe.execute()

    # -- stores and loads ----------------------------------------------------------------------------------------

    def open_store(self, side: str, lazy: bool = False, partition: Optional[int] = None) -> RedisStore:
        """The job's store of one side (created on first use, expiring ``store_ttl`` after its last write).

        ``partition``: a store object that writes that partition of a partitioned load (``partition_store``).
        """
        settings = get_settings()
        return RedisStore(
            url=settings.redis_url,
            store_id=keys.job_store_id(self.job_id, side),
            ttl=settings.store_ttl,
            lazy_reads=lazy,
            partition=partition,
        )

    def fresh_store(self, side: str) -> RedisStore:
        """The side's store, emptied: a load run again starts over."""
        store = self.open_store(side)
        store.clear()
        return store

    def store_ids(self) -> Dict[str, str]:
        """The store ids of both sides (``RedisStore(store_id=...)`` reads them until they expire)."""
        return {side: keys.job_store_id(self.job_id, side) for side in ("source", "target")}

    def drop_stores(self) -> None:
        """Remove both side stores, each by its exact key names (``RedisStore.clear``)."""
        for side in ("source", "target"):
            self.open_store(side).clear()

    def record_load(self, side: str, result: Dict[str, Any]) -> int:
        """Record a finished load; returns how many sides are loaded."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key("loads"), side, _pack(result))
        pipe.hlen(self.key("loads"))
        return int(pipe.execute()[1])

    def loads(self) -> Dict[str, Dict[str, Any]]:
        """Load results per side."""
        return {name.decode(): unpack(value) for name, value in self.client.hgetall(self.key("loads")).items()}

    # -- diff and plan --------------------------------------------------------------------------------

    def save_diff(self, records: Sequence[Any], summary: Dict[str, int], batch: int = 1000) -> None:
        """Keep the diff: one packed element record per top-level element, by position."""
        key = self.key("diff")
        self.client.delete(key)
        for start in range(0, len(records), batch):
            chunk = {str(start + offset): _pack(record) for offset, record in enumerate(records[start : start + batch])}
            self.client.hset(key, mapping=chunk)  # type: ignore[arg-type]
        self.client.set(self.key("summary"), _pack(summary))

    def diff_records(self, roots: Sequence[int]) -> List[Any]:
        """The element records of some top-level elements."""
        if not roots:
            return []
        raw = self.client.hmget(self.key("diff"), [str(root) for root in roots])
        missing = [root for root, value in zip(roots, raw, strict=True) if value is None]
        if missing:
            raise LookupError(f"job {self.job_id}: the stored diff has no element for top-level positions {missing}")
        return [unpack(value) for value in raw]

    def diff_size(self) -> int:
        """Number of top-level elements in the stored diff."""
        return int(self.client.hlen(self.key("diff")))

    def summary(self) -> Optional[Dict[str, int]]:
        """The diff's summary."""
        return unpack(self.client.get(self.key("summary")))

    def save_fingerprints(self, fingerprints: Dict[str, str]) -> None:
        """Keep a plan's fingerprints of the target subtrees it touches (with the report, until it expires)."""
        if fingerprints:
            self.client.hset(self.key("fingerprints"), mapping=fingerprints)
            self.client.expire(self.key("fingerprints"), get_settings().store_ttl)

    def fingerprints(self) -> Dict[str, str]:
        """The kept fingerprints."""
        raw = self.client.hgetall(self.key("fingerprints"))
        return {name.decode(): value.decode() for name, value in raw.items()}

    def claim_apply(self, applying_job: str) -> bool:
        """Mark this plan as applied by ``applying_job``; False if it was applied before."""
        return bool(self.client.hsetnx(self.key("info"), "applied_by", _pack(applying_job)))

    def release_apply(self) -> None:
        """Undo ``claim_apply`` for an apply that could not be submitted."""
        self.client.hdel(self.key("info"), "applied_by")

    def other(self, job_id: str) -> RedisJobState:
        """Another job's state on the same Redis."""
        return RedisJobState(job_id, self.client)

    def save_plan(self, plan: Dict[str, Any]) -> None:
        """Keep the plan: each shard in a hash field of its own, then the head (saved means planned).

        A shard reads its own entry and the head, never every shard's roots (``shard_plan``, ``plan_head``).
        """
        head = {"waves": plan["waves"], "operations": plan["operations"], "shards": len(plan["shards"])}
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key("plan-shards"))
        for start in range(0, len(plan["shards"]), 1000):
            part = plan["shards"][start : start + 1000]
            pipe.hset(self.key("plan-shards"), mapping={str(shard["index"]): _pack(shard) for shard in part})
        pipe.set(self.key("plan"), _pack(head))
        pipe.execute()

    def plan_head(self) -> Dict[str, Any]:
        """The plan's waves, operations and number of shards."""
        found = unpack(self.client.get(self.key("plan")))
        if found is None:
            raise LookupError(f"job {self.job_id} has no plan")
        return found

    def shard_plan(self, index: int) -> Dict[str, Any]:
        """One shard of the plan."""
        head = self.plan_head()
        found = unpack(self.client.hget(self.key("plan-shards"), str(index))) if 0 <= index < head["shards"] else None
        if found is None:
            raise LookupError(f"job {self.job_id} has no shard {index}")
        return found

    def plan(self) -> Dict[str, Any]:
        """The whole plan saved by the diff step (the head with every shard)."""
        head = self.plan_head()
        raw = self.client.hgetall(self.key("plan-shards"))
        shards = sorted((unpack(value) for value in raw.values()), key=lambda shard: shard["index"])
        return {"waves": head["waves"], "operations": head["operations"], "shards": shards}

    # -- shards, journal, progress --------------------------------------------------------------------

    def journal_entries(self, ops: Sequence[str]) -> Dict[str, Entry]:
        """Journal entries already recorded for these operations."""
        if not ops:
            return {}
        raw = self.client.hmget(self.key("journal"), list(ops))
        return {op: unpack(value) for op, value in zip(ops, raw, strict=True) if value is not None}

    def write_journal(self, entries: Dict[str, Entry], counted: int) -> int:
        """Record finished operations and count them in the progress counter; returns the new count."""
        pipe = self.client.pipeline(transaction=True)
        self._journal_commands(pipe, entries, counted)
        return int(pipe.execute()[-1])

    def _journal_commands(self, pipe: Any, entries: Dict[str, Entry], counted: int) -> None:
        """Queue ``write_journal``'s commands on a pipeline (the last one's result is the new count)."""
        if entries:
            pipe.hset(self.key("journal"), mapping={op: _pack(entry) for op, entry in entries.items()})
        pipe.incrby(self.key("progress"), counted)

    def checkpoint(self, store: Any, entries: Dict[str, Entry], counted: int) -> int:
        """Write a store's buffered changes and the journal entries behind them, in one transaction.

        A RedisStore takes the journal commands into its own MULTI/EXEC (the job's stores live on the
        job-state Redis); any other store is flushed first, so its writes land before the journal names them.
        """
        flush_with = getattr(store, "flush_with", None)
        if flush_with is not None:
            results = flush_with(lambda pipe: self._journal_commands(pipe, entries, counted))
            return int(results[-1])
        flush = getattr(store, "flush", None)
        if flush is not None:
            flush()
        return self.write_journal(entries, counted)

    def journal(self) -> Dict[str, Entry]:
        """Every journal entry of the job."""
        return {name.decode(): unpack(value) for name, value in self.client.hgetall(self.key("journal")).items()}

    def iter_journal(self) -> Iterator[Tuple[str, Entry]]:
        """The journal read in chunks (HSCAN): the finish of a million operations holds one chunk at a time.

        HSCAN may return an entry twice (a hash resized during the scan): each is yielded once.
        """
        seen = set()
        for name, value in self.client.hscan_iter(self.key("journal"), count=2000):
            if name not in seen:
                seen.add(name)
                yield name.decode(), unpack(value)

    def progress_count(self) -> int:
        """Operations finished so far."""
        return int(self.client.get(self.key("progress")) or 0)

    def add_target_figures(self, deltas: Dict[str, float]) -> Dict[str, float]:
        """Add a shard's new counts to the job's target figures (one round trip); returns them."""
        pipe = self.client.pipeline(transaction=True)
        for name, amount in deltas.items():
            pipe.hincrbyfloat(self.key("target"), name, amount)
        pipe.expire(self.key("target"), get_settings().store_ttl)
        pipe.hgetall(self.key("target"))
        raw = pipe.execute()[-1]
        return {name.decode(): float(value) for name, value in raw.items()}

    def shard_result(self, index: int) -> Optional[Dict[str, Any]]:
        """The recorded result of a shard, if it finished."""
        return unpack(self.client.hget(self.key("shards"), str(index)))

    def record_shard(self, index: int, wave: int, result: Dict[str, Any]) -> int:
        """Record a shard's result; returns how many shards of its wave have finished."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key("shards"), str(index), _pack(result))
        pipe.sadd(self.key(f"wave:{wave}"), index)
        pipe.scard(self.key(f"wave:{wave}"))
        return int(pipe.execute()[-1])

    def finished_in_wave(self, wave: int) -> int:
        """How many shards of a wave have recorded their result."""
        return int(self.client.scard(self.key(f"wave:{wave}")))

    def shards_finished(self) -> int:
        """How many shards have recorded a result."""
        return int(self.client.hlen(self.key("shards")))

    def shard_results(self) -> Dict[int, Dict[str, Any]]:
        """Every recorded shard result by index."""
        return {int(name): unpack(value) for name, value in self.client.hgetall(self.key("shards")).items()}

    # -- report and clean-up --------------------------------------------------------------------------

    def save_report(self, report: Dict[str, Any], ttl: int) -> bool:
        """Keep the job's report (also the job's Celery result) for ``ttl`` seconds, unless one is kept already.

        The first report is the job's end: a finish and the watchdog's end of a job with a hung step may both
        build one, and the late one must not replace what was published.
        """
        if not self.client.set(self.key("report"), _pack(report), ex=ttl, nx=True):
            return False
        for part in _LONG_LIVED:
            self.client.expire(self.key(part), ttl)
        return True

    def report(self) -> Optional[Dict[str, Any]]:
        """The job's report, once it has finished."""
        return unpack(self.client.get(self.key("report")))

    def drop_scratch(self) -> None:
        """Delete what only the running job needed: plan, progress, claims, wave sets.

        The diff and the journal stay with the job's report (``JobHandle.diff()``, ``JobHandle.log()``, the
        per-object log) until they all expire.
        """
        try:
            plan: Dict[str, Any] = self.plan_head()
        except LookupError:
            plan = {}
        parts = [
            "plan",
            "plan-shards",
            "progress",
            "target",
            "shards",
            "abort",
            "once",
            "claims",
            "releases",
            "running",
        ]
        parts += [f"wave:{wave}" for wave in range(len(plan.get("waves", [])))]
        for side in ("source", "target"):
            parts += [f"partitions:{side}", f"partloads:{side}"]
        ranges = self.ranges()
        count = len(ranges.get("parts", [])) if isinstance(ranges, dict) else 0
        parts += ["diffparts", "diffparts-done"] + [f"diffpart:{index}" for index in range(count)]
        # Every claim ever taken is counted in the claims hash: its keys name them all, whatever the steps.
        parts += [f"claim:{name.decode()}" for name in self.client.hkeys(self.key("claims"))]
        # Named, never matched: a job id is a key prefix, and a pattern could reach other jobs' keys.
        self.client.unlink(*[self.key(part) for part in parts])
        self.client.srem(keys.RUNNING_JOBS, self.job_id)
