"""Deployment baselines: fixed recipes priced on the problem, not searches.

- ``lambdaml``: every expert its own function at 3,008 MB (the nearest memory option where
  3,008 is not one: 3,072 MB on the paper's menu), no replicas, no prediction, storage
  transfer (the paper's LambdaML baseline).
- ``cpu-cluster``: the same work on an always-on EC2 instance (cost_models.cpu_cluster).
- ``eplb``: DeepSeek's EPLB recipe: give redundant replicas to the heaviest experts (by load
  per replica), then pack cold experts together so every function carries a similar load;
  priced at 3,008 MB like LambdaML.
- ``oracle``: a lower bound of every static plan: each batch's own optimum (``ilp`` on that
  batch's true loads alone), averaged. Any plan's cost is the mean of its per-batch costs and
  each is at least that batch's optimum, so the mean of proven per-batch bounds is proven too.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from moeopt.baselines import LAMBDAML_MEMORY_MB, cpu_cluster, lambdaml_plan, nearest_memory_option
from moeopt.evaluate import Evaluation
from moeopt.plan import DeploymentPlan, FunctionPlan, LayerPlan, PlanArrays
from moeopt.problem import DeploymentProblem
from moeopt.solver import (
    Budget,
    Outcome,
    SolutionStatus,
    Solver,
    SolveResult,
    SolverStatus,
    Tracker,
    TrajectoryPoint,
)


class LambdaMLSolver(Solver):
    name = "lambdaml"
    tags = frozenset({"baseline", "deployment", "deterministic"})
    default_options: ClassVar[dict[str, Any]] = {"method": "storage"}
    default_budget: ClassVar[Budget] = Budget(evaluations=1)

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        plan = lambdaml_plan(problem, self.options["method"])
        tracker.evaluate(PlanArrays.from_plans([plan], problem))
        return Outcome(status=SolverStatus.COMPLETED)


class EplbSolver(Solver):
    name = "eplb"
    tags = frozenset({"baseline", "deployment", "deterministic"})
    default_options: ClassVar[dict[str, Any]] = {
        "redundant_fraction": 0.5, "memory_mb": LAMBDAML_MEMORY_MB, "method": "storage",
    }
    default_budget: ClassVar[Budget] = Budget(evaluations=1)

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        layers = tuple(
            self._layer(problem, problem.popularity.mean()[layer]) for layer in range(problem.layers)
        )
        plan = DeploymentPlan(problem.name, problem.fingerprint, layers)
        tracker.evaluate(PlanArrays.from_plans([plan], problem))
        return Outcome(status=SolverStatus.COMPLETED)

    def _layer(self, problem: DeploymentProblem, load: np.ndarray) -> LayerPlan:
        E, G = len(load), problem.max_replicas
        memory = nearest_memory_option(problem, int(self.options["memory_mb"]))
        replicas = np.ones(E, dtype=int)
        # EPLB step 1: each redundant replica goes to the expert with the highest load/replica.
        for _ in range(int(round(self.options["redundant_fraction"] * E))):
            per = np.where(replicas < G, load / replicas, -1.0)
            replicas[int(np.argmax(per))] += 1
        target = float((load / replicas).max())
        # EPLB step 2: pack single-replica experts, heaviest first, into functions whose
        # load stays under the heaviest replica's (first fit decreasing).
        groups: list[list[int]] = []
        group_load: list[float] = []
        for e in map(int, np.argsort(-load)):
            if replicas[e] > 1:
                groups.append([e])
                group_load.append(math.inf)
                continue
            for i, gl in enumerate(group_load):
                if gl + load[e] <= target:
                    groups[i].append(e)
                    group_load[i] += load[e]
                    break
            else:
                groups.append([e])
                group_load.append(float(load[e]))
        method = self.options["method"] if self.options["method"] in problem.methods else problem.methods[0]
        return LayerPlan(
            method,
            256 if method == "pipelined_storage" else 1,
            tuple(
                FunctionPlan(tuple(sorted(g)), memory, int(replicas[g[0]]))
                for g in groups
            ),
        )


class CpuClusterSolver(Solver):
    """Not a Lambda plan: the result carries the cluster's cost and time, and no plan."""

    name = "cpu-cluster"
    tags = frozenset({"baseline", "deployment", "deterministic", "no-plan"})
    default_budget: ClassVar[Budget] = Budget(evaluations=1)

    def solve(self, problem: DeploymentProblem, budget: Budget | None = None, evaluator: Any = None) -> SolveResult:
        run = cpu_cluster(problem)
        over = run.wall_time_s - problem.slo.time_limit_s
        latency = problem.workload.tokens_per_batch / run.throughput_tokens_per_s
        ev = Evaluation(
            cost_usd=run.cost_usd, cost_gb_s=0.0, feasible=over <= 0, latency_s=latency,
            latency_mean_s=run.wall_time_s, throughput_tokens_per_s=run.throughput_tokens_per_s,
            layer_latency_s=(), violations={"time_limit": latency - problem.slo.time_limit_s},
            cost_breakdown_usd={"cluster": run.cost_usd, "cluster_busy_only": run.busy_cost_usd},
        )
        feasible = ev.feasible
        return SolveResult(
            solver=self.name, seed=self.seed, options={"instance": run.instance}, problem=problem.name,
            plan=None, evaluation=ev, solver_status=SolverStatus.COMPLETED,
            solution_status=SolutionStatus.FEASIBLE if feasible else SolutionStatus.NONE,
            lower_bound_usd=None,
            trajectory=(TrajectoryPoint(0, 0.0, run.cost_usd, run.cost_usd),) if feasible else (),
            evaluations=0, wall_seconds=0.0,
            message=f"{run.instance}, billed per second with a 60 s minimum; busy-only ${run.busy_cost_usd:.6f}",
            binding_constraints=() if feasible else ("time_limit",),
        )

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:  # pragma: no cover
        raise NotImplementedError


