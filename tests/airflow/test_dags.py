"""The DAG folder imported by real Airflow (its own venv, .venv-airflow, made by `make airflow`):
no import errors, the four seed DAG ids, the seed's schedules."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_PYTHON = ROOT / ".venv-airflow" / "bin" / "python"
DAGS = ROOT / "airflow" / "dags"

pytestmark = pytest.mark.skipif(
    not AIRFLOW_PYTHON.exists(),
    reason="no Airflow venv at .venv-airflow: run `make airflow` (`make test` does)",
)

# Run inside the Airflow venv: parse the folder the way Airflow 3's DAG processor does (a
# bundle whose root is on sys.path) and print what the test checks, as one JSON line.
PROBE = """
import json, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import airflow
from airflow.dag_processing.dagbag import BundleDagBag
folder = Path(sys.argv[1])
bag = BundleDagBag(dag_folder=folder, bundle_path=folder)
dags = {}
for dag_id, dag in bag.dags.items():
    timetable = dag.timetable
    dags[dag_id] = {
        "timetable": type(timetable).__name__,
        "expression": getattr(timetable, "expression", None),
        "timezone": str(getattr(timetable, "timezone", "")),
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "tasks": sorted(t.task_id for t in dag.tasks),
        "retries": [t.retries for t in dag.tasks],
    }
errors = {str(k): str(v) for k, v in bag.import_errors.items()}
print("DAGBAG " + json.dumps({"version": airflow.__version__, "errors": errors, "dags": dags}))
"""

SEED = {
    "base_standard_ingestion_workflow": "0 */6 * * *",
    "base_secure_api_ingestion_workflow": "0 */4 * * *",
    "base_bulk_file_ingestion_workflow": "0 */12 * * *",
}


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    result = subprocess.run(
        [str(AIRFLOW_PYTHON), "-c", PROBE, str(DAGS)],
        env=env,
        cwd=home,  # not the repository: its airflow/ folder must not shadow the package
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("DAGBAG "))
    return dict(json.loads(line.removeprefix("DAGBAG ")))


def test_the_dag_folder_imports_without_errors(dagbag: dict[str, Any]) -> None:
    assert dagbag["version"].startswith("3.")
    assert dagbag["errors"] == {}


def test_the_four_seed_dags_and_nothing_else(dagbag: dict[str, Any]) -> None:
    assert sorted(dagbag["dags"]) == sorted([*SEED, "base_realtime_stream_ingestion"])
    for dag in dagbag["dags"].values():
        assert dag["tasks"] == ["coordinate_and_wait"]
        assert dag["catchup"] is False and dag["max_active_runs"] == 1
        assert dag["retries"] == [2]


def test_the_dags_follow_the_seed_schedules(dagbag: dict[str, Any]) -> None:
    for dag_id, cron in SEED.items():
        dag = dagbag["dags"][dag_id]
        assert dag["timetable"] == "CronTriggerTimetable"
        assert (dag["expression"], dag["timezone"]) == (cron, "UTC")
    stream = dagbag["dags"]["base_realtime_stream_ingestion"]
    assert stream["timetable"] == "ContinuousTimetable"
