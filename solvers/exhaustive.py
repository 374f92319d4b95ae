"""Exhaustive search: every plan of :class:`moeopt.space.PlanSpace`, priced in chunks.

Only for tiny problems: it is the ground truth the MILP is tested against. The order is fixed
(mixed-radix counting over the space's dimensions), so ties go to the first plan met.

>>> from moeopt.testing import tiny_problem
>>> str(ExhaustiveSolver().solve(tiny_problem(), Budget(evaluations=10**6)).solution_status)
'proven_optimal'
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from moeopt.errors import InputError
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, Outcome, Solver, SolverStatus, Tracker
from moeopt.space import PlanSpace

MAX_PLANS = 1_000_000


class ExhaustiveSolver(Solver):
    """Prices all plans; proves the optimum over the space when it finishes within budget."""

    name = "exhaustive"
    tags = frozenset({"exact", "deterministic", "objectives"})
    default_options: ClassVar[dict[str, Any]] = {"chunk": 4096}
    default_budget: ClassVar[Budget] = Budget(evaluations=MAX_PLANS, seconds=600.0)

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        space = PlanSpace.of(problem)
        size = space.size()
        if size > MAX_PLANS:
            raise InputError(
                f"problem {problem.name}", "solver exhaustive",
                f"the plan space has {f'{size:.3g}' if math.isfinite(size) else f'about 10^{space.log10_size():.0f}'} "
                f"plans, more than the limit of {MAX_PLANS:,}; "
                "use ilp for an exact answer",
            )
        total = int(size)
        upper = space.upper
        chunk = int(self.options["chunk"])
        for start in range(0, total, chunk):
            if tracker.exhausted():
                return None  # the base reports budget or time limit
            index = np.arange(start, min(start + chunk, total), dtype=np.int64)
            tracker.evaluate(space.decode(_digits(index, upper)))
        if tracker.evaluations < total:  # the budget cut the last chunk: no proof either way
            return None
        if not tracker.seen_feasible:
            return Outcome(status=SolverStatus.INFEASIBLE,
                           message=f"none of the {total} plans is feasible")
        bound = tracker.best_eval.cost_usd if self.objective.kind == "cheapest" else None
        return Outcome(status=SolverStatus.OPTIMAL, proven_optimal=True, lower_bound_usd=bound,
                       message=f"all {total} plans priced")


def _digits(index: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Mixed-radix digits of ``index``, last dimension fastest."""
    out = np.zeros((len(index), len(upper)), dtype=np.int64)
    rest = index.copy()
    for d in range(len(upper) - 1, -1, -1):
        rest, out[:, d] = np.divmod(rest, upper[d])
    return out
