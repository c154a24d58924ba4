"""The fault harness at full size (`make chaos`): every scenario of tests/e2e/test_faults.py
with more runs and more kills, printed as a table of counts.

    uv run python bench/chaos.py                  # the long version
    uv run python bench/chaos.py --runs 200       # scenarios 1 and 2 at the size `make test` uses
    CHAOS_SKIP_PG_RESTART=1 uv run python bench/chaos.py   # leave the PostgreSQL server alone

Needs the test servers (TEST_DATABASE_URL, default PostgreSQL on 127.0.0.1:5432/test) and a
`redis-server` binary (a private one is started). The PostgreSQL restart uses pg_ctlcluster and
interrupts everything else on that server; it is skipped, with the reason, where impossible.
Exits non-zero when any count that must be zero is not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import DATABASE_URL  # noqa: E402
from tests.e2e import scenarios, scenarios_destinations, scenarios_fetch  # noqa: E402
from tests.e2e.chaos import ChaosPlatform, running  # noqa: E402
from tests.e2e.counts import Counts  # noqa: E402
from tests.e2e.faults import postgres_restart_command  # noqa: E402

COLUMNS = (
    ("scenario", 30),
    ("runs", 5),
    ("faults", 6),
    ("lost runs", 9),
    ("dup effects", 11),
    ("missing eff.", 12),
    ("dup data", 8),
    ("events", 7),
    ("missing ev.", 11),
    ("redelivered", 11),
    ("bad order", 9),
    ("time s", 7),
)


def row(counts: Counts) -> list[str]:
    """One line of the table."""
    return [
        counts.scenario,
        str(counts.accepted),
        str(counts.faults),
        str(counts.lost_runs),
        str(counts.duplicate_effects),
        str(counts.missing_effects),
        str(counts.data_duplicates),
        str(counts.events),
        str(counts.events_missing),
        str(counts.events_redelivered),
        str(counts.histories_invalid),
        f"{counts.elapsed_s:.0f}",
    ]


def table(results: list[Counts]) -> str:
    """The counts of every scenario, one line each, then each scenario's outcomes and notes."""
    lines = [
        " | ".join(name.ljust(width) for name, width in COLUMNS),
        "-+-".join("-" * width for _, width in COLUMNS),
    ]
    for counts in results:
        cells = row(counts)
        lines.append(
            " | ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS, strict=True))
            )
        )
    lines.append("")
    for counts in results:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(counts.outcomes.items()))
        notes = {k: v for k, v in counts.notes.items() if k != "errors"}
        lines.append(f"{counts.scenario}: {outcomes}; {notes}")
    return "\n".join(lines)


async def run_all(platform: ChaosPlatform, args: argparse.Namespace) -> list[Counts]:
    """Every scenario in turn (the PostgreSQL restart last: it disturbs the most)."""
    results: list[Counts] = []

    async def step(name: str, scenario: Awaitable[Counts | tuple[Counts, Any]]) -> None:
        print(f"... {name}", file=sys.stderr, flush=True)
        outcome = await scenario
        results.append(outcome[0] if isinstance(outcome, tuple) else outcome)

    kills = (args.kill_min_s, args.kill_max_s)
    waves = max(1, args.runs // 40)
    await step(
        "engine SIGKILL",
        scenarios.engine_crashes(platform, runs=args.runs, waves=waves, every_s=kills),
    )
    await step(
        "2 replicas",
        scenarios.engine_crashes(platform, runs=args.runs, replicas=2, waves=waves, every_s=kills),
    )
    await step("Redis outage", scenarios.redis_outage(platform, runs=args.runs // 3, outage_s=10))
    await step("agent failures", scenarios_fetch.flaky_agent(platform, per_case=args.per_case))
    for _ in range(args.cancels):
        await step("cancel", scenarios_fetch.cancel_fanout(platform, items=100, concurrency=8))
    await step("fan-out", scenarios_fetch.bulk_fanout(platform, items=args.fanout))
    for kind in scenarios_destinations.KINDS:
        await step(
            f"merger SIGKILL ({kind})",
            scenarios_destinations.merger_crashes(platform, kind, runs=args.runs // 5),
        )
    command, why = postgres_restart_command(DATABASE_URL)
    if command is None:
        print(f"PostgreSQL restart skipped: {why}", file=sys.stderr)
    else:
        await step("PostgreSQL restart", scenarios.postgres_restart(platform, runs=args.runs // 3))
        print("... PostgreSQL restart during loads", file=sys.stderr, flush=True)
        results += await scenarios_destinations.postgres_restart_during_loads(
            platform, runs=args.runs // 10
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs of scenarios 1 and 2")
    parser.add_argument("--kill-min-s", type=float, default=1.0, help="shortest engine life")
    parser.add_argument("--kill-max-s", type=float, default=3.0, help="longest engine life")
    parser.add_argument("--per-case", type=int, default=20, help="runs per agent-failure case")
    parser.add_argument("--cancels", type=int, default=3, help="cancelled fan-out pairs")
    parser.add_argument("--fanout", type=int, default=2000, help="elements of the big fan-out")
    args = parser.parse_args()
    started = time.monotonic()
    with running(Path(tempfile.mkdtemp(prefix="chaos-"))) as platform:
        results = asyncio.run(run_all(platform, args))
    print(table(results))
    print(f"\n{len(results)} scenarios in {time.monotonic() - started:.0f}s")
    broken = [c.scenario for c in results if _broken(c)]
    if broken:
        raise SystemExit(f"counts that must be zero are not, in: {', '.join(broken)}")


def _broken(counts: Counts) -> bool:
    try:
        counts.assert_clean()
    except AssertionError:
        return True
    return False


if __name__ == "__main__":
    main()
