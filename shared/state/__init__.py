"""The one place where run and step statuses change (see machine.py for the vocabulary)."""
