"""Nevergrad's optimizers over the plan space (NGOpt by default; CMA, DE, (1+1), PSO variants).

The PlanSpace vector is one bounded ``ng.p.Array`` with integer casting: one parameter object
keeps ask/tell cheap on 1,500-dimensional spaces (a Choice per dimension costs a Python object
each). Candidates are asked in batches of ``num_workers`` so pricing stays one vectorized
evaluator call. The loss is the objective score itself; the named violations go to Nevergrad as
``constraint_violation`` (its own penalty ranks them), never folded into a hidden penalty. The
structured design of :mod:`solvers.bayes` is suggested first as a warm start.

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

from moeopt.evaluate import VIOLATIONS, violation_scales
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, Outcome, Solver, Tracker
from moeopt.space import PlanSpace

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


class NGOptSolver(Solver):
    """Nevergrad's ask/tell loop, one batch of ``num_workers`` candidates per evaluator call."""

    name = "nevergrad"
    optimizer: ClassVar[str] = "NGOpt"
    tags = frozenset({"black-box", "evolutionary", "objectives"})
    requires = ("nevergrad",)
    default_budget: ClassVar[Budget] = Budget(evaluations=2000, seconds=60.0)
    default_options: ClassVar[dict[str, Any]] = {
        "num_workers": 32,
        "warm_start": 0.2,  # share of the evaluation budget suggested from the structured design
        "budget_if_unbounded": 100_000,  # what Nevergrad is told when only seconds bound the run
    }

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        import nevergrad as ng

        from solvers.bayes import structured_design

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
            n_warm = int(self.options["warm_start"] * total)
            for row in structured_design(space, self.rng)[:n_warm]:
                opt.suggest(row.astype(float))
            while not tracker.exhausted():
                left = tracker.remaining_evaluations()
                n = workers if left is None else min(workers, left)
                cands = [opt.ask() for _ in range(n)]
                x = space.clip(np.asarray([c.value for c in cands]))
                batch, score, _ = tracker.evaluate(space.decode(x))
                loss = np.where(np.isfinite(score), score, BAD_LOSS)
                cv = violation_vector(batch.violations, problem)
                cv[~np.isfinite(score)] = np.maximum(cv[~np.isfinite(score)], 1.0)
                for cand, value, v in zip(cands, loss, cv, strict=True):
                    opt.tell(cand, float(value), constraint_violation=v.tolist())
        if name != self.optimizer:
            return Outcome(message=f"Nevergrad {name} (not {self.optimizer}: {space.dims} dimensions)")
        return None

    @classmethod
    def optimizer_for(cls, dims: int) -> str:
        """The Nevergrad optimizer to run on a space of ``dims`` dimensions."""
        return cls.optimizer


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
