"""Pieces of a job's report shared by the distributed and the embedded runner."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from core.diff import Diff
from core.diff_codec import DiffCodec


def _op_order(op: str) -> Tuple[int, int]:
    root, _, seq = op.partition(":")
    return int(root), int(seq)


def tally(journal: Dict[str, List[Any]]) -> Tuple[Dict[str, Dict[str, int]], List[Dict[str, Any]]]:
    """Counts per action and status, and the failed operations in plan order, from journal entries."""
    counts: Dict[str, Dict[str, int]] = {}
    failures: List[Dict[str, Any]] = []
    for op in sorted(journal, key=_op_order):
        action, status, message, model, uid = journal[op][:5]
        per_action = counts.setdefault(action, {})
        per_action[status] = per_action.get(status, 0) + 1
        if status != "success":
            failures.append({"action": action, "model": model, "unique_id": uid, "status": status, "message": message})
    return counts, failures


def rebuild_diff(
    records: Sequence[Any], codec: DiffCodec, source_name: str, dest_name: str, summary: Optional[Dict[str, int]]
) -> Diff:
    """A job's diff from the element records kept with it, with the original's summary (skips included)."""
    result = Diff()
    for record in records:
        result.add(codec.decode(record, source_name, dest_name))
    summary = summary or {}
    # What the differ counted: summary() derives "skip" from it.
    result.models_processed = (
        summary.get("skip", 0)
        + summary.get("create", 0)
        + summary.get("delete", 0)
        + 2 * (summary.get("update", 0) + summary.get("no-change", 0))
    )
    return result
