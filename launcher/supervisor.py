"""Watching the platform's processes: a service that exits is reported and started again.

A thread polls each `Service.process`; an exit nobody asked for (`Service.stop` marks the
ones that are asked for) is printed at once with the exit code and the last lines of the
service's log, and the service is started again after a back-off that doubles on each
consecutive exit, until it has stayed up long enough to count as well again.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from launcher.processes import Service


@dataclass(frozen=True)
class RestartPolicy:
    """When to start an exited service again.

    The n-th consecutive exit waits `first_s * 2**(n-1)`, at most `max_s`; a service that ran
    `reset_after_s` before exiting counts as a first exit again.
    """

    first_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0

    def delay(self, consecutive: int) -> float:
        """Seconds to wait before restart number `consecutive` (1, 2, ...)."""
        return min(self.first_s * 2 ** max(consecutive - 1, 0), self.max_s)


DEFAULT_RESTART = RestartPolicy()


@dataclass(frozen=True)
class SupervisorEvent:
    """Something the supervisor saw or did (printed, and kept for tests)."""

    kind: Literal["exited", "restarted", "healthy", "restart_failed"]
    service: str
    exit_code: int | None = None
    detail: str = ""


@dataclass
class _Watch:
    service: Service
    started_at: float
    consecutive: int = 0
    restart_at: float | None = None  # set while the service is down, waiting for its restart
    awaiting_health: bool = False


@dataclass
class Supervisor:
    services: list[Service]
    say: Callable[[str], object] = print
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    poll_s: float = 0.25
    tail_lines: int = 15
    events: list[SupervisorEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        now = time.monotonic()
        self._watches = [_Watch(s, now) for s in self.services]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        """Watch in a background thread (a daemon: it never holds the launcher up)."""
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the services are stopped, so none is restarted meanwhile)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wait_for(
        self, kind: str, service: str, timeout_s: float, after: int = 0
    ) -> SupervisorEvent:
        """Block until an event `kind` of `service` (from index `after` on); for tests."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for event in self.events[after:]:
                    if event.kind == kind and event.service == service:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {kind!r} of {service} in {timeout_s}s: {self.events}")
                self._changed.wait(left)

    # ---- the loop ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            for watch in self._watches:
                try:
                    self._check(watch)
                except Exception as exc:  # the watch must go on whatever one check hits
                    self._record(
                        SupervisorEvent("restart_failed", watch.service.name, None, repr(exc))
                    )

    def _check(self, watch: _Watch) -> None:
        service, now = watch.service, time.monotonic()
        if service.stopped:
            watch.restart_at = None  # stopped on purpose, even while waiting for a restart
            return
        if watch.restart_at is not None:
            if now >= watch.restart_at and not self._stop.is_set():
                self._restart(watch, now)
            return
        process = service.process
        if process is None:
            return  # never started
        code = process.poll()
        if code is None:
            if watch.awaiting_health and _healthy(service):
                watch.awaiting_health = False
                self._record(SupervisorEvent("healthy", service.name, None, service.url))
            return
        if now - watch.started_at >= self.policy.reset_after_s:
            watch.consecutive = 0
        watch.consecutive += 1
        delay = self.policy.delay(watch.consecutive)
        watch.restart_at = now + delay
        watch.awaiting_health = False
        tail = last_lines(service.log_path, self.tail_lines)
        detail = (
            f"{_describe_exit(code)}; restarting in {delay:g} s "
            f"(exit {watch.consecutive} in a row)\n{tail}"
        )
        self._record(SupervisorEvent("exited", service.name, code, detail))

    def _restart(self, watch: _Watch, now: float) -> None:
        watch.restart_at = None
        watch.started_at = now
        try:
            watch.service.start()
        except OSError as exc:
            watch.restart_at = now + self.policy.delay(watch.consecutive)
            self._record(SupervisorEvent("restart_failed", watch.service.name, None, repr(exc)))
            return
        watch.awaiting_health = True
        pid = watch.service.process.pid if watch.service.process else None
        self._record(SupervisorEvent("restarted", watch.service.name, None, f"pid {pid}"))

    def _record(self, event: SupervisorEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()
        lines = {
            "exited": f"!! {event.service} exited: {event.detail}",
            "restarted": f"-> {event.service} restarted ({event.detail})",
            "healthy": f"ok {event.service} is healthy again at {event.detail}",
            "restart_failed": f"!! {event.service} could not be restarted: {event.detail}",
        }
        self.say(f"{time.strftime('%H:%M:%S')} {lines[event.kind]}")


def _healthy(service: Service) -> bool:
    try:
        return httpx.get(f"{service.url}/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name} (exit code {code})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def last_lines(path: Path, count: int) -> str:
    """The last `count` lines of a service's log, JSON lines shown as level and message."""
    try:
        with path.open("rb") as log:
            log.seek(0, 2)
            size = log.tell()
            log.seek(max(size - 64 * 1024, 0))
            tail = log.read().decode(errors="replace").splitlines()[-count:]
    except OSError as exc:
        return f"   (no log at {path}: {exc})"
    if not tail:
        return f"   ({path} is empty)"
    shown = [f"   last lines of {path}:"]
    for line in tail:
        shown.extend("   | " + part for part in _readable(line).splitlines())
    return "\n".join(shown)


def _readable(line: str) -> str:
    try:
        entry = json.loads(line)
    except ValueError:
        return line[:500]
    if not isinstance(entry, dict) or "message" not in entry:
        return line[:500]
    text = f"{entry.get('ts', '')} {entry.get('level', '')} {entry['message']}"[:500]
    if entry.get("exc"):
        # The end of a traceback says what happened; the whole one is in the file.
        text += "\n" + "\n".join(str(entry["exc"]).splitlines()[-3:])
    return text
