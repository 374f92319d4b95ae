"""The plan space as integer vectors, for black-box searchers (random, Nevergrad, Bayesian).

One vector per plan: per (layer, expert) a memory-menu index and a replica count - 1; per layer
a method index and a pipeline-degree index. Experts are not grouped here: grouping is a
structural choice left to solvers that reason about it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cost_models.lambda_model import METHODS
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem

PIPELINE_DEGREES = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)


@dataclass(frozen=True, eq=False)
class PlanSpace:
    """Integer box [0, upper) per dimension; ``decode`` turns rows into PlanArrays."""

    problem: DeploymentProblem
    memory_options: np.ndarray
    method_options: np.ndarray  # indices into METHODS allowed by the problem
    pipeline_degrees: np.ndarray

    @classmethod
    def of(cls, problem: DeploymentProblem) -> PlanSpace:
        return cls(
            problem,
            np.asarray(problem.memory_options, dtype=float),
            np.asarray([METHODS.index(m) for m in problem.methods]),
            np.asarray(PIPELINE_DEGREES, dtype=float),
        )

    @property
    def cells(self) -> int:
        return self.problem.layers * self.problem.experts

    @property
    def dims(self) -> int:
        return 2 * self.cells + 2 * self.problem.layers

    @property
    def upper(self) -> np.ndarray:
        """Exclusive upper bound of each dimension (the number of choices)."""
        L = self.problem.layers
        return np.concatenate([
            np.full(self.cells, len(self.memory_options)),
            np.full(self.cells, self.problem.max_replicas),
            np.full(L, len(self.method_options)),
            np.full(L, len(self.pipeline_degrees)),
        ]).astype(np.int64)

    def size(self) -> float:
        """How many distinct plans, as a float (inf past 1e308: spaces grow fast)."""
        return math.inf if self.log10_size() > 308 else float(math.prod(int(u) for u in self.upper))

    def log10_size(self) -> float:
        return float(np.log10(self.upper.astype(float)).sum())

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, self.upper, size=(n, self.dims))

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x).astype(np.int64), 0, self.upper - 1)

    def decode(self, x: np.ndarray) -> PlanArrays:
        x = self.clip(np.atleast_2d(x))
        n, L, E, cells = len(x), self.problem.layers, self.problem.experts, self.cells
        return PlanArrays(
            memory_mb=self.memory_options[x[:, :cells]].reshape(n, L, E),
            replicas=(x[:, cells : 2 * cells] + 1).reshape(n, L, E),
            method=self.method_options[x[:, 2 * cells : 2 * cells + L]],
            pipeline_degree=self.pipeline_degrees[x[:, 2 * cells + L :]],
        )

    def encode(self, arrays: PlanArrays) -> np.ndarray:
        """The nearest vectors for ungrouped plans (memory snapped to the menu)."""
        n = arrays.size
        mem = np.abs(arrays.memory_mb[..., None] - self.memory_options).argmin(axis=-1)
        rep = np.clip(arrays.replicas - 1, 0, self.problem.max_replicas - 1)
        meth = np.abs(arrays.method[..., None] - self.method_options).argmin(axis=-1)
        beta = np.abs(
            np.log(arrays.pipeline_degree[..., None]) - np.log(self.pipeline_degrees)
        ).argmin(axis=-1)
        return np.concatenate(
            [mem.reshape(n, -1), rep.reshape(n, -1), meth.reshape(n, -1), beta.reshape(n, -1)],
            axis=1,
        ).astype(np.int64)
