"""AWS Lambda time and price formulas (DESIGN.md, the paper's Eqs. 3-11), vectorized with numpy.

Every function takes arrays that broadcast together, so the evaluator can price thousands of
plans in one call and a solver can tabulate every (memory, replicas, method) option at once.
Times are seconds, sizes bytes, memory MB (Lambda's MB are MiB).

The network model (docs/cost-model.md, "Network"): an object-storage request costs
``Tdl + bytes/Bs`` (first-byte latency, then the bytes at one function's share ``Bs``); an invoke
payload costs ``bytes/Bf``; each replica moves its own data on its own share. The local backend
emulates exactly this model (``lambda_runtime.local.network``), so a run measures what the
formulas predict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cost_models.constants import CostConstants

PIPELINED_STORAGE, STORAGE, DIRECT = 0, 1, 2
METHODS = ("pipelined_storage", "storage", "direct")
ARCHITECTURES = ("x86_64", "arm64")
MIB = 1024 * 1024


def vcpu_share(memory_mb: np.ndarray | float, c: CostConstants) -> np.ndarray:
    """Lambda gives CPU in proportion to memory: 1 vCPU at 1,769 MB, at most 6."""
    return np.minimum(np.asarray(memory_mb, dtype=float) / c.lambda_mb_per_vcpu, c.lambda_max_vcpu)


def effective_vcpus(memory_mb: np.ndarray | float, c: CostConstants) -> np.ndarray:
    """vCPUs a function's compute actually uses: the first in full, each further one at
    ``multi_vcpu_efficiency`` (1 on Lambda's nominal model; calibrated where threads scale worse)."""
    v = vcpu_share(memory_mb, c)
    return np.minimum(v, 1.0) + np.maximum(v - 1.0, 0.0) * c.multi_vcpu_efficiency


def compute_time_per_token(
    memory_mb: np.ndarray | float,
    flops_per_token: float,
    c: CostConstants,
    arm64: np.ndarray | bool = False,
) -> np.ndarray:
    """U(m): seconds for one token through one expert; never rises with memory."""
    speed = np.where(arm64, c.arm64_speed_factor, 1.0)
    return flops_per_token / (c.flops_per_second_per_vcpu * effective_vcpus(memory_mb, c) * speed)


def nonmoe_flops_per_second(c: CostConstants) -> float:
    """Compute rate of a non-MoE function (attention, norms, gate) at ``nonmoe_memory_mb``."""
    if c.nonmoe_flops_per_second > 0:
        return float(c.nonmoe_flops_per_second)
    return float(c.flops_per_second_per_vcpu * effective_vcpus(c.nonmoe_memory_mb, c))


def storage_request_s(nbytes: np.ndarray | float, c: CostConstants) -> np.ndarray:
    """One object-storage GET or PUT: first-byte latency, then the bytes at ``Bs``."""
    return c.storage_delay_s + np.asarray(nbytes, dtype=float) / c.storage_bandwidth_bytes_per_s


def data_vcpus(memory_mb: np.ndarray | float, c: CostConstants) -> np.ndarray:
    """vCPUs a function's data handling runs on: one Python thread, so at most one."""
    return np.minimum(vcpu_share(memory_mb, c), 1.0)


def weights_fetch_s(
    param_bytes: np.ndarray | float,
    c: CostConstants,
    fetch: np.ndarray | bool = True,
    cpu: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Time a function spends getting its weights from storage (0 when they stay in a warm
    environment): the request, then decoding them at its data vCPUs ``cpu``. The paper fetches
    them on every invocation (its head time H)."""
    nbytes = np.asarray(param_bytes, dtype=float)
    took = storage_request_s(nbytes, c) + nbytes * c.storage_cpu_s_per_byte / cpu
    return np.where(fetch, took, 0.0)


def nonmoe_payload_cpu(c: CostConstants) -> float:
    """CPU seconds per payload byte of the non-MoE functions' one data thread."""
    return float(c.nonmoe_payload_cpu_s_per_byte or c.payload_cpu_s_per_byte)


def gate_cpu_s(layer_tokens: np.ndarray | float, token_bytes: float, method: np.ndarray | int,
               c: CostConstants) -> np.ndarray:
    """CPU the gate (a non-MoE function, one data thread) spends encoding a layer's inputs
    before the last of them is out: objects for the storage methods, payloads for direct."""
    n = np.asarray(layer_tokens, dtype=float)
    per_byte = np.where(np.asarray(method) == DIRECT,
                        nonmoe_payload_cpu(c) * c.lambda_payload_encoding_overhead,
                        c.storage_cpu_s_per_byte)
    return n * token_bytes * per_byte


def head_time(param_bytes: np.ndarray | float, start_s: float, c: CostConstants) -> np.ndarray:
    """The paper's H = P/Bs + Tdl + Tstart: start the function and download its weights."""
    return weights_fetch_s(param_bytes, c) + start_s


def wire_token_bytes(token_bytes: float, c: CostConstants) -> float:
    """A token's size inside an invoke payload (base64 in JSON)."""
    return token_bytes * c.lambda_payload_encoding_overhead


@dataclass(frozen=True)
class ReplicaTimes:
    """One replica's times, arrays broadcast over the inputs of :func:`replica_times`.

    ``billed_s`` is the duration Lambda bills (before rounding): from the handler's start to its
    return. ``finish_s`` is when, counted from the layer's start, the replica's outputs are with
    the next non-MoE function; a layer's latency is the largest ``finish_s`` of its replicas plus
    :func:`layer_offset_s`. Both are 0 where the replica gets no token (it is not invoked).
    """

    billed_s: np.ndarray
    finish_s: np.ndarray


def replica_times(
    method: np.ndarray | int,
    tokens: np.ndarray | float,
    weights_s: np.ndarray | float,
    per_token: np.ndarray | float,
    pipeline_degree: np.ndarray | float,
    token_bytes: float,
    c: CostConstants,
    start_s: float,
    load_s: np.ndarray | float,
    start_billed: bool = False,
    cpu: np.ndarray | float = 1.0,
    gate_s: np.ndarray | float = 0.0,
) -> ReplicaTimes:
    """Billed duration and finish time of one replica that processes ``tokens`` tokens.

    ``weights_s`` is :func:`weights_fetch_s` of the function, ``start_s`` the invoke's start
    latency (warm start; billed only when ``start_billed``, i.e. a cold start's init), ``load_s``
    the next non-MoE function's start and weight fetch (T_load), ``cpu`` the function's data
    vCPUs (:func:`data_vcpus`), ``gate_s`` the gate's CPU before the layer's last input is out
    (:func:`gate_cpu_s`). With x = D/Bs per token on the wire, y = D*ks/cpu and z = Dw*kp/cpu the
    function's CPU per token for an object or a payload (ks, kp: ``storage_cpu_s_per_byte``,
    ``payload_cpu_s_per_byte``), and E = start + weights (the handler is ready for data):

    - direct: the payload arrives at gate_s + r*Dw/Bf; billed w + r*(U + Dw/Bf + 2z) (it decodes
      its request and encodes its output, which travels as the payload within the invocation);
      finish = arrival + start + billed + r*Dw*kp' (the next function decodes it; kp' is the
      non-MoE functions' ``nonmoe_payload_cpu_s_per_byte``, as in gate_s); the layer adds T_load.
    - storage: the gate puts the replica's input, ready at up = gate_s + Tdl + r*x; the replica
      is invoked at once and gets its input at max(E, up); done = max(E, up) + 2*Tdl +
      r*(2x + U + 2y); the next function gets the output at max(done, T_load) + Tdl + r*x +
      r*D*ks.
    - pipelined storage: minibatches of b = min(beta, r) tokens in n = ceil(r/b) blocks flow
      through four stages, one request per block: download, paced by the gate's puts of the
      minibatches one after another (each Tdl + b*x + b*D*ks: its data thread encodes them), the
      function's CPU c = b*(U + 2y) (compute and its data handling share its vCPUs), upload
      u = Tdl + b*x, and the next function's download g = Tdl + b*x + b*D*ks (after T_load). The
      pipeline starts when the handler is ready and the first minibatch is in storage; the last
      block may be smaller (its stages d', c', u', g').
    """
    method = np.asarray(method)
    r = np.asarray(tokens, dtype=float)
    bs, bf, tdl = c.storage_bandwidth_bytes_per_s, c.function_bandwidth_bytes_per_s, c.storage_delay_s
    x = token_bytes / bs
    u_tok = np.asarray(per_token, dtype=float)
    w = np.asarray(weights_s, dtype=float)
    load = np.asarray(load_s, dtype=float)
    gate = np.asarray(gate_s, dtype=float)
    ready = start_s + w
    wire_b = wire_token_bytes(token_bytes, c)
    wire = wire_b / bf
    y = token_bytes * c.storage_cpu_s_per_byte / np.asarray(cpu, dtype=float)  # per token
    z = wire_b * c.payload_cpu_s_per_byte / np.asarray(cpu, dtype=float)
    y_next = token_bytes * c.storage_cpu_s_per_byte  # the next function's data thread

    # direct
    d_billed = w + r * (u_tok + wire + 2.0 * z)
    d_finish = gate + r * wire + start_s + d_billed + r * wire_b * nonmoe_payload_cpu(c)
    # storage (not pipelined)
    s_done = np.maximum(ready, gate + tdl + r * x) + 2.0 * tdl + r * (2.0 * x + u_tok + 2.0 * y)
    s_billed = s_done - start_s
    s_finish = np.maximum(s_done, load) + tdl + r * (x + y_next)
    direct = method == DIRECT
    billed = np.where(direct, d_billed, s_billed)
    finish = np.where(direct, d_finish, s_finish)
    if np.any(method == PIPELINED_STORAGE):
        p_done, p_finish = _pipelined(r, ready, u_tok + 2.0 * y, pipeline_degree, x, tdl, load,
                                      y_next)
        piped = method == PIPELINED_STORAGE
        billed = np.where(piped, p_done - start_s, billed)
        finish = np.where(piped, p_finish, finish)
    if start_billed:
        billed = billed + start_s
    got = r > 0
    return ReplicaTimes(np.where(got, billed, 0.0), np.where(got, finish, 0.0))


def _pipelined(
    r: np.ndarray,
    ready: np.ndarray,
    cpu_tok: np.ndarray,
    pipeline_degree: np.ndarray | float,
    x: float,
    tdl: float,
    load: np.ndarray,
    y_next: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(upload done, outputs with the next function) of the pipelined replica, in closed form.

    The model, block by block (b_j tokens, the last one maybe fewer): the gate puts the blocks
    one after another, block j landing at R_j = R_{j-1} + a_j (a = Tdl + b*x + b*y_next: it
    encodes, then puts); the function downloads D_j = max(D_{j-1}, R_j) + u_j (u = Tdl + b*x,
    D_0 = ready), computes C_j = max(C_{j-1}, D_j) + c_j (c = b*cpu_tok: compute and its own
    data handling share its vCPUs), uploads U_j = max(U_{j-1}, C_j) + u_j, and the next function
    gets it G_j = max(G_{j-1}, U_j, load) + a_j. That recursion is max-plus linear in the
    downloads, and the downloads are the larger of two uniform sequences (paced by the function,
    ready + sum u; paced by the gate, sum a + u): so the result is the larger of two uniform
    pipelines, each in closed form (sum of stages + (n-2) times the slowest, then the last block).
    A test checks it against the recursion.
    """
    r1 = np.maximum(r, 1.0)
    b = np.minimum(np.asarray(pipeline_degree, dtype=float), r1)
    n = np.ceil(r1 / b)
    last = r1 - (n - 1.0) * b
    u, u_l = tdl + b * x, tdl + last * x
    a, a_l = u + b * y_next, u_l + last * y_next
    c, c_l = b * cpu_tok, last * cpu_tok
    by_function = _uniform(ready, u, ready + (n - 1.0) * u + u_l, n, c, u, a, c_l, u_l, a_l, load)
    by_gate = _uniform(u, a, (n - 1.0) * a + a_l + u_l, n, c, u, a, c_l, u_l, a_l, load)
    return np.maximum(by_function[0], by_gate[0]), np.maximum(by_function[1], by_gate[1])


def _uniform(
    start: np.ndarray, p: np.ndarray, last_download: np.ndarray, n: np.ndarray, c: np.ndarray,
    u: np.ndarray, g: np.ndarray, c_l: np.ndarray, u_l: np.ndarray, g_l: np.ndarray,
    load: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Downloads done at start + j*p (full blocks j < n) and ``last_download`` (block n), then
    stages c, u, g (c_l, u_l, g_l for the last): (last upload done, last gather done)."""
    full = np.maximum(n - 2.0, 0.0)
    m2 = np.maximum(p, c)
    m3 = np.maximum(m2, u)
    m4 = np.maximum(m3, g)
    c_prev = start + p + c + full * m2
    u_prev = c_prev + u + full * (m3 - m2)
    g_prev = np.maximum(start + p + c + u + g + full * m4, load + (n - 1.0) * g)
    one = n <= 1.0
    c_n = np.maximum(np.where(one, last_download, c_prev), last_download) + c_l
    u_n = np.maximum(np.where(one, c_n, u_prev), c_n) + u_l
    g_n = np.maximum(np.where(one, u_n, g_prev), np.maximum(u_n, load)) + g_l
    return u_n, g_n


def layer_offset_s(method: np.ndarray | int, load_s: np.ndarray | float) -> np.ndarray:
    """What a layer adds after its slowest replica: T_load for direct invocation (the experts
    invoke the next non-MoE function with their outputs, Eq. 11), nothing for the storage
    methods (the next function starts with the layer and is inside ``finish_s``)."""
    return np.where(np.asarray(method) == DIRECT, load_s, 0.0)


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

    A non-pipelined replica holds all its r tokens in and out; a pipelined one holds
    min(2b, r) tokens in and out (b = min(beta, r)) and computes b at a time.
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
