"""data-merger: merges converted batches into datasets and checks their quality (port 8105)."""
