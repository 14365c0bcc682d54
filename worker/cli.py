"""The ``shardsync`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from core.enum import DiffSyncFlags

_FLAG_NAMES = {name.lower(): flag for name, flag in DiffSyncFlags.__members__.items() if name != "NONE"}


def _parse_flags(names: List[str]) -> DiffSyncFlags:
    flags = DiffSyncFlags.NONE
    for name in names:
        key = name.strip().lower().replace("-", "_")
        if key not in _FLAG_NAMES:
            raise argparse.ArgumentTypeError(f"unknown flag {name!r}; known flags: {', '.join(sorted(_FLAG_NAMES))}")
        flags |= _FLAG_NAMES[key]
    return flags


def _demo(args: argparse.Namespace) -> int:
    from worker.demo import demo_adapters  # pylint: disable=import-outside-toplevel

    try:
        flags = _parse_flags(args.flag or [])
    except argparse.ArgumentTypeError as err:
        print(f"shardsync demo: {err}", file=sys.stderr)
        return 2
    if args.verbose:
        from core.logging import enable_console_logging  # pylint: disable=import-outside-toplevel

        enable_console_logging(verbosity=args.verbose)
    else:
        import logging  # pylint: disable=import-outside-toplevel

        import structlog  # pylint: disable=import-outside-toplevel

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

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
