"""The commands: run, status, show, cancel, agents, schedules, definitions, state, datasets."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
import yaml
from rich.columns import Columns
from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from ingestctl.client import CliError, Controller

app = typer.Typer(help="Command line of the ingestion platform (a client of its public API).")
definitions = typer.Typer(help="Registered workflow definitions.")
app.add_typer(definitions, name="definitions")
schedules_app = typer.Typer(help="Schedules: list them, trigger one now.")
app.add_typer(schedules_app, name="schedules")
state = typer.Typer(help="The cursors workflows keep per source between runs.")
app.add_typer(state, name="state")
console = Console()
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "COMPENSATED", "COMPENSATION_FAILED"}

Url = Annotated[str, typer.Option(envvar="INGESTCTL_URL", help="controller base URL")]
Key = Annotated[str | None, typer.Option(envvar="INGESTCTL_API_KEY", help="API key")]
Output = Annotated[str, typer.Option("--output", "-o", help="table or json")]


def _controller(url: str, key: str | None) -> Controller:
    return Controller(url, key)


def _emit(data: Any, output: str, table: Table | None = None) -> None:
    if output == "json" or table is None:
        typer.echo(json.dumps(data, indent=2, default=str))
    else:
        console.print(table)


def _guard(fn: Any) -> Any:
    """Turn a CliError into its message and exit code 1, never a traceback."""

    @functools.wraps(fn)  # typer reads the parameters through __wrapped__
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapped


FINISHED_ITEM = {"SUCCEEDED", "FAILED", "TIMED_OUT", "SKIPPED", "CANCELLED", "COMPENSATED"}


def _fan_out(step: dict[str, Any]) -> Any:
    """A map_over step's items as a bar with done/total; "" for a plain step."""
    items = step.get("map_items") or {}
    total = sum(items.values())
    if not total:
        return ""
    done = sum(n for status, n in items.items() if status in FINISHED_ITEM)
    return Columns([ProgressBar(total=total, completed=done, width=16), f"{done}/{total}"])


def _steps_table(run: dict[str, Any]) -> Table:
    table = Table(title=f"{run['workflow']} v{run['version']}  {run['run_id']}  {run['status']}")
    for column in ("step", "agent.action", "status", "attempt", "ms", "items", "error"):
        table.add_column(column)
    for step in run["steps"]:
        ms = f"{step['duration_ms']:.0f}" if step.get("duration_ms") is not None else "-"
        error = (step.get("error") or {}).get("message", "")[:60]
        attempt = (
            f"{step['attempts']}/{step['max_attempts']}"
            if step.get("max_attempts")
            else str(step["attempts"])
        )
        table.add_row(
            step["step_id"], f"{step['agent']}.{step['action']}", step["status"],
            attempt, ms, _fan_out(step), error,
        )  # fmt: skip
    return table


def _parse_inputs(pairs: list[str], inputs_file: Path | None) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if inputs_file is not None:
        loaded = yaml.safe_load(inputs_file.read_text())
        if not isinstance(loaded, dict):
            raise CliError(f"{inputs_file}: not a mapping of input names to values")
        inputs.update(loaded)
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CliError(f"-i {pair!r}: expected key=value")
        try:
            inputs[name] = json.loads(value)  # numbers, booleans, lists, objects
        except ValueError:
            inputs[name] = value
    return inputs


