"""The actions each agent offers. The spec validator checks steps against this table and each
agent's app checks at start that it serves exactly these actions, so the two cannot drift."""

from __future__ import annotations

AGENT_ACTIONS: dict[str, frozenset[str]] = {
    "data-connector": frozenset({"test_connection", "describe", "noop"}),
    "data-collector": frozenset({"collect", "commit_state", "get_state", "ack_stream", "noop"}),
    "data-converter": frozenset({"detect", "convert", "classify", "mask", "noop"}),
    "data-scheduler": frozenset({"validate", "next_runs", "recommend", "next_interval", "noop"}),
    "data-merger": frozenset({"merge", "quality_check", "maintain", "snapshot", "noop"}),
    "data-fetch-retry": frozenset({"fetch", "noop"}),
    "data-ml": frozenset({"history", "train", "report", "noop"}),
    "data-transformer": frozenset({"transform", "noop"}),
}
