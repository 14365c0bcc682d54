"""The job state of the diff and the plan in Redis: the kept diff, its summary and fingerprints, the plan.

A mixin of ``RedisJobState``, kept apart for size only: the same rules hold (every write safe to repeat, and
every key it writes given an expiry).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from redis import Redis

from core import keys
from worker.settings import get_settings
from worker.state.codec import pack, unpack


class RedisPlans:
    """The diff and the plan of one job (needs ``job_id``, ``client``, ``_hset()`` and ``_written()``)."""

    job_id: str
    client: Redis

    def key(self, part: str) -> str:
        """Full key name of one part of the job's state."""
        return keys.job_key(self.job_id, part)

    def _written(self, pipe: Any, *parts: str) -> None:
        raise NotImplementedError

    def _hset(self, part: str, mapping: Dict[str, Any], only_new: bool = False) -> None:
        raise NotImplementedError

    def save_diff(self, records: Sequence[Any], summary: Dict[str, int], batch: int = 1000) -> None:
        """Keep the diff: one packed element record per top-level element, by position."""
        key = self.key("diff")
        self.client.delete(key)
        for start in range(0, len(records), batch):
            chunk = {str(start + offset): pack(record) for offset, record in enumerate(records[start : start + batch])}
            self._hset("diff", chunk)
        self.client.set(self.key("summary"), pack(summary), ex=get_settings().store_ttl)

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
        pipe = self.client.pipeline(transaction=False)
        pipe.hsetnx(self.key("info"), "applied_by", pack(applying_job))
        lasts = self.client.ttl(self.key("spec"))  # an ended plan's records last its history (keep_history)
        if lasts > 0:
            pipe.expire(self.key("info"), lasts)
        else:
            self._written(pipe, "info")
        return bool(pipe.execute()[0])

    def release_apply(self) -> None:
        """Undo ``claim_apply`` for an apply that could not be submitted."""
        self.client.hdel(self.key("info"), "applied_by")

    def save_plan(self, plan: Dict[str, Any]) -> None:
        """Keep the plan: each shard in a hash field of its own, then the head (saved means planned).

        A shard reads its own entry and the head, never every shard's roots (``shard_plan``, ``plan_head``).
        """
        head = {"waves": plan["waves"], "operations": plan["operations"], "shards": len(plan["shards"])}
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.key("plan-shards"))
        for start in range(0, len(plan["shards"]), 1000):
            part = plan["shards"][start : start + 1000]
            pipe.hset(self.key("plan-shards"), mapping={str(shard["index"]): pack(shard) for shard in part})
        pipe.set(self.key("plan"), pack(head))
        self._written(pipe, "plan-shards", "plan")
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
