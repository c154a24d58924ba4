"""`ingestctl datasets list | loads NAME | versions NAME`: what merges loaded, and where."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from ingestctl.cli import Key, Output, Url, _controller, _emit, _guard, app

datasets = typer.Typer(help="Datasets: their loads and the versions those made.")
app.add_typer(datasets, name="datasets")
Limit = Annotated[int, typer.Option(help="at most this many, newest first")]


@datasets.command("list")
@_guard
def datasets_list(
    url: Url = "http://127.0.0.1:8080", api_key: Key = None, output: Output = "table"
) -> None:
    """Every dataset a merge has loaded, with its latest load."""
    listed = _controller(url, api_key).call("GET", "/datasets")
    table = Table(title="datasets")
    for column in ("dataset", "kind", "rows", "version", "loads", "last load", "run"):
        table.add_column(column)
    for d in listed:
        table.add_row(
            d["dataset"], d["kind"], str(d["rows"]), str(d["version"]), str(d["loads"]),
            str(d["last_loaded_at"])[:19], str(d["last_run_id"]),
        )  # fmt: skip
    _emit(listed, output, table)


@datasets.command("loads")
@_guard
def datasets_loads(
    name: str,
    limit: Limit = 20,
    url: Url = "http://127.0.0.1:8080",
    api_key: Key = None,
    output: Output = "table",
) -> None:
    """The loads of NAME: run, disposition, what changed, the version each made."""
    page = _controller(url, api_key).call("GET", f"/datasets/{name}/loads?limit={limit}")
    table = Table(title=f"loads of {name}")
    columns = ("loaded", "run", "kind", "how", "ins", "upd", "del", "same", "rows", "version")
    for column in columns:
        table.add_column(column)
    for load in page["loads"]:
        how = load["write_disposition"]
        if how == "merge" and load.get("strategy"):
            how += f"/{load['strategy']}"
        table.add_row(
            str(load["loaded_at"])[:19], str(load["run_id"]), load["kind"], how,
            str(load["inserted"]), str(load["updated"]), str(load["deleted"]),
            str(load["unchanged"]), str(load["rows"]), str(load["version"]),
        )  # fmt: skip
    _emit(page, output, table)


@datasets.command("versions")
@_guard
def datasets_versions(
    name: str,
    limit: Limit = 20,
    url: Url = "http://127.0.0.1:8080",
    api_key: Key = None,
    output: Output = "table",
) -> None:
    """The versions the loads of NAME made (read one with deltalake or the snapshot action)."""
    page = _controller(url, api_key).call("GET", f"/datasets/{name}/versions?limit={limit}")
    table = Table(title=f"versions of {name}")
    for column in ("version", "loaded", "run", "how", "ins", "upd", "del", "rows"):
        table.add_column(column)
    for v in page["versions"]:
        table.add_row(
            str(v["version"]), str(v["loaded_at"])[:19], str(v["run_id"]),
            v["write_disposition"], str(v["inserted"]), str(v["updated"]), str(v["deleted"]),
            str(v["rows"]),
        )  # fmt: skip
    _emit(page, output, table)
