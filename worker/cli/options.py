"""How the command line takes a job: the options of ``sync``, and TOML job files with the same names.

One list of names for both, so a job file is a ``sync`` command written down (for cron, for review).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Optional, Tuple

import click

from worker.errors import InvalidJob
from worker.job.spec import JobSpec


class _Json(click.ParamType):
    name = "JSON"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, dict):
            return value
        try:
            found = json.loads(value)
        except json.JSONDecodeError as err:
            self.fail(f"not valid JSON ({err})", param, ctx)
        if not isinstance(found, dict):
            self.fail("must be a JSON object", param, ctx)
        return found


class _Positive(click.ParamType):
    name = "N"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < 1:
            self.fail("must be 1 or more", param, ctx)
        return number


class _BatchSize(click.ParamType):
    name = "[MODEL=]N"

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        if isinstance(value, tuple):
            return value
        name, sep, number = str(value).rpartition("=")
        if sep and not name:
            self.fail(f"{value!r} names no model (MODEL=N)", param, ctx)
        return (name or None), _Positive().convert(number, param, ctx)


def batch_sizes(values: Tuple[Tuple[Optional[str], int], ...]) -> Any:
    """One number for every model, or MODEL=N pairs (the others keep their own ``_batch_size``)."""
    if not values:
        return None
    if all(name is None for name, _ in values):
        return values[-1][1]
    if any(name is None for name, _ in values):
        raise InvalidJob("invalid job spec: --batch-size takes one number or MODEL=N pairs, not both")
    return {name: size for name, size in values}


def job_options(func: Any) -> Any:
    """The options of a job (``sync`` and ``plan``); ``run FILE`` takes the same names as keys."""
    options = [
        click.option("--source", required=True, help="registered name of the source adapter"),
        click.option("--target", required=True, help="registered name of the target adapter"),
        click.option("--source-kwargs", type=_Json(), help="JSON object of the source adapter's arguments"),
        click.option(
            "--scope",
            type=_Json(),
            help='only this part of both sides: JSON {"types": [...], "ids": [...], "where": {TYPE: {ID: [...]}}, '
            '"children": [...]}; nothing outside it changes',
        ),
        click.option("--target-kwargs", type=_Json(), help="JSON object of the target adapter's arguments"),
        click.option("--flag", "flags", multiple=True, help="a DiffSyncFlags name (repeatable)"),
        click.option("--shard-size", type=_Positive(), help="most operations per shard (default SHARDSYNC_SHARD_SIZE)"),
        click.option(
            "--batch-size",
            "batch_size",
            type=_BatchSize(),
            multiple=True,
            help="most items per batch hook call, for every model or one (repeatable)",
        ),
        click.option(
            "--delete-limit",
            help="fail before any change if the diff deletes more than this: a count, "
            "a share ('50%') or 'none' (default SHARDSYNC_DELETE_LIMIT, 50%)",
        ),
        click.option("--allow-deletes", is_flag=True, help="never stopped by the delete guardrail"),
        click.option(
            "--keep-stores/--drop-stores",
            "keep_stores",
            default=None,
            help="keep the job's two stores after it ends, for inspection (default SHARDSYNC_KEEP_STORES: drop)",
        ),
        click.option("--deadline", type=int, help="seconds after which the job fails if not ended"),
        click.option(
            "--diff-range", type=_Positive(), help="top-level elements per diff task (default SHARDSYNC_DIFF_RANGE)"
        ),
        click.option("--no-barrier", is_flag=True, help="top-level types are independent: no waves"),
        click.option(
            "--retry-attempts",
            type=_Positive(),
            help="calls in all of a hook whose remote says 'try later' (default 5)",
        ),
        click.option("--retry-seconds", type=float, help="most seconds an operation is tried again (default 120)"),
        click.option("--max-concurrency", type=_Positive(), help="most calls in flight to the target, all workers"),
        click.option("--max-rate", type=float, help="most calls per second to the target, all workers"),
        click.option("--call-timeout", type=float, help="most seconds one call to the target may take"),
        click.option(
            "--outage-budget", type=float, help="seconds the target may stay unavailable before the job fails"
        ),
        click.option(
            "--pair",
            help="name of an incremental pair: its stores and change cursors are kept between its jobs, and a job "
            "reads only what changed (see --full)",
        ),
        click.option("--full", is_flag=True, help="with --pair: a full reconcile now (both sides whole)"),
        click.option(
            "--coalesce", type=float,
            help="seconds to wait for more requests of the same pair, joined into one job (a follow-up while one runs)",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def follow_options(func: Any) -> Any:
    """How a command follows a job: where it runs, whether it waits, what it prints."""
    options = [
        click.option("--local", is_flag=True, help="run the whole pipeline in this process (no Redis)"),
        click.option("--no-wait", is_flag=True, help="print the job id and return at once"),
        click.option("--timeout", type=float, help="stop following after this many seconds (the job goes on)"),
        click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object"),
        click.option(
            "-v", "--verbose", count=True,
            help="log engine events (-v info, -vv debug): with --local here; a job on workers logs them there",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


SPEC_FIELDS = tuple(name for name in JobSpec.model_fields if name not in ("job_id", "apply_of"))
"""The spec's fields a command line or a job file sets: read from ``JobSpec``, never listed again here."""

