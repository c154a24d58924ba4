"""Runs the whole platform on one machine: `python -m launcher demo|up` (see the Makefile)."""
