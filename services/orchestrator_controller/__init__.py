"""The orchestrator controller: the public API that accepts, lists, shows and cancels runs."""
