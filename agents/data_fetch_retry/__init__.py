"""data-fetch-retry: downloads with retries, resume, per-host circuit breakers and rate limits."""
