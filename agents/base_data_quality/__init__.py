"""The base-data-quality agent: the quality checks and PII classification as an external
service (not a built-in: it is registered through `POST /agents` or an Agent resource)."""
