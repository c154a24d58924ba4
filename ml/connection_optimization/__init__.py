"""Connection optimization: probe a source, plan concurrency, page size and rate; pace."""