OPTION_NAMES = {"top_level_barrier": "no_barrier"}
"""Spec fields whose option (and job file key) has a name of its own: ``--no-barrier`` negates the barrier."""

RETRY_OPTIONS = {"retry_attempts": "attempts", "retry_seconds": "seconds"}
"""The options that set fields of the spec's ``retry`` (a job file gives ``retry`` as a table, or these)."""

LIMITS_OPTIONS = {"max_concurrency": "concurrency", "max_rate": "rate", "call_timeout": "call_timeout"}
"""The options that set fields of the spec's ``limits`` (a job file gives ``limits`` as a table, or these)."""

GROUPED = {"retry": RETRY_OPTIONS, "limits": LIMITS_OPTIONS}
"""Spec fields that are tables, each set by options of its own."""

JOB_FILE_KEYS = frozenset(OPTION_NAMES.get(name, name) for name in SPEC_FIELDS).union(*GROUPED.values())
"""A job file's keys: the spec's fields, by their option's name."""


def spec_data(options: Dict[str, Any], dry_run: bool) -> Dict[str, Any]:
    """The job spec from command options (or a job file's keys, which use the same names).

    Every spec field an option sets, by the option's name; an option not given leaves the spec's default.
    """
    data: Dict[str, Any] = {}
    for name in SPEC_FIELDS:
        value = options.get(OPTION_NAMES.get(name, name))
        if name in ("source_kwargs", "target_kwargs"):
            value = value or {}
        elif name == "flags":
            value = list(value or [])
        elif name == "top_level_barrier":
            value = not value
        elif name == "batch_size":
            value = batch_sizes(tuple(value or ()))
        elif name == "allow_deletes":
            value = bool(value)
        elif name == "dry_run":
            value = dry_run
        elif name in GROUPED:
            value = dict(value or {})
            given = {option: options.get(option) for option in GROUPED[name]}
            value.update({GROUPED[name][option]: got for option, got in given.items() if got is not None})
            value = value or None
        if value is not None:
            data[name] = value
    return data


def read_job_file(path: str) -> Dict[str, Any]:
    """A job file, TOML (``*.toml``) or JSON (``*.json``) as schedule files are, as sync's options.

    Unknown keys and missing adapters are named.

    Raises:
        ValueError: naming the problem.
    """
    if sys.version_info >= (3, 11):
        import tomllib  # pylint: disable=import-outside-toplevel
    else:  # pragma: no cover
        import tomli as tomllib  # pylint: disable=import-outside-toplevel
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".toml", ".json"):
        raise ValueError("a job file is TOML (*.toml) or JSON (*.json), told by its extension")
    with open(path, "rb") as handle:
        try:
            data = tomllib.load(handle) if suffix == ".toml" else json.load(handle)
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"not valid TOML ({err})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError("a job file holds one object (a table) of sync's options")
    unknown = sorted(set(data) - JOB_FILE_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; a job file takes {', '.join(sorted(JOB_FILE_KEYS))}")
    for key in ("source", "target"):
        if not isinstance(data.get(key), str):
            raise ValueError(f"{key!r} must be given, as a registered adapter name")
    batch = data.get("batch_size")
    if isinstance(batch, dict):
        data["batch_size"] = tuple(batch.items())
    elif batch is not None:
        data["batch_size"] = ((None, batch),)
    return data
