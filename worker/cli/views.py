"""The command line's reading commands: jobs, status, show, diff, log, adapters, check-schedule, demo.

Kept apart from ``worker.cli`` (which starts and follows jobs) so each stays small; every command here
changes nothing and exits with a code of ``worker.cli.display.Exit``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, Callable, List, Optional, Set

import click
import structlog
from redis.exceptions import RedisError
from rich.console import Console

from core.logging import enable_console_logging
from worker.adapters.demo import demo_adapters
from worker.adapters.registry import import_adapter_modules, registered_adapters
from worker.api import JobHandle, list_jobs
from worker.cli.display import (
    Exit,
    diff_json,
    diff_tree,
    exit_code_of,
    print_jobs,
    print_log,
    print_report,
    target_line,
)
from worker.cli.display import complain as _err
from worker.errors import InvalidJob, ShardsyncError, UnknownAdapter
from worker.job.history import STATES, job_ids_starting
from worker.job.spec import check_job_id, parse_flags
from worker.schedule.entries import describe_schedule, load_schedule
from worker.settings import get_settings


def guarded(command: str, body: Callable[[], int]) -> int:
    """Run a command's body; bad input and an unreachable Redis become their exit codes, with a message."""
    try:
        return body()
    except (InvalidJob, UnknownAdapter, ValueError, LookupError) as err:
        _err(command, str(err))
        return Exit.BAD_INPUT
    except ShardsyncError as err:
        _err(command, str(err))
        return Exit.REDIS


class JobIdParam(click.ParamType):
    """A job id, or the start of one (the 8 characters Flower shows) that names exactly one known job."""

    name = "job_id"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> str:
        """The whole id a unique start stands for; anything else as given (the command says what is wrong)."""
        text = str(value)
        try:
            check_job_id(text)
            if JobHandle(text).known():
                return text
            matches = job_ids_starting(text)
        except (InvalidJob, ShardsyncError, RedisError, OSError):
            return text  # a bad id, or Redis unreachable: the command itself reports it
        if len(matches) > 1:
            shown = ", ".join(matches[:5])
            self.fail(f"{text!r} starts the ids of several jobs ({shown}...): give more of it", param, ctx)
        return matches[0] if matches else text


JOB_ID = JobIdParam()


def known_job(job_id: str) -> JobHandle:
    """The handle of a known job.

    Raises:
        InvalidJob: if the id is not a job id, or no such job is known (or its records expired).
    """
    check_job_id(job_id)
    handle = JobHandle(job_id)
    if not handle.known():
        raise InvalidJob(f"job {job_id} is unknown (or its record expired)")
    return handle


@click.command()
@click.option("--sites", type=click.IntRange(min=0), default=3, help="sites in the demo inventory (default 3)")
@click.option("--seed", type=int, default=1, help="seed of the generated data (default 1)")
@click.option("--dry-run", is_flag=True, help="show the diff only; change nothing")
@click.option("--flag", "flags", multiple=True, help="a DiffSyncFlags name, e.g. continue_on_failure (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of text")
@click.option("-v", "--verbose", count=True, help="log engine events (-v info, -vv debug)")
def demo(sites: int, seed: int, dry_run: bool, flags: List[str], as_json: bool, verbose: int) -> int:
    """Diff and sync the bundled demo inventories in this process (no Redis)."""
    try:
        parsed = parse_flags(list(flags))
    except ValueError as err:
        _err("demo", str(err))
        return Exit.BAD_INPUT
    if verbose:
        enable_console_logging(verbosity=verbose)
    else:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    adapters = demo_adapters(sites=sites, seed=seed)
    source, target = adapters["source"], adapters["target"]
    diff = target.diff_from(source, flags=parsed)
    result = {"source": str(source), "target": str(target), "summary": diff.summary(), "dry_run": dry_run}
    if not as_json:
        click.echo(f"Diff of {source} -> {target}:")
        click.echo(diff.str())
        click.echo(f"Summary: {diff.summary()}")
    if not dry_run:
        target.sync_from(source, flags=parsed, diff=diff)
        result["after_sync"] = target.diff_from(source, flags=parsed).summary()
        if not as_json:
            click.echo(f"Synced. Re-diff summary: {result['after_sync']}")
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    return Exit.OK


@click.command()
@click.option("--state", type=click.Choice(STATES), help="only jobs in this state")
@click.option("--target", help="only jobs into this target adapter")
@click.option("--source", help="only jobs from this source adapter")
@click.option("--schedule", help="only jobs this schedule entry started ('': those none started)")
@click.option("--limit", type=click.IntRange(min=1), default=50, help="at most this many (default 50)")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def jobs(
    state: Optional[str], target: Optional[str], source: Optional[str], schedule: Optional[str], limit: int,
    as_json: bool,
) -> int:  # fmt: skip
    """Recent jobs, newest first: id, source -> target, state, changes, submitted, duration, schedule."""

    def body() -> int:
        found = list_jobs(state=state, target=target, source=source, schedule=schedule, limit=limit)
        if as_json:
            click.echo(json.dumps(found, sort_keys=True, default=str))
        else:
            print_jobs(Console(), found)
        return Exit.OK

    return guarded("jobs", body)


@click.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def status(job_id: str, as_json: bool) -> int:
    """A job's progress while it runs, its report once it ended."""
    return _status("status", job_id, as_json)


