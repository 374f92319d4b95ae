"""The plan space as integer vectors, for black-box searchers (random, Nevergrad, Bayesian, Optuna).

One vector per plan: per (layer, expert) a memory-menu index and a replica count - 1; per layer
a method index and a pipeline-degree index. Experts are not grouped here: grouping is a
structural choice left to solvers that reason about it. :func:`structured_design` lists the
load-aware and uniform plans a search should see first (the feasible region is narrow).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cost_models.lambda_model import METHODS, PIPELINED_STORAGE
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

    def canonical(self, x: np.ndarray) -> np.ndarray:
        """Clipped rows with the pipeline-degree index of every layer that is not pipelined set
        to 0 (what ``encode`` gives): such rows are the same plan, so de-duplicating canonical
        rows never prices one plan twice."""
        x = self.clip(np.atleast_2d(x))
        L, C = self.problem.layers, self.cells
        piped = self.method_options[x[:, 2 * C : 2 * C + L]] == PIPELINED_STORAGE
        x[:, 2 * C + L :] = np.where(piped, x[:, 2 * C + L :], 0)
        return x

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
        """The nearest vectors (memory snapped to the menu); an expert of a grouped function
        takes that function's memory and replicas."""
        n = arrays.size
        memory_mb, replicas = arrays.memory_mb, arrays.replicas
        if arrays.group is not None:
            memory_mb = np.take_along_axis(memory_mb, arrays.group, axis=2)
            replicas = np.take_along_axis(replicas, arrays.group, axis=2)
        mem = np.abs(memory_mb[..., None] - self.memory_options).argmin(axis=-1)
        rep = np.clip(replicas - 1, 0, self.problem.max_replicas - 1)
        meth = np.abs(arrays.method[..., None] - self.method_options).argmin(axis=-1)
        beta = np.abs(
            np.log(arrays.pipeline_degree[..., None]) - np.log(self.pipeline_degrees)
        ).argmin(axis=-1)
        return np.concatenate(
            [mem.reshape(n, -1), rep.reshape(n, -1), meth.reshape(n, -1), beta.reshape(n, -1)],
            axis=1,
        ).astype(np.int64)


def structured_design(space: PlanSpace, rng: np.random.Generator) -> np.ndarray:
    """Plans a search should see first: the feasible region can be too narrow to hit at random.

    Load-aware plans first (replicas = ceil(max load / cap) per expert for caps on a geometric
    grid), then uniform plans (one memory size and replica count everywhere), each at every
    memory size and method (pipelined at three degrees). Each group is shuffled by ``rng``.
    """
    p = space.problem
    C, L = space.cells, p.layers
    up = space.upper
    n_mem, n_rep, n_beta = int(up[0]), int(up[C]), int(up[-1])
    variants = []  # (method index, beta index)
    for a in range(int(up[2 * C])):
        is_piped = space.method_options[a] == PIPELINED_STORAGE
        betas = sorted({n_beta // 4, n_beta // 2, (3 * n_beta) // 4}) if is_piped else [n_beta // 2]
        variants += [(a, b) for b in betas]
    peak = p.popularity.loads.max(axis=0).reshape(C).astype(float)  # heaviest batch per expert
    top = max(peak.max(), 1.0)
    caps = np.unique(np.ceil(top / np.geomspace(1, 4 * n_rep, 10)))
    # Rows are keyed by (memory, method, beta, replica vector id): equal rows have equal keys,
    # so duplicates are dropped on the small keys (np.unique over full rows of 30,000 columns
    # took 4.5 s on deepseek-v3, most of an 8 s budget).
    rep_ids: dict[bytes, int] = {}
    rep_vectors: list[np.ndarray] = []

    def rep_id(reps: np.ndarray) -> int:
        reps = reps.astype(np.int64)
        key = reps.tobytes()
        if key not in rep_ids:
            rep_ids[key] = len(rep_vectors)
            rep_vectors.append(reps)
        return rep_ids[key]

    load_aware_reps = [rep_id(np.clip(np.ceil(peak / cap), 1, n_rep) - 1) for cap in caps]
    uniform_reps = [rep_id(np.full(C, g)) for g in range(n_rep)]
    load_aware, uniform = [], []
    for mem in range(n_mem):
        for a, b in variants:
            load_aware += [(mem, a, b, r) for r in load_aware_reps]
            uniform += [(mem, a, b, r) for r in uniform_reps]
    groups = [np.asarray(g, dtype=np.int64) for g in (load_aware, uniform)]
    keys = np.concatenate([g[rng.permutation(len(g))] for g in groups])
    _, first = np.unique(keys, axis=0, return_index=True)
    rows = [
        np.concatenate([np.full(C, mem), rep_vectors[r], np.full(L, a), np.full(L, b)])
        for mem, a, b, r in keys[np.sort(first)]
    ]
    return space.clip(np.asarray(rows, dtype=np.int64).reshape(len(rows), -1))
