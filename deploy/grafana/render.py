"""A dashboard drawn from a Prometheus's range data, for when no Grafana is at hand.

Grafana is not in the package registries this project's machines reach, so the README's picture
of the overview (taken by tests/e2e/test_observability.py from a live platform) comes from here,
and an operator without Grafana can use it too:

    python -m deploy.grafana.render --prometheus http://127.0.0.1:9090 \\
        --dashboard ingestion-overview --minutes 30 --out overview.png [--var workflow=test]

The panels and queries are the dashboards' own (deploy/grafana/runs.py, services.py): each query
is evaluated by /api/v1/query_range and drawn with matplotlib, a time series as lines and a stat
panel as its last value. Rows and panel widths follow the 24-column grid Grafana lays them on.
"""

from __future__ import annotations

import argparse
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.pyplot as plt  # noqa: E402 (after the backend is chosen)
from matplotlib.axes import Axes  # noqa: E402

from deploy.grafana.build import DASHBOARDS  # noqa: E402
from deploy.grafana.model import Dashboard, Panel  # noqa: E402

GRID_COLUMNS = 24
PANEL_HEIGHT_IN = 2.6
ROW_TITLE_IN = 0.35
FIGURE_WIDTH_IN = 16.0
POINTS = 240  # samples per series across the window
# Grafana's dark theme, roughly, so the picture reads like the dashboard it stands for.
BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
PALETTE = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9")


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    times: list[float]
    values: list[float]


def query_range(url: str, expr: str, *, start: float, end: float) -> list[Series]:
    """Prometheus's range answer for `expr`; raises on a query error (a broken panel)."""
    step = max((end - start) / POINTS, 1.0)
    answer = httpx.get(
        f"{url}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end, "step": step},
        timeout=30,
    ).json()
    if answer["status"] != "success":
        raise ValueError(f"{expr}: {answer.get('errorType')}: {answer.get('error')}")
    found = []
    for result in answer["data"]["result"]:
        points = [(float(t), float(v)) for t, v in result["values"] if not math.isnan(float(v))]
        if points:
            times, values = zip(*points, strict=True)
            found.append(Series(result["metric"], list(times), list(values)))
    return found


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """The query with Grafana's variables ($__rate_interval, $workflow…) filled in."""
    for name in sorted(variables, key=len, reverse=True):  # $__range before $__r…, and so on
        expr = expr.replace(name, variables[name])
    if "$" in expr:
        raise ValueError(f"a variable with no value: {expr}")
    return expr


def legend(template: str, labels: Mapping[str, str]) -> str:
    """Grafana's legend format: `{{label}}` replaced by the series' label value."""
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template).strip()
    return text or ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "value"


def formatted(value: float, unit: str) -> str:
    if unit == "percentunit":
        return f"{value:.1%}"
    if unit == "s":
        return f"{value:.3g} s"
    if unit == "bytes":
        return f"{value / 2**20:.3g} MiB" if value >= 2**20 else f"{value:.0f} B"
    return f"{value:.3g}"


def _draw(
    axes: Axes, panel: Panel, drawn: list[tuple[str, Series]], *, end: float, span: float
) -> None:
    axes.set_facecolor(PANEL)
    axes.set_title(panel.title, color=TEXT, fontsize=10, loc="left")
    for side in axes.spines.values():
        side.set_color(GRID)
    if panel.kind == "stat":
        axes.set_xticks([])
        axes.set_yticks([])
        shown = formatted(drawn[0][1].values[-1], panel.unit) if drawn else "No data"
        axes.text(0.5, 0.45, shown, ha="center", va="center", color=PALETTE[0], fontsize=26)
        return
    axes.tick_params(colors=TEXT, labelsize=7)
    axes.grid(color=GRID, linewidth=0.5)
    scale, unit = (60, "minutes") if span > 600 else (1, "seconds")
    for number, (name, series) in enumerate(drawn):
        before = [(t - end) / scale for t in series.times]
        axes.plot(before, series.values, color=PALETTE[number % len(PALETTE)], label=name)
    axes.set_xlim(-span / scale, 0)
    axes.set_xlabel(f"{unit} before now", color=TEXT, fontsize=7)
    if panel.unit != "short":
        axes.set_ylabel(panel.unit, color=TEXT, fontsize=7)
    if drawn:
        axes.legend(fontsize=6, facecolor=PANEL, labelcolor=TEXT, edgecolor=GRID, loc="best")
    else:
        axes.text(
            0.5, 0.5, "No data", ha="center", va="center", color=TEXT, transform=axes.transAxes
        )


def render(
    board: Dashboard,
    url: str,
    out: Path,
    *,
    start: float,
    end: float,
    variables: Mapping[str, str],
) -> dict[str, int]:
    """Draw `board` over [start, end] into the PNG `out`; the number of series each panel drew."""
    lines: list[tuple[str, list[Panel]]] = []  # one entry per line of panels, the row's title first
    for row in board.rows:
        title, used = row.title, 0
        line: list[Panel] = []
        for panel in row.panels:
            if used + panel.width > GRID_COLUMNS:
                lines.append((title, line))
                title, line, used = "", [], 0
            line.append(panel)
            used += panel.width
        lines.append((title, line))
    height = sum(PANEL_HEIGHT_IN + (ROW_TITLE_IN if title else 0) for title, _ in lines) + 0.6
    figure = plt.figure(figsize=(FIGURE_WIDTH_IN, height), facecolor=BACKGROUND)
    figure.suptitle(board.title, color=TEXT, fontsize=14, x=0.01, ha="left")
    counts: dict[str, int] = {}
    top = 1 - 0.6 / height
    for title, line in lines:
        if title:
            figure.text(0.01, top - 0.25 / height, title, color=TEXT, fontsize=11, weight="bold")
            top -= ROW_TITLE_IN / height
        left = 0.0
        for panel in line:
            share = panel.width / GRID_COLUMNS
            axes = figure.add_axes(
                (
                    left + 0.035,
                    top - (PANEL_HEIGHT_IN - 0.45) / height,
                    share - 0.05,
                    (PANEL_HEIGHT_IN - 0.75) / height,
                )
            )
            drawn = [
                (legend(query.legend, series.labels), series)
                for query in panel.queries
                for series in query_range(
                    url, substitute(query.expr, variables), start=start, end=end
                )
            ]
            counts[panel.title] = len(drawn)
            _draw(axes, panel, drawn, end=end, span=end - start)
            left += share
        top -= PANEL_HEIGHT_IN / height
    figure.savefig(out, dpi=90, facecolor=BACKGROUND)
    plt.close(figure)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prometheus", required=True, help="base URL of a Prometheus")
    parser.add_argument("--dashboard", default="ingestion-overview", help="a dashboard uid")
    parser.add_argument("--minutes", type=float, default=30, help="how far back to draw")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--var", action="append", default=[], help="NAME=VALUE, e.g. workflow=test")
    args = parser.parse_args()
    boards = {board.uid: board for board in DASHBOARDS}
    if args.dashboard not in boards:
        parser.error(f"--dashboard: one of {sorted(boards)}")
    end = time.time()
    variables = {"$__rate_interval": "2m", "$__range": f"{round(args.minutes * 60)}s"}
    for pair in args.var:
        name, _, value = pair.partition("=")
        variables[f"${name}"] = value
    counts = render(
        boards[args.dashboard],
        args.prometheus,
        args.out,
        start=end - args.minutes * 60,
        end=end,
        variables=variables,
    )
    for title, count in counts.items():
        print(f"{count:3d} series  {title}")


if __name__ == "__main__":
    main()
