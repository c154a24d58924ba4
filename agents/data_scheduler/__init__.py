"""data-scheduler: cron validation, DST-correct run times, polling advice (port 8104)."""