@app.command()
@_guard
def run(
    workflow: str,
    url: Url = "http://127.0.0.1:8080",
    api_key: Key = None,
    output: Output = "table",
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "-i",
            help="input key=value, repeatable; a value that is JSON is read as JSON "
            '(5, true, [1,2], {"a":1}), anything else as text; quote it for text: '
            "-i 'zip=\"12345\"'",
        ),
    ] = None,
    inputs_file: Annotated[
        Path | None, typer.Option("--inputs", help="a YAML or JSON file of inputs; -i wins")
    ] = None,
    wait: Annotated[bool, typer.Option(help="follow the run; exit 0 only on success")] = False,
    timeout_s: Annotated[float, typer.Option(help="how long --wait waits")] = 600.0,
) -> None:
    """Submit a run of WORKFLOW."""
    api = _controller(url, api_key)
    body = {"workflow": workflow, "inputs": _parse_inputs(inputs or [], inputs_file)}
    accepted = api.call("POST", "/coordinate", json=body)
    if not wait:
        _emit(accepted, output if output == "json" else "json")
        return
    deadline = time.monotonic() + timeout_s
    current = api.call("GET", f"/workflows/{accepted['run_id']}")
    # A live table of the steps while it runs (a terminal only: transient, so the final table
    # below is printed once, and a pipe gets only that).
    with Live(_steps_table(current), console=console, transient=True, refresh_per_second=4) as live:
        while current["status"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            current = api.call("GET", f"/workflows/{accepted['run_id']}")
            live.update(_steps_table(current))
    _emit(current, output, _steps_table(current))
    if current["status"] != "SUCCEEDED":
        raise typer.Exit(1)


@app.command()
@_guard
def status(
    url: Url = "http://127.0.0.1:8080",
    api_key: Key = None,
    output: Output = "table",
    state: Annotated[str | None, typer.Option("--status", help="e.g. FAILED")] = None,
    workflow: Annotated[str | None, typer.Option(help="workflow name")] = None,
    limit: int = 20,
) -> None:
    """Recent runs, newest first."""
    params = {k: v for k, v in {"status": state, "workflow": workflow, "limit": limit}.items() if v}
    page = _controller(url, api_key).call("GET", "/workflows/status", params=params)
    table = Table()
    for column in ("run", "workflow", "status", "created", "ms"):
        table.add_column(column)
    for item in page["items"]:
        ms = f"{item['duration_ms']:.0f}" if item.get("duration_ms") is not None else "-"
        table.add_row(item["run_id"], item["workflow"], item["status"], str(item["created_at"]), ms)
    _emit(page, output, table)


@app.command()
@_guard
def show(
    run_id: str, url: Url = "http://127.0.0.1:8080", api_key: Key = None, output: Output = "table"
) -> None:
    """One run with every step."""
    detail = _controller(url, api_key).call("GET", f"/workflows/{run_id}")
    _emit(detail, output, _steps_table(detail))


@app.command()
@_guard
def cancel(
    run_id: str, url: Url = "http://127.0.0.1:8080", api_key: Key = None, output: Output = "json"
) -> None:
    """Cancel a run."""
    _emit(_controller(url, api_key).call("POST", f"/workflows/{run_id}/cancel"), "json")


@app.command()
@_guard
def retry(
    run_id: str, url: Url = "http://127.0.0.1:8080", api_key: Key = None, output: Output = "json"
) -> None:
    """Retry a failed or cancelled run from its failed steps (a new run; succeeded steps keep
    their outputs)."""
    _emit(_controller(url, api_key).call("POST", f"/workflows/{run_id}/retry"), output)


@app.command()
@_guard
def agents(
    url: Url = "http://127.0.0.1:8080", api_key: Key = None, output: Output = "table"
) -> None:
    """The agents' health and the models they serve."""
    health = _controller(url, api_key).call("GET", "/agents/health")
    table = Table(title=f"agents: {health['status']}")
    for column in ("agent", "status", "latency ms", "models"):
        table.add_column(column)
    for agent in health["agents"]:
        checks = (agent.get("detail") or {}).get("checks", {})
        models = ", ".join(
            f"{k[6:]} v{v.get('version') or '-'} ({v.get('source')})"
            for k, v in checks.items()
            if k.startswith("model:") and isinstance(v, dict)
        )
        latency = f"{agent['latency_ms']:.0f}" if agent.get("latency_ms") is not None else "-"
        table.add_row(agent["agent"], agent["status"], latency, models)
    _emit(health, output, table)


@schedules_app.callback(invoke_without_command=True)
@_guard
def schedules(
    ctx: typer.Context,
    url: Url = "http://127.0.0.1:8080",
    api_key: Key = None,
    output: Output = "table",
) -> None:
    """Schedules with their next fire times (`schedules trigger NAME` runs one now)."""
    if ctx.invoked_subcommand is not None:
        return
    listed = _controller(url, api_key).call("GET", "/schedules")
    table = Table()
    for column in ("name", "workflow", "enabled", "next fire", "reason"):
        table.add_column(column)
    for item in listed["items"]:
        upcoming = item.get("next_fire_times") or [None]
        table.add_row(
            item["name"], item["workflow"], str(item["enabled"]), str(upcoming[0]),
            str(item.get("status_reason") or ""),
        )  # fmt: skip
    _emit(listed, output, table)


@schedules_app.command("trigger")
@_guard
def schedules_trigger(
    name: str, url: Url = "http://127.0.0.1:8080", api_key: Key = None, output: Output = "json"
) -> None:
    """Run a schedule's workflow now, outside its timetable."""
    path = f"/schedules/{quote(name, safe='')}/trigger"
    _emit(_controller(url, api_key).call("POST", path), output)


@definitions.command("apply")
@_guard
def definitions_apply(
    file: Annotated[Path, typer.Option("-f", help="spec file, YAML or JSON")],
    url: Url = "http://127.0.0.1:8080",
    api_key: Key = None,
) -> None:
    """Register a workflow definition from a file, sent as it is (the API reads YAML too)."""
    try:
        text = file.read_text()
    except OSError as exc:
        raise CliError(f"{file}: {exc}") from exc
    media = "application/json" if file.suffix.lower() == ".json" else "application/yaml"
    headers = {"Content-Type": media}
    answer = _controller(url, api_key).call(
        "POST", "/workflows/definitions", content=text.encode(), headers=headers
    )
    _emit(answer, "json")


@definitions.command("list")
@_guard
def definitions_list(
    url: Url = "http://127.0.0.1:8080", api_key: Key = None, output: Output = "table"
) -> None:
    """Registered definitions, every version."""
    listed = _controller(url, api_key).call("GET", "/workflows/definitions")
    table = Table()
    for column in ("name", "version", "kind", "source"):
        table.add_column(column)
    for item in listed["items"]:
        table.add_row(item["name"], str(item["version"]), item["kind"], item.get("source", ""))
    _emit(listed, output, table)


@definitions.command("show")
@_guard
def definitions_show(
    name: str,
    version: Annotated[int | None, typer.Option(help="this version; the newest by default")] = None,
    url: Url = "http://127.0.0.1:8080",
    api_key: Key = None,
    output: Output = "yaml",
) -> None:
    """One definition's spec (YAML by default, as `definitions apply` takes it)."""
    params = {"name": name, "include_spec": True, "include_archived": True}
    items = _controller(url, api_key).call("GET", "/workflows/definitions", params=params)["items"]
    chosen = [i for i in items if version is None or i["version"] == version]
    if not chosen:
        which = f"{name!r} v{version}" if version is not None else repr(name)
        raise CliError(f"no workflow definition {which}")
    newest = max(chosen, key=lambda item: item["version"])
    if output == "yaml":
        typer.echo(yaml.safe_dump(newest["spec"], sort_keys=False).rstrip())
    else:
        _emit(newest, "json")


def _state_path(key: str) -> str:
    # '/' stays: the route takes a key with slashes; anything else unusual is escaped.
    return f"/sources/{quote(key, safe='/:@')}/state"


@state.command("show")
@_guard
def state_show(
    key: str, url: Url = "http://127.0.0.1:8080", api_key: Key = None, output: Output = "table"
) -> None:
    """The cursor committed under KEY and the run that wrote it."""
    stored = _controller(url, api_key).call("GET", _state_path(key))
    cursor = stored["cursor"]
    table = Table(title=f"source {stored['key']}")
    for column in ("field", "value", "lag", "boundary records", "run", "updated"):
        table.add_column(column)
    table.add_row(
        str(cursor.get("field")), str(cursor.get("value")), str(cursor.get("lag")),
        str(len(cursor.get("seen") or [])), str(stored["run_id"]), str(stored["updated_at"]),
    )  # fmt: skip
    _emit(stored, output, table)


@state.command("reset")
@_guard
def state_reset(key: str, url: Url = "http://127.0.0.1:8080", api_key: Key = None) -> None:
    """Forget the cursor under KEY: the source's next run collects everything again."""
    _controller(url, api_key).call("DELETE", _state_path(key))
    typer.echo(f"state of {key!r} reset")


# Commands kept in modules of their own register themselves on `app` when imported.
from ingestctl import datasets as _datasets  # noqa: E402, F401
from ingestctl import events as _events  # noqa: E402, F401
from ingestctl import logs as _logs  # noqa: E402, F401
