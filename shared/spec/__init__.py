"""Workflow specifications: models, validation, templates, loading."""
