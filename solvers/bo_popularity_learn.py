"""The paper's learning loop (Alg. 2): Bayesian optimization over Q key-value pairs of the table.

One trial (iteration tau) of PAPER.md 3.4-3.5 (:func:`solvers.bo_popularity_trial.deploy`):
write the Q pairs' values into the profiled table, re-predict the learning batches' loads, plan
with ODS, deploy and bill on the batches' real loads, and read which experts broke memory
(rho1), payload (rho2) or neither (rho3). The multi-dimensional epsilon-greedy search (one eps
per pair, the schedule of :func:`solvers._bayesopt.epsilon`, shared with bayes-egreedy)
proposes the next values around the best trial, a Gaussian process over the pair values
(:mod:`solvers._bayesopt`, the same kernel and expected improvement as bayes-egreedy) ranks the
proposals, and the loop stops when the best cost moves less than zeta over lambda trials.
Choices and what is simplified: docs/popularity.md, "Learning".
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from moeopt.plan import DeploymentPlan
from moeopt.popularity.predictors import Predictor
from moeopt.problem import DeploymentProblem
from solvers._bayesopt import epsilon, expected_improvement, fit_gp
from solvers.bo_popularity_pairs import KeyValuePairs, select_pairs, with_values
from solvers.bo_popularity_trial import Feedback, LearningConfig, Trial, deploy

__all__ = ["IterationRecord", "LearningConfig", "LearningResult", "boosts", "learn", "propose"]


@dataclass(frozen=True)
class IterationRecord:
    """One trial of the loop, for the record."""

    tau: int
    cost_usd: float
    score: float
    feasible: bool
    violations: dict[str, float]
    best_score: float  # of the best trial so far (feasible first)
    mispredicted_experts: int  # (batch, layer, expert) cells with |r - R| > alpha
    memory_broken: int
    payload_broken: int
    replicated_experts: int
    limited_tokens: int  # |L|: distinct token ids of mispredicted batches
    eps_mean: float
    eps_max: float
    eps_boosted: int  # pairs whose eps was boosted (rho' > 0)
    pairs_changed: int  # pairs whose value differs from the profiled one
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class LearningResult:
    """The learned table (as a predictor), its deployment, and the trials that led there."""

    predictor: Predictor
    pairs: KeyValuePairs
    values: np.ndarray  # (Q,) the best trial's values
    trial: Trial  # the best trial (plan, evaluation on the learning batches' real loads)
    records: tuple[IterationRecord, ...]
    best_tau: int
    stopped: str  # "converged", "max_iterations" or "time_limit"

    @property
    def plan(self) -> DeploymentPlan | None:
        return self.trial.plan


def _batch_tokens(token_ids: np.ndarray, batch_size: int, batches: int) -> list[np.ndarray]:
    return [np.unique(token_ids[j * batch_size : (j + 1) * batch_size]) for j in range(batches)]


def boosts(
    pairs: KeyValuePairs, fb: Feedback, batch_tokens: list[np.ndarray], config: LearningConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(rho' per pair, pair in L) from one deployment's feedback.

    A profiled pair is in L when its token id occurs in a batch with a mispredicted expert of
    the pair's layer (|r - R| > alpha, or a broken memory or payload constraint, which no
    correct prediction would have caused); its rho' is the largest branch (rho1 > rho2 > rho3)
    among those experts.
    Applied once per trial (Alg. 2 may compound it per batch and expert; Theorem 2 assumes the
    once-per-trial rate). New-key pairs are never boosted (Alg. 2 boosts eps_{1:mu Q} only).
    """
    branch = np.where(fb.memory, config.rho1, np.where(fb.payload, config.rho2, config.rho3))
    off = fb.mispredicted | fb.memory | fb.payload  # a broken constraint is a misprediction too
    per_layer = np.where(off, branch, 0.0).max(axis=2)  # (J, L)
    rho_p = np.zeros(pairs.q)
    in_l = np.zeros(pairs.q, dtype=bool)
    for j, toks in enumerate(batch_tokens):
        present = np.isin(pairs.token, toks)
        r = per_layer[j, pairs.layer]
        hit = present & (r > 0)
        in_l |= hit
        rho_p = np.where(hit, np.maximum(rho_p, r), rho_p)
    profiled = np.arange(pairs.q) < pairs.explore_from
    return np.where(profiled, rho_p, 0.0), in_l | ~profiled


