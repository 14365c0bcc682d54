"""A throwaway step, added to the pipeline through its table alone (``register(Step(...))``).

The session's workers import this module as they start (``SHARDSYNC_ADAPTER_MODULES``, tests/integration/
_workers.py), as a deployment's own module would register a step; ``test_steps_table.py`` runs it on them.
"""

from __future__ import annotations

from typing import Any, Dict

from core import keys
from worker.pipeline.context import DONE, StepContext
from worker.pipeline.step import Step, register


def probe(ctx: StepContext, value: int) -> Dict[str, Any]:
    """What the probe found where it ran: its value doubled, its worker, the claim it ran under."""
    return {"value": value * 2, "worker": ctx.hostname, "claim": ctx.claim, "kept": ctx.beat is not None}


def record(ctx: StepContext, outcome: Dict[str, Any], value: int) -> None:
    """Under the claim: the probe's finding, in the job's info."""
    ctx.job.set_info(**{f"probe-{value}": outcome})


def done(job: Any, value: int) -> bool:
    """Whether the probe of this value ran."""
    return f"probe-{value}" in job.info()


def hand_over(ctx: StepContext, outcome: Any, value: int) -> str:
    """After the claim, in every delivery (found done or not): counted, and the probe's result for monitors."""
    client = getattr(ctx.job, "client", None)
    if client is not None:  # on the Redis state: each delivery that got this far, for the test to count
        client.rpush(keys.job_key(ctx.job_id, "probe-deliveries"), "done before" if outcome is DONE else "ran")
    return f"probed {value}"


PROBE = register(
    Step(
        "remote_probe", task="shardsync.test_remote_probe", work=probe, record=record, then=hand_over, done=done,
        key="remote-probe-{0}", shown="remote probe {0}", context=("probe",), queue="jobs",
    )
)  # fmt: skip
