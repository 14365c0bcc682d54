"""The ``shardsync`` command line (click, with rich): run and follow sync jobs; ``worker.cli.views`` reads them.

Every command exits with one of the codes of ``worker.cli.display.Exit``, so scripts and schedulers can tell a
failed job from bad input, an unreachable Redis, a timeout or a job that completed with failures.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from typing import Any, Dict, List, Optional

import click
import structlog
from rich.console import Console

from core.logging import enable_console_logging
from worker.api import REDIS_PATIENCE, JobHandle, submit_spec
from worker.cli.display import Exit, Follower, exit_code_of, print_report
from worker.cli.display import complain as _err
from worker.cli.options import follow_options, job_options, read_job_file, spec_data
from worker.cli.views import JOB_ID, guarded, known_job, register_views
from worker.cli.web import web
from worker.errors import InvalidJob, InvalidSetting, JobFailed, RedisUnavailable, ShardsyncError, UnknownAdapter
from worker.job.spec import JobSpec
from worker.pairs.runs import forget_pair, list_pairs
from worker.runners.local import run_local

NO_WORKER_AFTER = 5.0
"""Seconds a job may stay queued before the command checks that some worker consumes its queue."""


def quiet_engine(verbose: int) -> None:
    """Engine log events on the console only when asked for (-v info, -vv debug)."""
    if verbose:
        enable_console_logging(verbosity=verbose)
        # The engine's and shardsync's events, not the libraries' debug chatter (redis-py's "Failed to enable
        # maintenance notifications" per connection against a Redis before 7.2, kombu's, Celery's).
        for library in ("redis", "kombu", "celery", "amqp"):
            logging.getLogger(library).setLevel(logging.WARNING)
    else:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def launch(
    command: str,
    data: Dict[str, Any],
    local: bool,
    no_wait: bool,
    timeout: Optional[float],
    as_json: bool,
    verbose: int,
) -> int:
    """Validate, submit (or run here) and follow a job; returns the exit code."""
    try:
        spec = JobSpec.from_data(data)
    except (InvalidJob, UnknownAdapter) as err:
        _err(command, str(err))
        return Exit.BAD_INPUT
    quiet_engine(verbose)
    console = Console(stderr=True)
    mode = "quiet" if as_json else ("live" if console.is_terminal else "plain")
    if local:
        follower = Follower(console, mode, spec.job_id)
        try:
            with follower:
                report = run_local(spec, callback=follower.update)
                follower.finish()
        except JobFailed as err:
            if err.report:
                print_report(Console(), err.report, as_json)
            _err(command, str(err))
            return Exit.JOB_FAILED
        print_report(Console(), report, as_json)
        return exit_code_of(report)
    try:
        handle = submit_spec(spec)
    except InvalidJob as err:
        _err(command, str(err))
        return Exit.BAD_INPUT
    except ShardsyncError as err:
        _err(command, str(err))
        return Exit.REDIS
    if no_wait:
        click.echo(handle.id)
        return Exit.OK
    if not as_json:
        console.print(f"job {handle.id} submitted ({spec.source} -> {spec.target})", highlight=False)
    return follow(command, handle, console, mode, timeout, as_json)


def follow(
    command: str, handle: JobHandle, console: Console, mode: str, timeout: Optional[float], as_json: bool
) -> int:
    """Show a job's progress until it ends; Ctrl-C detaches (the job goes on). Returns the exit code."""
    deadline = None if timeout is None else time.monotonic() + timeout
    follower = Follower(console, mode, handle.id)
    queued_since = time.monotonic()
    warned = False
    try:
        with follower:
            unreachable_since: Optional[float] = None
            while True:
                try:
                    stage, current, total = handle.progress()  # "done" / "failed" once the job's state is final
                    unreachable_since = None
                except RedisUnavailable as err:  # a restart or a failover: ride it out, then say so
                    if unreachable_since is None:
                        unreachable_since = time.monotonic()
                        follower.note(f"Redis does not answer; still trying for {REDIS_PATIENCE:g} s ({err})")
                    if time.monotonic() - unreachable_since > REDIS_PATIENCE:
                        raise
                    time.sleep(0.5)
                    continue
                if stage in ("done", "failed"):
                    break
                if stage == "sync":
                    follower.update(stage, current, total, handle.shards(), handle.target())
                else:
                    follower.update(stage, current, total)
                if stage != "queued":
                    queued_since = time.monotonic()
                elif not warned and time.monotonic() - queued_since > NO_WORKER_AFTER:
                    warned = True
                    missing = missing_consumers()
                    if missing:
                        follower.note(missing)
                if deadline is not None and time.monotonic() > deadline:
                    _err(
                        command,
                        f"job {handle.id} still running after {timeout} s; it goes on: shardsync watch {handle.id}",
                    )
                    return Exit.TIMEOUT
                time.sleep(0.2)  # between two polls of the result backend
            follower.finish()
        report = handle.wait(timeout=30)
    except KeyboardInterrupt:
        _err(
            command,
            f"detached from job {handle.id}, which goes on. Follow it with `shardsync watch "
            f"{handle.id}`, stop it with `shardsync cancel {handle.id}`",
        )
        return Exit.DETACHED
    except JobFailed as err:
        if err.report:
            print_report(Console(), err.report, as_json)
        _err(command, str(err))
        return Exit.JOB_FAILED
    except ShardsyncError as err:
        _err(command, str(err))
        return Exit.REDIS
    print_report(Console(), report, as_json)
    return exit_code_of(report)


