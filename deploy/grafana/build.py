"""The platform's Grafana dashboards as code, built with the Grafana Foundation SDK.

    .venv/bin/python -m deploy.grafana.build           # write the dashboards and chart copies
    .venv/bin/python -m deploy.grafana.build --check   # exit 1 if a written file is stale

Writes deploy/grafana/dashboards/<uid>.json (mounted by docker-compose.yml) and copies them,
with deploy/prometheus/rules.yml, into helm/ingestion-platform/files/ (Helm reads files inside
the chart only). The panels are in runs.py and services.py, on metrics of shared/metrics.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as gfc
from grafana_foundation_sdk.builders import dashboard as gf
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

from deploy.grafana.model import Dashboard, Panel
from deploy.grafana.runs import OVERVIEW, WORKFLOW
from deploy.grafana.services import AGENTS, DATA

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = ROOT / "deploy" / "grafana" / "dashboards"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
CHART_FILES = ROOT / "helm" / "ingestion-platform" / "files"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
DASHBOARDS = (OVERVIEW, WORKFLOW, AGENTS, DATA)


def _panel(spec: Panel) -> timeseries.Panel | stat.Panel:
    builder: timeseries.Panel | stat.Panel
    if spec.kind == "timeseries":
        builder = (
            timeseries.Panel()
            .legend(
                gfc.VizLegendOptions()
                .show_legend(True)
                .display_mode(LegendDisplayMode.TABLE)
                .placement(LegendPlacement.BOTTOM)
                .calcs(["lastNotNull", "max"])
            )
            .tooltip(
                gfc.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
            )
        )
    else:
        builder = (
            stat.Panel()
            .reduce_options(gfc.ReduceDataOptions().calcs(["lastNotNull"]))
            .graph_mode(BigValueGraphMode.NONE)
        )
    builder.title(spec.title).description(spec.description).datasource(DATASOURCE)
    builder.unit(spec.unit).height(8).span(spec.width)
    for index, query in enumerate(spec.queries):
        target = prometheus.Dataquery().expr(query.expr).ref_id(chr(ord("A") + index))
        if query.legend:
            target.legend_format(query.legend)
        if spec.kind == "stat":
            target.instant()
        builder.with_target(target)
    return builder


def build(spec: Dashboard) -> dict[str, Any]:
    """The dashboard's JSON model, as Grafana stores it."""
    board = (
        gf.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(list(spec.tags))
        .time("now-1h", "now")
        .refresh("30s")
        .timezone("browser")
        .editable()
        .with_variable(gf.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    )
    if spec.workflow_variable:
        board.with_variable(
            gf.QueryVariable("workflow")
            .label("Workflow type")
            .datasource(DATASOURCE)
            .query("label_values(workflows_executed_total, type)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
        )
    panel_id = 0
    for row in spec.rows:
        panel_id += 1
        board.with_row(gf.Row(row.title).id(panel_id))
        for panel in row.panels:
            panel_id += 1
            board.with_panel(_panel(panel).id(panel_id))
    encoded: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return encoded


def rendered() -> dict[Path, str]:
    """Every file this script writes, with its content."""
    files: dict[Path, str] = {}
    for spec in DASHBOARDS:
        text = json.dumps(build(spec), indent=2, sort_keys=True) + "\n"
        files[DASHBOARDS_DIR / f"{spec.uid}.json"] = text
        files[CHART_FILES / "dashboards" / f"{spec.uid}.json"] = text
    files[CHART_FILES / "prometheus-rules.yml"] = RULES.read_text()
    return files


def main(argv: list[str]) -> int:
    """Write the files, or with --check report the stale ones."""
    stale = [
        path for path, text in rendered().items() if not path.is_file() or path.read_text() != text
    ]
    if "--check" in argv:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run deploy/grafana/build.py)")
        return 1 if stale else 0
    for path, text in rendered().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
