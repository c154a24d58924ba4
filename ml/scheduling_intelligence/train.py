"""Train the scheduling model: a Poisson GLM of a source's next rate from its collect history.

Training traces come from the change simulator (`ml/sim/changes.py`), every family but
`mixture`, on seeds below `HELD_OUT_SEED`; with a platform database the real collect history
(rows per collect of each source in `step_runs`) adds samples (see `history.py`). Held-out
evaluation replays each policy on unseen seeds of every family plus the unseen `mixture`
family, at an equal run budget (see `simulate.py`).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.linear_model import PoissonRegressor

from ml.evaluate import TrainedModel, p50_ms
from ml.scheduling_intelligence import history as real_history
from ml.scheduling_intelligence.policy import (
    MIN_HISTORY,
    ChoGarciaMolina,
    FixedInterval,
    LearnedScheduler,
    features,
    long_run_rate,
)
from ml.scheduling_intelligence.simulate import Replay, Scenario, evaluate, scenario
from ml.sim.changes import DAY_S, FAMILIES

NAME = "scheduling_intelligence"
TRAIN_FAMILIES = tuple(f for f in FAMILIES if f != "mixture")
HELD_OUT_SEED = 10_000  # held-out scenarios use seeds from here on
VALIDATION_SEED = 5_000  # scenarios that choose the rate limits (training families only)
FLOORS = (1 / 16, 1 / 4, 1 / 2)  # a pause at most 4x, 2x, 1.4x the budget interval
CEILINGS = (4.0, 16.0)  # a burst polled at most 2x, 4x as often as the budget


def _samples(
    sc: Scenario, rng: np.random.Generator
) -> tuple[list[list[float]], list[float], list[float]]:
    """Features, relative target rate and exposure at each collect of a jittered fixed policy."""
    trace, budget = sc.trace, sc.bounds.budget_s
    at, rows = [0.0], [0]
    xs: list[list[float]] = []
    ys: list[float] = []
    ws: list[float] = []
    while True:
        now = at[-1] + budget * math.exp(rng.uniform(-1.2, 1.2))
        if now + budget > trace.horizon_s:
            break
        at.append(now)
        rows.append(trace.collect(at[-2], now).rows)
        if len(at) < MIN_HISTORY:
            continue
        tail_at, tail_rows = at[-400:], rows[-400:]
        expected = long_run_rate(tail_at, tail_rows) * budget
        xs.append(features(tail_at, tail_rows, budget))
        ys.append(trace.rows_between(now, now + budget) / expected)
        ws.append(expected)
    return xs, ys, ws


def fit(xs: np.ndarray, ys: np.ndarray, ws: np.ndarray, clip: float) -> LearnedScheduler:
    """A standardised Poisson GLM; `clip` bounds each standardised feature."""
    mean, std = xs.mean(axis=0), xs.std(axis=0) + 1e-9
    z = np.clip((xs - mean) / std, -clip, clip)
    glm = PoissonRegressor(alpha=1e-4, max_iter=500).fit(z, ys, sample_weight=ws)
    return LearnedScheduler(glm.coef_, float(glm.intercept_), mean, std)


def tune(policy: Any, validation: list[Scenario], floors: tuple[float, ...]) -> tuple[Any, str]:
    """The policy with the rate limits that score best on the validation scenarios."""
    best: tuple[float, Any, str] | None = None
    for floor in floors:
        for ceiling in CEILINGS:
            candidate = replace(policy, floor=floor, ceiling=ceiling)
            figure = _mean(evaluate(candidate, validation), "staleness")
            if best is None or figure < best[0]:
                best = (figure, candidate, f"rate ratio within [{floor:g}, {ceiling:g}]")
    assert best is not None
    return best[1], best[2]


def _mean(replays: list[Replay], attr: str) -> float:
    return float(np.mean([getattr(r, attr) for r in replays]))


def _empty_share(replays: list[Replay]) -> float:
    return float(np.mean([r.empty_runs / max(r.runs, 1) for r in replays]))


def train(ctx: Any) -> TrainedModel:
    """Simulate, fit, evaluate on held-out seeds and families at equal budget; the report."""
    started = time.monotonic()
    horizon = (7 if ctx.quick else 14) * DAY_S
    per_family_train = 6 if ctx.quick else 24
    per_family_test = 4 if ctx.quick else 14
    rng = np.random.default_rng(ctx.seed)
    train_scenarios = [
        scenario(f, ctx.seed % 1000 + i, horizon)
        for f in TRAIN_FAMILIES
        for i in range(per_family_train)
    ]
    xs_l: list[list[float]] = []
    ys_l: list[float] = []
    ws_l: list[float] = []
    for sc in train_scenarios:
        x, y, w = _samples(sc, rng)
        xs_l += x
        ys_l += y
        ws_l += w
    found = real_history.training_samples(ctx.database_url, ctx.db_schema)
    xs_l += found.train.xs
    ys_l += found.train.ys
    ws_l += found.train.ws
    xs, ys, ws = np.asarray(xs_l), np.asarray(ys_l), np.asarray(ws_l)
    model = fit(xs, ys, ws, clip=4.0)
    validation = [
        scenario(f, VALIDATION_SEED + i, horizon)
        for f in TRAIN_FAMILIES
        for i in range(2 if ctx.quick else 5)
    ]
    floors = FLOORS[:2] if ctx.quick else FLOORS
    model, model_limits = tune(model, validation, floors)
    cho_gm, cho_limits = tune(ChoGarciaMolina(), validation, floors)
    held_out = [
        scenario(f, HELD_OUT_SEED + i, horizon) for f in FAMILIES for i in range(per_family_test)
    ]
    policies = {"model": model, "fixed": FixedInterval(), "cho_gm": cho_gm}
    results = {name: evaluate(p, held_out) for name, p in policies.items()}
    staleness = {name: _mean(r, "staleness") for name, r in results.items()}
    baseline_name = min(("fixed", "cho_gm"), key=lambda n: staleness[n])
    details: dict[str, float] = {}
    for name, replays in results.items():
        details[f"{name}_staleness"] = staleness[name]
        details[f"{name}_age"] = _mean(replays, "age")
        details[f"{name}_empty_run_share"] = _empty_share(replays)
        details[f"{name}_runs_per_scenario"] = _mean(replays, "runs")
        for family in FAMILIES:
            picked = [
                r for r, sc in zip(replays, held_out, strict=True) if sc.trace.family == family
            ]
            details[f"{name}_staleness_{family}"] = _mean(picked, "staleness")

    def score(predictor: Any) -> float:
        return _mean(evaluate(predictor, held_out), "staleness")

    sample = [(sc.bounds, sc.trace) for sc in held_out[:20]]
    histories = [_history_of(trace, bounds.budget_s) for bounds, trace in sample]
    latency = p50_ms(
        lambda item: model.decide(item[0], item[1], item[2]),
        [(h[0], h[1], b) for h, (b, _) in zip(histories, sample, strict=True)],
        repeat=50,
    )
    simulator_only = not found.train.xs
    if found.held_out.xs:
        details.update(history_deviance(found.held_out, {"model": model, "cho_gm": cho_gm}))
    return TrainedModel(
        name=NAME,
        predictor=model,
        metric="staleness",
        model_score=staleness["model"],
        baseline_score=staleness[baseline_name],
        score=score,
        higher_is_better=False,
        details=details,
        params={
            "seed": ctx.seed,
            "quick": ctx.quick,
            "training_data": f"simulator only ({found.problem})"
            if simulator_only
            else f"simulator + collect history of {found.sources} sources "
            f"({found.collects} collects, {len(found.train.xs)} training samples, "
            f"{len(found.held_out.xs)} held out)",
            "train_families": ",".join(TRAIN_FAMILIES),
            "held_out": f"seeds >= {HELD_OUT_SEED} of {','.join(FAMILIES)} (mixture unseen)",
            "train_samples": len(ys),
            "horizon_days": horizon / DAY_S,
            "baseline": baseline_name,
            "budget": "equal runs: adaptive policies' budget scaled by secant search to the "
            "fixed interval's run count, figures interpolated to it",
            "weights": model.describe(),
            "model_rate_limits": model_limits,
            "cho_gm_rate_limits": cho_limits,
            "train_seconds": round(time.monotonic() - started, 1),
        },
        description=(
            "Next poll interval of a source from its collect history: a Poisson GLM predicts "
            "the rate of new rows over the next budget interval relative to the long-run rate, "
            "and polls at a frequency proportional to its square root (the split of a fixed "
            "run budget that minimises per-row staleness), within the schedule's bounds."
        ),
        training_data="change simulator (5 families)"
        + ("" if simulator_only else " + platform collect history"),
        baseline="fixed interval" if baseline_name == "fixed" else "Cho-Garcia-Molina",
        references={
            "cho_gm" if baseline_name == "fixed" else "fixed": staleness[
                "cho_gm" if baseline_name == "fixed" else "fixed"
            ]
        },
        inference_ms_p50=latency,
        notes=(
            "staleness = mean wait of a new row until collected / (budget interval / 2), at an "
            "equal run budget (lower is better; a fixed interval scores about 1)."
        ),
    )


def history_deviance(held_out: Any, policies: dict[str, Any]) -> dict[str, float]:
    """Mean Poisson deviance of each policy's predicted rate on the held-out real slice."""
    out: dict[str, float] = {}
    for name, policy in policies.items():
        total = weight = 0.0
        for (at, rows, budget), y, w in zip(
            held_out.contexts, held_out.ys, held_out.ws, strict=True
        ):
            mu, _ = policy.ratio(at, rows, budget)
            mu = min(max(mu, policy.floor), policy.ceiling)
            term = y * math.log(y / mu) if y > 0 else 0.0
            total += 2 * w * (term - (y - mu))
            weight += w
        out[f"history_deviance_{name}"] = total / weight if weight else float("nan")
    return out


