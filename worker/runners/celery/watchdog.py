"""The watchdog: a step whose worker vanished (its claim expired without a result) runs again within seconds.

A worker host that dies keeps its unacknowledged tasks until the broker's visibility timeout (an hour by
default with Redis). Every step holds a claim that its heartbeat renews every third of
``SHARDSYNC_CLAIM_TTL``; the main process of every worker scans the running jobs every
``SHARDSYNC_WATCHDOG_INTERVAL`` seconds (one worker of the deployment per interval), and enqueues again each
step that is recorded as running, holds no claim and has no result. A shard resumes from its journal; the
dead host's own message, when the broker redelivers it much later, finds the step done and does nothing.

The slots beacon of every worker (``worker.runners.celery.slots``) starts and stops with the same worker signals.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import structlog
from celery import signals
from redis import Redis

from core import keys
from worker.connection import redis_client
from worker.errors import describe
from worker.pipeline.context import Runner
from worker.pipeline.dispatch import overdue
from worker.pipeline.step import step_named
from worker.runners.celery.slots import SlotsBeacon
from worker.runners.celery.tasks import RUNNER
from worker.settings import get_settings
from worker.state.redis import RedisJobState

logger = structlog.get_logger("shardsync.worker")


def step_done(job: RedisJobState, step: str, args: Sequence[Any]) -> bool:
    """Whether a step's result is recorded (then its claim expiring is no loss): the step's own ``done``."""
    return step_named(step).is_done(job, args)


def scan(client: Redis, runner: Runner, interval: Optional[float] = None) -> List[Tuple[str, str]]:
    """Enqueue again every running step whose claim expired without a result; returns (job id, step) pairs.

    A step is sent again, then dropped from the running ones (only the record the scan saw: its new delivery
    records itself when it takes the claim), so a failed send is tried again at the next scan and a step is
    not sent twice by two scans. A job stopped for ``interval`` seconds
    (default SHARDSYNC_WATCHDOG_INTERVAL) whose steps still hold their claims is ended around them (``end``).
    """
    if interval is None:
        interval = get_settings().watchdog_interval
    requeued: List[Tuple[str, str]] = []
    for raw in client.smembers(keys.RUNNING_JOBS):
        try:
            requeued.extend(_scan_job(client, runner, raw.decode(), interval))
        except Exception as err:  # noqa: BLE001 - one bad job never stops the watch over the others
            logger.warning("Watchdog skipped a job", job_id=raw.decode(errors="replace"), error=describe(err))
    return requeued


def _scan_job(client: Redis, runner: Runner, job_id: str, interval: float) -> List[Tuple[str, str]]:
    job = RedisJobState(job_id, client)
    spec_data = job.spec_data()
    if job.report() is not None or spec_data is None:
        client.srem(keys.RUNNING_JOBS, job_id)  # ended, or its records expired
        return []
    late = overdue(job, spec_data)
    if late:
        job.abort(late)  # running shards stop at their next subtree; their waves then hand over to the finish
    running = job.running_steps()
    if job.aborted() and not running:
        runner.enqueue("finish", job_id)  # nothing runs that would: the finish is claimed, and idempotent
        return []
    if job.aborted() and _end_hung(job, runner, running, interval):
        return []
    requeued: List[Tuple[str, str]] = []
    for step_key, entry in running.items():
        step, args, _claimed_at = entry
        if job.claim_held(step_key):
            continue
        if not step_done(job, step, args):
            # Sent before it is forgotten: a send that fails (the broker down) leaves it for the next scan.
            runner.enqueue(step, job_id, *args)
            requeued.append((job_id, step_key))
        job.forget_running(step_key, entry)  # unless its new delivery has recorded itself already
        logger.warning("Step run again: its claim expired without a result", job_id=job_id, step=step_key)
    return requeued


def _end_hung(job: RedisJobState, runner: Runner, running: Dict[str, Any], interval: float) -> bool:
    """End a stopped job whose steps still hold their claims a whole interval after a scan first saw it stopped.

    A step stops at its next subtree, hook or wait once its job is stopped; one that has not done so an
    interval later is in a call that does not return (its heartbeat keeps its claim and the lock alive). The
    ``end`` step takes their claims and the lock and reports the job, so that it ends by its deadline (or
    cancel) plus two intervals, and the next job into the target is admitted. Returns whether it was sent.
    """
    held = [key for key in running if job.claim_held(key)]
    if not held or "end" in held:
        return False  # nothing holds on (the usual scan of expired claims follows), or the end runs
    seen = job.info().get("stopped_seen")
    now = time.time()
    if not isinstance(seen, (int, float)):
        job.set_info(stopped_seen=now)
        return False
    if now - seen < interval:
        return False
    logger.error("Job stopped, steps still running a watchdog interval later: ended around them", steps=held)
    runner.enqueue("end", job.job_id)
    return True


class Watchdog(threading.Thread):
    """The scanning thread of one worker's main process."""

    def __init__(self, interval: float, hostname: str) -> None:
        super().__init__(name="shardsync-watchdog", daemon=True)
        self.interval = interval
        self.hostname = hostname
        self.stopped = threading.Event()

    def run(self) -> None:
        """Scan once per interval, when this worker wins the interval's turn."""
        while not self.stopped.wait(self.interval):
            try:
                client = redis_client()
                if client.set(keys.WATCHDOG, self.hostname, nx=True, px=max(1, int(self.interval * 900))):
                    scan(client, RUNNER, self.interval)
            except Exception as err:  # noqa: BLE001 - the next interval tries again
                logger.warning("Watchdog scan failed", error=describe(err))


_running: Optional[Watchdog] = None


@signals.worker_ready.connect
def _start_watchdog(sender: Any = None, **_: Any) -> None:
    global _running  # noqa: PLW0603 - one watchdog per worker process
    interval = get_settings().watchdog_interval
    if interval > 0 and _running is None:
        hostname = getattr(sender, "hostname", None) or socket.gethostname()
        _running = Watchdog(interval, hostname)
        _running.start()


@signals.worker_shutdown.connect
def _stop_watchdog(**_: Any) -> None:
    if _running is not None:
        _running.stopped.set()


_beacon: Optional[SlotsBeacon] = None


def _pool_slots(consumer: Any) -> int:
    """How many shards a worker runs at once: its pool's size (the autoscaler's maximum, when it scales)."""
    controller = getattr(consumer, "controller", None)
    autoscaler = getattr(controller, "autoscaler", None)
    if autoscaler is not None and getattr(autoscaler, "max_concurrency", None):
        return int(autoscaler.max_concurrency)
    return int(getattr(controller, "concurrency", None) or 1)


def _takes_shards(consumer: Any) -> bool:
    try:
        consumed = {queue.name for queue in consumer.task_consumer.queues}
    except AttributeError:
        return True  # not known: count it (a wrong count only sizes shards less well)
    return get_settings().shards_queue in consumed


@signals.worker_ready.connect
def _start_beacon(sender: Any = None, **_: Any) -> None:
    global _beacon  # noqa: PLW0603 - one beacon per worker process
    if _beacon is None and sender is not None and _takes_shards(sender):
        hostname = getattr(sender, "hostname", None) or socket.gethostname()
        _beacon = SlotsBeacon(hostname, _pool_slots(sender))
        _beacon.start()


@signals.worker_shutdown.connect
def _stop_beacon(**_: Any) -> None:
    if _beacon is not None:
        _beacon.stopped.set()
        _beacon.join(timeout=5)
