"""Train the retry strategy: a success-chance table over (failure cell, delay), then thresholds.

1. Explore: a random-wait behaviour policy runs on simulator episodes of the training families
   (seeds below HELD_OUT_SEED); after each failure it sees, the exact chance that a call
   `anchor + d` seconds later succeeds is recorded for every grid delay d, in the failure's
   cells (status class and Retry-After, elapsed time, host error rate and latency, attempt;
   coarser cells back off the finer ones). With platform history, each logged retry decision
   and the next attempt's outcome add to the cell and delay it fell in.
2. Search: the decision rule's two thresholds are chosen on other training seeds.
3. Evaluate: model, the spec's exponential backoff and AWS standard mode on held-out seeds of
   every family plus two families never trained on; the primary score is the mean episode
   COST of `simulate.py` (lower is better).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ml.evaluate import TrainedModel, p50_ms
from ml.retry_strategy import history as platform_history
from ml.retry_strategy.policy import (
    GRID,
    AwsStandard,
    FailureContext,
    LearnedRetry,
    StaticExponential,
)
from ml.retry_strategy.simulate import (
    Accumulator,
    by_family,
    cost,
    run,
    search,
    simulator_samples,
    summary,
)
from ml.sim.flaky import FAMILIES, HELD_OUT_FAMILIES, HELD_OUT_SEED, TRAIN_FAMILIES, episodes

NAME = "retry_strategy"
HISTORY_WEIGHT = 5.0  # one real outcome counts as this many simulated ones in its cell
SEARCH_SEED = 500_000


def _sizes(quick: bool) -> tuple[int, int, int]:
    """Episodes per family: exploration, threshold search, held-out evaluation."""
    return (300, 40, 80) if quick else (2500, 200, 400)


def grid_column(failure: FailureContext, delay: float) -> int:
    """The grid delay a recorded retry's wait (past its Retry-After) fell nearest to."""
    offset = delay - (failure.retry_after_s or 0.0)
    return int(np.argmin(np.abs(np.log(GRID) - np.log(max(offset, GRID[0])))))


def add_history(acc: Accumulator, found: platform_history.HistorySamples) -> int:
    """Fold recorded decisions into the table: one grid column per sample."""
    for failure, delay, ok in zip(found.failures, found.delays, found.succeeded, strict=True):
        weight = np.zeros(len(GRID))
        weight[grid_column(failure, delay)] = HISTORY_WEIGHT
        acc.add(failure, np.full(len(GRID), float(ok)), weight)
    return len(found.failures)


def history_brier(
    held_out: platform_history.HistorySamples,
    models: dict[str, LearnedRetry],
    base_rate: float,
) -> dict[str, float]:
    """Brier score (lower is better) of each model's success chance for the held-out recorded
    retries, at the delay each one waited, next to always predicting the training base rate."""
    outcomes = np.array(held_out.succeeded, dtype=float)
    scores = {"history_brier_base_rate": float(np.mean((base_rate - outcomes) ** 2))}
    for name, model in models.items():
        predicted = np.array(
            [
                model.success_curve(failure)[0][grid_column(failure, delay)]
                for failure, delay in zip(held_out.failures, held_out.delays, strict=True)
            ]
        )
        scores[f"history_brier_{name}"] = float(np.mean((predicted - outcomes) ** 2))
    return scores


def evaluation_set(quick: bool) -> list[Any]:
    """Held-out seeds of every family, the two unseen families included."""
    n = _sizes(quick)[2]
    return episodes(FAMILIES, range(HELD_OUT_SEED, HELD_OUT_SEED + n))


def sample_failures() -> list[FailureContext]:
    """A spread of failures to time decisions on (bench and training report)."""
    return [
        FailureContext(status=s, retry_after_s=ra, attempt=a, elapsed_s=e, host_error_rate=r,
                       remaining_s=300.0, attempts_left=3, max_interval_s=60.0)
        for s, ra in ((503, None), (429, 5.0), (500, None), (None, None), (504, None))
        for a, e in ((1, 0.1), (2, 3.0), (3, 40.0))
        for r in (0.1, 0.8)
    ]  # fmt: skip