def propose(
    rng: np.random.Generator,
    base: np.ndarray,
    pairs: KeyValuePairs,
    eps: np.ndarray,
    allowed: np.ndarray,
    n: int,
) -> np.ndarray:
    """Epsilon-shotgun around ``base``: pair q is re-drawn with probability eps_q (x a radius
    0.5-4 per proposal), only where ``allowed``; a re-drawn value halves or doubles, or jumps
    to any other integer in [0, cap_q]. At least one allowed pair moves."""
    q = pairs.q
    w = np.where(allowed, eps, 0.0)
    if w.sum() <= 0:
        w = np.where(allowed, 1.0, 0.0) if allowed.any() else np.ones(q)
    scale = rng.choice([0.5, 1.0, 2.0, 4.0], size=(n, 1))
    move = (rng.random((n, q)) < np.minimum(w * scale, 1.0)) & (w > 0)
    none = np.flatnonzero(~move.any(axis=1))
    move[none, rng.choice(q, len(none), p=w / w.sum())] = True
    cap = pairs.cap[None]
    cur = np.broadcast_to(base, (n, q))
    seed_val = rng.integers(1, np.maximum(cap // 4, 1) + 1, size=(n, q))
    step = np.where(cur > 0, np.rint(cur * rng.choice([0.5, 2.0], size=(n, q))), seed_val)
    jump = np.floor(rng.random((n, q)) * (cap + 1))
    new = np.clip(np.where(rng.random((n, q)) < 0.5, step, jump), 0, cap)
    new = np.where(new == cur, np.where(cur < cap, cur + 1, cur - 1), new)  # a move moves
    return np.where(move, new, cur)


def _log(y: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(np.maximum(y, 1e-300))
    finite = np.isfinite(out)
    worst = out[finite].max() if finite.any() else 0.0
    return np.where(finite, out, worst + 1.0)


def _rank(
    X: np.ndarray, y: np.ndarray, cand: np.ndarray, cap: np.ndarray, seed: int
) -> np.ndarray:
    """Expected improvement of log score under a GP over the pair values (scaled by cap)."""
    target = _log(y)
    gp = fit_gp(X / cap, target, seed=seed)
    mu, sd = gp.predict(cand / cap, return_std=True)
    return expected_improvement(mu, sd, float(target.min()))


def _best(scores: list[float], feasible: list[bool]) -> int:
    """The best trial: feasible first (a barely infeasible plan can score below a feasible
    one under the penalty), then by score."""
    return int(np.lexsort((np.asarray(scores), ~np.asarray(feasible)))[0])


def learn(
    predictor: Predictor,
    problem: DeploymentProblem,
    token_ids: np.ndarray,
    real: np.ndarray,
    config: LearningConfig | None = None,
) -> LearningResult:
    """Alg. 2 on the learning batches: ``token_ids`` (their tokens, known before inference)
    and ``real`` (their real per-batch loads, (J, layers, experts)). Trial 1 is the profiled
    table itself, i.e. the No-BO deployment."""
    from threadpoolctl import threadpool_limits

    config = config or LearningConfig()
    token_ids = np.asarray(token_ids, dtype=np.int64)
    real = np.asarray(real)
    rng = np.random.default_rng(config.seed)
    bs = problem.workload.tokens_per_batch
    pairs = select_pairs(predictor, token_ids, config.q, config.mu, config.spread)
    batch_tokens = _batch_tokens(token_ids, bs, real.shape[0])
    eps0 = np.full(pairs.q, min(0.5, config.eps0_changes / pairs.q))
    values = pairs.initial.copy()
    xs: list[np.ndarray] = []
    ys: list[float] = []
    feasible: list[bool] = []
    trials: list[Trial] = []
    records: list[IterationRecord] = []
    best_hist: list[float] = []
    stopped = "max_iterations"
    start = time.perf_counter()
    for tau in range(1, config.max_iterations + 1):
        t0 = time.perf_counter()
        trial = deploy(with_values(predictor, pairs, values), problem, token_ids, real, config)
        xs.append(values.copy())
        ys.append(trial.score)
        feasible.append(trial.feasible)
        trials.append(trial)
        best = _best(ys, feasible)
        best_hist.append(ys[best])
        if trial.feedback is not None:
            rho_p, in_l = boosts(pairs, trial.feedback, batch_tokens, config)
        else:  # no plan at all: explore everywhere, as if memory broke
            rho_p = np.where(np.arange(pairs.q) < pairs.explore_from, config.rho1, 0.0)
            in_l = np.ones(pairs.q, dtype=bool)
        if config.acquisition == "single-eps":
            eps = np.full(pairs.q, float(epsilon(eps0[0], tau, config.rho, rho_p.max())))
        elif config.acquisition == "random":
            eps = eps0
        else:
            eps = epsilon(eps0, tau, config.rho, rho_p)
        fb = trial.feedback
        ev = trial.evaluation
        records.append(
            IterationRecord(
                tau=tau,
                cost_usd=trial.cost_usd,
                score=trial.score,
                feasible=trial.feasible,
                violations=dict(ev.violations) if ev else {},
                best_score=best_hist[-1],
                mispredicted_experts=int(fb.mispredicted.sum()) if fb else 0,
                memory_broken=int(fb.memory.sum()) if fb else 0,
                payload_broken=int(fb.payload.sum()) if fb else 0,
                replicated_experts=int((fb.n_new > 1).sum()) if fb and config.replicate else 0,
                limited_tokens=len(np.unique(pairs.token[: pairs.explore_from][in_l[: pairs.explore_from]])),
                eps_mean=float(eps.mean()),
                eps_max=float(eps.max()),
                eps_boosted=int((rho_p > 0).sum()) if config.acquisition != "random" else 0,
                pairs_changed=int((values != pairs.initial).sum()),
                seconds=time.perf_counter() - t0,
            )
        )
        lam = config.lambda_iters
        if len(best_hist) > lam and math.isfinite(best_hist[-1]):
            old, new = best_hist[-1 - lam], best_hist[-1]
            if abs(old - new) <= config.zeta * abs(old):
                stopped = "converged"
                break
        if tau == config.max_iterations:
            break
        if config.time_limit_s is not None and time.perf_counter() - start >= config.time_limit_s:
            stopped = "time_limit"
            break
        # Update the pairs (Alg. 2 line 8): eps-GS over the history, GP-ranked.
        X, y = np.stack(xs), np.asarray(ys)
        if config.acquisition == "random":  # ablation: random adjustments of the profiled table
            values = propose(rng, pairs.initial, pairs, eps, np.ones(pairs.q, bool), 1)[0]
            continue
        allowed = in_l
        cand = propose(rng, X[best], pairs, eps, allowed, config.candidates)
        if len(xs) >= 2:
            with threadpool_limits(1):
                ei = _rank(X, y, cand, pairs.cap, int(rng.integers(2**31)))
            values = cand[int(np.argmax(ei))]
        else:
            values = cand[0]
    best_i = _best(ys, feasible)
    learned = with_values(predictor, pairs, xs[best_i])
    return LearningResult(
        predictor=learned,
        pairs=pairs,
        values=xs[best_i],
        trial=trials[best_i],
        records=tuple(records),
        best_tau=best_i + 1,
        stopped=stopped,
    )
