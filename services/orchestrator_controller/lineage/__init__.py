"""OpenLineage run events for every workflow run (START, then COMPLETE, FAIL or ABORT)."""
