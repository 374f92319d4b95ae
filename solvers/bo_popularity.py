"""The paper's learning loop (Alg. 2) as a solver: learn the popularity table, plan with ODS.

Needs a per-token routing trace with token ids (option ``trace``, or the trace a problem was
built from with ``--trace``). The first ``profile_fraction`` of its whole batches build the
key-value table, the rest are the learning batches of :func:`solvers.bo_popularity_learn.learn`;
the learned table's plan is then priced on the problem's own popularity. The ODS solves inside
the loop are not counted as evaluations (they plan on predicted loads). See docs/popularity.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

from moeopt.errors import InputError
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, Outcome, Solver, SolverStatus, Tracker


class BoPopularitySolver(Solver):
    """Alg. 2: Bayesian optimization over Q key-value pairs with ODS re-planning."""

    name = "bo-popularity"
    tags = frozenset({"paper", "popularity", "bayesian"})
    requires: ClassVar[tuple[str, ...]] = ("sklearn", "pulp", "highspy")
    default_budget: ClassVar[Budget] = Budget(evaluations=10, seconds=300.0)
    default_options: ClassVar[dict[str, Any]] = {
        "trace": None,  # None: the trace the problem was built from
        "predictor": "bayes",
        "profile_fraction": 0.5,
        "q": 1000,
        "acquisition": "egreedy",
        "max_iterations": 40,
        "replicate": True,
    }

    def _trace(self, problem: DeploymentProblem) -> Any:
        """The per-token trace, read as the problem read it (its field mapping and its rule
        for incomplete tokens), or the ``trace`` option's moeopt/per-token file as it is."""
        from moeopt.popularity.importers import load_any
        from moeopt.popularity.traces import RoutingTrace

        path, fields, incomplete = self.options["trace"], None, "error"
        pop = problem.spec.get("popularity", {})
        if path is None and isinstance(pop, dict) and pop.get("source") == "trace":
            path, fields = pop.get("file"), pop.get("fields")
            incomplete = pop.get("incomplete", "error")
        if path is None:
            raise InputError(
                f"solver {self.name}", "trace",
                "needs a per-token routing trace with token ids: pass the option or build the "
                "problem with --trace FILE",
            )
        trace = load_any(str(path), dict(fields) if fields else None, problem.experts, incomplete)
        if not isinstance(trace, RoutingTrace):
            raise InputError(str(path), "file", "holds expert counts; allowed: a per-token "
                             "routing trace with token ids (moeopt format or per-token JSONL)")
        return trace

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        from moeopt.popularity.predictors import make_predictor
        from moeopt.popularity.traces import batch_loads
        from solvers.bo_popularity_learn import learn
        from solvers.bo_popularity_trial import LearningConfig, deploy

        o = self.options
        trace = self._trace(problem)
        where = f"solver {self.name}"
        shape = (trace.layers, trace.num_experts, trace.top_k)
        if shape != (problem.layers, problem.experts, problem.model.top_k):
            raise InputError(where, "trace", f"trace is {shape} (layers, experts, k); the problem "
                             f"is {(problem.layers, problem.experts, problem.model.top_k)}")
        bs = problem.workload.tokens_per_batch
        batches = trace.tokens // bs
        if batches < 2:
            raise InputError(where, "trace", f"{trace.tokens} tokens; need 2 batches of {bs}")
        n_prof = min(max(round(float(o["profile_fraction"]) * batches), 1), batches - 1)
        profile = trace.select(slice(0, n_prof * bs))
        learning = trace.select(slice(n_prof * bs, batches * bs))
        real = batch_loads(learning.experts, trace.num_experts, bs)
        predictor = make_predictor(str(o["predictor"])).fit(profile)
        left = tracker.remaining_seconds()
        config = LearningConfig(
            q=int(o["q"]), acquisition=str(o["acquisition"]), seed=self.seed,
            max_iterations=int(o["max_iterations"]), replicate=bool(o["replicate"]),
            time_limit_s=None if left is None else 0.8 * left,
            ilp_seconds=20.0 if left is None else max(min(20.0, 0.1 * left), 1.0),
        )
        result = learn(predictor, problem, learning.token_ids, real, config)
        if result.plan is None:
            return Outcome(status=SolverStatus.INFEASIBLE, message="ODS found no plan")
        no_bo = deploy(predictor, problem, learning.token_ids, real, config)
        tracker.evaluate(PlanArrays.from_plans([result.plan], problem))
        return Outcome(
            message=(
                f"Alg. 2: {len(result.records)} trials ({result.stopped}), best trial "
                f"{result.best_tau}; learning batches {real.shape[0]}: score "
                f"{result.trial.score:.6g} vs No-BO {no_bo.score:.6g} (feasible: "
                f"{result.trial.feasible} vs {no_bo.feasible})"
            )
        )
