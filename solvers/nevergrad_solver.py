"""Nevergrad's optimizers over the plan space (NGOpt by default; CMA, DE, (1+1), PSO variants).

The PlanSpace vector is one bounded ``ng.p.Array`` with integer casting: one parameter object
keeps ask/tell cheap on 1,500-dimensional spaces (a Choice per dimension costs a Python object
each). Candidates are asked in batches of ``num_workers`` so pricing stays one vectorized
evaluator call. The loss is the objective score itself; the named violations go to Nevergrad as
``constraint_violation`` (its own penalty ranks them), never folded into a hidden penalty.

Warm start (``Optimizer.suggest``): first the plans given to ``Solver.suggest`` (priced already by
the base, so they are told without pricing them again), then the start design (option
``design``): the walk to the time limit on the Lagrangian path of the layer curves
(:mod:`solvers.layer_curves`, the warm start of bayes-egreedy and the Optuna solvers; priced
once, told when asked) or the load-aware structured design of
:func:`moeopt.space.structured_design`.

>>> from moeopt.problem import load_problem
>>> r = NGOptSolver(seed=0).solve(load_problem("bert-moe-4"), Budget(evaluations=400))
>>> r.solution_status.value
'feasible'
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import threadpool_limits

from cost_models.lambda_model import PIPELINED_STORAGE
from moeopt.errors import InputError
from moeopt.evaluate import VIOLATIONS, EvaluationBatch, violation_scales
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, Outcome, Solver, Tracker
from moeopt.space import PlanSpace, structured_design
from solvers.layer_curves import LayerCurves

# Nevergrad clips losses above 5e20 with a warning and some optimizers misbehave on inf:
# a NaN/inf-priced plan is told this finite loss instead (the tracker still ranks it last).
BAD_LOSS = 1e6


def violation_vector(violations: dict[str, np.ndarray], problem: DeploymentProblem) -> np.ndarray:
    """(plans, 5) positive parts of the named violations, each in units of its limit."""
    scale = violation_scales(problem)
    cols = [
        np.maximum(np.nan_to_num(violations[k], nan=1e3, posinf=1e3), 0.0) / scale[k]
        for k in VIOLATIONS
    ]
    return np.stack(cols, axis=1)


def _told(
    batch: EvaluationBatch, score: np.ndarray, problem: DeploymentProblem
) -> tuple[np.ndarray, np.ndarray]:
    """(loss, violations) told to Nevergrad: NaN/inf losses become BAD_LOSS, broken."""
    loss = np.where(np.isfinite(score), score, BAD_LOSS)
    cv = violation_vector(batch.violations, problem)
    cv[~np.isfinite(score)] = np.maximum(cv[~np.isfinite(score)], 1.0)
    return loss, cv


def _decodes_to(space: PlanSpace, x: np.ndarray, plans: PlanArrays) -> np.ndarray:
    """Per row: is ``x`` exactly the (ungrouped, x86) plan that was priced?"""
    a = space.decode(x)
    same = (a.memory_mb == plans.memory_mb).all(axis=(1, 2))
    same &= (a.replicas == plans.replicas).all(axis=(1, 2))
    same &= (a.method == plans.method).all(axis=1)
    piped = a.method == PIPELINED_STORAGE
    same &= np.where(piped, a.pipeline_degree == plans.pipeline_degree, True).all(axis=1)
    if plans.group is not None:
        same &= (plans.group == np.arange(plans.group.shape[2])).all(axis=(1, 2))
    if plans.arm64 is not None:
        same &= ~plans.arm64.any(axis=(1, 2))
    return same


class NGOptSolver(Solver):
    """Nevergrad's ask/tell loop, one batch of ``num_workers`` candidates per evaluator call."""

    name = "nevergrad"
    optimizer: ClassVar[str] = "NGOpt"
    tags = frozenset({"black-box", "evolutionary", "objectives"})
    requires = ("nevergrad",)
    default_budget: ClassVar[Budget] = Budget(evaluations=2000, seconds=60.0)
    default_options: ClassVar[dict[str, Any]] = {
        "num_workers": 32,
        "design": "path",  # start design: "path" (walk the Lagrangian path), "structured", "none"
        "design_batch": 16,  # path: points priced per round of the walk to the time limit ...
        "design_rounds": 3,  # ... and rounds
        "warm_start": 0.2,  # structured: share of the evaluation budget suggested from it
        "budget_if_unbounded": 100_000,  # what Nevergrad is told when only seconds bound the run
    }

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        import nevergrad as ng

        space = PlanSpace.of(problem)
        upper = space.upper
        # Bounds half a step outside the integers so every choice has an equal share after
        # rounding; space.clip maps the (rare) rounded upper edge back inside.
        param = ng.p.Array(
            shape=(space.dims,), lower=-0.49, upper=upper - 0.51
        ).set_integer_casting()
        param.random_state = np.random.RandomState(int(self.rng.integers(2**31)))
        total = tracker.budget.evaluations or int(self.options["budget_if_unbounded"])
        workers = int(self.options["num_workers"])
        # One BLAS thread: CMA's small eigendecompositions get slower with two on two cores.
        with threadpool_limits(1), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Nevergrad warns about budgets and bounds at length
            name = self.optimizer_for(space.dims)
            opt = ng.optimizers.registry[name](
                parametrization=param, budget=total, num_workers=workers
            )
            known: dict[bytes, tuple[float, np.ndarray]] = {}  # priced before Nevergrad asked
            if tracker.suggested is not None:
                s = tracker.suggested
                x = space.encode(s.plans)
                loss, cv = _told(s.batch, s.score, problem)
                exact = _decodes_to(space, x, s.plans)
                for row, value, v, same in zip(x, loss, cv, exact, strict=True):
                    if same:  # else its nearest plan vector is priced when asked
                        known[row.tobytes()] = (float(value), v)
                    opt.suggest(row.astype(float))
            for row in self._start_design(problem, space, tracker, known):
                opt.suggest(row.astype(float))
            while not tracker.exhausted():
                left = tracker.remaining_evaluations()
                n = workers if left is None else min(workers, left)
                cands = [opt.ask() for _ in range(n)]
                x = space.canonical(np.asarray([c.value for c in cands]))
                loss = np.zeros(n)
                cv = np.zeros((n, len(VIOLATIONS)))
                new = []
                for i, row in enumerate(x):
                    if row.tobytes() in known:
                        loss[i], cv[i] = known.pop(row.tobytes())
                    else:
                        new.append(i)
                if new:  # n <= the evaluations left, so every new row is priced
                    batch, score, _ = tracker.evaluate(space.decode(x[new]))
                    loss[new], cv[new] = _told(batch, score, problem)
                for cand, value, v in zip(cands, loss, cv, strict=True):
                    opt.tell(cand, float(value), constraint_violation=v.tolist())
        if name != self.optimizer:
            return Outcome(message=f"Nevergrad {name} (not {self.optimizer}: {space.dims} dimensions)")
        return None

    @classmethod
    def optimizer_for(cls, dims: int) -> str:
        """The Nevergrad optimizer to run on a space of ``dims`` dimensions."""
        return cls.optimizer

    def _start_design(
        self, problem: DeploymentProblem, space: PlanSpace, tracker: Tracker,
        known: dict[bytes, tuple[float, np.ndarray]],
    ) -> np.ndarray:
        """Plan vectors to suggest after the suggested plans. "path": the walk to the time limit
        on the Lagrangian path (:meth:`solvers.layer_curves.LayerCurves.walk_to_limit`, the warm
        start bayes-egreedy and the Optuna solvers use), priced here and told when asked, best
        first; "structured": the first ``warm_start`` x budget plans of
        :func:`moeopt.space.structured_design`, priced when asked; "none": nothing."""
        o = self.options
        design = str(o["design"])
        if design not in ("path", "structured", "none"):
            raise InputError(f"solver {self.name}", "design", f"{design!r}; allowed: path, structured, none")
        if design == "none":
            return np.zeros((0, space.dims), dtype=np.int64)
        if design == "structured":
            total = tracker.budget.evaluations or int(o["budget_if_unbounded"])
            return structured_design(space, self.rng)[: int(o["warm_start"] * total)]
        try:
            curves = LayerCurves.of(problem)
        except ValueError:  # an expert fits no option under any method: nothing to walk
            return np.zeros((0, space.dims), dtype=np.int64)
        rows: list[np.ndarray] = []

        def price(k: np.ndarray) -> np.ndarray:
            x = space.encode(curves.plans(k))
            fresh = [i for i, row in enumerate(x) if row.tobytes() not in known]
            result = np.full(len(x), -1)
            if fresh and not tracker.exhausted():
                batch, score, violation = tracker.evaluate(space.decode(x[fresh]))
                loss, cv = _told(batch, score, problem)
                for i, value, v, bad in zip(fresh, loss, cv, violation, strict=False):
                    known[x[i].tobytes()] = (float(value), v)
                    result[i] = int(bad == 0)
                    rows.append(x[i])
            return result

        curves.walk_to_limit(price, int(o["design_batch"]), int(o["design_rounds"]))
        if not rows:
            return np.zeros((0, space.dims), dtype=np.int64)
        x = np.asarray(rows)
        told = [known[r.tobytes()] for r in x]
        order = np.lexsort(([value for value, _ in told], [v.sum() > 0 for _, v in told]))
        return x[order]


class CMASolver(NGOptSolver):
    """CMA-ES; above ``FULL_CMA_MAX_DIMS`` dimensions Nevergrad's DiagonalCMA, because a full
    covariance matrix is dims² floats (7 GB on deepseek-v3's 29,812) and its first ask alone
    outlasted a 20 s budget by 35 s."""

    name = "nevergrad-cma"
    optimizer = "CMA"
    FULL_CMA_MAX_DIMS: ClassVar[int] = 2000

    @classmethod
    def optimizer_for(cls, dims: int) -> str:
        return cls.optimizer if dims <= cls.FULL_CMA_MAX_DIMS else "DiagonalCMA"


class DESolver(NGOptSolver):
    name = "nevergrad-de"
    optimizer = "DE"


class OnePlusOneSolver(NGOptSolver):
    name = "nevergrad-oneplusone"
    optimizer = "OnePlusOne"


class PSOSolver(NGOptSolver):
    name = "nevergrad-pso"
    optimizer = "PSO"
