"""The ``shardsync`` command line: the demo, sync jobs (on workers or ``--local``), their status, the registry."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import structlog

from core.enum import DiffSyncFlags
from core.logging import enable_console_logging
from worker.api import JobHandle, submit_spec
from worker.demo import demo_adapters
from worker.errors import InvalidJob, JobFailed, ShardsyncError, UnknownAdapter
from worker.local import run_local
from worker.registry import import_adapter_modules, registered_adapters
from worker.schedule import load_schedule
from worker.settings import get_settings
from worker.spec import JobSpec, check_job_id, parse_flags


def _parse_flags(names: List[str]) -> DiffSyncFlags:
    try:
        return parse_flags(names)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _quiet_engine(verbose: int) -> None:
    """Engine log events on the console only when asked for (-v info, -vv debug)."""
    if verbose:
        enable_console_logging(verbosity=verbose)
    else:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def _demo(args: argparse.Namespace) -> int:
    try:
        flags = _parse_flags(args.flag or [])
    except argparse.ArgumentTypeError as err:
        print(f"shardsync demo: {err}", file=sys.stderr)
        return 2
    _quiet_engine(args.verbose)

    adapters = demo_adapters(sites=args.sites, seed=args.seed)
    source, target = adapters["source"], adapters["target"]
    diff = target.diff_from(source, flags=flags)
    summary = diff.summary()
    result = {"source": str(source), "target": str(target), "summary": summary, "dry_run": args.dry_run}
    if not args.json:
        print(f"Diff of {source} -> {target}:")
        print(diff.str())
        print(f"Summary: {summary}")
    if not args.dry_run:
        target.sync_from(source, flags=flags, diff=diff)
        after = target.diff_from(source, flags=flags).summary()
        result["after_sync"] = after
        if not args.json:
            print(f"Synced. Re-diff summary: {after}")
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0


def _kwargs_arg(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object of constructor arguments")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _batch_size_arg(text: str) -> Tuple[Optional[str], int]:
    name, sep, number = text.rpartition("=")
    if sep and not name:
        raise argparse.ArgumentTypeError(f"{text!r} names no model (MODEL=N)")
    return (name or None), _positive(number)


def _batch_sizes(values: Optional[List[Tuple[Optional[str], int]]]) -> Any:
    """One number for every model, or MODEL=N pairs (the others keep their own ``_batch_size``)."""
    if not values:
        return None
    if all(name is None for name, _ in values):
        return values[-1][1]
    if any(name is None for name, _ in values):
        raise InvalidJob("invalid job spec: --batch-size takes one number or MODEL=N pairs, not both")
    return {name: size for name, size in values}


def _print_report(report: Dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, sort_keys=True, default=str))
        return
    print(f"job {report['job_id']}: {report['status']}" + (f" ({report['error']})" if report.get("error") else ""))
    print(f"  {report['source']} -> {report['target']}, diff {report.get('summary')}")
    print(f"  operations {report['operations']} in {len(report['shards'])} shards, {report['waves']} waves")
    for action, per_status in sorted(report["counts"].items()):
        print(f"  {action}: " + ", ".join(f"{status} {count}" for status, count in sorted(per_status.items())))
    for failure in report["failures"][:20]:
        print(f"  FAILED {failure['action']} {failure['model']} {failure['unique_id']}: {failure['message']}")
    if len(report["failures"]) > 20:
        print(f"  ... and {len(report['failures']) - 20} more failures (see --json)")
    seconds = ", ".join(f"{stage} {value:.2f}s" for stage, value in report["seconds"].items())
    print(f"  seconds: {seconds}")
    print(f"  workers: {', '.join(report['workers'])}")


def _sync(args: argparse.Namespace) -> int:
    data: Dict[str, Any] = {
        "source": args.source,
        "target": args.target,
        "source_kwargs": args.source_kwargs or {},
        "target_kwargs": args.target_kwargs or {},
        "flags": args.flag or [],
        "dry_run": args.dry_run,
        "top_level_barrier": not args.no_barrier,
        "deadline": args.deadline,
        "delete_limit": args.delete_limit,
        "allow_deletes": args.allow_deletes,
    }
    if args.shard_size is not None:
        data["shard_size"] = args.shard_size
    try:
        data["batch_size"] = _batch_sizes(args.batch_size)
        spec = JobSpec.from_data(data)
    except (InvalidJob, UnknownAdapter) as err:
        print(f"shardsync sync: {err}", file=sys.stderr)
        return 2

    _quiet_engine(args.verbose)
    shown = {"stage": "", "at": 0.0}

    def show(stage: str, current: int, total: int) -> None:
        now = time.monotonic()
        if args.json or (stage == shown["stage"] and now - shown["at"] < 0.2 and current != total):
            return
        shown.update(stage=stage, at=now)
        print(f"\r  {stage:<12} {current}/{total}      ", end="", file=sys.stderr, flush=True)

    try:
        if args.local:
            report = run_local(spec, callback=show)
        else:
            handle = submit_spec(spec)
            if args.no_wait:
                print(handle.id)
                return 0
            report = _follow(handle, args.timeout, show)
    except JobFailed as err:
        if not args.json:
            print(file=sys.stderr)
        if err.report:
            _print_report(err.report, args.json)
        print(f"shardsync sync: {err}", file=sys.stderr)
        return 1
    except (ShardsyncError, TimeoutError) as err:
        print(f"\nshardsync sync: {err}", file=sys.stderr)
        return 3
    if not args.json:
        print(file=sys.stderr)
    _print_report(report, args.json)
    return 0


def _follow(handle: Any, timeout: Optional[float], show: Callable[[str, int, int], None]) -> Dict[str, Any]:
    """Wait for a job, showing its progress."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not handle.done():
        show(*handle.progress())
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {handle.id} still running after {timeout} s; see `shardsync status {handle.id}`")
        time.sleep(0.2)  # between two polls of the result backend
    return handle.wait(timeout=30)


