"""End to end on the local backend: one plan mixing all three methods, replicas and a group."""

from __future__ import annotations

import numpy as np
import pytest

from lambda_runtime.coordinator import Coordinator
from tests.runtime.conftest import fn, make_plan, one_layer

ATOL = 1e-5  # float32 sums in a different order than the monolithic forward

MIXED = make_plan(
    [
        one_layer("direct", [fn([0, 1]), fn([2], replicas=2), fn([3])]),
        one_layer("storage", [fn([0]), fn([1, 2, 3], replicas=2)]),
        one_layer("pipelined_storage", [fn([0, 1, 2, 3], replicas=2)], beta=5),
    ]
)


@pytest.fixture(scope="module")
def mixed_run(backend, lambda_client, s3_client, tiny_moe):
    from lambda_runtime.deploy import deploy_plan, teardown
    from tests.runtime.conftest import BUCKET

    d = deploy_plan(
        MIXED, tiny_moe.export(), lambda_client, s3_client, BUCKET, backend.code(), prefix="mixed"
    )
    x = tiny_moe.tokens(48, seed=3)
    with Coordinator(d, tiny_moe.export(), lambda_client, s3_client) as coord:
        results = [coord.forward(x), coord.forward(x)]
    yield x, results, d
    teardown(d, lambda_client, s3_client)


def test_distributed_forward_equals_monolithic(mixed_run, tiny_moe):
    x, results, _ = mixed_run
    expected = tiny_moe.forward(x)
    for r in results:
        assert r.ok, r.failures
        assert r.output is not None
        np.testing.assert_allclose(r.output, expected, atol=ATOL, rtol=0)
    # the MoE layers changed the states: equality is not trivial
    assert np.abs(expected - x).max() > 0.1


def test_every_token_combined_exactly_once(mixed_run, tiny_moe):
    x, results, _ = mixed_run
    for r in results:
        assert len(r.served) == 3
        for counts in r.served:
            assert counts.shape == (len(x), tiny_moe.top_k)
            assert (counts == 1).all()


def test_replicas_and_group_invoked_as_planned(mixed_run):
    _, results, d = mixed_run
    first = results[0]
    by_fn: dict[str, set[int]] = {}
    for rep in first.invocations:
        by_fn.setdefault(rep.function, set()).add(rep.replica)
    names = {f.name: f for f in d.functions}
    for name, replicas in by_fn.items():
        assert len(replicas) <= names[name].replicas
    # the 2-replica functions really ran as 2 shards (enough tokens for both)
    assert by_fn[d.layers[0].functions[1].name] == {0, 1}
    assert by_fn[d.layers[2].functions[0].name] == {0, 1}


def test_billing_reports_present_and_cold_then_warm(mixed_run):
    _, results, _ = mixed_run
    first, second = results
    for r in results:
        for rep in r.invocations:
            assert rep.error is None
            assert rep.request_id and rep.billed_ms >= 1 and rep.memory_mb == 1769
            assert rep.billed_ms >= rep.duration_ms
            assert rep.max_memory_mb > 50  # python + torch are resident
    assert first.cold_starts >= 1
    assert second.cold_starts == 0  # warm environments were reused
    assert first.billed_gb_s > second.billed_gb_s > 0
