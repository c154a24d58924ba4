"""Connection optimization: train the planner in the capacity simulator (plus history twins).

`python -m ml.train connection_optimization [--quick] [--database-url ...]`. Every candidate
plan of the grid runs on every training source (families small_capacity, large_capacity,
strict_rate, noisy; plus twins of recorded collects when the database has any); the planner
keeps each source's probe features and per-candidate scores, and k is chosen by leave-one-out
on the training sources. Held out: unseen seeds of the training families and two families
never trained on (capacity_drop, rate_and_capacity), and the newest fifth of history twins.
The baseline score is the better of the two baselines (fixed spec settings, the adaptive
limiter alone), so a promoted model beats both.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ml.connection_optimization.history import History, load_history
from ml.connection_optimization.model import (
    Candidate,
    FixedPlanner,
    KnnPlanner,
    LimiterOnlyPlanner,
    candidate_grid,
)
from ml.connection_optimization.plan import Bounds, ConnectionPlan, ProbeStats
from ml.connection_optimization.simulate import (
    SIM_BOUNDS,
    PlannedClient,
    Planner,
    evaluate,
    grouped,
    score_outcome,
    summary,
)
from ml.evaluate import TrainedModel, p50_ms
from ml.sim.capacity import FAMILIES, TRAIN_FAMILIES, SourceSpec, run_episode, scenarios
from ml.train import TrainingContext

NAME = "connection_optimization"
log = logging.getLogger(__name__)


class _Fixed:
    """One candidate for every source (training runs the grid through it)."""

    probe_requests = KnnPlanner.probe_requests

    def __init__(self, candidate: Candidate) -> None:
        self.candidate = candidate

    def plan(self, observations: ProbeStats, bounds: Bounds) -> ConnectionPlan:
        """This candidate, whatever the probe saw."""
        return self.candidate.materialize(observations, bounds)


def grid_scores(
    sources: list[SourceSpec], candidates: list[Candidate], *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Probe features of each source and the score of every candidate on it."""
    features = np.zeros((len(sources), len(ProbeStats().features())))
    scores = np.zeros((len(sources), len(candidates)))
    for i, source in enumerate(sources):
        for j, candidate in enumerate(candidates):
            client = PlannedClient(_Fixed(candidate), SIM_BOUNDS)
            scores[i, j] = score_outcome(source, run_episode(source, client, seed=seed)).score
            if j == 0:  # the probe goes the same way whatever follows it: same seed, same stats
                assert client.stats is not None
                features[i] = client.stats.features()
    return features, scores


def choose_k(candidates: list[Candidate], features: np.ndarray, scores: np.ndarray) -> int:
    """The neighbourhood size with the best leave-one-out score on the training sources."""
    best_k, best = 1, -np.inf
    for k in (1, 3, 5, 9, 15):
        if k >= len(features):
            break
        total = 0.0
        for i in range(len(features)):
            keep = np.arange(len(features)) != i
            planner = KnnPlanner(candidates, features[keep], scores[keep], k=k)
            x = features[i]
            stats_index, _ = planner.choose_from_vector(x)
            total += scores[i, stats_index]
        if total > best:
            best_k, best = k, total
    return best_k


def _history(ctx: TrainingContext) -> tuple[History | None, str]:
    if not ctx.database_url:
        return None, "simulator only (no database given)"
    try:
        found = load_history(ctx.database_url, ctx.db_schema)
    except Exception as exc:  # an unreachable or unmigrated database: train on the simulator
        log.warning("no history: %s", exc)
        return None, f"simulator only (history unreadable: {type(exc).__name__})"
    if not found.twins:
        return found, f"simulator only (no paced collects in history; {found.collects} collects)"
    return found, f"simulator + {len(found.twins)} history twins"


