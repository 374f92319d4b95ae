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
    """(rms residual relative to the measurements' size, sqrt(sum r^2 / sum m^2); the largest
    relative residual among measurements of 50 ms or more, where a CFS period of 20 ms and
    loopback jitter no longer dominate)."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    rms = float(np.sqrt(np.sum((predicted - measured) ** 2) / max(np.sum(measured**2), 1e-24)))
    big = measured >= 0.05
    worst = float(np.max(np.abs(predicted - measured)[big] / measured[big])) if big.any() else rms
    return rms, worst


def _lsq(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on seconds (the long measurements weigh most: they are what
    a prediction's error is made of)."""
    from scipy.optimize import nnls

    return nnls(a, y)[0]


def fit_transfer(nbytes: np.ndarray, vcpus: np.ndarray, seconds: np.ndarray) -> dict[str, Fit]:
    """``seconds = Tdl + bytes/Bs + bytes * ks / min(v, 1)``: the request's latency, the wire, and
    the function's own handling of the bytes at its data vCPUs."""
    nbytes, v1, seconds = (np.asarray(a, float) for a in (nbytes, vcpus, seconds))
    v1 = np.minimum(v1, 1.0)
    a = np.column_stack([np.ones_like(nbytes), nbytes, nbytes / v1])
    p = _lsq(a, seconds)
    rms, worst = _residuals(seconds, a @ p)
    n = len(seconds)
    return {
        "storage_delay_s": Fit(float(p[0]), n, rms, worst),
        "storage_bandwidth_bytes_per_s": Fit(float(1.0 / max(p[1], 1e-15)), n, rms, worst),
        "storage_cpu_s_per_byte": Fit(float(p[2]), n, rms, worst),
    }


def fit_payload(
    nbytes: np.ndarray, vcpus: np.ndarray, before: np.ndarray, inside: np.ndarray
) -> dict[str, Fit]:
    """Direct invocations with a payload of ``nbytes`` each way: ``before`` (invoke to handler)
    = Tstart + bytes/Bf; ``inside`` (billed duration but compute) = bytes/Bf + 2 bytes kp/min(v,1)
    (the function decodes its request and encodes its response, which then leaves at Bf)."""
    nbytes, v1 = np.asarray(nbytes, float), np.minimum(np.asarray(vcpus, float), 1.0)
    before, inside = np.asarray(before, float), np.asarray(inside, float)
    zeros, ones = np.zeros_like(nbytes), np.ones_like(nbytes)
    a = np.vstack([np.column_stack([ones, nbytes, zeros]),
                   np.column_stack([zeros, nbytes, 2.0 * nbytes / v1])])
    y = np.concatenate([before, inside])
    p = _lsq(a, y)
    rms, worst = _residuals(y, a @ p)
    n = len(y)
    return {
        "warm_start_s": Fit(float(p[0]), n, rms, worst),
        "function_bandwidth_bytes_per_s": Fit(float(1.0 / max(p[1], 1e-15)), n, rms, worst),
        "payload_cpu_s_per_byte": Fit(float(p[2]), n, rms, worst),
    }


def fit_compute(
    tokens: np.ndarray, vcpus: np.ndarray, seconds: np.ndarray, flops_per_token: float
) -> dict[str, Fit]:
    """``seconds = tokens * flops / (rate * (min(v,1) + eff * max(v-1,0)))``: rate and eff
    (the rate from the points at or under one vCPU, the efficiency from those above)."""
    tokens, vcpus, seconds = (np.asarray(a, float) for a in (tokens, vcpus, seconds))
    work = tokens * flops_per_token
    one = vcpus <= 1.0
    a = (work / np.minimum(vcpus, 1.0))[one]
    inv_rate = float(a @ seconds[one] / (a @ a))
    rate = 1.0 / inv_rate
    eff = 1.0
    above = ~one
    if above.any():
        # seconds * rate = work / (1 + eff * (v - 1))  ->  eff from least squares on the points
        extra = vcpus[above] - 1.0
        target = work[above] / (seconds[above] * rate) - 1.0
        eff = float(np.clip(extra @ target / (extra @ extra), 0.0, 1.0))
    pred = work * inv_rate / (np.minimum(vcpus, 1.0) + eff * np.maximum(vcpus - 1.0, 0.0))
    rms, worst = _residuals(seconds, pred)
    n = len(seconds)
    return {"flops_per_second_per_vcpu": Fit(rate, n, rms, worst),
            "multi_vcpu_efficiency": Fit(eff, int(above.sum()), rms, worst)}


def fit_rate(nbytes: np.ndarray, seconds: np.ndarray) -> Fit:
    """``seconds = nbytes / rate`` (no intercept): rate."""
    nbytes, seconds = np.asarray(nbytes, float), np.asarray(seconds, float)
    slope = float(nbytes @ seconds / (nbytes @ nbytes))
    rms, worst = _residuals(seconds, nbytes * slope)
    return Fit(1.0 / slope, len(seconds), rms, worst)


