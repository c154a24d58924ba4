"""`ingestctl events [--run RUN] [--follow]`: the platform's (or one run's) events as lines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import typer

from ingestctl.cli import Key, Output, Url, _controller, _guard, app
from ingestctl.client import CliError, describe


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON `data:` of each server-sent event (keep-alive comments skipped)."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []


def format_event(event: dict[str, Any]) -> str:
    where = event.get("step_id") or ""
    if event.get("attempt"):
        where += f"#{event['attempt']}"
    run = str(event.get("run_id") or "")[:8]
    kind = str(event.get("type", "")).removeprefix("ingestion.")
    detail = event.get("reason") or event.get("error") or ""
    when = str(event.get("time", ""))[11:23]
    return f"{when}  #{event.get('sequence', '-'):<7} {run:<8} {kind:<22} {where:<16} {detail}"


@app.command()
@_guard
def events(
    url: Url = "http://127.0.0.1:8080",
    api_key: Key = None,
    output: Output = "table",
    run: Annotated[str | None, typer.Option(help="only this run's events (from its start)")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new events")
    ] = False,
    last: Annotated[int, typer.Option(help="without --run: how many recent events")] = 100,
) -> None:
    """Events as they are committed: a run's whole history, or the platform's latest; with
    --follow, live until Ctrl-C (a run's feed ends with the run)."""
    controller = _controller(url, api_key)
    params: dict[str, Any]
    if run is not None:
        path, params = f"/workflows/{run}/events", {"follow": follow}
    else:
        path, params = "/events", {"follow": follow, "last": last}
    try:
        with controller.http.stream("GET", path, params=params, timeout=None) as response:
            if response.status_code >= 400:
                response.read()
                raise CliError(describe(response))
            for event in sse_events(response.iter_lines()):
                typer.echo(json.dumps(event) if output == "json" else format_event(event))
    except httpx.TransportError as exc:
        raise CliError(f"controller unreachable at {controller.url}: {exc}") from exc
