"""What the system behind an adapter can take: calls in flight, calls per second, and how long one call may take.

An adapter declares it (``Adapter.limits = Limits(concurrency=8, rate=100.0, call_timeout=30.0)``), a job may
set its own; the distributed runner enforces it across every worker and job that writes to the same system
(``limits_key``), through Redis, and the embedded runner in its process (``worker.targets``). A batch hook
call is one call. The engine's own ``sync_from`` makes one call at a time and enforces nothing of it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class Limits:
    """Limits of one remote system; None: no limit of that kind."""

    concurrency: Optional[int] = None
    """Most calls in flight at once, over every worker (a call: one hook, or one batch hook call)."""
    rate: Optional[float] = None
    """Most calls started per second, over every worker (in any window of a second, or of 1/rate s below 1)."""
    call_timeout: Optional[float] = None
    """Most seconds one call may take: past it the call is interrupted where the runner can interrupt it, and
    counts as a transient failure (tried again within the retry budget). None: the runner's setting."""

    def __post_init__(self) -> None:
        if self.concurrency is not None and (
            isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1
        ):
            raise ValueError(f"limits: concurrency must be a whole number of 1 or more, not {self.concurrency!r}")
        rate = self.rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0):
            raise ValueError(f"limits: rate must be a number above 0, not {rate!r}")
        timeout = self.call_timeout
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"limits: call_timeout must be a number of seconds above 0, not {timeout!r}")

    def over(self, other: Optional[Limits]) -> Limits:
        """These limits, each one left unset taken from ``other`` (a job's over its adapter's)."""
        if other is None:
            return self
        given = {name: getattr(self, name) for name in _FIELDS}
        return replace(other, **{name: value for name, value in given.items() if value is not None})

    @classmethod
    def of(cls, value: Any) -> Optional[Limits]:
        """Limits from Limits, a mapping of its fields (a job's plain data), or None.

        Raises:
            ValueError: naming what is wrong.
        """
        if value is None or isinstance(value, Limits):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(_FIELDS))
            if unknown:
                raise ValueError(f"limits: unknown field {unknown[0]!r} ({', '.join(_FIELDS)})")
            return cls(**value)
        raise ValueError(f"limits are Limits or a mapping of their fields, not {value!r}")


_FIELDS = ("concurrency", "rate", "call_timeout")
