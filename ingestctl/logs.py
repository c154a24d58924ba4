"""`ingestctl logs RUN [--step S]`: a run's log lines from every service, oldest first."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ingestctl.cli import Key, Output, Url, _controller, _emit, _guard, app

_COLOURS = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}


def format_line(line: dict[str, Any]) -> str:
    """One log line as text: time, service, level, step#attempt, message, traceback below."""
    where = line.get("step_id") or "-"
    if line.get("attempt") is not None:
        where += f"#{line['attempt']}"
    level = str(line.get("level", ""))
    shown_level = typer.style(f"{level:<7}", fg=_COLOURS.get(level))
    text = (
        f"{str(line.get('ts', ''))[11:23]}  {line.get('service', ''):<24} "
        f"{shown_level} {where:<16} {line.get('message', '')}"
    )
    if line.get("exc"):
        text += "\n" + "\n".join("    " + part for part in str(line["exc"]).splitlines())
    return text


@app.command()
@_guard
def logs(
    run_id: str,
    url: Url = "http://127.0.0.1:8080",
    api_key: Key = None,
    output: Output = "table",
    step: Annotated[str | None, typer.Option(help="only this step's lines")] = None,
    limit: Annotated[int, typer.Option(help="the last N lines")] = 1000,
) -> None:
    """A run's log lines from the engine, the agents and the controller."""
    params: dict[str, Any] = {"limit": limit}
    if step is not None:
        params["step"] = step
    found = _controller(url, api_key).call("GET", f"/workflows/{run_id}/logs", params=params)
    if output == "json":
        _emit(found, "json")
        return
    for line in found["lines"]:
        typer.echo(format_line(line))
    if found["truncated"]:
        typer.echo(f"(the last {len(found['lines'])} of {found['total']} lines; --limit)", err=True)
    elif not found["lines"]:
        typer.echo(f"no lines for run {run_id} in {', '.join(found['files'])}", err=True)
