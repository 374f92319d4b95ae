"""One trial of Alg. 2 (bo-popularity): plan on predicted loads, deploy on the real ones.

:func:`deploy` predicts the learning batches' per-expert loads d[e,i] from their token ids with
the (adjusted) table, plans with the ``ilp-ods`` solver (the paper's Alg. 1, through the
registry) on those predicted loads, then judges the plan on the batches' REAL loads: per batch
and expert, whether the real load broke the memory constraint (rho1), the payload constraint of
a direct layer (rho2) or neither (rho3); replicates as Alg. 2 does (n_new = ceil(M_real / M) or
ceil(R D_in / D_p)); and bills. :func:`oracle` is ODS on the real loads themselves. The loop
around it is :mod:`solvers.bo_popularity_learn`; choices: docs/popularity.md, "Learning".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from moeopt.evaluate import Evaluation, evaluate_batch, expert_breaks
from moeopt.model import ServiceLevel
from moeopt.plan import DeploymentPlan, PlanArrays
from moeopt.popularity.loads import Popularity
from moeopt.popularity.predictors import Predictor
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, total_violation

ACQUISITIONS = ("egreedy", "single-eps", "random")


@dataclass(frozen=True)
class LearningConfig:
    """Alg. 2's constants. The paper gives only Q = 1000 and rho3 < rho2 < rho1 < rho."""

    q: int = 1000  # Q key-value pairs
    mu: float = 0.5  # split: pairs [0, mu Q) are profiled mappings adjusted within L, the rest new
    alpha: float | None = None  # misprediction threshold, tokens per replica (None: 5% of mean)
    eps0_changes: float = 8.0  # eps_0 = changes / Q: about this many pairs move per proposal
    rho: float = 0.1
    rho1: float = 0.08  # the real load broke memory
    rho2: float = 0.05  # ... broke the payload of a direct layer
    rho3: float = 0.02  # mispredicted, constraints held
    lambda_iters: int = 10  # lambda: trials the best may stall ...
    zeta: float = 1e-3  # ... by less than this relative change
    max_iterations: int = 40
    candidates: int = 128  # epsilon-greedy proposals the GP ranks per trial
    acquisition: str = "egreedy"  # or the ablations "single-eps", "random"
    replicate: bool = True  # Alg. 2's replicate step on the real loads
    spread: bool = True  # new-key pairs dealt over (layer, expert), see select_pairs
    time_margin: float = 0.0  # plan to (1 - margin) x the time limit (ours, not the paper's)
    penalty: float = 10.0  # score = cost * (1 + penalty * violation) when infeasible
    ilp_seconds: float = 20.0
    time_limit_s: float | None = None  # stop after the trial that crosses it
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.rho3 < self.rho2 < self.rho1 < self.rho:
            raise ValueError("need 0 < rho3 < rho2 < rho1 < rho (PAPER.md 3.5)")
        if self.acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition {self.acquisition!r}; allowed: {', '.join(ACQUISITIONS)}")
        if self.q < 1 or not 0 <= self.mu <= 1:
            raise ValueError("need q >= 1 and 0 <= mu <= 1")
        if not 0 <= self.time_margin < 1:
            raise ValueError("need 0 <= time_margin < 1")


@dataclass(frozen=True)
class Feedback:
    """What the real loads said about one deployment (per batch j, layer e, expert i)."""

    mispredicted: np.ndarray  # (J, L, E) |r - R_real| > alpha
    memory: np.ndarray  # (J, L, E) branch (i): real minimal memory above the configured one
    payload: np.ndarray  # (J, L, E) branch (ii): direct layer, real payload above D_p
    n_new: np.ndarray  # (L, E) replication factor, worst batch


@dataclass(frozen=True)
class Trial:
    """One deployment: plan on predicted loads, (replicated) plan billed on real loads."""

    planned: DeploymentPlan | None  # ODS on the predicted loads
    plan: DeploymentPlan | None  # after the replicate step: what is billed
    evaluation: Evaluation | None  # on the real loads
    score: float  # cost if feasible, else cost * (1 + penalty * violation); inf: no plan
    feedback: Feedback | None

    @property
    def cost_usd(self) -> float:
        return self.evaluation.cost_usd if self.evaluation else math.inf

    @property
    def feasible(self) -> bool:
        return bool(self.evaluation and self.evaluation.feasible)


