"""data-collector: pulls data from REST APIs, files and PostgreSQL into the run dir."""
