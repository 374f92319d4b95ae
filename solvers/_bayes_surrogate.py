"""bayes-egreedy's surrogate: the cost model's per-expert formulas as prior mean, Gaussian
processes on per-layer features for what they leave out.

A plan's cost is the sum of its experts' billed cost, which the cost_models formulas give
exactly (:func:`solvers.layer_curves.expert_estimate`); its latency is, per batch, the sum over
layers of each layer's slowest replica plus what the evaluator adds around it (scatter, gather,
the floor of starting the next function) plus head and tail. So:

- **Layer latency**: one GP per scatter-gather method, fitted on every (plan, layer) priced so
  far, from the layer's features (log slowest-replica time on its worst batch, log most tokens
  per replica, log pipeline degree) to the evaluator's layer latency minus the slowest-replica
  time. A plan's latency on batch b is then sum_l (slowest_l,b + GP_l) plus one learnt constant
  (head, tail, non-MoE compute), and the plan's latency is its worst batch.
- **Cost**: the per-expert estimate, plus a GP (on :class:`SpanEmbedding` coordinates of the plan
  vector) for anything the evaluator bills beyond it (request fees in the "full" cost scope);
  skipped when the evaluator's cost equals the estimate on every plan seen.
- **Objective score** = a x cost + b x latency, with (a, b) fitted on the scores seen (exact for
  "cheapest" (1, 0), "fastest" (0, 1) and "balanced").
- **Feasibility**: memory, payload and concurrency are known exactly from the same formulas;
  the time limit has probability Phi(-(mu - limit) / sd).

On the paper's problems the latency model is within 0.02-0.04 s (0.1 % of the time limit) of
the evaluator after 64 plans; a learnt model, not the evaluator's code, so a change in how the
evaluator composes a layer's latency is learnt rather than silently mispredicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moeopt.problem import DeploymentProblem
from solvers._bayesopt import SpanEmbedding, fit_gp
from solvers.layer_curves import ExpertEstimate

MAX_LAYER_ROWS = 256  # training rows per method's GP: O(n^3) fits stay in milliseconds


@dataclass(frozen=True, eq=False)
class Observed:
    """What the search has priced, row-aligned."""

    x: np.ndarray  # (n, dims) plan vectors
    estimate: ExpertEstimate
    method: np.ndarray  # (n, L)
    beta: np.ndarray  # (n, L)
    cost: np.ndarray  # (n,) evaluator cost
    latency: np.ndarray  # (n,) evaluator latency (worst batch)
    layer_latency: np.ndarray  # (n, L) evaluator layer latency (worst batch)
    score: np.ndarray  # (n,) objective score (inf: NaN/inf from the evaluator)
    feasible: np.ndarray  # (n,)


@dataclass(frozen=True, eq=False)
class Prediction:
    log_score: np.ndarray
    log_score_sd: np.ndarray
    time_slack: np.ndarray  # (latency - limit) / limit
    time_slack_sd: np.ndarray
    known_ok: np.ndarray  # memory, payload and concurrency hold (exact)


def layer_features(estimate: ExpertEstimate, beta: np.ndarray) -> np.ndarray:
    """(n, L, 3): log slowest-replica time (worst batch), log most tokens per replica, log beta."""
    worst = estimate.bottleneck_s.max(axis=1)
    return np.stack(
        [np.log(np.maximum(worst, 1e-6)), np.log1p(estimate.tokens_max), np.log(np.maximum(beta, 1.0))],
        axis=-1,
    )


class PlanSurrogate:
    """Fitted on :class:`Observed`; :meth:`predict` scores candidate plans without pricing them."""

    def __init__(self, problem: DeploymentProblem, seed: int) -> None:
        self.problem = problem
        self.seed = seed
        self.kernels: dict[Any, Any] = {}  # last fitted kernel per model, reused between refits
        self.layer_models: dict[int, Any] = {}
        self.layer_fallback = (0.0, 1.0)  # (mean residual, sd) for a method never seen
        self.offset, self.offset_sd = 0.0, 1.0
        self.cost_model: tuple[Any, SpanEmbedding, np.ndarray] | None = None
        self.score_coef = np.array([1.0, 0.0])

    def fit(self, obs: Observed, rank: np.ndarray, refit: bool) -> PlanSurrogate:
        """``rank``: observation indices best first (the rows kept when a cap applies)."""
        ok = np.isfinite(obs.latency) & np.isfinite(obs.cost)
        self._fit_layers(obs, rank[ok[rank]], refit)
        pred = self._latency_without_offset(obs.estimate, obs.method, obs.beta)[0]
        best = rank[ok[rank]][:64]  # the best plans: the offset matters most where they are
        if len(best):
            resid = obs.latency[best] - pred[best]
            self.offset = float(np.median(resid))
            self.offset_sd = float(max(np.std(resid), 1e-4 * self.problem.slo.time_limit_s))
        self._fit_cost(obs, rank[ok[rank]], refit)
        good = ok & np.isfinite(obs.score)
        if good.sum() >= 2:
            A = np.stack([obs.cost[good], obs.latency[good]], axis=1)
            coef, *_ = np.linalg.lstsq(A, obs.score[good], rcond=None)
            self.score_coef = np.where(np.abs(coef) < 1e-12, 0.0, coef)
        return self

    def _fit_layers(self, obs: Observed, rank: np.ndarray, refit: bool) -> None:
        feats = layer_features(obs.estimate, obs.beta)  # (n, L, 3)
        target = obs.layer_latency - obs.estimate.bottleneck_s.max(axis=1)  # (n, L)
        all_res = target[rank].ravel()
        if len(all_res):
            self.layer_fallback = (float(np.mean(all_res)), float(np.std(all_res) + 0.05))
        self.layer_models = {}
        for method in np.unique(obs.method[rank]) if len(rank) else []:
            rows_f, rows_y = [], []
            for i in rank:  # best plans first
                sel = obs.method[i] == method
                rows_f.append(feats[i][sel])
                rows_y.append(target[i][sel])
            f = np.concatenate(rows_f)
            y = np.concatenate(rows_y)
            _, first = np.unique(np.round(f, 9), axis=0, return_index=True)
            first = np.sort(first)[:MAX_LAYER_ROWS]
            f, y = f[first], y[first]
            if len(f) < 2:
                continue
            key = ("layer", int(method))
            gp = fit_gp(
                f, y, seed=self.seed, optimize=refit or key not in self.kernels,
                kernel=self.kernels.get(key), length_scale=np.ones(f.shape[1]),
            )
            self.kernels[key] = gp.kernel_
            self.layer_models[int(method)] = gp

    def _layer_residual(
        self, estimate: ExpertEstimate, method: np.ndarray, beta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        feats = layer_features(estimate, beta)
        mu = np.full(method.shape, self.layer_fallback[0])
        sd = np.full(method.shape, self.layer_fallback[1])
        for m, gp in self.layer_models.items():
            sel = method == m
            if sel.any():
                mu[sel], sd[sel] = gp.predict(feats[sel], return_std=True)
        return mu, sd

    def _latency_without_offset(
        self, estimate: ExpertEstimate, method: np.ndarray, beta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        mu, sd = self._layer_residual(estimate, method, beta)
        per_batch = (estimate.bottleneck_s + mu[:, None, :]).sum(axis=2)  # (n, B)
        return per_batch.max(axis=1), np.sqrt((sd**2).sum(axis=1))

    def _fit_cost(self, obs: Observed, rank: np.ndarray, refit: bool) -> None:
        resid = obs.cost - obs.estimate.cost_usd
        if not len(rank) or np.all(np.abs(resid[rank]) <= 1e-9 * np.abs(obs.cost[rank])):
            self.cost_model = None  # the per-expert estimate is the evaluator's cost here
            return
        idx = rank[:224]
        scale = np.maximum(obs.x.max(axis=0), 1)
        span = SpanEmbedding.of(obs.x[idx] / scale)
        key = "cost"
        gp = fit_gp(
            span.coords, resid[idx], seed=self.seed, optimize=refit or key not in self.kernels,
            kernel=self.kernels.get(key),
        )
        self.kernels[key] = gp.kernel_
        self.cost_model = (gp, span, scale)

    def predict(
        self, x: np.ndarray, estimate: ExpertEstimate, method: np.ndarray, beta: np.ndarray
    ) -> Prediction:
        lat, lat_sd = self._latency_without_offset(estimate, method, beta)
        lat = lat + self.offset
        lat_sd = np.sqrt(lat_sd**2 + self.offset_sd**2)
        cost, cost_sd = estimate.cost_usd.astype(float), np.zeros(len(x))
        if self.cost_model is not None:
            gp, span, scale = self.cost_model
            mu, sd = gp.predict(span.apply(x / scale), return_std=True)
            cost, cost_sd = cost + mu, sd
        a, b = self.score_coef
        score = a * cost + b * lat
        score_sd = np.sqrt((a * cost_sd) ** 2 + (b * lat_sd) ** 2)
        limit = self.problem.slo.time_limit_s
        c = self.problem.constants
        known = estimate.memory_ok & estimate.payload_ok & (estimate.active_max <= c.lambda_concurrency_limit)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_score = np.log(np.maximum(score, 1e-300))
            log_sd = np.maximum(score_sd / np.maximum(score, 1e-300), 1e-6)
        return Prediction(log_score, log_sd, (lat - limit) / limit, lat_sd / limit, known)

