"""The delete guardrail: a job whose diff would delete too much of its target fails before any operation.

A source that comes back empty or short (an expired token, a wrong filter, an outage answered with an empty
list) diffs as "delete everything the target has", and an unattended sync applies exactly that. The limit is
a count (``"1000"``: more than 1000 deletes fail the job) or a share of the target's objects (``"50%"``), or
``"none"``; the setting ``SHARDSYNC_DELETE_LIMIT`` gives the default, a job's ``delete_limit`` overrides it,
and a job with ``allow_deletes`` is never stopped. ``Adapter.sync_from`` itself keeps diffsync's behaviour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

_LIMIT = re.compile(r"(?P<number>\d+(?:\.\d+)?)(?P<percent>%?)")


@dataclass(frozen=True)
class DeleteLimit:
    """Most deletes a job may make: a count, a share (0..1] of the target's objects, or neither (no limit)."""

    count: Optional[int] = None
    share: Optional[float] = None

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        if self.share is not None:
            return f"{self.share * 100:g}%"
        return "none"

    def exceeded(self, deletes: int, target_objects: int) -> bool:
        """Whether ``deletes`` of ``target_objects`` goes over the limit."""
        if self.count is not None:
            return deletes > self.count
        if self.share is not None:
            return deletes > self.share * target_objects
        return False


def parse_delete_limit(text: object) -> DeleteLimit:
    """``"1000"``, ``"50%"`` or ``"none"`` (an int is a count).

    Raises:
        ValueError: naming the value and the forms accepted.
    """
    if isinstance(text, bool):
        raise ValueError(f"delete limit {text!r} is not a count, a share like '50%' or 'none'")
    if isinstance(text, int):
        text = str(text)
    if not isinstance(text, str):
        raise ValueError(f"delete limit {text!r} is not a count, a share like '50%' or 'none'")
    value = text.strip().lower()
    if value in ("none", "off", "unlimited"):
        return DeleteLimit()
    found = _LIMIT.fullmatch(value)
    if found is None:
        raise ValueError(f"delete limit {text!r} is not a count, a share like '50%' or 'none'")
    if found["percent"]:
        share = float(found["number"]) / 100
        if not 0 <= share <= 1:
            raise ValueError(f"delete limit {text!r}: a share must be between 0% and 100%")
        return DeleteLimit(share=share)
    if "." in found["number"]:
        raise ValueError(f"delete limit {text!r}: a count must be a whole number")
    return DeleteLimit(count=int(found["number"]))


def delete_refusal(deletes: int, target_objects: int, limit: DeleteLimit) -> Optional[str]:
    """The error of a job whose diff goes over the limit, naming the figures; None when it does not."""
    if not limit.exceeded(deletes, target_objects):
        return None
    share = f" ({deletes / target_objects:.0%})" if target_objects else ""
    return (
        f"refused by the delete guardrail: the diff would delete {deletes} of the target's {target_objects} "
        f"objects{share}, over the delete limit {limit}; nothing was applied. If that is meant, run the job "
        "with allow_deletes (--allow-deletes) or a higher delete_limit (--delete-limit)"
    )
