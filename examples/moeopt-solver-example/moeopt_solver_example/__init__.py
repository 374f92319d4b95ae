"""A complete third-party solver for moeopt, in one file (docs/solver-api.md explains each part).

Coordinate descent: start from the fastest plan (every expert at the largest memory with the
most replicas, storage transfer), then sweep the experts in a seeded random order; for each,
price every (memory, replicas) at once in one vectorized call and keep the best, feasible
first. Starting fast means the first plan usually meets the time limit and every later step
keeps it, so the sweeps only ever trade speed the plan does not need for money.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from moeopt.plan import PlanArrays
from moeopt.solver import Budget, Outcome, Solver

STORAGE = 1  # index of "storage" in cost_models.lambda_model.METHODS


class CoordinateDescent(Solver):
    name = "coordinate-descent"
    tags = frozenset({"local-search", "plugin"})
    default_options: ClassVar[dict[str, Any]] = {"sweeps": 3}
    # 3 sweeps of bert-moe-4 price 3 x 48 experts x 14 sizes x 8 replica counts = 16,128 plans.
    default_budget: ClassVar[Budget] = Budget(evaluations=20_000, seconds=60.0)

    def _solve(self, problem, tracker) -> Outcome | None:
        menu = np.asarray(problem.memory_options, dtype=float)
        L, E, G = problem.layers, problem.experts, problem.max_replicas
        memory = np.full((1, L, E), menu[-1])
        replicas = np.full((1, L, E), G)
        method = np.full((1, L), STORAGE if "storage" in problem.methods else 0)
        beta = np.full((1, L), 256.0)
        cells = [(layer, e) for layer in range(L) for e in range(E)]
        for _ in range(self.options["sweeps"]):
            for layer, e in self.rng.permutation(cells):
                m = np.repeat(memory, len(menu) * G, axis=0)
                r = np.repeat(replicas, len(menu) * G, axis=0)
                m[:, layer, e] = np.repeat(menu, G)
                r[:, layer, e] = np.tile(np.arange(1, G + 1), len(menu))
                n = len(m)
                _, score, violation = tracker.evaluate(
                    PlanArrays(m, r, np.repeat(method, n, 0), np.repeat(beta, n, 0))
                )
                best = int(np.lexsort((score, violation))[0])  # least violation, then cheapest
                memory, replicas = m[best : best + 1], r[best : best + 1]
        return None  # the tracker holds the best plan priced
