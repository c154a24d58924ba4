"""A stand-in for Marquez (outside the project, it cannot run here): an OpenLineage HTTP
endpoint, POST /api/v1/lineage, that records what it accepts and answers as a test tells it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request, Response

from tests.serving import serve


class LineageReceiver:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.refused = 0
        self.status = 201  # what POSTs answer; anything else refuses the event
        self.app = FastAPI()

        @self.app.post("/api/v1/lineage")
        async def lineage(request: Request) -> Response:
            body = await request.json()
            if self.status >= 300:
                self.refused += 1
                return Response(status_code=self.status)
            self.events.append(body)
            self.authorizations.append(request.headers.get("authorization"))
            return Response(status_code=self.status)

    def of_run(self, run_id: str) -> list[dict[str, Any]]:
        """The accepted events of one run, in arrival order."""
        return [e for e in list(self.events) if e["run"]["runId"] == run_id]

    def states(self, run_id: str) -> list[str]:
        return [e["eventType"] for e in self.of_run(run_id)]


@contextmanager
def lineage_receiver() -> Iterator[tuple[LineageReceiver, str]]:
    """A receiver served on 127.0.0.1; yields it and its base URL."""
    receiver = LineageReceiver()
    with serve(receiver.app) as url:
        yield receiver, url