def train(ctx: Any) -> TrainedModel:
    """Explore the simulator (plus history), fit, search thresholds, evaluate; the report."""
    started = time.monotonic()
    n_fit, n_search, _ = _sizes(ctx.quick)
    acc = Accumulator()
    simulated = simulator_samples(episodes(TRAIN_FAMILIES, range(n_fit)), ctx.seed, acc)
    simulator_only = acc.model()
    found = platform_history.training_samples(ctx.database_url, ctx.db_schema)
    history, held_out = found.split()
    real = add_history(acc, history)
    params: dict[str, Any] = {
        "data": "simulator + platform history" if real else "simulator only",
        "history_runs": found.runs,
        "history_samples": real,
        "history_held_out_samples": len(held_out.failures),
        "simulated_samples": simulated,
        "train_families": ",".join(TRAIN_FAMILIES),
        "held_out_families": ",".join(HELD_OUT_FAMILIES),
        "seed": ctx.seed,
        "quick": ctx.quick,
    }
    if found.problem:
        params["history_problem"] = found.problem
    tuning = episodes(TRAIN_FAMILIES, range(SEARCH_SEED, SEARCH_SEED + n_search))
    model, tried = search(acc, tuning, params)
    params.update(miss_cost=model.miss_cost, give_up_below=model.give_up_below, cells=len(acc.sums))

    test = evaluation_set(ctx.quick)

    def score(predictor: Any) -> float:
        return cost(run(predictor, test))

    results = {
        "model": run(model, test),
        "static": run(StaticExponential(seed=ctx.seed), test),
        "aws": run(AwsStandard(seed=ctx.seed), test),
    }
    details: dict[str, float] = {}
    for who, outcomes in results.items():
        details.update({f"{who}_{k}": v for k, v in summary(outcomes).items()})
        details.update({f"{who}_cost_{k}": v for k, v in by_family(outcomes).items()})
    if held_out.failures:  # the newest slice of real retries, never trained on
        base_rate = float(np.mean(history.succeeded)) if history.succeeded else 0.5
        details.update(
            history_brier(held_out, {"model": model, "simulator_only": simulator_only}, base_rate)
        )
    inference = p50_ms(model.decide, sample_failures(), repeat=20)
    params["seconds"] = round(time.monotonic() - started, 1)
    model_cost, static_cost = details["model_cost"], details["static_cost"]
    beat = model_cost < static_cost and model_cost < details["aws_cost"]
    return TrainedModel(
        name=NAME,
        predictor=model,
        metric="retry_cost",
        model_score=model_cost,
        baseline_score=static_cost,
        score=score,
        higher_is_better=False,
        details={**details, **{k: v for k, v in tried.items() if k.endswith("0.2")}},
        params=params,
        description=(
            "Retry or give up, and the delay, from the failure (status class, Retry-After, "
            "attempt, elapsed time), the host's recent error rate and latency and the step's "
            "remaining deadline: a table of P(a call d seconds later succeeds) per failure cell "
            "and delay, learned from flaky-source simulator traces (plus recorded retries), and "
            "a decision rule trading time against failed calls. Score: mean episode cost = "
            "share of the deadline spent + 0.1 per failed retry + 1 per give-up on a failure "
            "that would have recovered (lower is better); the spec's limits are clamped "
            "outside the model."
        ),
        training_data=f"flaky-source simulator ({params['data']})",
        baseline="spec exponential backoff with jitter",
        references={"aws_standard": details["aws_cost"]},
        inference_ms_p50=inference,
        notes=(
            "" if beat else "The model does not beat both baselines here: agents keep the baseline."
        )
        + f" Held-out: unseen seeds of {len(TRAIN_FAMILIES)} families and the unseen families "
        f"{', '.join(HELD_OUT_FAMILIES)}; AWS standard mode with a fresh retry quota per episode."
        + _history_note(details, len(held_out.failures)),
    )


def _history_note(details: dict[str, float], held_out: int) -> str:
    if not held_out:
        return " No held-out slice of platform history (too few recorded retries)."
    return (
        f" Held-out history: the newest {held_out} recorded retries, Brier score of the "
        f"predicted success chance {details['history_brier_model']:.3f} (simulator only "
        f"{details['history_brier_simulator_only']:.3f}, training base rate "
        f"{details['history_brier_base_rate']:.3f}; lower is better)."
    )


def bench_rows() -> list[dict[str, Any]]:
    """Decision latency p50 and the held-out simulator figures of the model and baselines."""
    from ml.train import TrainingContext

    model = train(TrainingContext(quick=True)).predictor
    test = evaluation_set(quick=True)
    probes = sample_failures()
    rows = []
    for name, decider in (
        ("model", model),
        ("spec exponential backoff", StaticExponential()),
        ("AWS standard mode", AwsStandard()),
    ):
        rows.append(
            {
                "decider": name,
                "decision_p50_ms": p50_ms(decider.fresh().decide, probes, repeat=50),
                **{k: round(v, 4) for k, v in summary(run(decider, test)).items()},
            }
        )
    return rows
