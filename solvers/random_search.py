"""Random search over the plan space: the leaderboard's score-1 baseline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from moeopt.solver import AskTellSolver, Budget


class RandomSearchSolver(AskTellSolver):
    """Uniform samples of (memory, replicas) per expert and (method, beta) per layer.

    >>> from moeopt.problem import load_problem
    >>> RandomSearchSolver(seed=0).solve(load_problem("bert-moe-4"), Budget(evaluations=64)).evaluations
    64
    """

    name = "random"
    tags = frozenset({"black-box", "baseline", "objectives"})
    default_budget: ClassVar[Budget] = Budget(evaluations=5000, seconds=60.0)

    def _start(self, space: Any) -> None:
        self.space = space

    def _ask(self, n: int) -> np.ndarray:
        return self.space.sample(self.rng, n)

    def _tell(self, x: np.ndarray, score: np.ndarray, violation: np.ndarray) -> None:
        pass
