"""`python -m launcher demo` runs the platform and the test workflow once;
`python -m launcher up` runs the platform in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from launcher.demo import run_demo
from launcher.models import loaded_models
from launcher.platform import running_platform
from launcher.processes import ROOT


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher")
    parser.add_argument("command", choices=["demo", "up"])
    parser.add_argument("--var", type=Path, default=ROOT / "var", help="state folder")
    args = parser.parse_args()
    print("starting the platform…")
    with running_platform(args.var, models=True) as platform:
        print("models the agents loaded:")
        print("\n".join(loaded_models(platform.ports.agent_urls())) or "  none")
        if args.command == "demo":
            return run_demo(platform)
        print(f"\nplatform up: controller {platform.controller_url} (Ctrl-C to stop)")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        print("\nstopping…")
    return 0


if __name__ == "__main__":
    sys.exit(main())
