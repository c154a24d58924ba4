"""Event feeds: server-sent events read from the outbox and the Redis streams."""