def missing_consumers() -> Optional[str]:
    """A warning when no worker consumes the jobs queue (a job would wait for ever), else None."""
    from worker.runners.celery.app import app  # pylint: disable=import-outside-toplevel
    from worker.settings import get_settings  # pylint: disable=import-outside-toplevel

    queue = get_settings().jobs_queue
    try:
        replies = app.control.inspect(timeout=1.0).active_queues() or {}
    except Exception:  # noqa: BLE001 - the broker answers the job's own polling; this check is best effort
        return None
    if any(queue in {q.get("name") for q in queues} for queues in replies.values()):
        return None
    return (
        f"no worker is consuming queue {queue}: the job waits until one starts "
        f"(celery -A worker worker -Q {queue},{get_settings().shards_queue})"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shardsync", prog_name="shardsync")
def cli() -> None:
    """shardsync: keep two datasets in step, on workers or in this process."""


@cli.command()
@job_options
@click.option("--dry-run", is_flag=True, help="diff and plan only; change nothing")
@follow_options
def sync(
    dry_run: bool, local: bool, no_wait: bool, timeout: Optional[float], as_json: bool, verbose: int, **options: Any
) -> int:
    """Run a sync job on the workers (or in this process with --local) and follow it."""
    try:
        data = spec_data(options, dry_run)
    except InvalidJob as err:
        _err("sync", str(err))
        return Exit.BAD_INPUT
    return launch("sync", data, local, no_wait, timeout, as_json, verbose)


@cli.command()
@job_options
@follow_options
def plan(local: bool, no_wait: bool, timeout: Optional[float], as_json: bool, verbose: int, **options: Any) -> int:
    """Diff and plan only, keeping the diff for review (shardsync diff/log) and for `shardsync apply`."""
    if local:
        _err("plan", "a plan is kept in Redis for `shardsync apply`: --local cannot keep it")
        return Exit.BAD_INPUT
    try:
        data = spec_data(options, True)
    except InvalidJob as err:
        _err("plan", str(err))
        return Exit.BAD_INPUT
    data.setdefault("job_id", uuid.uuid4().hex)  # known here, for the hints below
    job_id = data["job_id"]
    code = launch("plan", data, False, no_wait, timeout, as_json, verbose)
    if code == Exit.OK and not as_json and not no_wait:
        click.echo(
            f"review it with `shardsync diff {job_id}`; apply exactly it with `shardsync apply {job_id}`", err=True
        )
    return code


@cli.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--no-wait", is_flag=True, help="print the new job's id and return at once")
@click.option("--timeout", type=float, help="stop following after this many seconds (the job goes on)")
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
def apply(job_id: str, no_wait: bool, timeout: Optional[float], as_json: bool) -> int:
    """Apply exactly the plan JOB_ID made; refused if the target changed since in a subtree it touches."""
    code = _known("apply", job_id)
    if code is not None:
        return code
    try:
        handle = JobHandle(job_id).apply()
    except InvalidJob as err:
        _err("apply", str(err))
        return Exit.BAD_INPUT
    except ShardsyncError as err:
        _err("apply", str(err))
        return Exit.REDIS
    if no_wait:
        click.echo(handle.id)
        return Exit.OK
    quiet_engine(0)
    console = Console(stderr=True)
    if not as_json:
        console.print(f"job {handle.id} submitted (applying plan {job_id})", highlight=False)
    mode = "quiet" if as_json else ("live" if console.is_terminal else "plain")
    return follow("apply", handle, console, mode, timeout, as_json)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="compute the diff and plan only, whatever the file says")
