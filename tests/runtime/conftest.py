"""Fixtures: one local backend (Lambda API + moto S3 on 127.0.0.1) per test session, stopped after."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from lambda_runtime.deploy import Deployment, deploy_plan, teardown
from lambda_runtime.local import LocalBackend
from lambda_runtime.model import SeededMoE

BUCKET = "moeopt-runtime-tests"
_prefixes = itertools.count()


#: Set in the server's environment while the session backend starts: no function may see them.
HOST_MARKERS = {"MOEOPT_TEST_MARKER_SECRET": "marker-5f3a9c", "AWS_SECRET_ACCESS_KEY": "host-secret-7d1e"}


@pytest.fixture(scope="session")
def backend() -> Iterator[LocalBackend]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in HOST_MARKERS.items():
            mp.setenv(key, value)
        b = LocalBackend(concurrency_limit=64, max_environments=40).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def lambda_client(backend: LocalBackend) -> Any:
    return backend.lambda_client(read_timeout=120)


@pytest.fixture(scope="session")
def s3_client(backend: LocalBackend) -> Any:
    return backend.s3_client()


SKEWED = [[0.4, 0.3, 0.2, 0.1], [0.1, 0.1, 0.2, 0.6], [0.25, 0.25, 0.25, 0.25]]


@pytest.fixture(scope="session")
def tiny_moe() -> SeededMoE:
    """Gate biases fitted to skewed loads, so the biased gate path runs end to end too."""
    return SeededMoE(layers=3, experts=4, hidden=32, ffn=64, top_k=2, seed=7).match_loads(
        SKEWED, tokens=512
    )


def one_layer(method: str, functions: list[dict[str, Any]], beta: int = 4) -> dict[str, Any]:
    return {"method": method, "pipeline_degree": beta, "functions": functions}


def fn(experts: list[int], replicas: int = 1, memory_mb: int = 1769) -> dict[str, Any]:
    return {
        "experts": experts,
        "memory_mb": memory_mb,
        "replicas": replicas,
        "architecture": "x86_64",
    }


def make_plan(layers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schema": "moeopt.plan/1",
        "problem": {"name": "runtime-test", "fingerprint": "sha256:test"},
        "layers": [{"layer": i, **layer} for i, layer in enumerate(layers)],
    }


@pytest.fixture()
def deploy(backend: LocalBackend, lambda_client: Any, s3_client: Any) -> Iterator[Any]:
    """Deploy plans on the session backend under a fresh prefix; tear them down after the test."""
    made: list[Deployment] = []

    def _deploy(plan: dict[str, Any], moe: SeededMoE, **kwargs: Any) -> Deployment:
        d = deploy_plan(
            plan,
            moe.export(),
            lambda_client,
            s3_client,
            BUCKET,
            backend.code(),
            prefix=f"t{next(_prefixes)}",
            **kwargs,
        )
        made.append(d)
        return d

    yield _deploy
    for d in made:
        teardown(d, lambda_client, s3_client)
