"""The registry for real (MLflow on a SQLite store): register, promote only on improvement,
load the champion, and agents' slots: baseline without a registry, degraded when it is away,
a new champion picked up without a restart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ml import registry
from ml.evaluate import TrainedModel
from ml.slot import ModelSlot


@dataclass
class Threshold:
    """A toy classifier: positive above `cut`."""

    cut: float

    def predict(self, x: float) -> bool:
        return x > self.cut


HELD_OUT = [(0.1, False), (0.4, False), (0.6, True), (0.9, True), (0.55, True), (0.45, False)]


def accuracy(predictor: Threshold) -> float:
    return sum(predictor.predict(x) == y for x, y in HELD_OUT) / len(HELD_OUT)


def trained(cut: float, baseline: float = 0.5) -> TrainedModel:
    model = Threshold(cut)
    return TrainedModel(
        name="toy_threshold",
        predictor=model,
        metric="accuracy",
        model_score=accuracy(model),
        baseline_score=baseline,
        score=accuracy,
        params={"cut": cut},
    )


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return registry.local_tracking_uri(tmp_path / "mlflow")


def test_champion_moves_only_on_improvement(uri: str) -> None:
    first = registry.register(trained(0.2), uri=uri)  # 4/6 beats the 0.5 baseline
    assert first.promoted and registry.champion_version("toy_threshold", uri=uri) == "1"

    worse = registry.register(trained(0.95), uri=uri)  # 3/6: not above the baseline
    assert not worse.promoted and "baseline" in worse.reason
    no_better = registry.register(trained(0.3), uri=uri)  # 4/6: ties the champion
    assert not no_better.promoted and "champion v1" in no_better.reason
    assert registry.champion_version("toy_threshold", uri=uri) == "1"

    better = registry.register(trained(0.5), uri=uri)  # 6/6
    assert better.promoted and better.champion_score == pytest.approx(4 / 6)
    loaded = registry.load("toy_threshold", uri=uri)
    assert loaded.version == better.version and loaded.predictor == Threshold(0.5)


def test_no_champion_is_unavailable(uri: str) -> None:
    registry.register(trained(0.95), uri=uri)  # registered, never promoted
    with pytest.raises(registry.ModelUnavailable):
        registry.load("toy_threshold", uri=uri)


async def test_a_slot_serves_the_baseline_without_a_registry() -> None:
    slot = ModelSlot("toy_threshold", Threshold(0.0), tracking_uri=None)
    await slot.start()
    assert slot.current.source == "baseline" and slot.current.version is None
    state, detail = slot.health()
    assert state == "ok" and detail["problem"] == "no registry configured"


async def test_a_slot_is_degraded_when_the_registry_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    slot = ModelSlot("toy_threshold", Threshold(0.0), tracking_uri="http://127.0.0.1:9")
    await slot.start()
    await slot.stop()
    assert slot.current.source == "baseline"
    state, detail = slot.health()
    assert state == "degraded" and "Connection refused" in detail["problem"]


async def test_a_slot_picks_up_a_new_champion_without_a_restart(uri: str) -> None:
    registry.register(trained(0.2), uri=uri)
    slot = ModelSlot("toy_threshold", Threshold(0.0), tracking_uri=uri, refresh_s=3600)
    await slot.start()
    try:
        assert (slot.current.source, slot.current.version) == ("registry", "1")
        assert slot.health()[0] == "ok"
        registry.register(trained(0.5), uri=uri)
        await slot.refresh()
        assert slot.current.version == "2" and slot.current.predictor == Threshold(0.5)
        assert slot.current.provenance() == {
            "model": "toy_threshold",
            "version": "2",
            "source": "registry",
        }
    finally:
        await slot.stop()


def _ask_for_the_champion(uri: str) -> str:
    try:
        return registry.champion_version("toy_threshold", uri=uri)
    except registry.ModelUnavailable as exc:
        return str(exc)


def test_processes_opening_a_fresh_store_at_once_all_get_an_answer(uri: str) -> None:
    """A fresh install: every agent's slot and the trainer open the new SQLite store at the
    same moment; each must get "no champion yet", none a half-created schema."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(6) as pool:
        answers = pool.map(_ask_for_the_champion, [uri] * 6)
    assert all("unreachable" not in answer for answer in answers), answers
    assert registry.register(trained(0.2), uri=uri).promoted
