"""Fault injectors for the harness: an outside HTTP system that fails on cue, a TCP relay that
cuts connections, a private Redis that can be killed, and the PostgreSQL server's restart.

These are real servers and real sockets; nothing inside the platform is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from launcher.processes import free_port

# ---- an outside system agents fetch from ------------------------------------------------------


@dataclass
class Hit:
    """One request the outside system answered."""

    path: str
    group: str
    outcome: str  # ok | 503 | hang | reset | 404 | undo
    started: float
    ended: float


@dataclass
class ExternalLog:
    """What the outside system saw: every request, and the most requests in flight per group."""

    hits: list[Hit] = field(default_factory=list)
    inflight: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def served(self, prefix: str = "") -> Counter[str]:
        """Successful answers (the outside effect) per path starting with `prefix` (a hang
        ends in a success too)."""
        with self.lock:
            return Counter(
                h.path
                for h in self.hits
                if h.outcome in ("ok", "undo", "hang") and h.path.startswith(prefix)
            )

    def requests_since(self, moment: float, group: str) -> int:
        """Requests of `group` that began after `moment` (time.monotonic())."""
        with self.lock:
            return sum(1 for h in self.hits if h.group == group and h.started > moment)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # callers hanging up (timeouts, lost replies) are part of the test, not errors


class ExternalServer:
    """HTTP on 127.0.0.1 standing in for the sources a pipeline fetches from.

    Paths (`group` ties requests together for the concurrency count, e.g. a run's tag):
      /ok/<group>/<name>                        200
      /slow/<ms>/<group>/<name>                 200 after <ms> milliseconds
      /flaky/<kind>/<n>/<group>/<name>          the first <n> requests fail with <kind>, then 200;
                                                kind: 503, retryafter (503 + Retry-After: 1),
                                                hang (no answer for `hang_s`, then 200), reset (RST)
      /down/<group>/<name>                      503 forever
      /missing/<group>/<name>                   404
      /undo/<group>/<name>                      200, recorded in `undone` (a compensation's effect)
      /undoflaky/<n>/<group>/<name>             503 for the first <n>, then like /undo
      /gate/<group>/<name>                      200 once the test calls `open_gate(group)`
    """

    def __init__(self, hang_s: float = 4.0) -> None:
        self.hang_s = hang_s
        self.log = ExternalLog()
        self.undone: list[str] = []
        self._gates: dict[str, threading.Event] = {}
        self._gates_lock = threading.Lock()
        self.port = free_port()
        self._server = _QuietServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def gate(self, group: str) -> threading.Event:
        """The gate holding `/gate/<group>/...` requests until it is set."""
        with self._gates_lock:
            return self._gates.setdefault(group, threading.Event())

    def open_gate(self, group: str) -> None:
        """Let the requests waiting at `group`'s gate (and later ones) through."""
        self.gate(group).set()

    def url(self, path: str) -> str:
        """The full URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> ExternalServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the log is `server.log`

            def do_GET(self) -> None:
                parts = self.path.split("?", 1)[0].strip("/").split("/")
                started = time.monotonic()
                outcome, group = server._decide(self.path, parts)
                log = server.log
                with log.lock:
                    log.inflight[group] += 1
                    log.peak[group] = max(log.peak[group], log.inflight[group])
                try:
                    self._answer(outcome, parts)
                finally:
                    with log.lock:
                        log.inflight[group] -= 1
                        log.hits.append(Hit(self.path, group, outcome, started, time.monotonic()))
                        if outcome == "undo":
                            server.undone.append(self.path)

            def _answer(self, outcome: str, parts: list[str]) -> None:
                if outcome == "reset":
                    # SO_LINGER 0: close() sends a RST instead of a clean FIN.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    self.close_connection = True
                    return
                if outcome == "hang":
                    time.sleep(server.hang_s)
                elif outcome == "ok" and parts[0] == "slow":
                    time.sleep(int(parts[1]) / 1000)
                elif outcome == "ok" and parts[0] == "gate":
                    server.gate(parts[1]).wait(120)
                if outcome in ("503", "retryafter"):
                    wait = {"Retry-After": "1"} if outcome == "retryafter" else {}
                    self._send(503, b"try later\n", wait)
                elif outcome == "404":
                    self._send(404, b"no such thing\n", {})
                else:
                    self._send(200, f"id,path\n1,{self.path}\n".encode(), {})

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                with contextlib.suppress(OSError):  # the caller may have hung up meanwhile
                    self.send_response(status)
                    self.send_header("Content-Type", "text/csv")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)

        return Handler

    def _decide(self, path: str, parts: list[str]) -> tuple[str, str]:
        """The outcome of this request and its group, counting repeats of the path."""
        with self.log.lock:
            self.log.seen[path] += 1
            seen = self.log.seen[path]
        kind = parts[0]
        if kind == "flaky":
            failure, failures, group = parts[1], int(parts[2]), parts[3]
            return (failure if seen <= failures else "ok"), group
        if kind == "undoflaky":
            return ("503" if seen <= int(parts[1]) else "undo"), parts[2]
        if kind == "slow":
            return "ok", parts[2]
        group = parts[1] if len(parts) > 1 else ""
        return {"down": "503", "missing": "404", "undo": "undo"}.get(kind, "ok"), group


# ---- a TCP relay that cuts connections ---------------------------------------------------------


class TcpProxy:
    """A TCP relay to 127.0.0.1:`upstream` on its own port and thread, with network faults:

    - `cut()` drops every open connection and refuses new ones until `restore()`;
    - `lose_replies_every = n` makes every n-th new connection lose its first reply: the request
      reaches the server, which does the work, and the client gets a connection reset.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.lose_replies_every = 0
        self.lost_replies = 0
        self.refused = 0  # connections refused while cut: attempts of the clients to come back
        self._connections = 0
        self._refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> TcpProxy:
        """Listen in a background thread."""
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        """Close everything."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        """Drop every open connection (with a reset) and refuse new ones."""
        self._refusing = True
        self._loop.call_soon_threadsafe(self._drop_all)

    def restore(self) -> None:
        """Accept connections again."""
        self._refusing = False

    def _drop_all(self) -> None:
        for writer in list(self._writers):
            _reset(writer)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.close()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self.refused += 1
            _reset(writer)
            return
        self._connections += 1
        lose_first_reply = bool(
            self.lose_replies_every and self._connections % self.lose_replies_every == 0
        )
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            _reset(writer)
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, reply: bool) -> None:
            nonlocal lose_first_reply
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while chunk := await src.read(65536):
                    if reply and lose_first_reply:
                        self.lost_replies += 1
                        _reset(writer)
                        _reset(up_writer)
                        return
                    dst.write(chunk)
                    await dst.drain()
            _reset(dst)

        try:
            await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True))
        finally:
            self._writers -= {writer, up_writer}


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


# ---- a private Redis that can be killed -------------------------------------------------------


class RedisServer:
    """A redis-server on a random port with an append-only file (fsync on every write), so a
    restart keeps what was written before the outage, as a production Redis would."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = shutil.which("redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers."""
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"redis-server on {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


# ---- the PostgreSQL server ---------------------------------------------------------------------


def postgres_restart_command(database_url: str) -> tuple[list[str] | None, str]:
    """The command restarting the PostgreSQL cluster behind `database_url`, or None and why
    this machine cannot (no pg_ctlcluster, another server, not permitted, or opted out)."""
    if os.environ.get("CHAOS_SKIP_PG_RESTART"):
        return None, "CHAOS_SKIP_PG_RESTART is set"
    tool = shutil.which("pg_ctlcluster")
    if tool is None:
        return None, "pg_ctlcluster is not installed: the test cannot restart the server"
    url = make_url(database_url)
    if url.host not in ("127.0.0.1", "localhost"):
        return None, f"the test database is on {url.host}, not a local cluster"
    for conf in sorted(Path("/etc/postgresql").glob("*/main/postgresql.conf"), reverse=True):
        port = re.search(r"^\s*port\s*=\s*(\d+)", conf.read_text(), re.MULTILINE)
        if int(port.group(1) if port else 5432) == (url.port or 5432):
            if not os.access(conf.parent, os.W_OK):
                return None, f"not permitted to control the cluster in {conf.parent}"
            version = conf.parent.parent.name
            return [tool, "--skip-systemctl-redirect", version, "main", "restart"], ""
    return None, f"no local cluster serves port {url.port or 5432}"


def restart_postgres(database_url: str) -> float:
    """Restart the PostgreSQL server (every connection drops); return how long it took."""
    command, why = postgres_restart_command(database_url)
    if command is None:
        raise RuntimeError(why)
    started = time.monotonic()
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return time.monotonic() - started
