"""ingestctl: the platform's command line, a client of the controller's public API only."""
