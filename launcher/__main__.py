"""`python -m launcher demo` runs the platform and the test workflow once;
`python -m launcher up` runs the platform in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from launcher.demo import run_demo
from launcher.models import loaded_models
from launcher.platform import RunningPlatform, running_platform
from launcher.processes import ROOT

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stop(Exception):
    """Ctrl-C, SIGTERM or SIGHUP: stop everything, in order."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    # Once only: a second Ctrl-C while the services are stopping must not leave them half
    # stopped (nor print a traceback).
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise Stop(signal.Signals(signum).name)


def _serve(platform: RunningPlatform, command: str) -> int:
    print("models the agents loaded:")
    print("\n".join(loaded_models(platform.ports.agent_urls())) or "  none")
    if command == "demo":
        return run_demo(platform)
    print(f"\nplatform up: controller {platform.controller_url} (Ctrl-C to stop)")
    print(f"logs: {platform.log_dir}/*.log (JSON lines); a run's: ingestctl logs RUN")
    while True:
        signal.pause()  # the supervisor thread watches the services meanwhile


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher")
    parser.add_argument("command", choices=["demo", "up"])
    parser.add_argument("--var", type=Path, default=ROOT / "var", help="state folder")
    args = parser.parse_args()
    for sig in STOP_SIGNALS:
        signal.signal(sig, _stop)
    print("starting the platform…")
    try:
        with running_platform(args.var, models=True) as platform:
            try:
                return _serve(platform, args.command)
            except Stop:
                print("\nstopping…")
                raise
    except Stop as stop:
        print(f"stopped ({stop})")
        return 130 if str(stop) == "SIGINT" else 0


if __name__ == "__main__":
    sys.exit(main())
