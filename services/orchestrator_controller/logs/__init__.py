"""A run's log lines from every service, read from the JSON-lines files the services write."""
