"""The per-layer build_tables of solvers/_ilp_tables.py as it was before it was vectorized
across layers (commit 59a8e21): the reference the fast one must match bit for bit
(tests/solvers/test_ilp_tables.py) and the baseline of benchmarks/bench_tables.py."""

from __future__ import annotations

import numpy as np

from cost_models import lambda_model as lm
from moeopt.evaluate import fixed_parts, storage_requests_usd
from moeopt.problem import DeploymentProblem
from solvers._ilp_tables import (
    OPTION_CONSTRAINTS,
    PAIRWISE_MAX,
    NonMoeBilling,
    Tables,
    Variant,
    VariantTable,
    _replace,
)


def reference_build_tables(problem: DeploymentProblem, variants: tuple[Variant, ...]) -> Tables:
    """Tabulate, filter and prune; ``binding`` says why when no plan can be feasible."""
    c, model, fx = problem.constants, problem.model, fixed_parts(problem)
    arch = np.asarray([a == "arm64" for a in problem.architectures])
    mem = np.asarray(problem.memory_options, dtype=float)
    g = np.arange(1, problem.max_replicas + 1, dtype=float)
    arm_k, mem_k, g_k = (a.ravel() for a in np.meshgrid(arch, mem, g, indexing="ij"))
    B, L = fx.loads.shape[0], problem.layers
    per_token = lm.compute_time_per_token(mem_k, model.expert_flops_per_token, c, arm_k)
    cpu_k = lm.data_vcpus(mem_k, c)
    fetch = lm.weights_fetch_s(1.0 * model.expert_param_bytes, c, problem.fetch_weights, cpu_k)
    timing = dict(token_bytes=model.token_bytes, c=c, start_s=problem.start_s,
                  load_s=fx.next_load_s, start_billed=problem.start == "cold")
    price = lm.price_per_mb_second(arm_k, c) * mem_k
    tb = model.token_bytes
    full = problem.cost_scope == "full"

    raw: list[list[dict]] = []  # per layer, per feasible variant, the unpruned table
    binding: set[str] = set()
    for layer in range(L):
        d = fx.loads[:, layer, :, None]  # (B, E, 1)
        r = np.ceil(d / g_k)  # (B, E, K)
        active = np.minimum(g_k, d)
        r_max = r.max(axis=0)  # (E, K)
        used = r_max > 0
        per_layer: list[dict] = []
        ok_any = {name: np.zeros(r_max.shape[0], dtype=bool) for name in (*OPTION_CONSTRAINTS, "all")}
        for v in variants:
            beta = float(v.pipeline_degree)
            gate = lm.gate_cpu_s(fx.layer_tokens[:, layer], tb, v.method, c)[:, None, None]
            times = lm.replica_times(v.method, r, fetch, per_token, beta, **timing, cpu=cpu_k,
                                     gate_s=gate)
            t = times.billed_s
            usd = lm.billed_seconds(t, c) * active * price  # (B, E, K)
            if full:
                usd = usd + active * c.lambda_request_usd
                flat = (B, -1, 1, 1)
                usd = usd + storage_requests_usd(
                    np.asarray(v.method), r.reshape(flat), active.reshape(flat), np.asarray(beta), c,
                    problem.fetch_weights,
                ).reshape(usd.shape)
            need = lm.memory_required_mb(
                v.method, r_max, 1.0 * model.expert_param_bytes, beta, tb,
                model.intermediate_bytes_per_token, c,
            )
            ok = {
                "memory": need <= mem_k,  # unused experts still start and load weights
                "payload": ~used | (v.method != lm.DIRECT)
                | (lm.payload_bytes(r_max, tb, c) <= c.lambda_payload_limit_bytes),
                "timeout": t.max(axis=0) <= c.lambda_timeout_max_s,
            }
            feasible = ok["memory"] & ok["payload"] & ok["timeout"]
            for name in OPTION_CONSTRAINTS:  # which constraint alone would leave options
                others = np.ones_like(feasible)
                for o in OPTION_CONSTRAINTS:
                    if o != name:
                        others &= ok[o]
                ok_any[name] |= others.any(axis=1)
            ok_any["all"] |= feasible.any(axis=1)
            if not feasible.any(axis=1).all():
                continue  # some expert fits no option under this variant
            # Every replica's finish time; direct layers add T_load after the slowest one.
            lat = times.finish_s
            floor = np.full(B, fx.next_load_s)
            per_layer.append(dict(
                variant=v, feasible=feasible, cost=usd.mean(axis=0), lat=lat.transpose(1, 2, 0),
                active=active.transpose(1, 2, 0) * np.ones((1, len(g_k), 1)), floor=floor,
            ))
        if not ok_any["all"].all():
            lost = ~ok_any["all"]
            named = {n for n in OPTION_CONSTRAINTS if ok_any[n][lost].all()}
            binding |= named or set(OPTION_CONSTRAINTS)
        elif not per_layer:  # each expert fits some variant, but no variant fits every expert
            binding.add("payload" if any(v.method == lm.DIRECT for v in variants) else "memory")
        raw.append(per_layer)

    options_before = L * problem.experts * len(g_k) * len(variants)
    empty = Tables(problem, mem_k, g_k.astype(int), arm_k, (), fx.head_tail_s + np.zeros(B), 0.0,
                   np.inf, False, (), options_before)
    if binding:
        return _replace(empty, binding=tuple(sorted(binding)))

    # Lower bounds of each layer's latency under each variant, then the time-limit slack.
    for per_layer in raw:
        for tv in per_layer:
            inf = ~tv["feasible"][:, :, None]
            lat_min = np.where(inf, np.inf, tv["lat"]).min(axis=1).max(axis=0)  # (B,)
            if tv["variant"].storage:
                tv["lower"] = np.maximum(tv["floor"], lat_min)
                tv["clip"] = tv["lower"]
            else:
                tv["lower"] = tv["floor"] + lat_min
                tv["clip"] = lat_min
    fixed = fx.head_tail_s + float(fx.nonmoe_compute_s.sum()) + np.zeros(B)
    layer_lower = np.array([np.min([tv["lower"] for tv in pl], axis=0) for pl in raw])  # (L, B)
    slack = problem.slo.time_limit_s - fixed - layer_lower.sum(axis=0)
    if (slack < 0).any():
        return _replace(empty, binding=("time_limit",))

    def active_extreme(pl: list[dict], pick: str) -> np.ndarray:  # (B,) per-layer sum
        fill = 0.0 if pick == "max" else np.inf
        per_variant = [
            getattr(np.where(tv["feasible"][:, :, None], tv["active"], fill), pick)(axis=1).sum(axis=0)
            for tv in pl
        ]
        return getattr(np.asarray(per_variant), pick)(axis=0)

    limit = c.lambda_concurrency_limit
    concurrency = any((active_extreme(pl, "max") > limit).any() for pl in raw)
    if concurrency and any((active_extreme(pl, "min") > limit).any() for pl in raw):
        return _replace(empty, binding=("concurrency",))

    cold = problem.start_s if problem.start == "cold" else 0.0
    layers: list[tuple[VariantTable, ...]] = []
    lower_bound = 0.0
    for layer, pl in enumerate(raw):
        kept: list[VariantTable] = []
        nonmoe = None
        if full:
            compute = float(fx.nonmoe_compute_s[layer])
            direct_s = lm.billed_seconds(fx.nonmoe_fetch_s + compute + cold, c)
            nonmoe = NonMoeBilling(fx.nonmoe_price_usd_per_s, problem.start_s, compute, cold,
                                   float(direct_s) * fx.nonmoe_price_usd_per_s, c)
        for tv in pl:
            if (tv["lower"] - layer_lower[layer] > slack).any():
                continue  # this variant alone breaks the time limit
            table = _prune(layer, tv, layer_lower[layer] + slack, concurrency, nonmoe)
            kept.append(table)
        layers.append(tuple(kept))
        lower_bound += min(_cheapest_sum(t) + float(t.extra_usd(t.lower)) for t in kept)
    const = 0.0
    if full:
        # Full scope: the head function's billed time, and every non-MoE function's request
        # and weight GET; the functions after the layers are priced in each layer's cost
        # (VariantTable.extra_usd), since after a storage layer that grows with its latency.
        head = lm.billed_seconds(fx.head_s - problem.start_s + cold, c)
        const = float(head) * fx.nonmoe_price_usd_per_s + fx.nonmoe_functions * (
            c.lambda_request_usd + (c.storage_get_usd if problem.fetch_weights else 0.0))
    return Tables(
        problem, mem_k, g_k.astype(int), arm_k, tuple(layers), fixed, const, lower_bound + const,
        concurrency, (), options_before,
    )


