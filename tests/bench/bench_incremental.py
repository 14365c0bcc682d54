"""Benchmark: syncs that read only what changed, against the whole sync of the same data, side by side.

Run on demand (not part of the test suite)::

    python tests/bench/bench_incremental.py --scoped --objects 204000 --scope-share 0.01

Scoped (``--scoped``): the demo inventory (``--objects`` per side, sites of 10 devices of 19 interfaces), the
source a variant of the target; one whole job on the embedded runner (``run_local``: the pipeline's load,
ranged diff, plan and shards in this process), then the same job scoped to ``--scope-share`` of the sites
(spread over the inventory), once with the demo adapters (which load by scope) and once with adapters that do
not (they load whole, and the diff leaves the rest out). Each scoped job's result is checked against the
engine's scoped diff of the same data. Prints the table, the command, and exits 1 when a target is missed:
a scoped job at most 5% of the whole job's time with adapters that load by scope, 30% with adapters that do not.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.adapter import Adapter  # noqa: E402
from core.scope import Scope  # noqa: E402
from worker.adapters.demo import InventoryAdapter  # noqa: E402
from worker.adapters.registry import register_adapter  # noqa: E402
from worker.job.spec import JobSpec  # noqa: E402
from worker.runners.local import run_local  # noqa: E402

PER_SITE = 1 + 10 * (1 + 19)


@register_adapter("bench-whole")
class WholeInventory(InventoryAdapter):
    """The demo inventory without its scoped load: a scoped job loads it whole (as most adapters load)."""

    def load_scoped(self, scope: Scope) -> None:
        Adapter.load_scoped(self, scope)

    def partitions_in(self, scope: Scope) -> Any:
        return Adapter.partitions_in(self, scope)


def job(adapters: Tuple[str, str], sites: int, scope: Any, latency: float = 0.0) -> JobSpec:
    shape = {"sites": sites, "devices": 10, "interfaces": 19}
    return JobSpec.from_data({
        "source": adapters[0], "target": adapters[1], "source_kwargs": {**shape, "variant": 1},
        "target_kwargs": {**shape, "hook_latency": latency}, "scope": scope, "allow_deletes": True,
    })  # fmt: skip


def timed(spec: JobSpec) -> Tuple[float, Dict[str, Any]]:
    started = time.perf_counter()
    report = run_local(spec)
    return time.perf_counter() - started, report


def expected(sites: int, scope: Scope) -> Dict[str, int]:
    source = InventoryAdapter(sites=sites, devices=10, interfaces=19, variant=1)
    target = InventoryAdapter(sites=sites, devices=10, interfaces=19)
    source.load()
    target.load()
    return target.diff_from(source, scope=scope).summary()


def scoped(args: argparse.Namespace) -> List[str]:
    sites = max(1, args.objects // PER_SITE)
    count = max(1, round(sites * args.scope_share))
    ids = [f"site-{sites * index // count:04d}" for index in range(count)]
    scope = {"ids": ids}
    whole_seconds, whole = timed(job(("demo", "demo"), sites, None, args.hook_latency))
    rows = [("whole job", whole_seconds, whole, None)]
    for name, adapters, target in (("scoped, adapters load by scope", ("demo", "demo"), 0.05),
                                   ("scoped, adapters load whole", ("bench-whole", "bench-whole"), 0.30)):  # fmt: skip
        seconds, report = timed(job(adapters, sites, scope, args.hook_latency))
        rows.append((name, seconds, report, target))
    # The floor of a job whose adapters load whole: their own load() of both sides, as the job's report times it.
    loads = sum(rows[-1][2]["seconds"].get(f"load-{side}", 0.0) for side in ("source", "target"))
    rows.append(("  of which both sides' load() (floor)", loads, None, None))
    want = expected(sites, Scope.from_data(scope))
    missed = []
    print(f"{sites} sites, {sites * PER_SITE} objects per side; scope: {count} sites ({args.scope_share:.1%})")
    print(f"{'job':34} {'seconds':>8} {'share':>7} {'target':>7} {'ops':>7}")
    for name, seconds, report, target in rows:
        share = seconds / whole_seconds
        ok = target is None or share <= target
        ops = f"{report['operations']:7d}" if report is not None else " " * 7
        print(f"{name:34} {seconds:8.2f} {share:7.1%} {'' if target is None else f'{target:.0%}':>7} "
              f"{ops}{'' if ok else '  MISSED'}")  # fmt: skip
        if target is not None:
            got = {k: report["summary"][k] for k in ("create", "update", "delete")}
            if got != {k: want[k] for k in ("create", "update", "delete")}:
                missed.append(f"{name}: summary {got} is not the scoped diff's {want}")
            if not ok:
                missed.append(f"{name}: {share:.1%} of the whole job, target {target:.0%}")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scoped", action="store_true", help="the scoped syncs' targets")
    parser.add_argument("--objects", type=int, default=204_000, help="objects per side")
    parser.add_argument("--scope-share", type=float, default=0.01, help="share of the top-level elements in scope")
    parser.add_argument("--hook-latency", type=float, default=0.0, help="seconds each write to the target takes")
    args = parser.parse_args()
    if not args.scoped:
        parser.error("say which targets to measure: --scoped")
    print("command: python tests/bench/bench_incremental.py " + " ".join(sys.argv[1:]))
    missed = scoped(args)
    for line in missed:
        print("MISSED:", line)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
