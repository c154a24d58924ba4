"""The one place where run and step statuses change.

- `machine`: the statuses and the names of their events (the vocabulary).
- `transitions`: every run and step transition, declared once: from-states, to-states, the
  event each arrival writes, who causes it. Every statement below takes its guard and its
  events from it.
- `runs`: accepting runs (PENDING) and starting them (RUNNING, step rows created), with the
  `RunContext` their steps execute in.
- `admission`: runs held back by a policy or not started by any engine, and their admission.
- `steps`: claiming steps with a lease, and recording their attempts' results.
- `needs`: which earlier outputs a step's templates read (`step_runs.needs`), so that its
  claim reads only those.
- `leases`: renewing leases; expired or released ones put their steps back to READY.
- `progress`: advancing locked runs after step changes (skips, readiness), calling
  `fanout` (map_over items and their window), `compensation` (the saga) and `endings` (the run
  statuses reached).
- `stopping`: cancel requests, and stopping cancelled or overdue runs batch by batch.
- `history`: a run's events replayed against the table, to compare with its rows.
"""
