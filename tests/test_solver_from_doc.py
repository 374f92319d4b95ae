"""A new solver written only from docs/solver-api.md, in at most 30 lines, passes the kit
without being installed or registered."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from cost_models.lambda_model import METHODS
from moeopt import Budget, PlanArrays, Solver
from moeopt.testing import SolverConformance


class LayerSweep(Solver):
    """Start fast, then per layer (in a seeded order) try every uniform (memory, replicas)."""

    name = "layer-sweep"
    default_budget = Budget(evaluations=20_000, seconds=30.0)

    def _solve(self, problem, tracker):
        L, E, G = problem.layers, problem.experts, problem.max_replicas
        menu = np.asarray(problem.memory_options, dtype=float)
        mem, rep = np.full((L, E), menu[-1]), np.full((L, E), G)
        method = np.full((1, L), METHODS.index(problem.methods[-1]))
        memory, replicas = np.meshgrid(menu, np.arange(1, G + 1))
        n = memory.size
        for layer in self.rng.permutation(L):
            m, r = np.repeat(mem[None], n, axis=0), np.repeat(rep[None], n, axis=0)
            m[:, layer], r[:, layer] = memory.reshape(n, 1), replicas.reshape(n, 1)
            plans = PlanArrays(m, r, np.repeat(method, n, axis=0), np.full((n, L), 256.0))
            _, score, violation = tracker.evaluate(plans)
            best = int(np.lexsort((score, violation))[0])
            mem, rep = m[best], r[best]


def test_it_fits_in_30_lines():
    assert len(inspect.getsource(LayerSweep).splitlines()) <= 30


def test_it_finds_a_feasible_plan_of_bert_moe_4():
    from moeopt import load_problem

    result = LayerSweep(seed=0).solve(load_problem("bert-moe-4"))
    assert str(result.solution_status) == "feasible", result.message


class TestLayerSweep(SolverConformance):
    @pytest.fixture
    def solver(self):
        return LayerSweep
