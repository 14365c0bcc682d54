"""Scheduled syncs for ``celery -A worker beat``, read from the TOML or JSON file named by SHARDSYNC_SCHEDULE_FILE.

The format is told by the file's extension, ``.toml`` or ``.json`` (anything else is refused: a file read in
the wrong format would fail with a confusing parse error, or worse, half-parse). In TOML::

    [[syncs]]
    name = "nautobot-to-network"
    every = 3600
    job = { source = "nautobot", target = "network", flags = ["continue_on_failure"] }

    [[syncs]]
    name = "nightly-ipam"
    cron = "0 2 * * *"
    [syncs.job]
    source = "ipam"
    target = "dns"
    source_kwargs = { url = "https://ipam.example" }

and the same in JSON::

    {"syncs": [
        {"name": "nautobot-to-network", "every": 3600,
         "job": {"source": "nautobot", "target": "network", "flags": ["continue_on_failure"]}},
        {"name": "nightly-ipam", "cron": "0 2 * * *",
         "job": {"source": "ipam", "target": "dns", "source_kwargs": {"url": "https://ipam.example"}}}
    ]}

Each entry runs its job (a spec without ``job_id``: each run gets a new id) every ``every`` seconds or at the
times of a five-field ``cron`` expression (minute hour day-of-month month day-of-week, UTC). A tick that
finds the entry's previous run still running starts nothing: it is skipped and counted (``worker.schedule.ticks``).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, Tuple

from celery.schedules import crontab

from worker.errors import InvalidJob
from worker.job.spec import JobSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib; tomli is its backport (a dependency there only)
    import tomli as tomllib

ENTRY_PREFIX = "shardsync:"
"""Beat's name of an entry is this plus the entry's name (beat's messages carry it)."""

SCHEDULED_TASK = "shardsync.scheduled"
"""The Celery task a beat entry sends: it submits one run of the entry's job (``worker.runners.celery.tasks``)."""

FORMATS = (".toml", ".json")
"""Extensions of the schedule files understood, each naming its format."""


def entry_name(beat_name: str) -> str:
    """The schedule file's name of an entry, from the name beat gives it (and its messages carry)."""
    return beat_name[len(ENTRY_PREFIX) :] if beat_name.startswith(ENTRY_PREFIX) else beat_name


def read_schedule_file(path: str) -> Any:
    """The file's content as plain data, parsed as its extension says.

    Raises:
        InvalidJob: naming the file and why it cannot be read or parsed.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidJob(
            f"schedule file {path}: unknown format {suffix or '(no extension)'!r}; name it *.toml or *.json"
        )
    try:
        if suffix == ".toml":
            with open(path, "rb") as handle:  # tomllib reads bytes: the file is UTF-8 by the TOML spec
                return tomllib.load(handle)
        return json.loads(Path(path).read_text())
    except OSError as err:
        raise InvalidJob(f"schedule file {path}: cannot be read ({err})") from None
    except UnicodeDecodeError as err:
        raise InvalidJob(f"schedule file {path}: not UTF-8 text ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise InvalidJob(f"schedule file {path}: not valid TOML ({err})") from None
    except json.JSONDecodeError as err:
        raise InvalidJob(f"schedule file {path}: not valid JSON ({err})") from None


def load_schedule(path: str) -> Dict[str, Dict[str, Any]]:
    """Read a schedule file (TOML or JSON) into Celery's ``beat_schedule``; every job is validated now.

    Raises:
        InvalidJob: naming the file, the entry and what is wrong with it.
    """
    data = read_schedule_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("syncs"), list):
        shape = "[[syncs]] tables" if path.lower().endswith(".toml") else '{"syncs": [...]}'
        raise InvalidJob(f"schedule file {path}: expected {shape}")
    schedule: Dict[str, Dict[str, Any]] = {}
    for position, entry in enumerate(data["syncs"]):
        name, beat_entry = _entry(path, position, entry)
        if name in schedule:
            raise InvalidJob(f"schedule file {path}, entry {entry_name(name)!r}: the name is used twice")
        schedule[name] = beat_entry
    return schedule


def _entry(path: str, position: int, entry: Any) -> Tuple[str, Dict[str, Any]]:
    """One entry of the file as beat's name and entry (the job validated), or an error naming it."""
    where = f"schedule file {path}, entry {position}"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
        raise InvalidJob(f"{where}: needs a non-empty 'name'")
    where = f"schedule file {path}, entry {entry['name']!r}"
    unknown = set(entry) - {"name", "every", "cron", "job"}
    if unknown:
        raise InvalidJob(f"{where}: unknown keys {sorted(unknown)}")
    if ("every" in entry) == ("cron" in entry):
        raise InvalidJob(f"{where}: give exactly one of 'every' (seconds) or 'cron'")
    if "every" in entry:
        every = entry["every"]
        if isinstance(every, bool) or not isinstance(every, (int, float)) or not 0 < every < float("inf"):
            raise InvalidJob(f"{where}: 'every' must be a positive number of seconds")
        when: Any = float(every)
    else:
        if not isinstance(entry["cron"], str):
            raise InvalidJob(f"{where}: 'cron' must be a string of five fields, not {entry['cron']!r}")
        fields = entry["cron"].split()
        if len(fields) != 5:
            raise InvalidJob(f"{where}: 'cron' needs five fields (minute hour day-of-month month day-of-week)")
        try:
            when = crontab(*fields[:2], day_of_month=fields[2], month_of_year=fields[3], day_of_week=fields[4])
        except Exception as err:  # noqa: BLE001 - celery raises several types for bad fields
            raise InvalidJob(f"{where}: bad 'cron' {entry['cron']!r} ({err})") from None
    job = entry.get("job")
    if not isinstance(job, dict):
        raise InvalidJob(f"{where}: needs a 'job' mapping")
    if "job_id" in job:
        raise InvalidJob(f"{where}: a scheduled job gets a new job_id at each run; remove 'job_id'")
    if job.get("coalesce") is not None:
        raise InvalidJob(f"{where}: 'coalesce' joins requests that come in bursts; a schedule's ticks do not")
    try:
        JobSpec.from_data(job)
    except Exception as err:  # noqa: BLE001 - InvalidJob or UnknownAdapter, named with the entry
        raise InvalidJob(f"{where}: {err}") from None
    beat_entry = {
        "task": SCHEDULED_TASK,
        "schedule": when,
        "args": (job,),
        "options": {"expires": float(every) if "every" in entry else 3600.0},
    }
    return f"{ENTRY_PREFIX}{entry['name']}", beat_entry


def describe_schedule(when: Any, now: datetime) -> Tuple[str, str]:
    """A beat schedule as people write it (``cron '*/5 * * * *'``, ``every 30 s``) and its next run (UTC).

    An interval's next run is counted from now, as beat counts it from its start.
    """
    if hasattr(when, "_orig_minute"):  # celery.schedules.crontab
        fields = (when._orig_minute, when._orig_hour, when._orig_day_of_month, when._orig_month_of_year,
                  when._orig_day_of_week)  # fmt: skip
        shown = f"cron '{' '.join(str(field) for field in fields)}'"
        following = now + when.remaining_estimate(now)
    else:  # an interval: seconds, a timedelta or celery.schedules.schedule
        every = getattr(when, "run_every", when)
        seconds = every.total_seconds() if isinstance(every, timedelta) else float(every)
        shown = f"every {seconds:g} s"
        following = now + timedelta(seconds=seconds)
    return shown, (following + timedelta(microseconds=500_000)).replace(microsecond=0).isoformat()
