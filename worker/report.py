"""Pieces of a job's report shared by the distributed and the embedded runner."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple


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
