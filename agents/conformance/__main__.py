"""`python -m agents.conformance URL [--token TOKEN] [--allow-effects]`: one line per check,
exit 1 if any check fails (0 when all pass or are skipped)."""

from __future__ import annotations

import argparse
import os
import sys

import httpx

from agents.conformance.checks import run
from agents.conformance.probe import Agent


def main(argv: list[str] | None = None) -> int:
    """Run every check against the agent at URL and print one line per check."""
    parser = argparse.ArgumentParser(
        prog="python -m agents.conformance",
        description="Check that the service at URL speaks the agent protocol "
        "(docs/agent-protocol.md).",
    )
    parser.add_argument("url", help="the agent's base URL, e.g. http://127.0.0.1:8108")
    parser.add_argument(
        "--token",
        default=os.environ.get("SERVICE_TOKEN"),
        help="the service token the agent accepts (default: $SERVICE_TOKEN)",
    )
    parser.add_argument(
        "--allow-effects",
        action="store_true",
        help="also run actions that may have effects, with their documented examples, to check "
        "their replay (only against a test deployment)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    args = parser.parse_args(argv)
    with httpx.Client(base_url=args.url.rstrip("/"), timeout=args.timeout) as client:
        results = run(Agent(client, args.token), allow_effects=args.allow_effects)
    for result in results:
        print(result.line(), flush=True)
    failed = [r.check for r in results if r.verdict == "FAIL"]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed or skipped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