def train(ctx: TrainingContext) -> TrainedModel:
    """Fit the planner, evaluate it and both baselines on held-out sources."""
    started = time.monotonic()
    seed = ctx.seed
    train_seeds = range(6) if ctx.quick else range(24)
    held_seeds = range(1000, 1003) if ctx.quick else range(1000, 1010)
    records = 10_000 if ctx.quick else 20_000
    history, data_note = _history(ctx)
    train_sources = scenarios(TRAIN_FAMILIES, train_seeds, records=records)
    held_out = scenarios(FAMILIES, held_seeds, records=records)
    twins = history.twins if history else []
    cut = int(len(twins) * 0.8)
    train_sources += twins[:cut]
    held_out += twins[cut:]
    candidates = candidate_grid()
    features, scores = grid_scores(train_sources, candidates, seed=seed)
    k = choose_k(candidates, features, scores)
    model = KnnPlanner(candidates, features, scores, k=k)
    fit_s = time.monotonic() - started

    eval_seed = seed + 1
    planners: dict[str, Planner] = {
        "model": model,
        "fixed": FixedPlanner(),
        "limiter": LimiterOnlyPlanner(),
    }
    families: dict[str, dict[str, dict[str, float]]] = {}
    overall: dict[str, dict[str, float]] = {}
    for name, planner in planners.items():
        scored = evaluate(planner, held_out, seed=eval_seed)
        overall[name] = summary(scored)
        families[name] = grouped(held_out, scored)
    details: dict[str, float] = {}
    for name, fams in families.items():
        for family, figures in fams.items():
            for metric, value in figures.items():
                details[f"{name}_{family}_{metric}"] = value
        for metric, value in overall[name].items():
            details[f"{name}_all_{metric}"] = value
    references = {
        "fixed_spec_settings": overall["fixed"]["score"],
        "adaptive_limiter_alone": overall["limiter"]["score"],
    }
    baseline_name = max(("fixed", "limiter"), key=lambda n: overall[n]["score"])
    probes = [_probe_of(src, eval_seed) for src in held_out]
    inference = p50_ms(lambda s: model.plan(s, SIM_BOUNDS), probes, repeat=20)

    def score(predictor: Any) -> float:
        return summary(evaluate(predictor, held_out, seed=eval_seed))["score"]

    chosen = sorted({model.plan(p, SIM_BOUNDS).detail["candidate"] for p in probes})
    return TrainedModel(
        name=NAME,
        predictor=model,
        metric="pacing_score",
        model_score=overall["model"]["score"],
        baseline_score=overall[baseline_name]["score"],
        score=score,
        details=details,
        params={
            "training_data": data_note,
            "train_sources": len(train_sources),
            "held_out_sources": len(held_out),
            "history_twins": len(twins),
            "history_collects": history.collects if history else 0,
            "history_call_ms_p50": history.call_ms_p50 if history else None,
            "candidates": len(candidates),
            "k": k,
            "seed": seed,
            "quick": ctx.quick,
            "fit_s": round(fit_s, 1),
            "baseline": baseline_name,
            "held_out_plans": ",".join(chosen)[:480],
        },
        description=(
            "Chooses a source's starting concurrency, page size and request rate from its "
            "first four requests (latency, spread, 429s, errors, Retry-After, advertised rate, "
            "records per page), then seeds and bounds the AIMD limiter that refines them online. "
            "pacing_score = throughput/ideal - wasted requests share - 0.1*log2(p99/budget)."
        ),
        training_data=f"capacity simulator ({data_note})",
        baseline=f"best of fixed spec settings / limiter alone: {baseline_name}",
        references=references,
        inference_ms_p50=inference,
        notes=_notes(overall),
    )


def _probe_of(source: SourceSpec, seed: int) -> ProbeStats:
    client = PlannedClient(KnnProbeOnly(), SIM_BOUNDS)
    run_episode(source, client, seed=seed, limit_s=60.0)
    assert client.stats is not None
    return client.stats


class KnnProbeOnly:
    """Probes like the model, then walks with the limiter's defaults (to collect probe stats)."""

    probe_requests = KnnPlanner.probe_requests

    def plan(self, observations: ProbeStats, bounds: Bounds) -> ConnectionPlan:
        """The unseeded limiter's plan."""
        return LimiterOnlyPlanner().plan(observations, bounds)


def _notes(overall: dict[str, dict[str, float]]) -> str:
    rows = ["| decider | score | throughput/ideal | wasted | 429s/episode | p99/budget |"]
    rows.append("|---|---|---|---|---|---|")
    for name, s in overall.items():
        rows.append(
            f"| {name} | {s['score']:.4f} | {s['throughput_share']:.3f} | "
            f"{s['wasted_share']:.3f} | {s['rejected_per_episode']:.1f} | "
            f"{s['p99_ratio_median']:.2f} |"
        )
    return "\n".join(rows)


def _decision(planner: Planner) -> Any:
    return lambda stats: planner.plan(stats, SIM_BOUNDS)


def bench_rows() -> list[dict[str, Any]]:
    """Decision latency and held-out simulator figures of the model and both baselines."""
    trained = train(TrainingContext(quick=True))
    held_out = scenarios(FAMILIES, range(1000, 1003), records=10_000)
    probes = [_probe_of(src, 1) for src in held_out]
    deciders: list[tuple[str, str, Planner]] = [
        ("model", "model", trained.predictor),
        ("fixed spec settings", "fixed", FixedPlanner()),
        ("adaptive limiter alone", "limiter", LimiterOnlyPlanner()),
    ]
    rows = []
    for label, key, planner in deciders:
        prefix = f"{key}_all_"
        figures = {
            k.removeprefix(prefix): round(v, 4)
            for k, v in trained.details.items()
            if k.startswith(prefix)
        }
        p50 = p50_ms(_decision(planner), probes, repeat=50)
        rows.append({"decider": label, "decision_p50_ms": p50, **figures})
    return rows


def held_out_table(trained: TrainedModel) -> str:
    """Per family and overall: each decider's score, throughput share, waste, 429s, p99."""
    families = sorted(
        {k.split("_", 1)[1].rsplit("_score", 1)[0] for k in trained.details if k.endswith("_score")}
    )
    lines = [
        "| family | decider | score | throughput/ideal | wasted share | 429s+503s/episode "
        "| errors/episode | p99/budget (median) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for family in families:
        for name in ("model", "fixed", "limiter"):
            prefix = f"{name}_{family}_"
            d = {
                k.removeprefix(prefix): v
                for k, v in trained.details.items()
                if k.startswith(prefix)
            }
            if "score" not in d:
                continue
            lines.append(
                f"| {family} | {name} | {d['score']:.4f} | {d['throughput_share']:.3f} | "
                f"{d['wasted_share']:.3f} | {d['rejected_per_episode']:.1f} | "
                f"{d['errors_per_episode']:.1f} | {d['p99_ratio_median']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="train and print the held-out table")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    result = train(TrainingContext(quick=args.quick, database_url=args.database_url))
    print(held_out_table(result))
    print(f"\ninference p50 {result.inference_ms_p50:.4f} ms; params {result.params}")
