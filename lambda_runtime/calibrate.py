"""Measure the cost model's constants on a backend, fit them, and write a profile.

What a plan's prediction needs, each measured the way a run meets it (through the network model
on the local backend) and fitted by least squares (scipy), each with its residuals:

- per-token expert compute at several memory sizes and token counts, timed inside the function
  under its vCPU share: ``compute = tokens * FLOPs / (rate * v_eff(memory))`` gives
  ``flops_per_second_per_vcpu`` and ``multi_vcpu_efficiency``;
- object-storage transfers against object size, timed inside the function (the weights, the
  input, the output): ``time = Tdl + bytes / Bs`` gives ``storage_delay_s`` and
  ``storage_bandwidth_bytes_per_s``;
- invoke payloads against size, request (before the handler) and response (inside the billed
  duration): ``function_bandwidth_bytes_per_s``;
- warm start (the unbilled time from invoke to handler), cold start (init), the runtime's
  resident memory; and, with a model whose non-MoE step runs on the coordinator, that step's
  effective compute rate (``nonmoe_flops_per_second``).

Names match ``cost_models/data/constants.toml``; problems load the profile with ``--profile`` or
``cost_model.profile``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lambda_runtime.codec import array_to_bytes, encode_tensor
from lambda_runtime.deploy import deploy_plan, teardown
from lambda_runtime.local.limits import vcpu_share
from lambda_runtime.model import SeededMoE

SCHEMA = "moeopt.profile/1"


@dataclass(frozen=True)
class Fit:
    """One fitted constant and how well the model explains its measurements."""

    value: float
    points: int
    rms_relative_residual: float
    max_relative_residual: float

    def to_dict(self) -> dict[str, float]:
        return {
            "value": self.value,
            "points": self.points,
            "rms_relative_residual": self.rms_relative_residual,
            "max_relative_residual": self.max_relative_residual,
        }


def _plan(memory_mb: int) -> dict[str, Any]:
    return {
        "schema": "moeopt.plan/1",
        "problem": {"name": "calibrate", "fingerprint": ""},
        "layers": [
            {
                "layer": 0,
                "method": "storage",
                "pipeline_degree": 1,
                "functions": [{"experts": [0], "memory_mb": memory_mb, "replicas": 1}],
            }
        ],
    }


def _invoke(
    lam: Any, name: str, event: dict[str, Any]
) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """(client wall time, response body, REPORT fields); raises on a function error."""
    from lambda_runtime.coordinator import parse_report

    t = time.perf_counter()
    resp = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), LogType="Tail")
    body = json.loads(resp["Payload"].read())
    wall = time.perf_counter() - t
    if resp.get("FunctionError"):
        raise RuntimeError(f"{name}: {body.get('errorType')}: {body.get('errorMessage')}")
    return wall, body, parse_report(resp.get("LogResult"))


def _residuals(measured: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    rel = (predicted - measured) / np.maximum(measured, 1e-12)
    return float(np.sqrt(np.mean(rel**2))), float(np.max(np.abs(rel)))


def fit_transfer(nbytes: np.ndarray, seconds: np.ndarray) -> tuple[Fit, Fit]:
    """``seconds = delay + nbytes / bandwidth``, least squares on relative error (small
    requests weigh as much as large ones): (delay, bandwidth)."""
    from scipy.optimize import least_squares

    nbytes, seconds = np.asarray(nbytes, float), np.asarray(seconds, float)

    def resid(p: np.ndarray) -> np.ndarray:
        return (p[0] + nbytes * p[1] - seconds) / seconds

    p = least_squares(resid, x0=[0.01, 1e-8], bounds=([0, 1e-12], [10, 1e-3])).x
    rms, worst = _residuals(seconds, p[0] + nbytes * p[1])
    n = len(seconds)
    return Fit(float(p[0]), n, rms, worst), Fit(float(1.0 / p[1]), n, rms, worst)


def fit_compute(
    tokens: np.ndarray, vcpus: np.ndarray, seconds: np.ndarray, flops_per_token: float
) -> tuple[Fit, Fit]:
    """``seconds = tokens * flops / (rate * (min(v,1) + eff * max(v-1,0)))``: (rate, eff)."""
    from scipy.optimize import least_squares

    tokens, vcpus, seconds = (np.asarray(a, float) for a in (tokens, vcpus, seconds))
    extra = np.maximum(vcpus - 1.0, 0.0)

    def model(p: np.ndarray) -> np.ndarray:
        return tokens * flops_per_token / (p[0] * 1e9 * (np.minimum(vcpus, 1.0) + p[1] * extra))

    p = least_squares(
        lambda p: (model(p) - seconds) / seconds, x0=[20.0, 0.8], bounds=([1e-3, 0.0], [1e4, 1.0])
    ).x
    rms, worst = _residuals(seconds, model(p))
    n = len(seconds)
    return Fit(float(p[0]) * 1e9, n, rms, worst), Fit(float(p[1]) if extra.any() else 1.0, n, rms, worst)


def fit_rate(nbytes: np.ndarray, seconds: np.ndarray) -> Fit:
    """``seconds = nbytes / bandwidth`` (no intercept): bandwidth."""
    nbytes, seconds = np.asarray(nbytes, float), np.asarray(seconds, float)
    slope = float(np.sum(nbytes * seconds / seconds**2) / np.sum(nbytes**2 / seconds**2))
    rms, worst = _residuals(seconds, nbytes * slope)
    return Fit(1.0 / slope, len(seconds), rms, worst)


def machine_key() -> dict[str, Any]:
    """What a calibration was measured on: a cached profile is reused only on the same."""
    import os

    import torch

    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "cpu": cpu or platform.processor(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "kernel": platform.release(),
    }


def calibrate(
    lambda_client: Any,
    s3_client: Any,
    code: dict[str, Any],
    bucket: str,
    memory_sizes: tuple[int, ...] = (442, 884, 1769, 3008),
    hidden: int = 2048,
    ffn: int = 256,
    tokens: tuple[int, ...] = (256, 1024, 2560),
    repeats: int = 3,
    nonmoe: Any = None,
) -> dict[str, Any]:
    """Run the measurements and fit; returns the profile (constants, fits, raw measurements).

    ``nonmoe`` (optional): ``(callable(tokens) -> seconds of one non-MoE step on the
    coordinator, FLOPs per token of that step)`` to fit ``nonmoe_flops_per_second``."""
    moe = SeededMoE(layers=1, experts=1, hidden=hidden, ffn=ffn, top_k=1, seed=0)
    export = moe.export()
    flops_per_token = 4.0 * hidden * ffn
    weight_bytes = len(_npz(export))
    token_bytes = hidden * 4
    if not _bucket_exists(s3_client, bucket):
        s3_client.create_bucket(Bucket=bucket)
    inputs = {n: array_to_bytes(moe.tokens(n, seed=n)) for n in tokens}
    for n, body in inputs.items():
        s3_client.put_object(Bucket=bucket, Key=f"calibrate/in-{n}.npy", Body=body)
    compute, transfers, cold, overhead_mb, rows = [], [], [], [], []
    warm_walls: list[float] = []
    payload_req: list[tuple[int, float]] = []
    payload_resp: list[tuple[int, float]] = []
    for mem in memory_sizes:
        d = deploy_plan(_plan(mem), export, lambda_client, s3_client, bucket, code,
                        prefix=f"calibrate-{mem}", timeout_s=300, create_bucket=False)
        name = d.layers[0].functions[0].name
        try:
            empty = {"method": "direct", "tokens": encode_tensor(moe.tokens(0)), "segments": []}
            _, _, rep = _invoke(lambda_client, name, empty)  # a cold start
            if rep.get("init_ms") is not None:
                cold.append(rep["init_ms"] / 1000.0)
            overhead_mb.append(rep.get("max_memory_mb", 0) - weight_bytes / 2**20)
            for n in tokens:
                for i in range(repeats):
                    event = {
                        "method": "storage", "bucket": bucket, "weights_fetch": "per_invocation",
                        "minibatches": [{"key": f"calibrate/in-{n}.npy", "segments": [[0, n]],
                                         "output_key": f"calibrate/out-{mem}-{n}-{i}.npy"}],
                    }
                    _, body, rep = _invoke(lambda_client, name, event)
                    t = body["timing"]
                    v = vcpu_share(mem)
                    compute.append((n, v, t["compute_s"]))
                    transfers += [
                        (weight_bytes, t["load_s"]),
                        (len(inputs[n]), t["download_s"]),
                        (len(inputs[n]), t["upload_s"]),
                    ]
                    rows.append({"memory_mb": mem, "tokens": n, **t,
                                 "duration_s": rep.get("duration_ms", 0) / 1000.0})
            if mem == _closest(memory_sizes, 1769):  # payloads and warm starts at one vCPU
                for _ in range(max(8, 3 * repeats)):
                    wall, body, rep = _invoke(lambda_client, name, empty)
                    warm_walls.append(wall - rep.get("duration_ms", 0) / 1000.0)
                limit = (6_291_456 - 1024) * 3 // 4 // token_bytes  # rows that fit one payload
                for n in sorted({16, limit // 4, limit // 2, limit}):
                    x = moe.tokens(n, seed=7)
                    event = {"method": "direct", "tokens": encode_tensor(x), "segments": [[0, n]],
                             "weights_fetch": "cached"}
                    size = len(json.dumps(event))
                    for _ in range(repeats):
                        wall, body, rep = _invoke(lambda_client, name, event)
                        duration = rep.get("duration_ms", 0) / 1000.0
                        handler = body["timing"]["handler_s"]
                        out = len(json.dumps({"outputs": body["outputs"]}))
                        payload_req.append((size, wall - duration))
                        payload_resp.append((out, max(duration - handler, 1e-6)))
        finally:
            teardown(d, lambda_client, s3_client)
    keys = [{"Key": f"calibrate/in-{n}.npy"} for n in tokens]
    s3_client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})

    n_tok, vcpu, secs = (np.array(col, float) for col in zip(*compute, strict=True))
    rate, eff = fit_compute(n_tok, vcpu, secs, flops_per_token)
    size, took = (np.array(col, float) for col in zip(*transfers, strict=True))
    delay, bandwidth = fit_transfer(size, took)
    warm = float(statistics.median(warm_walls)) if warm_walls else None
    fits: dict[str, Fit] = {
        "flops_per_second_per_vcpu": rate,
        "multi_vcpu_efficiency": eff,
        "storage_delay_s": delay,
        "storage_bandwidth_bytes_per_s": bandwidth,
    }
    if payload_req and warm is not None:
        req = [(b, max(t - warm, 1e-6)) for b, t in payload_req]
        both = np.array(req + payload_resp, float)
        fits["function_bandwidth_bytes_per_s"] = fit_rate(both[:, 0], both[:, 1])
    constants: dict[str, float] = {k: f.value for k, f in fits.items()}
    if warm is not None:
        constants["warm_start_s"] = warm
    if cold:
        constants["cold_start_s"] = float(statistics.median(cold))
    if overhead_mb:
        constants["runtime_overhead_mb"] = float(max(overhead_mb))
    if nonmoe is not None:
        step, step_flops = nonmoe
        samples = [(n, step(n)) for n in tokens for _ in range(repeats)]
        arr = np.array(samples, float)
        fits["nonmoe_flops_per_second"] = fit_rate(arr[:, 0] * step_flops, arr[:, 1])
        constants["nonmoe_flops_per_second"] = fits["nonmoe_flops_per_second"].value
    return {
        "schema": SCHEMA,
        "constants": constants,
        "fits": {k: f.to_dict() for k, f in fits.items()},
        "measured_on": machine_key(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "measurements": {
            "expert": {"hidden_size": hidden, "expert_ffn_size": ffn,
                       "flops_per_token": flops_per_token, "weight_bytes": weight_bytes},
            "invocations": rows,
            "warm_start_samples_s": warm_walls,
            "cold_start_samples_s": cold,
            "payload_request": payload_req,
            "payload_response": payload_resp,
        },
    }


def _closest(values: tuple[int, ...], target: int) -> int:
    return min(values, key=lambda v: abs(v - target))


def _npz(export: Any) -> bytes:
    from lambda_runtime.codec import arrays_to_npz

    return arrays_to_npz(export.experts[0][0].arrays())


def _bucket_exists(s3: Any, bucket: str) -> bool:
    return bucket in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