def _status(args: argparse.Namespace) -> int:
    try:
        check_job_id(args.job_id)
    except InvalidJob as err:
        print(f"shardsync status: {err}", file=sys.stderr)
        return 2
    handle = JobHandle(args.job_id)
    try:
        report = handle.report()
        stage, current, total = handle.progress()
        known = report is not None or handle.known()
    except ShardsyncError as err:
        print(f"shardsync status: {err}", file=sys.stderr)
        return 3
    if not known:
        print(f"shardsync status: job {args.job_id} is unknown (or its record expired)", file=sys.stderr)
        return 2
    if report is not None:
        _print_report(report, args.json)
        return 0 if report["status"] != "failed" else 1
    if args.json:
        print(json.dumps({"job_id": args.job_id, "stage": stage, "current": current, "total": total}))
    else:
        print(f"job {args.job_id}: {stage} {current}/{total}")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    try:
        check_job_id(args.job_id)
        JobHandle(args.job_id).cancel(args.reason)
    except ShardsyncError as err:
        print(f"shardsync cancel: {err}", file=sys.stderr)
        return 2 if isinstance(err, InvalidJob) else 3
    print(f"job {args.job_id}: cancel requested")
    return 0


def _adapters(args: argparse.Namespace) -> int:
    for name, cls in sorted(registered_adapters().items()):
        print(f"{name}\t{cls.__module__}.{cls.__qualname__}")
    return 0


