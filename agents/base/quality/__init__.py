"""Data quality checks and PII classification: the data-merger's `quality_check` and the
data-converter's `classify`, also served by the external base-data-quality agent."""