def _status(command: str, job_id: str, as_json: bool) -> int:
    """``status`` and ``show``: errors name the command typed."""

    def body() -> int:
        handle = known_job(job_id)
        report = handle.report()
        if report is not None:
            print_report(Console(), report, as_json)
            return exit_code_of(report)
        stage, current, total = handle.progress()
        target = handle.target()
        if as_json:
            shown = {"job_id": job_id, "stage": stage, "current": current, "total": total, "target": target}
            click.echo(json.dumps(shown))
        else:
            line = target_line(target)
            click.echo(f"job {job_id}: {stage} {current}/{total}" + (f"; {line}" if line else ""))
        return Exit.OK

    return guarded(command, body)


@click.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def show(job_id: str, as_json: bool) -> int:
    """A job's report (its exit code tells how the job ended; a running job shows its progress)."""
    return _status("show", job_id, as_json)


@click.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--type", "types", multiple=True, help="only elements of this model type (repeatable)")
@click.option(
    "--action",
    "actions",
    type=click.Choice(["create", "update", "delete"]),
    multiple=True,
    help="only this action (repeatable)",
)
@click.option("--json", "as_json", is_flag=True, help="print the selection as JSON")
def diff(job_id: str, types: List[str], actions: List[str], as_json: bool) -> int:
    """The diff a job computed, as a tree (elements above a selected one show where it belongs)."""

    def body() -> int:
        handle = known_job(job_id)
        found = handle.diff()
        if found is None:
            raise InvalidJob(f"job {job_id} has no diff yet (its diff step has not run)")
        unknown = sorted(set(types) - _element_types(found))
        if unknown:  # a typo would otherwise print an empty tree and succeed
            known = ", ".join(sorted(_element_types(found))) or "none"
            raise InvalidJob(f"no element of type {', '.join(unknown)} in the diff of job {job_id} (types: {known})")
        if as_json:
            click.echo(json.dumps(diff_json(found, list(types), list(actions)), sort_keys=True, default=str))
        else:
            Console().print(diff_tree(found, list(types), list(actions)))
        return Exit.OK

    return guarded("diff", body)


def _element_types(diff: Any) -> Set[str]:
    """Every model type in a diff, at any depth."""
    found: Set[str] = set()
    stack = list(diff.get_children())
    while stack:
        element = stack.pop()
        found.add(element.type)
        stack.extend(element.get_children())
    return found


@click.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--action", type=click.Choice(["create", "update", "delete"]), help="only this action")
@click.option("--model", help="only this model type")
@click.option(
    "--status",
    "status_",
    type=click.Choice(["success", "failure", "error", "skipped", "not run"], case_sensitive=False),
    help="only this status",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="skip this many entries")
@click.option("--limit", type=click.IntRange(min=1), default=100, help="at most this many entries (default 100)")
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
def log(
    job_id: str,
    action: Optional[str],
    model: Optional[str],
    status_: Optional[str],
    offset: int,
    limit: int,
    as_json: bool,
) -> int:
    """The per-object log of a job: action, model, unique id, status, message, in plan order."""

    def body() -> int:
        entries = known_job(job_id).log(action=action, model=model, status=status_, offset=offset, limit=limit)
        if as_json:
            click.echo(json.dumps(entries, sort_keys=True, default=str))
        else:
            print_log(Console(), entries)
        return Exit.OK

    return guarded("log", body)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON object")
def adapters(as_json: bool) -> int:
    """The registered adapters (code, entry points and SHARDSYNC_ADAPTER_MODULES, as a worker sees them)."""
    try:
        import_adapter_modules(get_settings().adapter_modules)
    except ShardsyncError as err:
        _err("adapters", str(err))
        return Exit.BAD_INPUT
    found = {name: f"{cls.__module__}.{cls.__qualname__}" for name, cls in sorted(registered_adapters().items())}
    if as_json:
        click.echo(json.dumps(found, sort_keys=True))
    else:
        for name, where in found.items():
            click.echo(f"{name}\t{where}")
    return Exit.OK


@click.command("check-schedule")
@click.argument("file", required=False)
def check_schedule(file: Optional[str]) -> int:
    """Validate a schedule file as beat reads it (default SHARDSYNC_SCHEDULE_FILE)."""
    path = file or get_settings().schedule_file
    if not path:
        _err("check-schedule", "no file given and SHARDSYNC_SCHEDULE_FILE is not set")
        return Exit.BAD_INPUT
    try:
        import_adapter_modules(get_settings().adapter_modules)
        schedule = load_schedule(path)
    except ShardsyncError as err:
        _err("check-schedule", str(err))
        return Exit.BAD_INPUT
    now = datetime.now(timezone.utc)
    for name, entry in schedule.items():
        job = entry["args"][0] if entry.get("args") else {}
        when, following = describe_schedule(entry["schedule"], now)
        click.echo(
            f"{name.removeprefix('shardsync:')}\t{when}\tnext {following}\t{job.get('source')} -> {job.get('target')}"
        )
    click.echo(f"{path}: {len(schedule)} scheduled syncs, all valid")
    return Exit.OK


def register_views(group: Any) -> None:
    """Add the reading commands to the ``shardsync`` group."""
    for command in (demo, jobs, status, show, diff, log, adapters, check_schedule):
        group.add_command(command)


__all__ = ["guarded", "known_job", "register_views"]