def coordinator_payload_cpu(moe: Any, rows: list[int], repeats: int) -> Fit:
    """The coordinator's CPU per payload byte, as the gate and the next non-MoE function: it
    encodes each invocation's event and decodes each response (one thread, as it runs them)."""
    from lambda_runtime.codec import decode_tensor

    samples = []
    for n in rows:
        x = moe.tokens(n, seed=11)
        for _ in range(max(repeats, 3)):
            t = time.perf_counter()
            body = json.dumps({"method": "direct", "tokens": encode_tensor(x), "segments": [[0, n]]})
            samples.append((len(body), time.perf_counter() - t))
            out = json.dumps({"outputs": encode_tensor(x), "tokens": n})
            t = time.perf_counter()
            y = decode_tensor(json.loads(out)["outputs"], "outputs")
            np.array(y, dtype=np.float32)
            samples.append((len(out), time.perf_counter() - t))
    arr = np.array(samples, float)
    rate = fit_rate(arr[:, 0], arr[:, 1])
    return Fit(1.0 / rate.value, rate.points, rate.rms_relative_residual, rate.max_relative_residual)


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
    coordinator, FLOPs per token of that step, token counts to time it at)`` to fit
    ``nonmoe_flops_per_second`` (time it at the problem's batch size: attention's rate per token
    falls as a batch outgrows the caches)."""
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
    payloads: list[tuple[int, float, float, float]] = []  # bytes, vcpu, before, inside
    limit = (6_291_456 - 1024) * 3 // 4 // token_bytes  # rows that fit one payload
    payload_rows = sorted({16, limit // 4, limit // 2, limit})
    events = {n: {"method": "direct", "tokens": encode_tensor(moe.tokens(n, seed=7)),
                  "segments": [[0, n]], "weights_fetch": "cached"} for n in payload_rows}
    for mem in memory_sizes:
        v = vcpu_share(mem)
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
                    compute.append((n, v, t["compute_s"]))
                    transfers += [
                        (weight_bytes, v, t["load_s"]),
                        (len(inputs[n]), v, t["download_s"]),
                        (len(inputs[n]), v, t["upload_s"]),
                    ]
                    rows.append({"memory_mb": mem, "tokens": n, **t,
                                 "duration_s": rep.get("duration_ms", 0) / 1000.0})
            for n in payload_rows:
                size = len(json.dumps(events[n]))
                for _ in range(repeats):
                    wall, body, rep = _invoke(lambda_client, name, events[n])
                    duration = rep.get("duration_ms", 0) / 1000.0
                    compute_s = body["timing"]["compute_s"]
                    payloads.append((size, v, wall - duration, duration - compute_s))
            for _ in range(repeats):
                wall, _, rep = _invoke(lambda_client, name, empty)
                warm_walls.append(wall - rep.get("duration_ms", 0) / 1000.0)
        finally:
            teardown(d, lambda_client, s3_client)
    keys = [{"Key": f"calibrate/in-{n}.npy"} for n in tokens]
    s3_client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})

    n_tok, vcpu, secs = (np.array(col, float) for col in zip(*compute, strict=True))
    fits: dict[str, Fit] = dict(fit_compute(n_tok, vcpu, secs, flops_per_token))
    size, tv, took = (np.array(col, float) for col in zip(*transfers, strict=True))
    fits.update(fit_transfer(size, tv, took))
    p_bytes, p_v, p_before, p_inside = (np.array(col, float) for col in zip(*payloads, strict=True))
    fits.update(fit_payload(p_bytes, p_v, p_before, p_inside))
    constants: dict[str, float] = {k: f.value for k, f in fits.items()}
    if cold:
        constants["cold_start_s"] = float(statistics.median(cold))
    if overhead_mb:
        constants["runtime_overhead_mb"] = float(max(overhead_mb))
    fits["nonmoe_payload_cpu_s_per_byte"] = coordinator_payload_cpu(moe, payload_rows, repeats)
    constants["nonmoe_payload_cpu_s_per_byte"] = fits["nonmoe_payload_cpu_s_per_byte"].value
    if nonmoe is not None:
        step, step_flops, step_tokens = nonmoe
        samples = [(n, step(n)) for n in step_tokens for _ in range(repeats)]
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
            "payloads": [{"bytes": b, "vcpu": v, "before_handler_s": x, "billed_but_compute_s": y}
                         for b, v, x, y in payloads],
        },
    }


def _closest(values: tuple[int, ...], target: int) -> int:
    return min(values, key=lambda v: abs(v - target))


def _npz(export: Any) -> bytes:
    from lambda_runtime.codec import arrays_to_npz

    return arrays_to_npz(export.experts[0][0].arrays())


def _bucket_exists(s3: Any, bucket: str) -> bool:
    return bucket in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
