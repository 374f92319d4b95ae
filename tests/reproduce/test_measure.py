"""The measured path: a plan run on the local backend, held to its prediction on this host."""

from __future__ import annotations

import numpy as np
import pytest

from moeopt.builtin_problems import builtin_problem
from moeopt.plan import DeploymentPlan
from moeopt.problem import problem_from_dict
from reproduce.measure import LocalLab, scaled_spec


def test_scaled_spec_keeps_experts_routing_and_menu():
    base = builtin_problem("bert-moe-4")
    spec = scaled_spec(base, layers=2, tokens=2560)
    p = problem_from_dict(spec, "test")
    assert (p.layers, p.experts, p.model.hidden_size, p.model.expert_ffn_size) == (2, 4, 768, 3072)
    assert p.popularity.loads.sum(axis=2).tolist() == [[2560, 2560]]
    shares = base.popularity.mean()[:2] / base.popularity.mean()[:2].sum(axis=1, keepdims=True)
    assert np.allclose(p.popularity.loads[0] / 2560, shares, atol=1 / 2560)
    assert p.memory_options == base.memory_options and p.model.nonmoe_params_per_layer == 0


def test_a_plan_is_measured_and_predicted_for_the_loads_it_served():
    base = builtin_problem("bert-moe-4")
    spec = scaled_spec(base, layers=1, tokens=256)
    spec["model"].update(hidden_size=64, expert_ffn_size=128)
    problem = problem_from_dict(spec, "test")
    plan = DeploymentPlan.uniform(problem, 768, 1, "storage")
    with LocalLab() as lab:
        m = lab.measure("tiny", plan, problem, lab.model(problem), requests=2, warmup=1)
    assert m.requests == 2 and m.tokens == 256
    for key in ("cost_gb_s", "latency_s"):
        assert m.measured[key] > 0 and m.predicted[key] > 0
        err = m.error["cost" if key == "cost_gb_s" else "latency"]
        assert err == pytest.approx(m.measured[key] / m.predicted[key] - 1)
    assert m.measured["retries"] == 0 and m.over_committed == 0
    assert lab.backend is None  # stopped on exit
