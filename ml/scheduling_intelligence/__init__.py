"""Scheduling intelligence: the next poll interval of a source from its change history."""
