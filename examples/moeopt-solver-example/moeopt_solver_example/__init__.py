"""A complete third-party solver for moeopt, in one file.

Coordinate descent: start from the LambdaML-style plan, then sweep the experts; for each, try
every memory size and replica count at once (one vectorized evaluation) and keep the best.
"""

from __future__ import annotations

import numpy as np

from moeopt.plan import PlanArrays
from moeopt.solver import Outcome, Solver


class CoordinateDescent(Solver):
    name = "coordinate-descent"
    tags = frozenset({"local-search", "plugin"})
    default_options = {"sweeps": 3}

    def _solve(self, problem, tracker) -> Outcome | None:
        menu = np.asarray(problem.memory_options, dtype=float)
        L, E, G = problem.layers, problem.experts, problem.max_replicas
        memory = np.full((1, L, E), menu[len(menu) // 2])
        replicas = np.ones((1, L, E), dtype=int)
        method = np.full((1, L), 1)  # storage
        beta = np.ones((1, L))
        for _ in range(self.options["sweeps"]):
            for layer, e in self.rng.permutation([(x, y) for x in range(L) for y in range(E)]):
                m = np.repeat(memory, len(menu) * G, axis=0)
                r = np.repeat(replicas, len(menu) * G, axis=0)
                m[:, layer, e] = np.repeat(menu, G)
                r[:, layer, e] = np.tile(np.arange(1, G + 1), len(menu))
                n = len(m)
                _, score, violation = tracker.evaluate(
                    PlanArrays(m, r, np.repeat(method, n, 0), np.repeat(beta, n, 0))
                )
                best = int(np.lexsort((score, violation))[0])
                memory, replicas = m[best : best + 1], r[best : best + 1]
        return None
