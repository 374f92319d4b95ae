"""Faults: raising, timing out, throttled and over-size invocations are retried or reported."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lambda_runtime.coordinator import Coordinator, RetryPolicy
from lambda_runtime.model import SeededMoE
from tests.runtime.conftest import fn, make_plan, one_layer

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture(scope="module")
def small_moe() -> SeededMoE:
    return SeededMoE(layers=1, experts=4, hidden=32, ffn=64, top_k=1, seed=11)


def faults(**spec) -> dict[str, str]:
    return {"MOEOPT_FAULTS": json.dumps(spec)}


def test_function_that_raises_once_is_retried(deploy, lambda_client, s3_client, small_moe):
    plan = make_plan([one_layer("direct", [fn([0, 1]), fn([2, 3])])])
    d = deploy(plan, small_moe, extra_env={(0, 0): faults(raise_on_attempts=[1])})
    x = small_moe.tokens(40)
    with Coordinator(d, small_moe.export(), lambda_client, s3_client, retry=FAST_RETRY) as coord:
        r = coord.forward(x)
    assert r.ok
    np.testing.assert_allclose(r.output, small_moe.forward(x), atol=1e-5, rtol=0)
    errors = [i for i in r.invocations if i.error]
    assert len(errors) == 1 and "injected fault on attempt 1" in errors[0].error
    assert errors[0].billed_ms >= 1  # a failed invocation is billed too
    assert (r.served[0] == 1).all()


def test_function_that_always_raises_is_reported(deploy, lambda_client, s3_client, small_moe):
    plan = make_plan([one_layer("storage", [fn([0, 1, 2]), fn([3])])])
    d = deploy(plan, small_moe, extra_env={(0, 1): faults(raise_on_attempts="all")})
    x = small_moe.tokens(40)
    with Coordinator(d, small_moe.export(), lambda_client, s3_client, retry=FAST_RETRY) as coord:
        r = coord.forward(x)
    assert not r.ok and r.output is None
    (failure,) = r.failures
    assert failure.function == d.layers[0].functions[1].name
    assert failure.attempts == FAST_RETRY.max_attempts
    assert "RuntimeError" in failure.error or "injected fault" in failure.error
    # the healthy function's tokens were combined once, the failed function's not at all
    served = r.served[0][:, 0]
    experts = small_moe.export().gates[0]
    assert served.sum() == len(x) - failure.tokens
    assert set(np.unique(served)) <= {0, 1}
    assert experts.shape == (4, 32)


def test_timeout_kills_worker_and_retry_succeeds(deploy, lambda_client, s3_client, small_moe):
    plan = make_plan([one_layer("pipelined_storage", [fn([0, 1, 2, 3])], beta=7)])
    d = deploy(
        plan, small_moe, timeout_s=1, extra_env={(0, 0): faults(sleep_on_attempts=[1], sleep_s=5)}
    )
    x = small_moe.tokens(30)
    with Coordinator(d, small_moe.export(), lambda_client, s3_client, retry=FAST_RETRY) as coord:
        r = coord.forward(x)
    assert r.ok
    first = r.invocations[0]
    assert first.attempt == 1 and "Task timed out after 1.00 seconds" in first.error
    assert 1000 <= first.duration_ms < 2500
    assert r.invocations[1].cold  # the timed-out environment was discarded
    np.testing.assert_allclose(r.output, small_moe.forward(x), atol=1e-5, rtol=0)


def test_outputs_written_by_a_failed_attempt_are_not_counted(
    deploy, lambda_client, s3_client, small_moe
):
    plan = make_plan([one_layer("pipelined_storage", [fn([0, 1]), fn([2, 3], replicas=2)], beta=3)])
    d = deploy(plan, small_moe, extra_env={(0, 1): faults(raise_after_on_attempts=[1])})
    x = small_moe.tokens(50)
    with Coordinator(d, small_moe.export(), lambda_client, s3_client, retry=FAST_RETRY) as coord:
        r = coord.forward(x)
    assert r.ok and r.retries >= 1
    assert (r.served[0] == 1).all()
    np.testing.assert_allclose(r.output, small_moe.forward(x), atol=1e-5, rtol=0)


def test_throttled_invocations_are_retried(deploy, lambda_client, s3_client, small_moe):
    plan = make_plan([one_layer("direct", [fn([0, 1, 2, 3], replicas=3)])])
    d = deploy(plan, small_moe, extra_env={(0, 0): faults(sleep_on_attempts=[1], sleep_s=0.6)})
    name = d.layers[0].functions[0].name
    warm = {
        "method": "direct",
        "attempt": 0,
        "tokens": {"dtype": "float32", "shape": [0, 32], "data": ""},
        "segments": [],
    }
    assert "FunctionError" not in lambda_client.invoke(FunctionName=name, Payload=json.dumps(warm))
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    x = small_moe.tokens(30)
    retry = RetryPolicy(max_attempts=12, base_delay_s=0.1, max_delay_s=0.8)
    with Coordinator(d, small_moe.export(), lambda_client, s3_client, retry=retry) as coord:
        r = coord.forward(x)
    assert r.ok, r.failures
    throttled = [
        i for i in r.invocations if i.error and i.error.startswith("TooManyRequestsException")
    ]
    assert throttled, [i.error for i in r.invocations]
    assert all(i.billed_ms == 0 for i in throttled)  # a throttled request never ran
    assert (r.served[0] == 1).all()
    np.testing.assert_allclose(r.output, small_moe.forward(x), atol=1e-5, rtol=0)


def test_throttle_is_botocores_modeled_exception(deploy, lambda_client, small_moe):
    plan = make_plan([one_layer("direct", [fn([0, 1, 2, 3])])])
    d = deploy(plan, small_moe, extra_env={(0, 0): faults(sleep_on_attempts="all", sleep_s=0.8)})
    name = d.layers[0].functions[0].name
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    event = json.dumps(
        {
            "method": "direct",
            "tokens": {"dtype": "float32", "shape": [0, 32], "data": ""},
            "segments": [],
        }
    )

    def call(_: int) -> str:
        try:
            lambda_client.invoke(FunctionName=name, Payload=event)
            return "ok"
        except lambda_client.exceptions.TooManyRequestsException as exc:
            assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            return exc.response.get("Reason", "throttled")

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(call, range(3)))
    assert outcomes.count("ok") >= 1
    assert "ReservedFunctionConcurrentInvocationLimitExceeded" in outcomes


def test_payload_over_6mb_is_refused_with_413(deploy, lambda_client, s3_client):
    moe = SeededMoE(layers=1, experts=2, hidden=32, ffn=64, top_k=1, seed=5)
    d = deploy(make_plan([one_layer("direct", [fn([0, 1])])]), moe)
    name = d.layers[0].functions[0].name
    big = json.dumps({"pad": "x" * 6_291_456})
    # Lambda answers 413 with error code RequestEntityTooLargeException; botocore's model has no
    # class of that name (its 413 shapes are RequestTooLargeException and
    # SerializedRequestEntityTooLargeException), so it raises a ClientError carrying the code.
    with pytest.raises(lambda_client.exceptions.ClientError) as info:
        lambda_client.invoke(FunctionName=name, Payload=big)
    err = info.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert err["Error"]["Code"] == "RequestEntityTooLargeException"
    assert "6291456 bytes" in err["Error"]["Message"]
    # through the coordinator: reported at once (a retry cannot shrink the payload)
    x = moe.tokens(40_000)  # 40,000 x 32 float32, base64: about 6.8 MB
    with Coordinator(d, moe.export(), lambda_client, s3_client, retry=FAST_RETRY) as coord:
        r = coord.forward(x)
    assert not r.ok
    (failure,) = r.failures
    assert failure.attempts == 1 and failure.error.startswith("RequestEntityTooLargeException")


def test_memory_limit_kills_the_worker(deploy, lambda_client, small_moe):
    plan = make_plan([one_layer("direct", [fn([0, 1, 2, 3], memory_mb=128)])])
    d = deploy(plan, small_moe)
    event = json.dumps(
        {
            "method": "direct",
            "tokens": {"dtype": "float32", "shape": [0, 32], "data": ""},
            "segments": [],
        }
    )
    resp = lambda_client.invoke(FunctionName=d.layers[0].functions[0].name, Payload=event)
    assert resp["FunctionError"] == "Unhandled"
    body = json.loads(resp["Payload"].read())
    assert body["errorType"] == "Runtime.OutOfMemory"  # python + torch do not fit in 128 MB
