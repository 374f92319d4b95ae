"""The expert handler in-process: payload codec, local weights, pipelined storage, bad events."""

from __future__ import annotations

import json

import boto3
import numpy as np
import pytest
import torch
from moto import mock_aws

from lambda_runtime import handler as h
from lambda_runtime.codec import (
    PayloadError,
    array_from_bytes,
    array_to_bytes,
    arrays_to_npz,
    decode_tensor,
    encode_tensor,
)
from lambda_runtime.deploy import PlanError, parse_plan
from lambda_runtime.model import SeededMoE, expert_forward
from tests.runtime.conftest import fn, make_plan, one_layer


def reference(moe: SeededMoE, x: np.ndarray, segments: list[list[int]]) -> np.ndarray:
    out, start = [], 0
    for e, n in segments:
        w = {k: torch.from_numpy(v) for k, v in moe.export().experts[0][e].arrays().items()}
        out.append(expert_forward(torch.from_numpy(x[start : start + n]), w).numpy())
        start += n
    return np.concatenate(out)


@pytest.fixture()
def weights_dir(tmp_path, monkeypatch):
    moe = SeededMoE(layers=1, experts=3, hidden=16, ffn=24, top_k=1, seed=2)
    for e, w in enumerate(moe.export().experts[0]):
        (tmp_path / f"e{e}.npz").write_bytes(arrays_to_npz(w.arrays()))
    monkeypatch.setenv(
        "MOEOPT_WEIGHTS", json.dumps({str(e): f"file://{tmp_path}/e{e}.npz" for e in range(3)})
    )
    h._experts.clear()
    return moe


def test_codec_roundtrip_is_exact_and_refuses_bad_input():
    x = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    enc = encode_tensor(x)
    assert json.loads(json.dumps(enc)) == enc  # JSON-safe
    np.testing.assert_array_equal(decode_tensor(enc), x)
    np.testing.assert_array_equal(array_from_bytes(array_to_bytes(x)), x)
    with pytest.raises(PayloadError, match="shape"):
        decode_tensor({**enc, "shape": [5, 8]})
    with pytest.raises(PayloadError, match="dtype"):
        decode_tensor({**enc, "dtype": "object"})
    with pytest.raises(ValueError):  # pickled object arrays are refused
        import io

        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        array_from_bytes(buf.getvalue())


def test_direct_group_from_packaged_weights(weights_dir):
    moe = weights_dir
    x = np.random.default_rng(1).standard_normal((9, 16)).astype(np.float32)
    segments = [[0, 4], [2, 5]]
    out = h.handler({"method": "direct", "tokens": encode_tensor(x), "segments": segments}, None)
    np.testing.assert_allclose(
        decode_tensor(out["outputs"]), reference(moe, x, segments), atol=1e-6
    )
    assert out["tokens"] == 9 and out["timing"]["compute_s"] > 0


@pytest.mark.parametrize("method", ["storage", "pipelined_storage"])
def test_storage_methods_write_every_minibatch(weights_dir, monkeypatch, method):
    moe = weights_dir
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    x = np.random.default_rng(3).standard_normal((23, 16)).astype(np.float32)
    experts = np.array([0] * 10 + [1] * 6 + [2] * 7)
    with mock_aws():
        monkeypatch.setattr(h, "_s3_client", boto3.client("s3", region_name="us-east-1"))
        s3 = h._s3_client
        s3.create_bucket(Bucket="bkt")
        batches = []
        for k, lo in enumerate(range(0, 23, 4)):
            s3.put_object(Bucket="bkt", Key=f"in{k}", Body=array_to_bytes(x[lo : lo + 4]))
            vals, counts = np.unique(experts[lo : lo + 4], return_counts=True)
            batches.append(
                {
                    "key": f"in{k}",
                    "output_key": f"out{k}",
                    "segments": [[int(v), int(c)] for v, c in zip(vals, counts, strict=True)],
                }
            )
        out = h.handler({"method": method, "bucket": "bkt", "minibatches": batches}, None)
        got = np.concatenate(
            [
                array_from_bytes(s3.get_object(Bucket="bkt", Key=k)["Body"].read())
                for k in out["output_keys"]
            ]
        )
    assert out["tokens"] == 23 and len(out["output_keys"]) == 6
    np.testing.assert_allclose(got, reference(moe, x, [[0, 10], [1, 6], [2, 7]]), atol=1e-6)


