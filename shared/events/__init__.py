"""Events: written to the outbox with the state change, relayed to Redis Streams."""
