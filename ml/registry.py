"""The MLflow registry: log a trained model, register it, promote it, load the champion.

A model is stored as a joblib file (`model/model.joblib`) in its training run's artifacts and
registered as a version of `<name>`; agents load `models:/<name>@champion`. joblib rather than
an MLflow flavour keeps the agents' runtime to `mlflow-skinny` and the model's own classes (no
pandas, no pyfunc environment), and loads in milliseconds.

The alias `champion` moves to a new version only when it beats its baseline and the current
champion on the same held-out data (MLflow's documented champion/challenger pattern).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from ml.evaluate import TrainedModel

log = logging.getLogger(__name__)

CHAMPION = "champion"
EXPERIMENT = "ingestion-models"
ARTIFACT_FILE = "model.joblib"
ROOT = Path(__file__).resolve().parents[1]
LOCAL_STORE = ROOT / "var" / "mlflow"


class ModelUnavailable(Exception):
    """The registry cannot be reached, or holds no version under the alias."""


class RegistryUnreachable(ModelUnavailable):
    """The registry did not answer (as opposed to answering that there is no such version)."""


def local_tracking_uri(store: Path = LOCAL_STORE) -> str:
    """The laptop default: a SQLite tracking store under var/mlflow (no server needed)."""
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def tracking_uri(explicit: str | None = None) -> str:
    """`explicit`, else MLFLOW_TRACKING_URI, else the local SQLite store."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or local_tracking_uri()


_READY_STORES: set[str] = set()


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    if not uri.startswith("sqlite:///") or uri in _READY_STORES:
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    # MLflow creates a new SQLite store's tables when it first opens it, and on a fresh install
    # every agent and the trainer open it at once: without the lock all but one fail with
    # `table ... already exists`. The first to finish leaves a marker, so processes started
    # later open the store side by side instead of one after another.
    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    created = database.with_name(database.name + ".created")
    if created.exists() and database.exists():
        _READY_STORES.add(uri)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            client._get_registry_client().store  # noqa: B018 - opening it creates the tables
            created.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_STORES.add(uri)
    return client


def prepare_store(uri: str) -> None:
    """Create the store's tables now (a SQLite store: once, for every process to come)."""
    _client(uri)


def _experiment_id(client: Any, uri: str) -> str:
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return str(found.experiment_id)
    location = None
    if uri.startswith("sqlite:///"):
        # Beside the SQLite file, not ./mlruns under whatever folder the caller runs from.
        location = (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return str(client.create_experiment(EXPERIMENT, artifact_location=location))


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str
    promoted: bool
    reason: str
    champion_score: float | None


@dataclass(frozen=True)
class LoadedModel:
    name: str
    version: str
    predictor: Any
    run_id: str


def register(trained: TrainedModel, *, uri: str | None = None) -> Registered:
    """Log `trained` (params, metrics, artifact) as a run, register a version, maybe promote."""
    uri = tracking_uri(uri)
    client = _client(uri)
    experiment = _experiment_id(client, uri)
    run = client.create_run(experiment, run_name=f"{trained.name}-{int(time.time())}")
    run_id = run.info.run_id
    for key, value in trained.params.items():
        client.log_param(run_id, key, str(value)[:500])
    for key, value in trained.all_metrics().items():
        client.log_metric(run_id, key, float(value))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ARTIFACT_FILE
        joblib.dump(trained.predictor, path, compress=3)
        client.log_artifact(run_id, str(path), artifact_path="model")
    client.set_terminated(run_id)

    from mlflow.exceptions import MlflowException

    with contextlib.suppress(MlflowException):  # already registered
        client.create_registered_model(trained.name, description=trained.description)
    version = client.create_model_version(
        trained.name, source=f"{run.info.artifact_uri}/model", run_id=run_id
    ).version
    _wait_ready(client, trained.name, version)
    promoted, reason, champion_score = _decide(client, uri, trained)
    client.set_model_version_tag(trained.name, version, "promotion", reason)
    if promoted:
        client.set_registered_model_alias(trained.name, CHAMPION, version)
    log.info("%s v%s: %s", trained.name, version, reason)
    return Registered(trained.name, str(version), run_id, promoted, reason, champion_score)


def _wait_ready(client: Any, name: str, version: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get_model_version(name, version).status != "READY":
        if time.monotonic() > deadline:
            raise ModelUnavailable(f"{name} v{version} did not become READY")
        time.sleep(0.1)


def _decide(client: Any, uri: str, trained: TrainedModel) -> tuple[bool, str, float | None]:
    """Whether the new version takes the alias, and why (kept as a version tag)."""
    if not trained.beats(trained.baseline_score):
        return (
            False,
            f"not promoted: {trained.metric} {trained.model_score:.4f} does not beat the "
            f"baseline's {trained.baseline_score:.4f}",
            None,
        )
    try:
        current = load(trained.name, uri=uri)
    except ModelUnavailable:
        return True, f"promoted: first version to beat the baseline ({_scores(trained)})", None
    # The current champion is scored on this version's held-out data, so the comparison is
    # like for like even when the held-out set changed since it was trained.
    try:
        champion_score = trained.score(current.predictor)
    except Exception as exc:  # an older interface the new evaluation cannot call
        log.warning(
            "champion v%s could not be scored (%s); using its logged metric", current.version, exc
        )
        champion_score = float(client.get_run(current.run_id).data.metrics[trained.metric])
    if not trained.beats(champion_score):
        return (
            False,
            f"not promoted: {trained.metric} {trained.model_score:.4f} does not beat champion "
            f"v{current.version}'s {champion_score:.4f} on the same held-out data",
            champion_score,
        )
    return (
        True,
        f"promoted: beats the baseline and champion v{current.version} "
        f"({_scores(trained)}, champion {champion_score:.4f})",
        champion_score,
    )


def _scores(trained: TrainedModel) -> str:
    return f"{trained.metric} {trained.model_score:.4f} vs baseline {trained.baseline_score:.4f}"


def champion_version(name: str, *, uri: str | None = None) -> str:
    """The version the champion alias points at (a cheap call, for noticing a new champion)."""
    return alias_version(name, CHAMPION, uri=uri)


def alias_version(name: str, alias: str, *, uri: str | None = None) -> str:
    """The version `name@alias` points at."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(tracking_uri(uri)).get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        raise ModelUnavailable(f"{name}@{alias}: {exc.message.splitlines()[0]}") from exc
    except Exception as exc:  # the registry unreachable: a connection error of any kind
        raise RegistryUnreachable(f"{name}@{alias}: registry unreachable ({exc})") from exc


def load(name: str, *, uri: str | None = None, version: str | None = None) -> LoadedModel:
    """The predictor of `name`'s champion (or of `version`), downloaded and unpickled."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(uri)
    client = _client(uri)
    try:
        version = version or champion_version(name, uri=uri)
        details = client.get_model_version(name, version)
        with tempfile.TemporaryDirectory() as folder:
            # The version's own source: a `models:/` URI would resolve against the process-wide
            # registry URI, not this one.
            source = client.get_model_version_download_uri(name, version)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=folder, tracking_uri=uri
            )
            predictor = joblib.load(Path(local) / ARTIFACT_FILE)
    except ModelUnavailable:
        raise
    except MlflowException as exc:
        raise ModelUnavailable(f"{name} v{version}: {exc.message.splitlines()[0]}") from exc
    except (OSError, EOFError) as exc:
        raise ModelUnavailable(f"{name} v{version}: artifact unreadable ({exc})") from exc
    return LoadedModel(name, str(version), predictor, str(details.run_id))
