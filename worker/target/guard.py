"""The guard of one shard's calls to its target: each call held to the target's limits, and counted.

The shard's syncer passes every hook call (and batch hook call, and each call made again) through
``TargetGuard.call``; what the calls waited is in the shard's result and the job's report.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, TypeVar

from core.adapter import Adapter
from core.limits import Limits
from worker.target.limiter import Limiter

T = TypeVar("T")


def limits_of(job_limits: Optional[Limits], target: Adapter) -> Optional[Limits]:
    """The limits a job's calls are held to: the job's own over its target adapter's; None when neither has."""
    declared = getattr(target, "limits", None)
    if job_limits is None:
        return declared
    return job_limits.over(declared)


def limits_key(target: Adapter, default: str) -> str:
    """The key the target's limits are counted under: its adapter's ``limits_key()``, else ``default``."""
    own = target.limits_key() if hasattr(target, "limits_key") else None
    return str(own) if own else default


class TargetGuard:
    """Holds each call of one shard to its target's limits (calls in flight, calls per second)."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    def call(self, call: Callable[[], T]) -> T:
        """Make one call once the target's limits let it start."""
        with self.limiter.held():
            return call()

    def figures(self) -> Dict[str, Any]:
        """What this shard's calls waited: ``throttled`` calls, ``waited`` seconds."""
        return {"throttled": self.limiter.throttled, "waited": round(self.limiter.waited, 3)}

    def close(self) -> None:
        """Let the limiter go (its renewing thread)."""
        self.limiter.close()
