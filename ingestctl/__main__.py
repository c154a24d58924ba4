"""`python -m ingestctl`."""

from ingestctl.cli import app

app()
