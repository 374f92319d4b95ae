"""Shared fixtures: a tiny problem whose every number can be computed by hand."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import settings

from moeopt.problem import DeploymentProblem, problem_from_dict

# Speed is measured in benchmarks, not asserted in tests: a property that takes 300 ms on a
# loaded 2-core machine is not a failure (hypothesis's default 200 ms deadline made it one).
settings.register_profile("moeopt", deadline=None)
settings.load_profile("moeopt")

# Round numbers so a test can price a plan on paper.
TINY_CONSTANTS = {
    "storage_bandwidth_bytes_per_s": 1_000_000.0,
    "storage_delay_s": 0.01,
    "function_bandwidth_bytes_per_s": 2_000_000.0,
    "warm_start_s": 0.1,
    "flops_per_second_per_vcpu": 1_000_000_000.0,
    "runtime_overhead_mb": 100.0,
    "lambda_payload_encoding_overhead": 1.0,
    "lambda_payload_envelope_bytes": 0.0,
    # data-handling CPU off: the hand computations count wire time only (its own test has it)
    "storage_cpu_s_per_byte": 0.0,
    "payload_cpu_s_per_byte": 0.0,
    "nonmoe_payload_cpu_s_per_byte": 0.0,
}

TINY_SPEC: dict[str, Any] = {
    "name": "tiny",
    "model": {
        "moe_layers": 2,
        "experts_per_layer": 2,
        "top_k": 1,
        "hidden_size": 100,
        "expert_ffn_size": 1000,
        "dtype": "float32",
        "sequence_length": 10,
        "nonmoe_params_per_layer": 0,
        "embedding_params": 0,
    },
    "workload": {"tokens_per_batch": 1000},
    "slo": {"time_limit_s": 100.0},
    "popularity": {"source": "loads", "loads": [[[600, 400], [1000, 0]], [[500, 500], [700, 300]]]},
    "deployment": {"memory_menu": [1769, 3538], "max_replicas": 4},
    "cost_model": {"constants": TINY_CONSTANTS},
}


def tiny_spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(TINY_SPEC)
    for key, value in changes.items():
        spec[key] = value
    return spec


@pytest.fixture
def tiny() -> DeploymentProblem:
    return problem_from_dict(tiny_spec(), "tiny.json")
