"""What a running step knows without asking Redis: whether its claim surely still lives (its lease).

Kept apart from the job state's records: a heartbeat thread sets it, the step's fence reads it before every
hook and store write.
"""

from __future__ import annotations

import threading
import time


class Heartbeat:
    """What a running step learns from its heartbeat: whether it lost its job's lock, or its own claim.

    A lost claim means the step went a whole claim expiry without a beat, and the watchdog may have given it
    to another delivery.
    """

    def __init__(self, claim_ttl: float = 0.0) -> None:
        self.lost = threading.Event()
        self.claim_lost = threading.Event()
        self.claim_ttl = claim_ttl
        self.lease_until = time.monotonic() + claim_ttl if claim_ttl else float("inf")
        """Until when (this process's monotonic clock) the step's claim surely lives: its last renewal's send
        time plus the claim's expiry. Known without asking Redis, so a paused process, a hook that held the
        interpreter or a heartbeat blocked on a silent socket is found out before the next write."""

    def renewed(self, sent: float) -> None:
        """The claim was renewed by a command sent at ``sent`` (monotonic): it lives at least a ttl from then."""
        if self.claim_ttl:
            self.lease_until = max(self.lease_until, sent + self.claim_ttl)

    def lease_short(self) -> bool:
        """Whether the claim may expire within a third of its ttl (two renewals missed): time to stand down.

        Well before the watchdog could give the step to another delivery.
        """
        return time.monotonic() > self.lease_until - self.claim_ttl / 3