@follow_options
def run(
    file: str, dry_run: bool, local: bool, no_wait: bool, timeout: Optional[float], as_json: bool, verbose: int
) -> int:
    """Run the job a TOML or JSON file describes (the keys are sync's options: source, target, source_kwargs...)."""
    try:
        options = read_job_file(file)
        data = spec_data(options, dry_run or bool(options.get("dry_run", False)))
    except (OSError, ValueError, KeyError, InvalidJob) as err:
        _err("run", f"{file}: {err}")
        return Exit.BAD_INPUT
    return launch("run", data, local, no_wait, timeout, as_json, verbose)


@cli.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--timeout", type=float, help="stop watching after this many seconds (the job goes on)")
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
def watch(job_id: str, timeout: Optional[float], as_json: bool) -> int:
    """Follow a job until it ends, as sync does; its exit code tells how it ended."""
    code = _known("watch", job_id)
    if code is not None:
        return code
    quiet_engine(0)
    console = Console(stderr=True)
    mode = "quiet" if as_json else ("live" if console.is_terminal else "plain")
    return follow("watch", JobHandle(job_id), console, mode, timeout, as_json)


def _known(command: str, job_id: str) -> Optional[int]:
    """None when the job is known; else the exit code, after saying why (``worker.cli.views.guarded``)."""
    code = guarded(command, lambda: known_job(job_id) and Exit.OK)
    return None if code == Exit.OK else code


@cli.command()
@click.argument("job_id", type=JOB_ID)
@click.option("--reason", default="cancelled from the command line", help="recorded in the report")
def cancel(job_id: str, reason: str) -> int:
    """Stop a running job (it ends failed, with a report of what was done)."""
    code = _known("cancel", job_id)
    if code is not None:
        return code
    handle = JobHandle(job_id)
    try:
        report = handle.report()
        if report is not None:
            click.echo(f"job {job_id} had already ended ({report['status']}): nothing to cancel")
            return Exit.OK
        handle.cancel(reason)
    except ShardsyncError as err:
        _err("cancel", str(err))
        return Exit.BAD_INPUT if isinstance(err, InvalidJob) else Exit.REDIS
    click.echo(
        f"job {job_id}: cancel requested; running shards stop before their next subtree (shardsync watch {job_id})"
    )
    return Exit.OK


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print them as one JSON list")
def pairs(as_json: bool) -> int:
    """List the incremental pairs kept in Redis: what they sync, their state, last run and objects."""
    try:
        found = list_pairs()
    except ShardsyncError as err:
        _err("pairs", str(err))
        return Exit.REDIS
    if as_json:
        click.echo(json.dumps(found, sort_keys=True, default=str))
        return Exit.OK
    if not found:
        click.echo("no pair is kept (a job with --pair NAME keeps one)")
    for pair in found:
        click.echo(
            f"{pair['pair']}: {pair['source']} -> {pair['target']}, {pair['state']}, last job {pair['last_job']}, "
            f"{pair['runs_since_full']} runs since the full one of {pair['full_at'] or 'never'}; objects "
            f"{pair['objects']['source']} / {pair['objects']['target']}"
        )
    return Exit.OK


@cli.command()
@click.argument("pair")
def forget(pair: str) -> int:
    """Drop an incremental pair's kept stores and cursors (its next job loads both sides whole)."""
    try:
        kept = forget_pair(pair)
    except ShardsyncError as err:
        _err("forget", str(err))
        return Exit.BAD_INPUT if isinstance(err, InvalidJob) else Exit.REDIS
    said = "forgotten" if kept else "was not kept (nothing to forget)"
    click.echo(f"pair {pair}: {said}; its next job is a full one")
    return Exit.OK


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=9808, show_default=True, help="TCP port")
@click.option("--addr", default="0.0.0.0", show_default=True, help="address to listen on (0.0.0.0: every interface)")
def metrics(port: int, addr: str) -> int:
    """Serve the jobs' metrics (read from Redis) for Prometheus at /metrics, until SIGTERM or Ctrl-C."""
    from worker.cli.exporter import run_exporter  # here: the exporter's module stays out of the other commands

    return run_exporter(port, addr)  # 0 when stopped; 2 (Exit.BAD_INPUT) if the address cannot be bound


register_views(cli)
cli.add_command(web)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``shardsync`` console script; returns the exit code (``worker.cli.display.Exit``)."""
    try:
        code = cli.main(args=argv, prog_name="shardsync", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else str(err))
        return Exit.OK
    except click.UsageError as err:
        err.show()
        raise SystemExit(Exit.BAD_INPUT) from None
    except click.ClickException as err:
        err.show()
        return Exit.BAD_INPUT
    except click.Abort:
        click.echo("aborted", err=True)
        return Exit.DETACHED
    except InvalidSetting as err:  # a SHARDSYNC_ variable, read by whichever command needed it first
        click.echo(f"shardsync: {err}", err=True)
        return Exit.BAD_INPUT
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