def _cheapest_sum(t: VariantTable) -> float:
    best = np.full(int(t.expert.max()) + 1, np.inf)
    np.minimum.at(best, t.expert, t.cost)
    return float(best.sum())


def _prune(
    layer: int, tv: dict, max_lat: np.ndarray, concurrency: bool, nonmoe: NonMoeBilling | None
) -> VariantTable:
    """Drop options slower than the time limit allows, then dominated options (an option's
    latency terms are compared after clipping to the layer's lower bound; the full scope's
    non-MoE cost only grows with latency, so the comparison stays exact)."""
    v: Variant = tv["variant"]
    feasible = tv["feasible"].copy()  # (E, K)
    lat = tv["lat"]  # (E, K, B)
    clipped = np.maximum(lat, tv["clip"])
    own = clipped if v.storage else tv["floor"] + clipped
    vectors = [clipped]
    feasible &= (own <= max_lat + 1e-12).all(axis=2)
    if concurrency:
        vectors.append(tv["active"])
    vec = np.concatenate([tv["cost"][:, :, None], *vectors], axis=2)  # (E, K, D)
    vec = np.where(feasible[:, :, None], vec, np.inf)
    keep = feasible & ~_dominated(vec)
    e_idx, k_idx = np.nonzero(keep)
    return VariantTable(
        layer=layer, variant=v, expert=e_idx, option=k_idx, cost=tv["cost"][e_idx, k_idx],
        lat=lat[e_idx, k_idx], active=tv["active"][e_idx, k_idx], floor=tv["floor"],
        lower=tv["lower"], nonmoe=nonmoe,
    )


