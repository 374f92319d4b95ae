"""AWS Lambda time and price formulas (DESIGN.md, the paper's Eqs. 3-11), vectorized with numpy.

Every function takes arrays that broadcast together, so the evaluator can price thousands of
plans in one call and a solver can tabulate every (memory, replicas, method) option at once.
Times are seconds, sizes bytes, memory MB (Lambda's MB are MiB).
"""

from __future__ import annotations

import numpy as np

from cost_models.constants import CostConstants

PIPELINED_STORAGE, STORAGE, DIRECT = 0, 1, 2
METHODS = ("pipelined_storage", "storage", "direct")
ARCHITECTURES = ("x86_64", "arm64")
MIB = 1024 * 1024


def vcpu_share(memory_mb: np.ndarray | float, c: CostConstants) -> np.ndarray:
    """Lambda gives CPU in proportion to memory: 1 vCPU at 1,769 MB, at most 6."""
    return np.minimum(np.asarray(memory_mb, dtype=float) / c.lambda_mb_per_vcpu, c.lambda_max_vcpu)


def compute_time_per_token(
    memory_mb: np.ndarray | float,
    flops_per_token: float,
    c: CostConstants,
    arm64: np.ndarray | bool = False,
) -> np.ndarray:
    """U(m): seconds for one token through one expert; never rises with memory."""
    speed = np.where(arm64, c.arm64_speed_factor, 1.0)
    return flops_per_token / (c.flops_per_second_per_vcpu * vcpu_share(memory_mb, c) * speed)


def head_time(param_bytes: np.ndarray | float, start_s: float, c: CostConstants) -> np.ndarray:
    """H = P/Bs + Tdl + Tstart: start the function and download its weights."""
    return np.asarray(param_bytes, dtype=float) / c.storage_bandwidth_bytes_per_s + (
        c.storage_delay_s + start_s
    )


def wire_token_bytes(token_bytes: float, c: CostConstants) -> float:
    """A token's size inside an invoke payload (base64 in JSON)."""
    return token_bytes * c.lambda_payload_encoding_overhead


def replica_time(
    method: np.ndarray | int,
    tokens: np.ndarray | float,
    head: np.ndarray | float,
    per_token: np.ndarray | float,
    pipeline_degree: np.ndarray | float,
    token_bytes: float,
    c: CostConstants,
) -> np.ndarray:
    """Duration of one replica that processes ``tokens`` tokens; 0 where it gets none.

    - storage: H + 2*Tdl + r*((Din + Dout)/Bs + U)
    - pipelined storage: H + (Tdl + b*Dout/Bs) + ceil(r/b)*(Tdl + b*max(Din/Bs + U, Dout/Bs))
      with b = min(beta, r): a minibatch never carries more tokens than the replica has.
    - direct: H + r*(Dout_wire/Bf + U)
    """
    method = np.asarray(method)
    r = np.asarray(tokens, dtype=float)
    bs, bf, tdl = c.storage_bandwidth_bytes_per_s, c.function_bandwidth_bytes_per_s, c.storage_delay_s
    direct = method == DIRECT
    fixed = np.where(direct, head, np.asarray(head) + 2.0 * tdl)
    slope = np.where(
        direct, wire_token_bytes(token_bytes, c) / bf + per_token, 2.0 * token_bytes / bs + per_token
    )
    t = fixed + r * slope
    if np.any(method == PIPELINED_STORAGE):
        piped = pipelined_replica_time(r, head, per_token, pipeline_degree, token_bytes, c)
        t = np.where(method == PIPELINED_STORAGE, piped, t)
    return np.where(r > 0, t, 0.0)


def pipelined_replica_time(
    tokens: np.ndarray,
    head: np.ndarray | float,
    per_token: np.ndarray | float,
    pipeline_degree: np.ndarray | float,
    token_bytes: float,
    c: CostConstants,
) -> np.ndarray:
    """The pipelined-storage branch of :func:`replica_time` alone (for tokens > 0)."""
    bs, tdl = c.storage_bandwidth_bytes_per_s, c.storage_delay_s
    b = np.minimum(pipeline_degree, np.maximum(tokens, 1.0))
    block = tdl + b * np.maximum(token_bytes / bs + per_token, token_bytes / bs)
    return head + tdl + b * token_bytes / bs + np.ceil(tokens / b) * block


def billed_seconds(duration_s: np.ndarray | float, c: CostConstants) -> np.ndarray:
    """Lambda rounds each invocation's duration up to the billing granularity (1 ms)."""
    step = c.lambda_billing_granularity_ms / 1000.0
    return np.ceil(np.asarray(duration_s) / step - 1e-9) * step


def price_per_mb_second(arm64: np.ndarray | bool, c: CostConstants) -> np.ndarray:
    """USD for one MB held for one second, by architecture."""
    per_gb_s = np.where(arm64, c.lambda_price_arm64_usd_per_gb_s, c.lambda_price_x86_64_usd_per_gb_s)
    return per_gb_s / 1024.0


def payload_bytes(tokens: np.ndarray | float, token_bytes: float, c: CostConstants) -> np.ndarray:
    """Invoke payload carrying ``tokens`` tokens (request in, response out: same size)."""
    return np.asarray(tokens) * wire_token_bytes(token_bytes, c) + c.lambda_payload_envelope_bytes


def memory_required_mb(
    method: np.ndarray | int,
    tokens: np.ndarray | float,
    param_bytes: np.ndarray | float,
    pipeline_degree: np.ndarray | float,
    token_bytes: float,
    intermediate_bytes_per_token: float,
    c: CostConstants,
) -> np.ndarray:
    """Eq. 12c: runtime + parameters + intermediates + the tokens held at once.

    A non-pipelined replica holds all its r tokens in and out; a pipelined one holds two
    minibatches (one downloading, one uploading) and computes one.
    """
    r = np.asarray(tokens, dtype=float)
    b = np.minimum(pipeline_degree, r)
    held = np.where(np.asarray(method) == PIPELINED_STORAGE, np.minimum(2.0 * b, r), r)
    computing = np.where(np.asarray(method) == PIPELINED_STORAGE, b, r)
    total = (
        np.asarray(param_bytes, dtype=float)
        + held * 2.0 * token_bytes
        + computing * intermediate_bytes_per_token
    )
    return c.runtime_overhead_mb + total / MIB
