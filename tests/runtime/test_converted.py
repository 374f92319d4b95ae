"""The real converted all-MiniLM-L6-v2 MoE served through the runtime, end to end."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from lambda_runtime.converted import TOLERANCE, ConvertedMiniLM, compatible, content_tokens
from lambda_runtime.coordinator import Coordinator
from tests.runtime.conftest import fn, make_plan, one_layer


@pytest.fixture(scope="module")
def minilm() -> ConvertedMiniLM:
    return ConvertedMiniLM(experts=8, top_k=1)


def test_content_tokens_fill_the_request():
    assert content_tokens(10_240) == 80 * 126  # 80 full windows of [CLS] + 126 + [SEP]
    assert content_tokens(256) == 252
    for n in (3, 7, 129, 130, 131, 500, 10_000):
        c = content_tokens(n)
        assert c + 2 * -(-c // 126) <= n
    with pytest.raises(ValueError, match="at least 3"):
        content_tokens(2)


def test_only_the_minilm_shape_is_compatible():
    assert compatible(6, 8, 384, 192) is None
    assert "hidden 384" in compatible(12, 4, 768, 3072)


def test_requests_route_like_the_shipped_measured_loads(minilm):
    """Request 0 is the text batch 0 of the default problem's loads was measured on."""
    loads = json.loads(
        resources.files("moeopt").joinpath("data/traces/minilm-moe-e8-top1-loads.json").read_text()
    )
    expected = np.asarray(loads["loads"][0])  # (layers, experts)
    ids, mask = minilm.windows(10_240, 0)
    assert int(mask.sum()) == 10_240
    _, routing = minilm.model(ids, mask, record=True)
    real = mask.bool()
    got = np.stack(
        [np.bincount(routing.experts[la][real].reshape(-1), minlength=8) for la in range(6)]
    )
    assert got.sum() == expected.sum()
    # same text, same conversion: equal up to float round-off moving a few tokens across CPUs
    assert np.abs(got - expected).sum() <= 0.01 * expected.sum()


def test_distributed_forward_of_the_real_model_equals_monolithic(
    minilm, deploy, lambda_client, s3_client
):
    assert minilm.export().combine == "sum"
    all8 = list(range(8))
    plan = make_plan(
        [
            one_layer("direct", [fn([0, 1, 2, 3]), fn([4, 5], replicas=2), fn([6, 7])]),
            one_layer("storage", [fn(all8, replicas=3)]),
            one_layer("pipelined_storage", [fn([0, 1]), fn([2, 3, 4, 5, 6, 7], replicas=2)], 64),
            one_layer("direct", [fn(all8)]),
            one_layer("storage", [fn([e]) for e in all8]),
            one_layer("direct", [fn(all8, replicas=2)]),
        ]
    )
    d = deploy(plan, minilm)
    req = minilm.request(300, 1)
    with Coordinator(d, minilm.export(), lambda_client, s3_client) as coord:
        r = coord.forward(req.forward_input, between=req.between)
    assert r.ok, r.failures
    assert r.output is not None and r.output.shape == (req.tokens, 384)
    expected = req.reference()
    np.testing.assert_allclose(r.output, expected, atol=TOLERANCE, rtol=0)
    assert np.abs(expected - req.first_inputs()).max() > 0.1  # six layers changed the states
    assert all((s == 1).all() for s in r.served)  # every token combined exactly once per layer