def test_pipeline_error_propagates_without_hanging(weights_dir, monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with mock_aws():
        monkeypatch.setattr(h, "_s3_client", boto3.client("s3", region_name="us-east-1"))
        h._s3_client.create_bucket(Bucket="bkt")
        h._s3_client.put_object(
            Bucket="bkt", Key="in0", Body=array_to_bytes(np.zeros((2, 16), np.float32))
        )
        batches = [
            {"key": "in0", "output_key": "o0", "segments": [[0, 2]]},
            {"key": "missing", "output_key": "o1", "segments": [[0, 2]]},
        ]
        with pytest.raises(Exception, match="NoSuchKey|does not exist"):
            h.handler(
                {"method": "pipelined_storage", "bucket": "bkt", "minibatches": batches}, None
            )


def test_bad_events_are_clear(weights_dir):
    with pytest.raises(PayloadError, match="method.*allowed"):
        h.handler({"method": "carrier-pigeon"}, None)
    x = encode_tensor(np.zeros((3, 16), np.float32))
    with pytest.raises(PayloadError, match="counts sum to 2, tokens are 3"):
        h.handler({"method": "direct", "tokens": x, "segments": [[0, 2]]}, None)
    with pytest.raises(PayloadError, match="expert 7 not hosted"):
        h.handler({"method": "direct", "tokens": x, "segments": [[7, 3]]}, None)


def test_plan_errors_name_the_field():
    good = make_plan([one_layer("direct", [fn([0, 1])])])
    assert parse_plan(good, layers=1, experts=2)[0].functions[0].experts == (0, 1)
    with pytest.raises(PlanError, match=r"layers\[0\].method: 'fax'; allowed"):
        parse_plan(make_plan([one_layer("fax", [fn([0, 1])])]), 1, 2)
    with pytest.raises(PlanError, match="exactly once"):
        parse_plan(make_plan([one_layer("direct", [fn([0]), fn([0, 1])])]), 1, 2)
    with pytest.raises(PlanError, match="memory_mb"):
        parse_plan(make_plan([one_layer("direct", [fn([0, 1], memory_mb=64)])]), 1, 2)
    with pytest.raises(PlanError, match="one entry per MoE layer"):
        parse_plan(good, layers=2, experts=2)


def test_plan_object_from_the_core_is_accepted():
    core = pytest.importorskip("moeopt.plan")
    data = make_plan([one_layer("pipelined_storage", [fn([0]), fn([1], replicas=2)], beta=16)])
    plan = core.plan_from_dict(data, "test")
    (layer,) = parse_plan(plan, layers=1, experts=2)
    assert layer.method == "pipelined_storage" and layer.pipeline_degree == 16
    assert [f.replicas for f in layer.functions] == [1, 2]


def test_match_loads_routes_like_the_target_shares():
    from lambda_runtime.model import gate_topk

    shares = np.array([[0.6, 0.25, 0.1, 0.05], [0.05, 0.05, 0.3, 0.6]])
    moe = SeededMoE(layers=2, experts=4, hidden=32, ffn=64, top_k=1, seed=3)
    x = moe.tokens(4000, seed=5)
    before, _ = gate_topk(x, moe.export().gates[0], 1)
    moe.match_loads(shares, tokens=2000)
    ex = moe.export()
    after, _ = gate_topk(x, ex.gates[0], 1, ex.gate_bias(0))
    got = np.bincount(after[:, 0], minlength=4) / len(x)
    np.testing.assert_allclose(got, shares[0], atol=0.05)
    assert np.abs(np.bincount(before[:, 0], minlength=4) / len(x) - shares[0]).max() > 0.1
    with pytest.raises(ValueError, match="shares: shape"):
        moe.match_loads(np.ones((3, 4)))


def test_pipelined_function_waits_for_the_gate_upload(weights_dir, monkeypatch):
    import threading

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    x = np.ones((4, 16), np.float32)
    with mock_aws():
        monkeypatch.setattr(h, "_s3_client", boto3.client("s3", region_name="us-east-1"))
        s3 = h._s3_client
        s3.create_bucket(Bucket="bkt")
        s3.put_object(Bucket="bkt", Key="in0", Body=array_to_bytes(x[:2]))
        late = threading.Timer(
            0.3, lambda: s3.put_object(Bucket="bkt", Key="in1", Body=array_to_bytes(x[2:]))
        )
        batches = [
            {"key": "in0", "output_key": "o0", "segments": [[1, 2]]},
            {"key": "in1", "output_key": "o1", "segments": [[1, 2]]},
        ]
        event = {"method": "pipelined_storage", "bucket": "bkt", "minibatches": batches}
        with pytest.raises(Exception, match="NoSuchKey|does not exist"):
            h.handler(event, None)  # no waiting allowed: the second input is missing
        late.start()
        out = h.handler({**event, "input_wait_s": 10}, None)
        late.join()
    assert out["tokens"] == 4