def _dominated(vec: np.ndarray) -> np.ndarray:
    """(E, K, D) -> (E, K): another option is no worse in every term (ties: lower index wins).

    First the cheap cut: the cheapest option whose latency terms all sit at the layer's floor
    dominates every dearer option; then an exact pairwise check on what is left.
    """
    E, K, D = vec.shape
    finite = np.isfinite(vec[:, :, 0])
    # Sort each expert's options by cost (stable), so only earlier options can dominate.
    order = np.argsort(vec[:, :, 0], axis=1, kind="stable")
    sv = np.take_along_axis(vec, order[:, :, None], axis=1)
    floor = np.where(np.isfinite(sv[:, :, 1:]), sv[:, :, 1:], np.inf).min(axis=1)  # (E, D-1)
    at_floor = (sv[:, :, 1:] <= floor[:, None, :]).all(axis=2) & np.isfinite(sv[:, :, 0])
    first = np.where(at_floor.any(axis=1), at_floor.argmax(axis=1), K)
    dominated_sorted = np.arange(K)[None, :] > first[:, None]
    live = ~dominated_sorted & np.isfinite(sv[:, :, 0])
    counts = live.sum(axis=1)
    # Experts in buckets of similar width, so cold experts do not pay for the hottest one's.
    for lo in (1, 4, 16, 64):
        hi = lo * 4 if lo < 64 else PAIRWISE_MAX
        rows = np.flatnonzero((counts > lo) & (counts <= hi))
        if rows.size:
            dominated_sorted[rows] |= _pairwise(sv[rows], live[rows], int(counts[rows].max()))
    out = np.zeros((E, K), dtype=bool)
    np.put_along_axis(out, order, dominated_sorted, axis=1)
    return out & finite


def _pairwise(sv: np.ndarray, live: np.ndarray, width: int) -> np.ndarray:
    """Exact check among the live options (sorted by cost): an earlier option no worse in
    every term dominates a later one."""
    pos = np.argsort(~live, axis=1, kind="stable")[:, :width]
    cv = np.take_along_axis(sv, pos[:, :, None], axis=1)
    cv = np.where(np.take_along_axis(live, pos, axis=1)[:, :, None], cv, np.inf)
    le = (cv[:, :, None, :] <= cv[:, None, :, :]).all(axis=3)  # [e, j, k]: j no worse than k
    earlier = np.arange(width)[:, None] < np.arange(width)[None, :]
    dom = (le & earlier[None]).any(axis=1)
    hit = np.zeros_like(live)
    np.put_along_axis(hit, pos, dom, axis=1)
    return hit & live
