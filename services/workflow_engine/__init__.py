"""The workflow engine: claims ready steps from PostgreSQL and runs them against the agents."""
