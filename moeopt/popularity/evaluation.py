"""Prediction error of the popularity predictors on held-out batches (the paper's metric).

Error = mean over held-out batches, layers and experts of |real d[e,i] - predicted d[e,i]|,
batches of 10,240 consecutive tokens (PAPER.md 5, "Metrics"). Held-out data come from
k-fold cross-validation over contiguous blocks of the trace, so every token is held out once
and no profiled token is scored. Top-k accuracy = mean over tokens and layers of
|predicted top-k ∩ real top-k| / k (top-1: the share of tokens whose expert is guessed).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from moeopt.popularity.predictors import MovingAveragePredictor, make_predictor
from moeopt.popularity.traces import TOKENS_PER_BATCH, RoutingTrace, batch_loads

DEFAULT_PREDICTORS = ("bayes", "bayes-expected", "token-id", "frequency", "moving-average")


@dataclass(frozen=True)
class PredictorScore:
    predictor: str
    mae_per_expert: float  # tokens, mean |real - predicted| per expert per batch
    mae_relative: float  # mae / mean load per expert (batch tokens * k / E)
    topk_accuracy: float | None  # None for predictors that see no token ids
    batches: int
    fit_s: float
    predict_s: float


@dataclass(frozen=True)
class EvaluationReport:
    model: str
    corpus: str
    experts: int
    top_k: int
    tokens: int
    folds: int
    batch_size: int
    scores: tuple[PredictorScore, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def score(self, predictor: str) -> PredictorScore:
        return next(s for s in self.scores if s.predictor == predictor)


def topk_accuracy(predicted: np.ndarray, real: np.ndarray) -> float:
    """Mean |predicted ∩ real| / k over tokens and layers; arrays (tokens, layers, k)."""
    hits = (predicted[..., :, None] == real[..., None, :]).any(axis=-1).sum(axis=-1)
    return float(hits.mean() / real.shape[-1])


def evaluate_predictors(
    trace: RoutingTrace,
    predictors: tuple[str, ...] = DEFAULT_PREDICTORS,
    folds: int = 5,
    batch_size: int = TOKENS_PER_BATCH,
) -> EvaluationReport:
    """Cross-validated prediction error of each predictor on one trace."""
    n = trace.tokens
    if folds < 2 or n < 2 * folds:
        raise ValueError(f"need folds >= 2 and a trace of at least {2 * folds} tokens; got {n}")
    edges = np.linspace(0, n, folds + 1).astype(int)
    mean_load = min(batch_size, n // folds) * trace.top_k / trace.num_experts
    scores = []
    for name in predictors:
        errors: list[np.ndarray] = []
        accs: list[float] = []
        fit_s = predict_s = 0.0
        for f in range(folds):
            test = np.arange(edges[f], edges[f + 1])
            train = np.setdiff1d(np.arange(n), test)
            held = trace.select(test)
            real = batch_loads(held.experts, trace.num_experts, batch_size)
            t0 = time.perf_counter()
            if name == "moving-average":
                # online: history = batches served before this block (else the other blocks)
                before = np.arange(0, edges[f])
                p = MovingAveragePredictor(batch_size=batch_size)
                p.fit(trace.select(before if len(before) >= batch_size else train))
                t1 = time.perf_counter()
                size = min(batch_size, len(test))
                pred = []
                for b in range(real.shape[0]):
                    pred.append(p.predict_loads(np.zeros(size, dtype=np.int64), size)[0])
                    p.observe(real[b])
                predicted = np.stack(pred)
            else:
                p = make_predictor(name).fit(trace.select(train))
                t1 = time.perf_counter()
                predicted = p.predict_loads(held.token_ids, batch_size)
                accs.append(topk_accuracy(p.predict_experts(held.token_ids), held.experts))
            t2 = time.perf_counter()
            fit_s += t1 - t0
            predict_s += t2 - t1
            errors.append(np.abs(real - predicted))
        err = np.concatenate(errors)
        mae = float(err.mean())
        scores.append(
            PredictorScore(
                predictor=name,
                mae_per_expert=mae,
                mae_relative=mae / mean_load,
                topk_accuracy=float(np.mean(accs)) if accs else None,
                batches=int(err.shape[0]),
                fit_s=fit_s,
                predict_s=predict_s,
            )
        )
    return EvaluationReport(
        model=trace.model,
        corpus=trace.corpus,
        experts=trace.num_experts,
        top_k=trace.top_k,
        tokens=n,
        folds=folds,
        batch_size=batch_size,
        scores=tuple(scores),
    )


def format_table(reports: list[EvaluationReport]) -> str:
    """A Markdown table: one row per (E, k, predictor)."""
    lines = [
        "| experts | top-k | predictor | MAE per expert (tokens) | MAE / mean load | top-k accuracy | batches |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        for s in r.scores:
            acc = "n/a" if s.topk_accuracy is None else f"{s.topk_accuracy:.3f}"
            lines.append(
                f"| {r.experts} | {r.top_k} | {s.predictor} | {s.mae_per_expert:.1f} | "
                f"{s.mae_relative:.3f} | {acc} | {s.batches} |"
            )
    return "\n".join(lines)
