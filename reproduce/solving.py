"""Problems in the paper's regime, and the optimum of a problem (the library's solvers, by name).

The paper sets throughput targets without saying how; its "at most 18.76 % lower throughput than
LambdaML" implies targets relative to the LambdaML-style plan's throughput, so a problem here is
a built-in with its time limit set to ``ratio x`` that throughput (:func:`regime_problem`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from moeopt.baselines import lambdaml_plan
from moeopt.evaluate import Evaluation, evaluate
from moeopt.model import ServiceLevel, Workload
from moeopt.plan import DeploymentPlan
from moeopt.popularity import Popularity
from moeopt.popularity.predictors import largest_remainder
from moeopt.problem import DeploymentProblem, load_problem
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus


def problem_at(name: str, profile: str | None) -> DeploymentProblem:
    """A built-in problem (or file) with a profile's constants (None: built-in constants)."""
    return load_problem(name, profile=profile)


def lambdaml(problem: DeploymentProblem) -> Evaluation:
    """The LambdaML-style plan priced on the problem (storage transfer, as the solver)."""
    return evaluate(problem, lambdaml_plan(problem))


def with_ratio(problem: DeploymentProblem, ratio: float) -> DeploymentProblem:
    """The problem with its throughput target at ``ratio`` x the LambdaML-style plan's."""
    tp = lambdaml(problem).throughput_tokens_per_s
    slo = ServiceLevel.from_throughput(ratio * tp, problem.workload.tokens_per_batch)
    return problem.with_slo(slo)


def with_tokens(problem: DeploymentProblem, tokens: int) -> DeploymentProblem:
    """The problem at another batch size, its loads scaled per layer (largest remainder)."""
    k = problem.model.top_k
    loads = largest_remainder(problem.popularity.loads.astype(float), tokens * k)
    pop = Popularity(loads, source=f"{problem.popularity.source} scaled to {tokens} tokens")
    scaled = problem.with_popularity(pop).with_workload(Workload(tokens_per_batch=tokens))
    return scaled


def heldout(problem: DeploymentProblem, batches: int, seed: int) -> DeploymentProblem:
    """The same problem on new batches drawn like its own: the mean routing frequencies of its
    sample batches, ``batches`` multinomial draws with another seed (its held-out test set)."""
    mean = problem.popularity.loads.mean(axis=0)
    pop = Popularity.from_layer_counts(
        mean, problem.workload.tokens_per_batch, problem.model.top_k, batches, seed,
        source=f"{problem.name} held-out (seed {seed})",
    )
    return problem.with_popularity(pop, name=f"{problem.name}[held-out]")


@dataclass(frozen=True)
class Optimum:
    """The cheapest plan found, how, and (with ilp) a proven lower bound."""

    plan: DeploymentPlan | None
    evaluation: Evaluation | None
    solver: str
    status: str  # proven_optimal, feasible, none
    lower_bound_usd: float | None
    seconds: float

    @property
    def cost_usd(self) -> float:
        ok = self.evaluation is not None and self.status != "none"
        return self.evaluation.cost_usd if ok else math.inf  # type: ignore[union-attr]

    @property
    def feasible(self) -> bool:
        return self.status != "none"

    def to_dict(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "solver": self.solver, "status": self.status,
            "cost_usd": self.cost_usd if self.feasible else None,
            "lower_bound_usd": self.lower_bound_usd,
            "latency_s": ev.latency_s if ev else None,
            "throughput_tokens_per_s": ev.throughput_tokens_per_s if ev else None,
            "feasible": self.feasible, "seconds": self.seconds,
            "binding": ev.broken() if ev and not self.feasible else [],
            "plan": plan_summary(self.plan) if self.plan else None,
        }


def plan_summary(plan: DeploymentPlan) -> dict[str, Any]:
    """What a plan is, in a few numbers: methods, memory sizes, replicas, functions."""
    funcs = [f for layer in plan.layers for f in layer.functions]
    return {
        "methods": dict(sorted({m: sum(la.method == m for la in plan.layers)
                                for m in {la.method for la in plan.layers}}.items())),
        "pipeline_degrees": sorted({la.pipeline_degree for la in plan.layers
                                    if la.method == "pipelined_storage"}),
        "memory_mb": sorted({f.memory_mb for f in funcs}),
        "replicas": int(sum(f.replicas for f in funcs)),
        "functions": len(funcs),
        "architectures": sorted({f.architecture for f in funcs}),
    }


def optimum(
    problem: DeploymentProblem, greedy_seconds: float, ilp_seconds: float, seed: int = 0
) -> Optimum:
    """greedy (fast, a heuristic), then the exact MILP within ``ilp_seconds`` (0: skip) for a
    proof or a lower bound; the cheaper feasible plan of the two."""
    results = []
    if greedy_seconds > 0:
        results.append(make_solver("greedy", seed=seed).solve(problem, Budget(seconds=greedy_seconds)))
    if ilp_seconds > 0:
        results.append(make_solver("ilp", seed=seed).solve(problem, Budget(seconds=ilp_seconds)))
    best = min(results, key=lambda r: (r.solution_status == SolutionStatus.NONE, r.cost_usd))
    bounds = [r.lower_bound_usd for r in results if r.lower_bound_usd is not None]
    bound = max(bounds) if bounds else None
    status = str(best.solution_status)
    if bound is not None and best.solution_status != SolutionStatus.NONE and (
        best.cost_usd - bound <= 1e-9 * max(best.cost_usd, 1e-300)
    ):
        status = "proven_optimal"
    return Optimum(best.plan, best.evaluation, best.solver, status, bound,
                   float(sum(r.wall_seconds for r in results)))


def percentiles(values: list[float] | np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "p99": float(np.percentile(v, 99)), "max": float(v.max())}
