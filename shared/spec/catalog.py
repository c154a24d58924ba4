"""The actions each agent offers. The spec validator checks steps against this table and each
agent's app checks at start that it serves exactly these actions, so the two cannot drift."""

from __future__ import annotations

import json

AGENT_ACTIONS: dict[str, frozenset[str]] = {
    "data-connector": frozenset({"test_connection", "describe", "noop"}),
    "data-collector": frozenset(
        {"collect", "plan_tables", "commit_state", "get_state", "ack_stream", "noop"}
    ),
    "data-converter": frozenset({"detect", "convert", "classify", "mask", "noop"}),
    "data-scheduler": frozenset({"validate", "next_runs", "recommend", "next_interval", "noop"}),
    "data-merger": frozenset({"merge", "quality_check", "maintain", "snapshot", "noop"}),
    "data-fetch-retry": frozenset({"fetch", "noop"}),
    "data-ml": frozenset({"history", "train", "report", "noop"}),
    "data-transformer": frozenset({"transform", "noop"}),
}


def chart_catalog() -> str:
    """The table as the Helm chart reads it (files/builtin-agents.json): the chart renders an
    Agent resource per built-in agent with these actions. Regenerate with
    `python -m shared.spec.catalog > helm/ingestion-platform/files/builtin-agents.json`."""
    return json.dumps({name: sorted(actions) for name, actions in AGENT_ACTIONS.items()}, indent=2)


if __name__ == "__main__":
    print(chart_catalog())