def _check_schedule(args: argparse.Namespace) -> int:
    path = args.file or get_settings().schedule_file
    if not path:
        print("shardsync check-schedule: no file given and SHARDSYNC_SCHEDULE_FILE is not set", file=sys.stderr)
        return 2
    try:
        import_adapter_modules(get_settings().adapter_modules)
        schedule = load_schedule(path)
    except ShardsyncError as err:
        print(f"shardsync check-schedule: {err}", file=sys.stderr)
        return 2
    for name, entry in schedule.items():
        job = entry["args"][0]
        print(f"{name.removeprefix('shardsync:')}\t{entry['schedule']}\t{job['source']} -> {job['target']}")
    print(f"{path}: {len(schedule)} scheduled syncs, all valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (kept separate so tests can inspect it)."""
    parser = argparse.ArgumentParser(prog="shardsync", description="Keep two datasets in step.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="diff and sync the bundled demo inventories in this process")
    demo.add_argument("--sites", type=int, default=3, help="number of sites in the demo inventory (default 3)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the generated data (default 1)")
    demo.add_argument("--dry-run", action="store_true", help="show the diff only; change nothing")
    demo.add_argument("--flag", action="append", help="a DiffSyncFlags name, e.g. continue_on_failure (repeatable)")
    demo.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    demo.add_argument("-v", "--verbose", action="count", default=0, help="log engine events (-v info, -vv debug)")
    demo.set_defaults(func=_demo)

    sync = sub.add_parser("sync", help="run a sync job on the workers (or in this process with --local)")
    sync.add_argument("--source", required=True, help="registered name of the source adapter")
    sync.add_argument("--target", required=True, help="registered name of the target adapter")
    sync.add_argument("--source-kwargs", type=_kwargs_arg, help="JSON object of the source adapter's arguments")
    sync.add_argument("--target-kwargs", type=_kwargs_arg, help="JSON object of the target adapter's arguments")
    sync.add_argument("--flag", action="append", help="a DiffSyncFlags name (repeatable)")
    sync.add_argument("--dry-run", action="store_true", help="diff and plan only; change nothing")
    sync.add_argument("--shard-size", type=_positive, help="most operations per shard (default SHARDSYNC_SHARD_SIZE)")
    sync.add_argument(
        "--batch-size",
        type=_batch_size_arg,
        action="append",
        metavar="[MODEL=]N",
        help="most items per batch hook call, for every model or one (repeatable; default: each model's own)",
    )
    sync.add_argument(
        "--delete-limit",
        help="fail before any change if the diff deletes more than this: a count, a share ('50%%') or 'none' "
        "(default SHARDSYNC_DELETE_LIMIT, 50%%)",
    )
    sync.add_argument("--allow-deletes", action="store_true", help="never stopped by the delete guardrail")
    sync.add_argument(
        "--deadline", type=int, help="seconds after which the job fails if not ended (default SHARDSYNC_JOB_DEADLINE)"
    )
    sync.add_argument("--no-barrier", action="store_true", help="top-level types are independent: no waves")
    sync.add_argument("--local", action="store_true", help="run the whole pipeline in this process (no Redis)")
    sync.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    sync.add_argument("--timeout", type=float, help="give up waiting after this many seconds (the job goes on)")
    sync.add_argument("--json", action="store_true", help="print the report as one JSON object")
    sync.add_argument("-v", "--verbose", action="count", default=0, help="log engine events (-v info, -vv debug)")
    sync.set_defaults(func=_sync)

    status = sub.add_parser("status", help="show a job's progress, or its report once it ended")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(func=_status)

    cancel = sub.add_parser("cancel", help="stop a running job (it ends failed, with a report)")
    cancel.add_argument("job_id")
    cancel.add_argument("--reason", default="cancelled from the command line", help="recorded in the report")
    cancel.set_defaults(func=_cancel)

    adapters = sub.add_parser("adapters", help="list the registered adapters")
    adapters.set_defaults(func=_adapters)

    check = sub.add_parser("check-schedule", help="validate a schedule file as beat would read it")
    check.add_argument("file", nargs="?", help="the schedule file (default SHARDSYNC_SCHEDULE_FILE)")
    check.set_defaults(func=_check_schedule)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``shardsync`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "sites", 1) < 0:
        parser.error("--sites must be 0 or more")
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