class OracleSolver(Solver):
    """A proven lower bound of every static plan: the mean over batches of each batch's own
    proven bound (``ilp`` re-plans each batch on its true loads, i.e. perfect prediction).

    Its reported cost *is* that bound (never above a feasible plan); what re-planning every
    batch would cost with the plans ``ilp`` found is in the message and the cost breakdown
    (``per_batch_plans``), equal to the bound when every batch is proven optimal."""

    name = "oracle"
    tags = frozenset({"baseline", "bound", "deterministic", "no-plan"})
    requires: ClassVar[tuple[str, ...]] = ("pulp", "highspy")
    default_budget: ClassVar[Budget] = Budget(seconds=120.0)

    def solve(self, problem: DeploymentProblem, budget: Budget | None = None, evaluator: Any = None) -> SolveResult:
        from moeopt.registry import make_solver

        budget = budget or self.default_budget
        batches = problem.popularity.batches
        per_batch: list[SolveResult] = []
        seconds = None if budget.seconds is None else budget.seconds / batches
        evals = None if budget.evaluations is None else max(budget.evaluations // batches, 1)
        for b in range(batches):
            single = problem.with_popularity(problem.popularity.select([b]), name=f"{problem.name}[batch {b}]")
            solver = make_solver("ilp", seed=self.seed)
            per_batch.append(
                solver.solve(single, Budget(evals, seconds), **({"evaluator": evaluator} if evaluator else {}))
            )
        infeasible = [r for r in per_batch if r.solver_status == SolverStatus.INFEASIBLE]
        bounds = [r.lower_bound_usd for r in per_batch]
        bound = float(np.mean(bounds)) if all(b is not None for b in bounds) and not infeasible else None
        planned = all(r.solution_status != SolutionStatus.NONE for r in per_batch)
        proven = planned and all(r.solution_status == SolutionStatus.PROVEN_OPTIMAL for r in per_batch)
        # Latency and the like come from the batches' plans (those found in time).
        evs = [r.evaluation for r in per_batch if r.evaluation is not None and r.solution_status != SolutionStatus.NONE]
        ev = None
        if bound is not None and evs:
            plans_cost = float(np.mean([e.cost_usd for e in evs])) if planned else math.nan
            ev = Evaluation(
                cost_usd=bound,
                cost_gb_s=float(np.mean([e.cost_gb_s for e in evs])),
                feasible=planned,
                latency_s=max(e.latency_s for e in evs),
                latency_mean_s=float(np.mean([e.latency_mean_s for e in evs])),
                throughput_tokens_per_s=min(e.throughput_tokens_per_s for e in evs),
                layer_latency_s=tuple(np.max([e.layer_latency_s for e in evs], axis=0)),
                violations={k: max(e.violations[k] for e in evs) for k in evs[0].violations},
                cost_breakdown_usd={"bound": bound, **({"per_batch_plans": plans_cost} if planned else {})},
            )
        wall = sum(r.wall_seconds for r in per_batch)
        if infeasible:
            message = (f"batch {per_batch.index(infeasible[0])} alone has no feasible plan, so no "
                       "static plan is feasible")
        elif ev is None:
            message = "a batch's ilp found no bound in time; no bound to report"
        else:
            message = (
                f"lower bound of every static plan: mean of {batches} per-batch proven bounds "
                f"(ilp on each batch's true loads), {bound:.9g} USD; "
                + (f"re-planning every batch with the plans found costs "
                   f"{ev.cost_breakdown_usd['per_batch_plans']:.9g} USD" if planned
                   else "some batch got no plan in time")
                + ("" if proven else " (not every batch proven optimal: the bound is below that)")
            )
        ok = ev is not None
        return SolveResult(
            solver=self.name, seed=self.seed, options={}, problem=problem.name,
            plan=None, evaluation=ev,
            solver_status=SolverStatus.INFEASIBLE if infeasible else SolverStatus.COMPLETED,
            solution_status=(SolutionStatus.PROVEN_OPTIMAL if proven else SolutionStatus.FEASIBLE)
            if ok else SolutionStatus.NONE,
            lower_bound_usd=bound,
            trajectory=(TrajectoryPoint(sum(r.evaluations for r in per_batch), wall, bound, bound),)
            if ok and bound is not None else (),
            evaluations=sum(r.evaluations for r in per_batch), wall_seconds=wall,
            message=message,
            binding_constraints=tuple(sorted({c for r in per_batch for c in r.binding_constraints})),
        )

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:  # pragma: no cover
        raise NotImplementedError

