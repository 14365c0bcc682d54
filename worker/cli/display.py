"""What the command line shows: a running job live or as plain lines, and reports, diffs and logs as text.

A terminal gets a rich live display (one bar per stage, shards done, operations per second, elapsed and
remaining time); a pipe or a file gets one plain line per stage and every few seconds, so cron mails and CI
logs stay readable; ``--json`` gets nothing until one JSON object at the end.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from rich.tree import Tree

STAGES = ("load-source", "load-target", "diff", "plan", "sync", "finish")


class _Rate(ProgressColumn):
    """Operations (or objects) per second of a stage."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "", style="cyan")


class Follower:
    """Shows a job's progress as it changes: live on a terminal, plain lines elsewhere, nothing for --json."""

    plain_every = 5.0
    """Seconds between two plain lines of the same stage."""

    def __init__(self, console: Console, mode: str, job_id: str) -> None:
        self.console = console
        self.mode = mode  # "live", "plain" or "quiet"
        self.job_id = job_id
        self.started = time.monotonic()
        self._progress: Optional[Progress] = None
        self._tasks: Dict[str, TaskID] = {}
        self._last: Tuple[str, float] = ("", 0.0)
        self._target = ""
        self._shards = 0

    def __enter__(self) -> Follower:
        if self.mode == "live":
            self._progress = Progress(
                TextColumn("{task.description:<24}"),
                BarColumn(),
                MofNCompleteColumn(),
                _Rate(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(
        self,
        stage: str,
        current: int,
        total: int,
        shards: Tuple[int, int] = (0, 0),
        target: Optional[Dict[str, Any]] = None,
    ) -> None:
        """Show ``(stage, current, total)``; stages before ``stage`` are complete; ``target``: how it is doing."""
        self._target = target_line(target)
        if self.mode == "quiet":
            return
        if stage in ("done", "failed"):
            self.finish()
            return
        if self._progress is not None:
            self._live(stage, current, total, shards)
            return
        now = time.monotonic()
        if stage != self._last[0] or now - self._last[1] >= self.plain_every:
            self._last = (stage, now)
            extra = f" (shards {shards[0]}/{shards[1]})" if stage == "sync" and shards[1] else ""
            extra += f"; {self._target}" if stage == "sync" and self._target else ""
            self.console.print(
                f"{now - self.started:7.1f}s  {stage} {current}/{total}{extra}", highlight=False, soft_wrap=True
            )

    def _live(self, stage: str, current: int, total: int, shards: Tuple[int, int]) -> None:
        assert self._progress is not None
        if stage in STAGES:
            for earlier in STAGES[: STAGES.index(stage)]:
                task = self._tasks.get(earlier)
                if task is not None:
                    done = self._total(task)
                    self._progress.update(task, total=done, completed=done)
        task = self._tasks.get(stage)
        if task is None:
            task = self._tasks[stage] = self._progress.add_task(stage, total=total or None)
        if stage == "sync" and shards[1]:
            self._shards = shards[1]
        description = f"{stage} (shards {shards[0]}/{shards[1]})" if stage == "sync" and shards[1] else stage
        if stage == "sync" and self._target:
            description += f"; {self._target}"
        self._progress.update(task, total=total or None, completed=current, description=description)

    def _total(self, task: TaskID) -> float:
        """A shown stage's total (1 when it had none): rich's task list is by position, not by id."""
        assert self._progress is not None
        return next((shown.total for shown in self._progress.tasks if shown.id == task), None) or 1

    def finish(self) -> None:
        """Mark every stage shown as complete (the last line never stays at ``finish 0/1``)."""
        if self.mode == "plain" and self._last[0] != "ended":
            self._last = ("ended", time.monotonic())
            self.console.print(f"{time.monotonic() - self.started:7.1f}s  ended", highlight=False, soft_wrap=True)
        if self._progress is None:
            return
        queued = self._tasks.get("queued")
        if queued is not None and len(self._tasks) > 1:  # the job started: its wait in the queue is no stage
            self._progress.remove_task(queued)
            del self._tasks["queued"]
        for stage, task in self._tasks.items():
            done = self._total(task)
            self._progress.update(task, total=done, completed=done)
            if stage == "sync" and self._shards:  # every shard ended: never "shards 0/16" on the last line
                self._progress.update(task, description=f"sync (shards {self._shards}/{self._shards})")

    def note(self, text: str) -> None:
        """A line of its own (a warning), above a live display."""
        if self.mode != "quiet":
            self.console.print(text, style="yellow", highlight=False, soft_wrap=True)


def target_line(target: Optional[Dict[str, Any]]) -> str:
    """How the target is doing, in a few words (empty when nothing is worth saying)."""
    if not target:
        return ""
    parts = []
    if target.get("unavailable_since"):
        since = time.strftime("%H:%M:%S", time.localtime(float(target["unavailable_since"])))
        parts.append(f"target unavailable since {since}")
    if target.get("resume_at"):
        parts.append(f"next call at {time.strftime('%H:%M:%S', time.localtime(float(target['resume_at'])))}")
    if target.get("limit"):
        parts.append(f"limit {int(target['limit'])} in flight")
    for name, shown in (("retries", "retries"), ("transient", "transient"), ("throttled", "throttled")):
        if target.get(name):
            parts.append(f"{int(target[name])} {shown}")
    return ", ".join(parts)


def complain(command: str, message: str) -> None:
    """An error of a command, on stderr: ``shardsync <command>: <message>``."""
    print(f"shardsync {command}: {message}", file=sys.stderr)


def print_report(console: Console, report: Dict[str, Any], as_json: bool) -> None:
    """A job's report: status, summary, counts, failures (the first 20), skipped operations, times."""
    if as_json:
        print(json.dumps(report, sort_keys=True, default=str))
        return
    error = f" ({report['error']})" if report.get("error") else ""
    out = console.print
    out(f"job {report['job_id']}: {report['status']}{error}", highlight=False, soft_wrap=True, markup=False)
    summary = report.get("summary")
    diff = f"diff {summary}" if summary is not None else "no diff (the job ended before it)"
    out(f"  {report['source']} -> {report['target']}, {diff}", highlight=False, soft_wrap=True)
    if report.get("scope"):
        out(f"  scope {json.dumps(report['scope'], sort_keys=True)}", highlight=False, soft_wrap=True, markup=False)
    pair = report.get("pair")
    if pair and pair.get("run"):
        moved = "cursors moved on" if pair.get("cursors_advanced") else "cursors kept (the next run lists these again)"
        out(f"  pair {pair['name']}: a {pair['run']} run ({pair['reason']}); {moved}", highlight=False,
            soft_wrap=True, markup=False)  # fmt: skip
    if report.get("dry_run"):
        shards = "a plan: nothing applied"
    else:
        shards = f"in {len(report['shards'])} shards, {report['waves']} waves"
    out(f"  operations {report['operations']} {shards}", highlight=False, soft_wrap=True)
    for action, per_status in sorted(report["counts"].items()):
        out(
            f"  {action}: " + ", ".join(f"{status} {count}" for status, count in sorted(per_status.items())),
            highlight=False,
            soft_wrap=True,
        )
    if report.get("retries"):
        out(f"  calls made again after 'try later': {report['retries']}", highlight=False, soft_wrap=True)
    if report.get("paused") or report.get("lowest_limit"):
        out(
            f"  the target asked to wait: {report.get('paused', 0):.1f} s of calls held back; calls in flight "
            f"lowered to {report.get('lowest_limit') or 'no lower limit'}",
            highlight=False,
            soft_wrap=True,
        )
    if report.get("transient"):
        out(f"  calls that met 'try later' (transient errors): {report['transient']}", highlight=False, soft_wrap=True)
    if report.get("hung"):
        out(f"  steps ended by the watchdog in a call: {', '.join(report['hung'])}", highlight=False, soft_wrap=True)
    if report.get("throttled"):
        out(
            f"  calls that waited for the target's limits: {report['throttled']} ({report.get('waited', 0):.1f} s)",
            highlight=False,
            soft_wrap=True,
        )
    if report.get("skipped"):
        out(f"  skipped (under a failed parent, or not reached): {report['skipped']}", highlight=False, soft_wrap=True)
    for failure in report["failures"][:20]:
        out(
            f"  FAILED {failure['action']} {failure['model']} {failure['unique_id']}: {failure['message']}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    total = int(report.get("failures_total", len(report["failures"])))
    if total > 20:
        out(
            f"  ... and {total - 20} more failures (shardsync log {report['job_id']} --status error)",
            highlight=False,
            soft_wrap=True,
        )
    seconds = ", ".join(f"{stage} {value:.2f}s" for stage, value in report["seconds"].items())
    out(
        f"  submitted {report.get('submitted')}, ended {report.get('ended')}; seconds: {seconds}",
        highlight=False,
        soft_wrap=True,
    )
    out(f"  workers: {', '.join(report['workers'])}", highlight=False, soft_wrap=True, markup=False)


def print_jobs(console: Console, jobs: List[Dict[str, Any]]) -> None:
    """``shardsync jobs`` as a table-like listing, one job per line."""
    if not jobs:
        console.print("no jobs")
        return
    for job in jobs:
        summary = job.get("summary")
        changes = ", ".join(f"{k} {v}" for k, v in (summary or {}).items() if k in ("create", "update", "delete") and v)
        if summary is None:
            changes = "no diff"  # ended (failed, refused, cancelled) before its diff, or still before it
        seconds = f"{job['seconds']:.1f}s" if job.get("seconds") is not None else "-"
        failures = f", {job['failures']} failed" if job.get("failures") else ""
        # A job that ended with failed operations exits 5 (WITH_FAILURES), not 0: not listed as a success.
        state = "partial" if job["state"] == "success" and job.get("failures") else job["state"]
        started_by = f"  schedule {job['schedule']}" if job.get("schedule") else ""
        console.print(
            f"{job['job_id']}  {job['source']} -> {job['target']}  {state:<8}  {changes or 'no changes'}"
            f"{failures}  {job.get('submitted') or '-'}  {seconds}{started_by}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )


def diff_tree(diff: Any, types: Optional[List[str]], actions: Optional[List[str]]) -> Tree:
    """The diff as a tree of elements with their changes: only the types and actions asked for.

    The elements above a selected one are shown too, so each shows where it belongs.
    """
    root = Tree(f"diff: {diff.summary()}")

    def wanted(element: Any) -> bool:
        own = (not types or element.type in types) and (not actions or element.action in actions)
        return (own and element.action is not None) or any(wanted(child) for child in element.get_children())

    def add(parent: Tree, element: Any) -> None:
        label = Text(f"{element.action or '='} {element.type} {element.name}")
        if element.action == "update":
            changes = element.get_attrs_diffs()
            label.append(
                "  "
                + ", ".join(f"{k}: {changes.get('-', {}).get(k)!r} -> {v!r}" for k, v in changes.get("+", {}).items()),
                style="dim",
            )
        node = parent.add(label)
        for child in element.get_children():
            if wanted(child):
                add(node, child)

    for element in diff.get_children():
        if wanted(element):
            add(root, element)
    return root


def diff_json(diff: Any, types: Optional[List[str]], actions: Optional[List[str]]) -> List[Dict[str, Any]]:
    """The same selection as ``diff_tree``, as plain data."""

    def walk(element: Any) -> Optional[Dict[str, Any]]:
        children = [found for found in (walk(child) for child in element.get_children()) if found is not None]
        own = (
            element.action is not None
            and (not types or element.type in types)
            and (not actions or element.action in actions)
        )
        if not own and not children:
            return None
        return {
            "type": element.type,
            "name": element.name,
            "keys": element.keys,
            "action": element.action,
            "diffs": element.get_attrs_diffs(),
            "children": children,
        }

    return [found for found in (walk(element) for element in diff.get_children()) if found is not None]


def print_log(console: Console, entries: List[Dict[str, Any]]) -> None:
    """``shardsync log``: one operation per line, under a header (op: subtree:position in the plan)."""
    if not entries:
        console.print("no operations match", highlight=False)
        return
    console.print(
        f"{'op':>9}  {'action':<6}  {'model':<12}  unique id  status  message   (op: top-level subtree:position)",
        highlight=False,
        markup=False,
    )
    for entry in entries:
        message = f"  {entry['message']}" if entry.get("message") else ""
        console.print(
            f"{entry['op']:>9}  {entry['action']:<6}  {entry['model']:<12}  {entry['unique_id']}  "
            f"{entry['status']}{message}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )


class Exit:
    """The command line's exit codes, each distinct (README: "Exit codes")."""

    OK = 0
    """The job succeeded (or the command did what it was asked)."""
    JOB_FAILED = 1
    """The job failed (its report says why)."""
    BAD_INPUT = 2
    """Bad input: an invalid option, spec, job id or file; nothing was submitted."""
    REDIS = 3
    """Redis could not be reached."""
    TIMEOUT = 4
    """``--timeout`` passed before the job ended (the job goes on)."""
    WITH_FAILURES = 5
    """The job completed, but some operations failed (``continue_on_failure``) or were skipped under them."""
    DETACHED = 130
    """Ctrl-C: the command stopped following the job, which goes on."""


def exit_code_of(report: Dict[str, Any]) -> int:
    """The exit code a job's report stands for."""
    if report.get("status") == "failed":
        return Exit.JOB_FAILED
    if report.get("failures") or report.get("skipped"):
        return Exit.WITH_FAILURES
    return Exit.OK
