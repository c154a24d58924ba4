"""What the agents know about sources, shared by the connector (which probes them) and the
collector (which reads them): the source models, payload paths, file listings, PostgreSQL
probes and the recommendations drawn from a probe."""