def plan_ods(
    problem: DeploymentProblem, loads: np.ndarray, seconds: float = 20.0, seed: int = 0
) -> DeploymentPlan | None:
    """The ``ilp-ods`` solver (the paper's Alg. 1) on the given per-batch loads."""
    from moeopt.registry import make_solver

    target = problem.with_popularity(Popularity(loads=loads, source="predicted"))
    result = make_solver("ilp-ods", seed=seed).solve(target, Budget(evaluations=100, seconds=seconds))
    return result.plan


def feedback(
    problem: DeploymentProblem,
    plan: DeploymentPlan,
    predicted: np.ndarray,
    real: np.ndarray,
    alpha: float,
) -> Feedback:
    """Alg. 2 line 5 per batch and expert: misprediction, then exactly one of the branches
    memory short (i), payload exceeded on a direct layer (ii), or neither (iii); the memory
    need and payload come from the evaluator's own formulas (cost_models.lambda_model)."""
    a = PlanArrays.from_plans([plan], problem)
    y = a.replicas[0].astype(float)  # (L, E)
    r = np.ceil(predicted / y)
    big_r = np.ceil(real / y)
    br = expert_breaks(
        problem, big_r, a.method[0][None, :, None], a.pipeline_degree[0][None, :, None], a.memory_mb[0]
    )
    memory = br.memory
    payload = br.payload & ~memory
    n_new = np.where(memory, br.memory_factor, np.where(payload, br.payload_factor, 1.0))
    return Feedback(np.abs(r - big_r) > alpha, memory, payload, n_new.max(axis=0).astype(np.int64))


def replicate(problem: DeploymentProblem, plan: DeploymentPlan, n_new: np.ndarray) -> DeploymentPlan:
    """Alg. 2's replicate step: replicas x n_new per expert, capped at G."""
    a = PlanArrays.from_plans([plan], problem)
    reps = np.minimum(a.replicas * n_new[None], problem.max_replicas)
    return PlanArrays(a.memory_mb, reps, a.method, a.pipeline_degree, a.group, a.arm64).plan(
        0, problem
    )


def deploy(
    predictor: Predictor,
    problem: DeploymentProblem,
    token_ids: np.ndarray,
    real: np.ndarray,
    config: LearningConfig,
) -> Trial:
    """Predict the batches' loads, plan with ODS, (replicate,) bill on the real loads."""
    bs = problem.workload.tokens_per_batch
    predicted = predictor.predict_loads(token_ids, bs)
    if predicted.shape != real.shape:
        raise ValueError(f"predicted loads {predicted.shape} but real loads {real.shape}")
    target = problem
    if config.time_margin:
        target = problem.with_slo(ServiceLevel(problem.slo.time_limit_s * (1 - config.time_margin)))
    planned = plan_ods(target, predicted, config.ilp_seconds, config.seed)
    if planned is None:
        return Trial(None, None, None, math.inf, None)
    alpha = _alpha(problem, config)
    fb = feedback(problem, planned, predicted, real, alpha)
    plan = replicate(problem, planned, fb.n_new) if config.replicate else planned
    ev, score = bill(problem, plan, real, config.penalty)
    return Trial(planned, plan, ev, score, fb)


def bill(
    problem: DeploymentProblem, plan: DeploymentPlan, real: np.ndarray, penalty: float = 10.0
) -> tuple[Evaluation, float]:
    """Cost of ``plan`` on the real loads, and the score BO minimises (cost if feasible)."""
    target = problem.with_popularity(Popularity(loads=real, source="real"))
    batch = evaluate_batch(target, PlanArrays.from_plans([plan], target))
    ev = batch[0]
    if ev.feasible:
        return ev, ev.cost_usd
    violation = float(total_violation(batch, target)[0])
    if not (math.isfinite(ev.cost_usd) and math.isfinite(violation)):
        return ev, math.inf
    return ev, ev.cost_usd * (1.0 + penalty * violation)


def oracle(
    problem: DeploymentProblem, real: np.ndarray, config: LearningConfig | None = None
) -> Trial:
    """The paper's oracle baseline: ODS on the real loads themselves."""
    config = config or LearningConfig()
    plan = plan_ods(problem, real, config.ilp_seconds, config.seed)
    if plan is None:
        return Trial(None, None, None, math.inf, None)
    ev, score = bill(problem, plan, real, config.penalty)
    return Trial(plan, plan, ev, score, None)


def _alpha(problem: DeploymentProblem, config: LearningConfig) -> float:
    if config.alpha is not None:
        return float(config.alpha)
    mean = problem.workload.tokens_per_batch * problem.model.top_k / problem.experts
    return 0.05 * mean
