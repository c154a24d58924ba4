"""Common package: workflow spec, database, state machine, events, settings, errors, auth."""
