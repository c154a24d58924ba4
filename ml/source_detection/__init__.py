"""Source detection: what a source is, where its records are and how it pages."""
