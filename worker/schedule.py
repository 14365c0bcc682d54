"""Scheduled syncs for ``celery -A worker beat``, read from the JSON file named by SHARDSYNC_SCHEDULE_FILE.

The file::

    {"syncs": [
        {"name": "nautobot-to-network", "every": 3600,
         "job": {"source": "nautobot", "target": "network", "flags": ["continue_on_failure"]}},
        {"name": "nightly-ipam", "cron": "0 2 * * *",
         "job": {"source": "ipam", "target": "dns", "source_kwargs": {"url": "https://ipam.example"}}}
    ]}

Each entry runs its job (a spec without ``job_id``: each run gets a new id) every ``every`` seconds or at the
times of a five-field ``cron`` expression (minute hour day-of-month month day-of-week, UTC). A run that
finds the previous one still syncing into the same target fails at once with a report saying so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from celery.schedules import crontab

from worker.errors import InvalidJob
from worker.spec import JobSpec


def load_schedule(path: str) -> Dict[str, Dict[str, Any]]:
    """Read a schedule file into Celery's ``beat_schedule``; every job is validated now.

    Raises:
        InvalidJob: naming the file, the entry and what is wrong with it.
    """
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        raise InvalidJob(f"schedule file {path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise InvalidJob(f"schedule file {path}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("syncs"), list):
        raise InvalidJob(f'schedule file {path}: expected {{"syncs": [...]}}')
    schedule: Dict[str, Dict[str, Any]] = {}
    for position, entry in enumerate(data["syncs"]):
        where = f"schedule file {path}, entry {position}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise InvalidJob(f"{where}: needs a non-empty 'name'")
        where = f"schedule file {path}, entry {entry['name']!r}"
        unknown = set(entry) - {"name", "every", "cron", "job"}
        if unknown:
            raise InvalidJob(f"{where}: unknown keys {sorted(unknown)}")
        if f"shardsync:{entry['name']}" in schedule:
            raise InvalidJob(f"{where}: the name is used twice")
        if ("every" in entry) == ("cron" in entry):
            raise InvalidJob(f"{where}: give exactly one of 'every' (seconds) or 'cron'")
        if "every" in entry:
            every = entry["every"]
            if isinstance(every, bool) or not isinstance(every, (int, float)) or every <= 0:
                raise InvalidJob(f"{where}: 'every' must be a positive number of seconds")
            when: Any = float(every)
        else:
            fields = str(entry["cron"]).split()
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
        try:
            JobSpec.from_data(job)
        except Exception as err:  # noqa: BLE001 - InvalidJob or UnknownAdapter, named with the entry
            raise InvalidJob(f"{where}: {err}") from None
        schedule[f"shardsync:{entry['name']}"] = {
            "task": "shardsync.scheduled",
            "schedule": when,
            "args": (job,),
            "options": {"expires": float(entry["every"]) if "every" in entry else 3600.0},
        }
    return schedule
