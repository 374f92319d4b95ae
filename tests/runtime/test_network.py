"""The network model of the local backend: every transfer takes at least the model's time."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_runtime.local import LocalBackend
from lambda_runtime.local.host import HostCpu
from lambda_runtime.local.network import COORDINATOR_KEY_PREFIX, Links, NetworkModel

# A slow network, so the model's time dominates loopback's and the test stays short.
MODEL = NetworkModel(storage_bandwidth_bytes_per_s=20e6, storage_delay_s=0.02,
                     function_bandwidth_bytes_per_s=10e6, warm_start_s=0.01)


@pytest.fixture(scope="module")
def shaped():
    with LocalBackend(network=MODEL, host_vcpus=None, concurrency_limit=8) as b:
        yield b


def test_storage_transfer_never_beats_the_model(shaped):
    s3 = shaped.s3_client()
    s3.create_bucket(Bucket="net-test")
    for size in (0, 1_000, 400_000, 2_000_000):
        body = bytes(size)
        t = time.perf_counter()
        s3.put_object(Bucket="net-test", Key=f"k{size}", Body=body)
        put = time.perf_counter() - t
        t = time.perf_counter()
        got = s3.get_object(Bucket="net-test", Key=f"k{size}")["Body"].read()
        get = time.perf_counter() - t
        assert len(got) == size
        floor = MODEL.storage_request_s(size)
        assert put >= floor and get >= floor, (size, put, get, floor)


def test_a_get_waits_for_its_object(shaped):
    import threading

    s3 = shaped.s3_client()
    s3.create_bucket(Bucket="net-wait")
    threading.Timer(0.3, lambda: s3.put_object(Bucket="net-wait", Key="late", Body=b"x" * 1000)).start()
    t = time.perf_counter()
    body = s3.get_object(Bucket="net-wait", Key="late")["Body"].read()
    assert body == b"x" * 1000
    # it lands at >= 0.3 + its own put, then the GET's own latency follows
    assert time.perf_counter() - t >= 0.3 + 2 * MODEL.storage_delay_s


def test_invoke_payload_and_start_take_the_model_time(shaped):
    from lambda_runtime.codec import encode_tensor
    from lambda_runtime.deploy import deploy_plan, teardown
    from lambda_runtime.model import SeededMoE

    moe = SeededMoE(1, 1, 64, 32)
    plan = {"layers": [{"layer": 0, "method": "direct", "pipeline_degree": 1,
                        "functions": [{"experts": [0], "memory_mb": 1769, "replicas": 1}]}]}
    lam, s3 = shaped.lambda_client(), shaped.s3_client()
    d = deploy_plan(plan, moe.export(), lam, s3, "net-invoke", shaped.code(), prefix="n")
    try:
        name = d.layers[0].functions[0].name
        x = moe.tokens(4000)
        payload = json.dumps({"method": "direct", "tokens": encode_tensor(x), "segments": [[0, 4000]]})
        lam.invoke(FunctionName=name, Payload=payload.encode())  # cold start first
        t = time.perf_counter()
        resp = lam.invoke(FunctionName=name, Payload=payload.encode())
        out = resp["Payload"].read()
        wall = time.perf_counter() - t
        assert wall >= MODEL.payload_s(len(payload)) + MODEL.warm_start_s + MODEL.payload_s(len(out))
    finally:
        teardown(d, lam, s3)


@settings(max_examples=200, deadline=None)  # a shared machine: no per-example deadline
@given(st.lists(st.tuples(st.sampled_from(["a", "b", COORDINATOR_KEY_PREFIX + "x"]),
                          st.sampled_from(["up", "down"]),
                          st.floats(0, 10), st.floats(0, 5)), max_size=30))
def test_links_never_overlap_one_functions_transfers(requests):
    """A function's transfers in one direction never overlap (they share its link); the
    coordinator's streams are independent; nothing ends before its own duration."""
    links = Links()
    spans: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for identity, direction, start, seconds in sorted(requests, key=lambda r: r[2]):
        end = links.reserve(identity, direction, start, seconds)
        assert end >= start + seconds - 1e-9
        spans.setdefault((identity, direction), []).append((end - seconds, end))
    for (identity, _), items in spans.items():
        if identity.startswith(COORDINATOR_KEY_PREFIX):
            continue
        items.sort(key=lambda span: span[1])  # a link's transfers end in the order they ran
        for (_, e1), (s2, _) in zip(items, items[1:], strict=False):
            assert s2 >= e1 - 1e-9


def test_host_admits_first_come_first_served_within_its_vcpus():
    import threading

    host = HostCpu(2.0)
    used, peak, order = [0.0], [0.0], []
    lock = threading.Lock()

    def job(i: int, vcpu: float) -> None:
        host.acquire(vcpu)
        with lock:
            used[0] += vcpu
            peak[0] = max(peak[0], used[0])
            order.append(i)
        time.sleep(0.02)
        with lock:
            used[0] -= vcpu
        host.release(vcpu)

    threads = []
    for i, v in enumerate([1.0, 1.0, 1.5, 0.5, 0.25, 3.0, 1.0]):
        threads.append(threading.Thread(target=job, args=(i, v)))
        threads[-1].start()
        time.sleep(0.002)  # arrive in order
    for t in threads:
        t.join()
    status = host.status()
    assert order == list(range(7))  # never overtaken
    assert status.over_committed == 1 and status.admitted == 7 and status.queued >= 3
    assert peak[0] <= 3.0  # over 2 only for the one job that alone asks for 3 vCPUs


def test_unlimited_host_never_queues():
    host = HostCpu(None)
    assert host.acquire(100.0) == (0.0, False)
    np.testing.assert_equal(host.status().queued, 0)
