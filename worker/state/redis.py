"""The job state in Redis: every worker of a deployment reads and writes the same keys.

Every key name comes from ``core.keys``; every value is msgpack or a plain Redis number; each write is safe
to repeat (tasks may run twice).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from redis import Redis
from redis.exceptions import ResponseError

from core import keys
from core.store.redis import Record, RedisStore, clear_namespace, server_time
from worker.connection import redis_client
from worker.settings import get_settings
from worker.state.base import Entry, JobState, pack, unpack
from worker.state.claims import RedisClaims
from worker.state.pairs import RedisPairSteps
from worker.state.parts import RedisParts
from worker.state.plans import RedisPlans

_pack = pack

_LONG_LIVED = ("spec", "info", "times", "workers", "loads", "summary", "diff", "journal", "fingerprints")
"""Parts of a job's state kept with its report; renewed while the job runs, so a long job outlives none."""

_BULKY = ("diff", "journal")
"""The long-lived parts that grow with the job (``keep_history`` bounds them)."""


class RedisJobState(RedisClaims, RedisParts, RedisPlans, RedisPairSteps, JobState):
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
            line = {"job_id": self.job_id, "state": "queued", "at": now, "schedule": (info or {}).get("schedule")}
            line.update({name: spec.get(name) for name in ("source", "target", "dry_run", "apply_of")})
            self.save_line(line)
            self.client.zadd(keys.JOB_INDEX, {self.job_id: now})
        return bool(created)

    def save_line(self, line: Dict[str, Any]) -> None:
        """Keep the job's line of the job list (``worker.job.history``), read with thousands of others at once."""
        self.client.hset(keys.JOB_LINES, self.job_id, _pack(line))

    def now(self) -> float:
        """Redis's clock (``TIME``)."""
        return server_time(self.client)

    def forget(self) -> None:
        """Undo ``create`` for a job that could not be enqueued, so that its id may be used again."""
        self.client.delete(self.key("spec"), self.key("info"))
        self.client.zrem(keys.JOB_INDEX, self.job_id)
        self.client.hdel(keys.JOB_LINES, self.job_id)

    def spec_data(self) -> Optional[Dict[str, Any]]:
        """The spec as submitted, or None if this job is unknown (or expired)."""
        return unpack(self.client.get(self.key("spec")))

    def _written(self, pipe: Any, *parts: str) -> None:
        """Queue an expiry for parts a write may have created: no job key lives for ever.

        A step still running when Redis came back empty (a restart without persistence) recreates the keys it
        writes; with their expiry they go with the rest of the lost job instead of staying for good.
        """
        ttl = get_settings().store_ttl
        for part in parts:
            pipe.expire(self.key(part), ttl)

    def _hset(self, part: str, mapping: Dict[str, Any], only_new: bool = False) -> None:
        pipe = self.client.pipeline(transaction=False)
        if only_new:
            for name, value in mapping.items():
                pipe.hsetnx(self.key(part), name, value)
        else:
            pipe.hset(self.key(part), mapping=mapping)
        self._written(pipe, part)
        pipe.execute()

    def set_info(self, **fields: Any) -> None:
        """Set fields of the job's info hash (status, stage...)."""
        self._hset("info", {name: _pack(value) for name, value in fields.items()})

    def info(self) -> Dict[str, Any]:
        """The job's info hash, decoded."""
        raw = self.client.hgetall(self.key("info"))
        result: Dict[str, Any] = {}
        for name, value in raw.items():
            result[name.decode()] = unpack(value)
        return result

    def mark_sync_started(self, when: float) -> None:
        """Record when the first shard began (kept if set already)."""
        self._hset("info", {"sync_started": _pack(when)}, only_new=True)

    def mark_sync_ended(self, when: float) -> None:
        """Record when a shard ended (the last one's time stays)."""
        self._hset("info", {"sync_ended": _pack(when)})

    def marked(self, marker: str) -> bool:
        """Whether ``mark(marker)`` was called for this job."""
        return bool(self.client.hexists(self.key("once"), marker))

    def mark(self, marker: str) -> None:
        """Record that something was done (after the enqueue it guards)."""
        self._hset("once", {marker: time.time()}, only_new=True)

    def record_time(self, stage: str, seconds: float) -> None:
        """Record how long a stage took."""
        self._hset("times", {stage: repr(float(seconds))})

    def times(self) -> Dict[str, float]:
        """Seconds per stage."""
        return {name.decode(): float(value) for name, value in self.client.hgetall(self.key("times")).items()}

    def record_worker(self, role: str, hostname: str) -> None:
        """Remember which worker ran a step (for the report)."""
        self._hset("workers", {role: hostname})

    def workers(self) -> Dict[str, str]:
        """Worker hostname per step."""
        return {name.decode(): value.decode() for name, value in self.client.hgetall(self.key("workers")).items()}

    # -- abort ----------------------------------------------------------------------------------------

    def abort(self, message: str) -> None:
        """Stop the job: the first error wins, shards not started yet will not start."""
        self.client.set(self.key("abort"), message.encode(), nx=True, ex=get_settings().store_ttl)

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
        A run of an incremental pair has the pair's kept stores as its sides (``worker.state.pairs``).
        """
        settings = get_settings()
        pair = self.pair_name() if side in ("source", "target") else None
        return RedisStore(
            client=self.client,  # the job state's: its timeouts, keepalive, TLS or Sentinel, and its pool
            store_id=keys.pair_store_id(pair, side) if pair else keys.job_store_id(self.job_id, side),
            ttl=settings.pair_ttl if pair else settings.store_ttl,
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
        pair = self.pair_name()  # a run of a pair: the pair's kept stores
        return {side: keys.pair_store_id(pair, side) if pair else keys.job_store_id(self.job_id, side)
                for side in ("source", "target")}  # fmt: skip

    def drop_stores(self, sides: Sequence[str] = ("source", "target")) -> None:
        """Remove side stores, key by key (nothing is written first: it works on a Redis out of memory)."""
        for side in sides:
            clear_namespace(self.client, keys.job_store_id(self.job_id, side))

    def record_load(self, side: str, result: Dict[str, Any]) -> int:
        """Record a finished load; returns how many sides are loaded."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key("loads"), side, _pack(result))
        self._written(pipe, "loads")
        pipe.hlen(self.key("loads"))
        return int(pipe.execute()[-1])

    def loads(self) -> Dict[str, Dict[str, Any]]:
        """Load results per side."""
        return {name.decode(): unpack(value) for name, value in self.client.hgetall(self.key("loads")).items()}

    def other(self, job_id: str) -> RedisJobState:
        """Another job's state on the same Redis."""
        return RedisJobState(job_id, self.client)

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
            self._written(pipe, "journal")
        # Created with its expiry if missing (an INCRBY would create it without one); the count keeps it.
        pipe.set(self.key("progress"), 0, nx=True, ex=get_settings().store_ttl)
        pipe.incrby(self.key("progress"), counted)

    def checkpoint(
        self,
        store: Any,
        entries: Dict[str, Entry],
        counted: int,
        claim: Optional[Tuple[str, str]] = None,
        pipelined: bool = False,
    ) -> Optional[int]:
        """Write a store's buffered changes and the journal entries behind them, in one script call.

        A RedisStore takes the journal into its own write script (the job's stores live on the job-state
        Redis), guarded by the claim; any other store is flushed first, so its writes land before the journal
        names them (unguarded: such a store is not the runner's).
        """
        flush_recording = getattr(store, "flush_recording", None)
        if flush_recording is not None:
            guard_key, guard_value = (self.key(f"claim:{claim[0]}"), claim[1]) if claim else ("", "")
            record = Record(
                hash_key=self.key("journal"),
                fields={op: _pack(entry) for op, entry in entries.items()},
                counter_key=self.key("progress"),
                amount=counted,
                ttl=get_settings().store_ttl,
                guard_key=guard_key,
                guard_value=guard_value,
            )
            if pipelined:
                store.send_recording(record)
                return None
            return int(flush_recording(record))
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
        self._written(pipe, "shards", f"wave:{wave}")
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

    def keep_history(self) -> Dict[str, Any]:
        """Keep an ended job's records for the history's retention (``history_days``), within its budget.

        The report, spec, info and figures are small and always kept; the diff and the journal (the per-object
        log) are kept as long only when together they fit ``history_max_mb``, else for ``store_ttl`` (and the
        info says so, for the console and ``jobs``). The job's stores are not records: ``store_ttl`` keeps them.
        Returns what was kept, as recorded in the info's ``history`` field.
        """
        settings = get_settings()
        ttl = settings.history_ttl
        size = sum(self._bytes(part) for part in _BULKY)
        whole = size <= settings.history_max_mb * 2**20
        kept = {"until": round(self.now() + ttl), "bytes": size, "diff_and_log": whole}
        self._hset("info", {"history": _pack(kept)})
        pipe = self.client.pipeline(transaction=False)
        for part in (*_LONG_LIVED, "report"):
            pipe.expire(self.key(part), ttl if whole or part not in _BULKY else min(ttl, settings.store_ttl))
        pipe.execute()
        return kept

    def _bytes(self, part: str) -> int:
        """Bytes a part takes in Redis (sampled, as ``MEMORY USAGE`` counts them; 0 when the command is refused)."""
        try:
            return int(self.client.memory_usage(self.key(part), samples=20) or 0)
        except ResponseError:  # an ACL user without MEMORY: the budget cannot be judged, the records are kept
            return 0

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