def _history_of(trace: Any, budget: float) -> tuple[list[float], list[int]]:
    """A fixed-interval history of a trace (for timing decisions)."""
    at = [float(t) for t in np.arange(0.0, trace.horizon_s, budget)][-400:]
    rows = [0] + [trace.collect(a, b).rows for a, b in zip(at, at[1:], strict=False)]
    return at, rows


def bench_rows() -> list[dict[str, Any]]:
    """Decision latency p50 and the held-out figures of the model and both baselines."""
    from ml.train import TrainingContext

    trained = train(TrainingContext(quick=True))
    rows = []
    for name in ("model", "fixed", "cho_gm"):
        d = trained.details
        rows.append(
            {
                "decider": name,
                "staleness": d[f"{name}_staleness"],
                "age": d[f"{name}_age"],
                "empty run share": d[f"{name}_empty_run_share"],
                "runs/scenario": d[f"{name}_runs_per_scenario"],
                **({"decision p50 ms": trained.inference_ms_p50} if name == "model" else {}),
            }
        )
    return rows


def main() -> None:
    """`python -m ml.scheduling_intelligence.train [--quick]`: print the held-out table."""
    import sys

    from ml.train import TrainingContext

    trained = train(TrainingContext(quick="--quick" in sys.argv))
    d = trained.details
    print(f"params: {trained.params}")
    print("| family | model | fixed | cho_gm |\n|---|---|---|---|")
    for family in FAMILIES:
        cells = " | ".join(
            f"{d[f'{n}_staleness_{family}']:.3f}" for n in ("model", "fixed", "cho_gm")
        )
        print(f"| {family} | {cells} |")
    print("| decider | staleness | age | empty run share | runs/scenario |\n|---|---|---|---|---|")
    for name in ("model", "fixed", "cho_gm"):
        print(
            f"| {name} | {d[f'{name}_staleness']:.4f} | {d[f'{name}_age']:.4f} | "
            f"{d[f'{name}_empty_run_share']:.4f} | {d[f'{name}_runs_per_scenario']:.1f} |"
        )
    print(f"decision p50 {trained.inference_ms_p50:.4f} ms")


if __name__ == "__main__":
    main()
