"""The seed's four workflows as Airflow DAGs, for teams that keep Airflow as their scheduler.

Each DAG has one task that POSTs /coordinate with an Idempotency-Key built from the DAG run's
logical date (a retried task rejoins the same platform run) and waits for the run to end,
failing when the run does not succeed. Disable the controller's own seed schedules
(CONTROLLER_SEED_SCHEDULES=false, or PATCH /schedules/<name> enabled=false) when Airflow
drives these workflows, or both will start runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task  # Airflow 3 (pinned in airflow/requirements.txt)
from ingestion_client import coordinate_and_wait, idempotency_key

# dag id -> (workflow, schedule); the same cadence as the controller's seed schedules
SEED_DAGS: dict[str, tuple[str, str]] = {
    "base_standard_ingestion_workflow": ("standard", "0 */6 * * *"),
    "base_secure_api_ingestion_workflow": ("secure_api", "0 */4 * * *"),
    "base_bulk_file_ingestion_workflow": ("bulk_file", "0 */12 * * *"),
    "base_realtime_stream_ingestion": ("realtime_stream", "@continuous"),
}


def build(dag_id: str, workflow: str, schedule: str) -> DAG:
    """One DAG whose single task runs `workflow` on the platform."""
    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=datetime(2026, 1, 1, tzinfo=UTC),
        catchup=False,
        # a continuous DAG must run one at a time; the others must not pile up either
        max_active_runs=1,
        tags=["ingestion-platform"],
        default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    ) as dag:

        @task(task_id="coordinate_and_wait", execution_timeout=timedelta(hours=6))
        def run_workflow(**context: Any) -> dict[str, Any]:
            key = idempotency_key(dag_id, context.get("logical_date"), str(context["run_id"]))
            return coordinate_and_wait(workflow, key)

        run_workflow()
    return dag


for _dag_id, (_workflow, _schedule) in SEED_DAGS.items():
    globals()[_dag_id] = build(_dag_id, _workflow, _schedule)
