"""Plan, then apply: an apply job applies exactly a dry run's diff, if the target it touches is unchanged.

A dry run (a plan) keeps its diff and fingerprints of the target subtrees it touches; the apply job checks
that none of those subtrees changed since, then applies that diff.

Why fingerprints of the target, not a new diff: an apply must make exactly the reviewed changes (a new diff
would be a new plan), and it must never make them over data that someone changed after the review, which
could turn a reviewed update into a lost one. Each touched top-level subtree (a top-level element with any
operation in it) is fingerprinted at plan time from the loaded target: a SHA-256 over the type, unique id
and attributes of the object and of every object below it (children in unique-id order), or over its
absence for a create. The apply job loads the target again (not the source: the plan's diff says what to
write) and compares; any difference refuses the apply, naming the subtrees.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional

from core.adapter import Adapter
from core.diff import Diff
from core.exceptions import ObjectNotFound
from core.planner import subtree_operations
from worker.state.base import JobState


def subtree_digest(adapter: Adapter, modelname: str, uid: str) -> str:
    """SHA-256 of one target object and everything below it (or of its absence)."""
    digest = hashlib.sha256()
    stack = [(modelname, uid)]
    while stack:
        name, current = stack.pop()
        try:
            obj = adapter.store.get(model=name, identifier=current)
        except ObjectNotFound:
            obj = None
        if obj is None:
            digest.update(json.dumps([name, current, None]).encode())
            continue
        attrs = obj.get_attrs()
        digest.update(json.dumps([name, current, attrs], sort_keys=True, default=str).encode())
        for child_type, field in sorted(obj.get_children_mapping().items(), reverse=True):
            stack.extend((child_type, child) for child in sorted(getattr(obj, field) or [], reverse=True))
    return digest.hexdigest()


def _touched(diff: Diff, target: Adapter) -> Dict[str, Dict[str, str]]:
    """The top-level elements with an operation in their subtree: position -> {type, uid}."""
    touched: Dict[str, Dict[str, str]] = {}
    for root, element in enumerate(diff.get_children()):
        if not subtree_operations(root, element):
            continue
        model_class = getattr(target, element.type)
        touched[str(root)] = {"type": element.type, "uid": model_class.create_unique_id(**element.keys)}
    return touched


def fingerprint(diff: Diff, target: Adapter) -> Dict[str, str]:
    """The fingerprints a plan keeps: top-level position -> ``"type uid digest"``."""
    return {
        root: f"{found['type']} {found['uid']} {subtree_digest(target, found['type'], found['uid'])}"
        for root, found in _touched(diff, target).items()
    }


def changed_subtrees(kept: Dict[str, str], target: Adapter) -> List[str]:
    """``"type uid"`` of every fingerprinted subtree whose target data is no longer what the plan saw."""
    changed = []
    for root in sorted(kept, key=int):
        modelname, uid, digest = kept[root].split(" ", 2) if kept[root].count(" ") >= 2 else ("", "", "")
        if not modelname or subtree_digest(target, modelname, uid) != digest:
            changed.append(f"{modelname} {uid}")
    return changed


def plan_job(job: JobState, plan_id: str) -> JobState:
    """The plan an apply job applies, checked to be one.

    Raises:
        LookupError: if it is not in reach (another process's memory) or unknown.
        ValueError: if it is not an ended dry run.
    """
    plan = job.other(plan_id)
    if plan.spec_data() is None:
        raise LookupError(f"plan {plan_id} is unknown (or its records expired)")
    report = plan.report()
    if report is None or report.get("status") != "dry-run":
        status = "still running" if report is None else f"a job that ended {report.get('status')}"
        raise ValueError(f"job {plan_id} is not a finished plan (a dry run): it is {status}")
    return plan


def refusal(plan: JobState, target: Adapter, plan_id: str) -> Optional[str]:
    """The error of an apply whose target changed since its plan, naming the subtrees; None if unchanged."""
    changed = changed_subtrees(plan.fingerprints(), target)
    if not changed:
        return None
    shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
    return (
        f"refused to apply plan {plan_id}: the target has changed since the plan in {len(changed)} of the "
        f"subtrees it touches ({shown}); nothing was applied. Make a new plan (shardsync plan ...)"
    )


def copy_diff(plan: JobState, job: JobState) -> List[Any]:
    """Keep the plan's diff with the apply job (its diff, log and report read it there); returns the records."""
    records = plan.diff_records(list(range(plan.diff_size())))
    job.save_diff(records, plan.summary() or {})
    return records


def retake_apply(plan: Any, applying_job: str) -> bool:
    """Take a plan's apply over from an earlier apply that ended having applied nothing.

    An apply refused because the target changed in a subtree the plan touches, or stopped by a locked
    target, leaves the plan as it was: it may be applied again (and is refused again while the target
    differs). An apply still running, or one that applied anything, keeps it.
    """
    earlier = plan.info().get("applied_by")
    report = type(plan)(str(earlier), plan.client).report() if earlier else None
    if report is None or report.get("status") == "success":
        return False
    if sum(int(count) for per in (report.get("counts") or {}).values() for count in per.values()):
        return False
    plan.release_apply()
    return plan.claim_apply(applying_job)
