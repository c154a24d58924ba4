"""The common base of the six agents: app factory, action registry, idempotency ledger."""
