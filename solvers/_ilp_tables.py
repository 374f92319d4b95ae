"""Option tables for the exact solvers: every (architecture, memory, replicas) choice of every
expert under every layer method variant, priced with :mod:`cost_models.lambda_model` exactly as
:func:`moeopt.evaluate.evaluate_batch` prices it, with infeasible and dominated options removed.

Why this is exact: in an ungrouped plan an expert's cost and its latency terms depend only on its
own option and its layer's method variant; a layer's latency is a max over its experts (plus
constants); layers meet only in the end-to-end sum. So an option that costs no less than another
and is no faster on any batch (after clipping each term to the layer's unavoidable latency) can
never be needed, and an option whose latency alone breaks the time limit can never be used.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import numpy as np

from cost_models import lambda_model as lm
from moeopt.evaluate import fixed_parts, storage_requests_usd
from moeopt.problem import DeploymentProblem

#: Constraint names, as in :data:`moeopt.evaluate.VIOLATIONS`.
OPTION_CONSTRAINTS = ("memory", "payload", "timeout")
#: build_tables prices the replica times of this many (beta, replica tokens, memory) cells per
#: call of the cost model (elementwise: the same floats in any chunks).
TIMES_CHUNK_CELLS = 2**15
#: Above this many live options per expert the pairwise dominance check is skipped (it is
#: quadratic); keeping a dominated option costs the MILP time, never correctness.
PAIRWISE_MAX = 256

Job = TypeVar("Job")


@dataclass(frozen=True)
class Variant:
    """A layer's scatter-gather method and, when pipelined, its pipeline degree beta."""

    method: int
    pipeline_degree: int = 1

    @property
    def storage(self) -> bool:
        return self.method != lm.DIRECT


@dataclass(frozen=True, eq=False)
class NonMoeBilling:
    """Full cost scope: what the non-MoE function after a layer bills, as evaluate.py prices it
    (:func:`moeopt.evaluate.nonmoe_billed_s`). After a storage layer it runs from the layer's
    start and waits for the outputs: mean over batches of price x billed(latency - start +
    compute + cold); after a direct layer it bills its weight fetch and compute: a constant."""

    price_usd_per_s: float
    start_s: float
    compute_s: float  # attention + gate of the next block (0 after the last layer)
    cold_s: float  # billed init when starts are cold, else 0
    direct_usd: float  # the whole term after a direct layer
    constants: object  # cost_models.constants.CostConstants (for billed_seconds)

    def storage_usd(self, latency: np.ndarray) -> np.ndarray:
        """(..., B) layer latencies -> (...) USD, mean over batches (monotone in latency)."""
        billed = lm.billed_seconds(latency - self.start_s + self.compute_s + self.cold_s, self.constants)
        return (billed * self.price_usd_per_s).mean(axis=-1)


@dataclass(frozen=True, eq=False)
class VariantTable:
    """The surviving options of one layer under one variant, one row per (expert, option).

    Storage methods: the layer latency on batch b is max(floor[b], max over experts of lat[:, b]).
    Direct: it is floor[b] + max lat[:, b] (floor = T_load: the experts invoke the next function).
    In one form: ``add + max(base, max lat)``. Full scope adds the non-MoE function's billed
    time, a monotone function of the layer latency (:meth:`extra_usd`).
    """

    layer: int
    variant: Variant
    expert: np.ndarray  # (n,) expert of each row
    option: np.ndarray  # (n,) index into the option grid
    cost: np.ndarray  # (n,) USD, mean over batches
    lat: np.ndarray  # (n, B)
    active: np.ndarray  # (n, B) replicas that receive tokens
    floor: np.ndarray  # (B,) latency the layer pays whatever its experts do
    lower: np.ndarray  # (B,) a lower bound of the layer latency under this variant
    nonmoe: NonMoeBilling | None = None  # full scope only

    # Derived once per table (the solvers ask for them thousands of times; nothing mutates them).
    @cached_property
    def experts(self) -> int:
        return int(self.expert.max()) + 1

    @cached_property
    def add(self) -> np.ndarray:
        """Latency added after the slowest replica (T_load for direct layers)."""
        return np.zeros_like(self.floor) if self.variant.storage else self.floor

    @cached_property
    def base(self) -> np.ndarray:
        """The least the slowest-replica term can be (the floor for storage layers)."""
        return self.floor if self.variant.storage else np.zeros_like(self.floor)

    @cached_property
    def expert_rows(self) -> tuple[np.ndarray, ...]:
        """Per expert, its rows."""
        by = np.argsort(self.expert, kind="stable")  # each expert's rows in row order
        cut = np.searchsorted(self.expert[by], np.arange(1, self.experts))
        return tuple(np.split(by, cut))

    @cached_property
    def least_cost(self) -> np.ndarray:
        """(E,) each expert's cheapest option."""
        best = np.full(self.experts, np.inf)
        np.minimum.at(best, self.expert, self.cost)
        return best

    @cached_property
    def least_finish(self) -> np.ndarray:
        """(E, B) each expert's earliest finish per batch (over its options)."""
        mins = np.full((self.experts, self.lat.shape[1]), np.inf)
        np.minimum.at(mins, self.expert, self.lat)
        return mins

    @cached_property
    def slowest_first(self) -> tuple[np.ndarray, np.ndarray]:
        """The order the layer DPs (pricing, exact curves) take the experts in: slowest
        earliest finish first; and per step the least cost of the experts after it (what any
        completion still pays)."""
        order = np.argsort(-self.least_finish.max(axis=1), kind="stable")
        rest = np.concatenate([np.cumsum(self.least_cost[order][::-1])[::-1][1:], [0.0]])
        return order, rest

    @cached_property
    def rows_slowest_first(self) -> tuple[np.ndarray, np.ndarray]:
        """Each expert's rows, experts in :attr:`slowest_first` order, in one int64 array, and
        the offsets where each expert's rows start (the compiled pricing's input)."""
        order, _ = self.slowest_first
        groups = [self.expert_rows[e] for e in order]
        offsets = np.concatenate([[0], np.cumsum([len(g) for g in groups])]).astype(np.int64)
        return np.concatenate(groups).astype(np.int64), offsets

    def rows_of_steps(self, picks: np.ndarray) -> np.ndarray:
        """(P, E) rows, experts in order, from the layer DPs' picks (P, E) in step order
        (:attr:`slowest_first`)."""
        rows = np.empty_like(picks)
        rows[:, self.slowest_first[0]] = picks
        return rows

    @cached_property
    def cheapest_bound_usd(self) -> float:
        """Every expert at its cheapest option, at the variant's latency lower bound: no
        configuration of the table costs less (its latency-dependent cost only grows)."""
        return float(self.least_cost.sum()) + float(self.extra_usd(self.lower))

    @cached_property
    def least_slowest(self) -> np.ndarray:
        """(B,) the slowest replica's least finish per batch: every configuration's slowest
        finish is at least this (where the layer DPs start)."""
        return self.lower - self.add

    @cached_property
    def direct_usd(self) -> float:
        """The non-MoE function's whole cost after a direct layer (full scope; it does not
        depend on the layer's latency); 0 otherwise."""
        return self.nonmoe.direct_usd if (self.nonmoe is not None and not self.variant.storage) else 0.0

    @cached_property
    def billing(self) -> tuple[float, float, float, float, float]:
        """(billing step s, start, compute, cold, USD per s) of the non-MoE function's billed
        wait after this layer (full scope, storage layers); all 0 where it is not billed."""
        n = self.nonmoe
        if n is None or not self.variant.storage:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        step = n.constants.lambda_billing_granularity_ms / 1000.0
        return step, n.start_s, n.compute_s, n.cold_s, n.price_usd_per_s

    @cached_property
    def by_expert_cost(self) -> np.ndarray:
        """Rows sorted by expert, then cost, then row."""
        return np.lexsort((self.cost, self.expert))

    @cached_property
    def flat(self) -> FlatTable:
        """The arrays the compiled loops read, contiguous float64 / int64, converted once per
        table (pricing and the variant floor run tens of times per table). build_tables fills
        in what it is made of for all its tables at once (:func:`_derive`) and converts it
        then; a table built elsewhere computes it all on first use."""
        f = np.ascontiguousarray
        groups, offsets = self.rows_slowest_first
        return FlatTable(
            cost=f(self.cost, dtype=np.float64), lat=f(self.lat, dtype=np.float64),
            active=f(self.active, dtype=np.float64), expert=f(self.expert, dtype=np.int64),
            least_cost=f(self.least_cost, dtype=np.float64),
            least_slowest=f(self.least_slowest, dtype=np.float64),
            add=f(self.add, dtype=np.float64), base=f(self.base, dtype=np.float64),
            by_expert_cost=f(self.by_expert_cost, dtype=np.int64),
            groups=groups, offsets=offsets, rest=f(self.slowest_first[1], dtype=np.float64),
        )

    def cheapest_fitting(self, fits: np.ndarray) -> np.ndarray | None:
        """Per expert its cheapest row among ``fits`` (the first of equals), or None when some
        expert has no such row."""
        by = self.by_expert_cost
        fitting = by[fits[by]]  # still by expert, then cost, then row
        experts = self.expert[fitting]
        first = np.flatnonzero(np.r_[True, experts[1:] != experts[:-1]]) if len(fitting) else fitting
        return fitting[first] if len(first) == self.experts else None

    def latency_of(self, slowest: np.ndarray) -> np.ndarray:
        """Layer latency from the slowest replica's finish per batch, shape (..., B)."""
        return self.add + np.maximum(self.base, slowest)

    def latency(self, rows: np.ndarray) -> np.ndarray:
        """Layer latency per batch when ``rows`` (one per expert) are chosen."""
        return self.latency_of(self.lat[rows].max(axis=0))

    def extra_usd(self, latency: np.ndarray) -> np.ndarray | float:
        """Cost that depends on the layer latency (full scope's non-MoE wait), (..., B) -> (...)."""
        if self.nonmoe is None:
            return np.zeros(np.shape(latency)[:-1]) if np.ndim(latency) > 1 else 0.0
        if not self.variant.storage:
            shape = np.shape(latency)[:-1]
            return np.full(shape, self.nonmoe.direct_usd) if shape else self.nonmoe.direct_usd
        out = self.nonmoe.storage_usd(np.asarray(latency, dtype=float))
        return out if np.ndim(out) else float(out)


@dataclass(frozen=True, eq=False)
class FlatTable:
    """A variant table's arrays as the compiled loops take them (:attr:`VariantTable.flat`)."""

    cost: np.ndarray
    lat: np.ndarray
    active: np.ndarray
    expert: np.ndarray
    least_cost: np.ndarray
    least_slowest: np.ndarray
    add: np.ndarray
    base: np.ndarray
    by_expert_cost: np.ndarray
    groups: np.ndarray  # rows, experts in slowest-first order
    offsets: np.ndarray  # where each expert's rows start in ``groups``
    rest: np.ndarray  # per step, the least cost of the experts after it


@dataclass(frozen=True, eq=False)
class LayerFlat:
    """A layer's variant tables in one set of arrays, table after table (the compiled variant
    floors take a whole layer per call: :attr:`Tables.layer_flats`)."""

    cost: np.ndarray  # (n,) every table's rows
    lat: np.ndarray  # (n, B)
    expert: np.ndarray  # (n,) int64, within its table
    least: np.ndarray  # (sum of E,) each table's least cost per expert
    start: np.ndarray  # (T, B) each table's least slowest finish
    add: np.ndarray  # (T, B)
    base: np.ndarray  # (T, B)
    rows: np.ndarray  # (T + 1,) int64: where each table's rows start
    experts: np.ndarray  # (T + 1,) int64: where each table's experts start in ``least``
    params: np.ndarray  # (T, 6): billing step, non-MoE start, compute, cold, price per batch, const
    groups: np.ndarray  # (n,) int64: each table's FlatTable.groups (rows within the table)
    offsets: np.ndarray  # (sum of E + T,) int64: each table's FlatTable.offsets
    rest: np.ndarray  # (sum of E,) each table's FlatTable.rest


@dataclass(frozen=True, eq=False)
class Tables:
    """All option tables of a problem plus the constants the end-to-end constraint needs."""

    problem: DeploymentProblem
    memory_mb: np.ndarray  # (K,) option grid
    replicas: np.ndarray  # (K,)
    arm64: np.ndarray  # (K,) bool
    layers: tuple[tuple[VariantTable, ...], ...]  # per layer, its feasible variants
    fixed_s: np.ndarray  # (B,) head + tail + every non-MoE compute term
    cost_const_usd: float  # plan-independent cost (full scope: the head, requests, weight GETs)
    lower_bound_usd: float  # cheapest options everywhere, time limit ignored
    concurrency: bool  # whether the concurrency limit can bind
    binding: tuple[str, ...]  # non-empty: no plan of the space is feasible, and why
    options_before: int  # rows before pruning (for reports)

    @property
    def rows(self) -> int:
        return sum(len(t.cost) for layer in self.layers for t in layer)

    @property
    def time_limit_s(self) -> float:
        return self.problem.slo.time_limit_s

    @cached_property
    def layer_flats(self) -> tuple[LayerFlat, ...]:
        """Per layer, its tables' arrays concatenated (built on first use)."""
        out = []
        B = len(self.fixed_s)
        for layer in self.layers:
            flats = [t.flat for t in layer]
            out.append(LayerFlat(
                cost=np.concatenate([f.cost for f in flats]), lat=np.concatenate([f.lat for f in flats]),
                expert=np.concatenate([f.expert for f in flats]),
                least=np.concatenate([f.least_cost for f in flats]),
                start=np.array([f.least_slowest for f in flats]).reshape(-1, B),
                add=np.array([f.add for f in flats]).reshape(-1, B),
                base=np.array([f.base for f in flats]).reshape(-1, B),
                rows=np.cumsum([0] + [len(f.cost) for f in flats]).astype(np.int64),
                experts=np.cumsum([0] + [len(f.least_cost) for f in flats]).astype(np.int64),
                params=np.array([(*t.billing[:4], t.billing[4] / B, t.direct_usd) for t in layer],
                                dtype=np.float64).reshape(-1, 6),
                groups=np.concatenate([f.groups for f in flats]),
                offsets=np.concatenate([f.offsets for f in flats]),
                rest=np.concatenate([f.rest for f in flats]),
            ))
        return tuple(out)


def variants_of(problem: DeploymentProblem, pipeline_degrees: tuple[int, ...]) -> tuple[Variant, ...]:
    out: list[Variant] = []
    for name in problem.methods:
        m = lm.METHODS.index(name)
        if m == lm.PIPELINED_STORAGE:
            out += [Variant(m, int(b)) for b in pipeline_degrees]
        else:
            out.append(Variant(m))
    return tuple(out)


def build_tables(problem: DeploymentProblem, variants: tuple[Variant, ...]) -> Tables:
    """Tabulate, filter and prune; ``binding`` says why when no plan can be feasible.

    Each variant is priced for every layer at once (arrays (B, L, E, K)), and every surviving
    (variant, layer) is pruned in one dominance pass: the per-element arithmetic is the
    per-layer formula's, so the tables are the same to the bit, at a fraction of the numpy calls.
    Variants are priced, their pruning vectors filled and their pruned tables extracted on two
    threads (they are independent).
    """
    c, model, fx = problem.constants, problem.model, fixed_parts(problem)
    arch = np.asarray([a == "arm64" for a in problem.architectures])
    mem = np.asarray(problem.memory_options, dtype=float)
    g = np.arange(1, problem.max_replicas + 1, dtype=float)
    arm_k, mem_k, g_k = (a.ravel() for a in np.meshgrid(arch, mem, g, indexing="ij"))
    B, L, E = fx.loads.shape
    K, V = len(g_k), len(variants)
    per_token = lm.compute_time_per_token(mem_k, model.expert_flops_per_token, c, arm_k)
    cpu_k = lm.data_vcpus(mem_k, c)
    fetch = lm.weights_fetch_s(1.0 * model.expert_param_bytes, c, problem.fetch_weights, cpu_k)
    timing = dict(token_bytes=model.token_bytes, c=c, start_s=problem.start_s,
                  load_s=fx.next_load_s, start_billed=problem.start == "cold")
    price = lm.price_per_mb_second(arm_k, c) * mem_k
    tb = model.token_bytes
    full = problem.cost_scope == "full"

    # Every per-option quantity depends on an expert's load, its layer's tokens (the gate)
    # and the option: price each distinct (layer tokens, load) once (U of them, rows of the
    # (U, K) grids), each replica's times once per distinct (layer tokens, replica tokens) and
    # (arch, memory) (the (P, M) grid), then gather. Same elementwise formulas: same floats.
    pair, at_u = np.unique(np.stack([np.broadcast_to(fx.layer_tokens[:, :, None], fx.loads.shape),
                                     fx.loads], axis=-1).reshape(-1, 2), axis=0, return_inverse=True)
    at_u = at_u.reshape(fx.loads.shape)  # (B, L, E) -> row of the (U, K) grids
    d = pair[:, 1:]  # (U, 1)
    r_uk = np.ceil(d / g_k)  # (U, K) tokens per replica
    active_uk = np.minimum(g_k, d)
    r_max = np.take(r_uk, at_u, axis=0).max(axis=0)  # (L, E, K)
    active = np.take(active_uk, at_u, axis=0)  # (B, L, E, K)
    used = r_max > 0
    r_max_of, r_max_at = np.unique(r_max, return_inverse=True)
    r_max_at = r_max_at.reshape(r_max.shape)
    payload_ok = ~used | (lm.payload_bytes(r_max, tb, c) <= c.lambda_payload_limit_bytes)
    G = len(g)
    per_m = np.arange(0, K, G)  # first option of each (arch, memory)
    r_ug = np.ceil(d / g)  # (U, G)
    tokens_of, tokens_at = np.unique(pair[:, 0], return_inverse=True)
    r_of, r_at = np.unique(r_ug, return_inverse=True)
    key, at_ug = np.unique(tokens_at.reshape(-1, 1) * len(r_of) + r_at.reshape(r_ug.shape),
                           return_inverse=True)
    at_uk = at_ug.reshape(r_ug.shape)[:, np.arange(K) % G] * len(per_m) + np.arange(K) // G
    gather = at_uk[at_u]  # (B, L, E, K) into the (P, M) grid
    key_tokens, key_r = tokens_of[key // len(r_of), None], r_of[key % len(r_of), None]  # (P, 1)

    fits = np.zeros((V, L), dtype=bool)  # the variant fits every expert of the layer
    priced: list[dict] = [{}] * V  # per variant, every layer's unpruned table
    # Per variant and constraint name, which (layer, expert) keep an option without that
    # constraint ("all": with every constraint): the infeasibility report's evidence.
    evidence: list[dict[str, np.ndarray]] = [{}] * V

    def price_variant(i: int, billed_pm: np.ndarray, finish_pm: np.ndarray) -> None:
        v = variants[i]
        beta = float(v.pipeline_degree)
        t = billed_pm.ravel()[at_uk]  # (U, K)
        usd = lm.billed_seconds(billed_pm, c).ravel()[at_uk] * active_uk * price
        if full:
            usd = usd + active_uk * c.lambda_request_usd
            flat = (1, -1, 1, 1)
            usd = usd + storage_requests_usd(
                np.asarray(v.method), r_uk.reshape(flat), active_uk.reshape(flat), np.asarray(beta),
                c, problem.fetch_weights,
            ).reshape(usd.shape)
        need = np.take(lm.memory_required_mb(
            v.method, r_max_of, 1.0 * model.expert_param_bytes, beta, tb,
            model.intermediate_bytes_per_token, c,
        ), r_max_at)  # (L, E, K), priced once per distinct r_max
        ok = {
            "memory": need <= mem_k,  # unused experts still start and load weights
            "payload": payload_ok if v.method == lm.DIRECT else np.ones_like(used),
            "timeout": np.take(t <= c.lambda_timeout_max_s, at_u, axis=0).all(axis=0),  # max over b
        }
        feasible = ok["memory"] & ok["payload"] & ok["timeout"]  # (L, E, K)
        evidence[i] = {"all": feasible.any(axis=2)}
        for name in OPTION_CONSTRAINTS:  # which constraint alone would leave options
            others = np.ones_like(feasible)
            for o in OPTION_CONSTRAINTS:
                if o != name:
                    others &= ok[o]
            evidence[i][name] = others.any(axis=2)
        fits[i] = evidence[i]["all"].all(axis=1)
        if not fits[i].any():
            return
        # Every replica's finish time; direct layers add T_load after the slowest one.
        lat = np.take(finish_pm.ravel(), gather)  # (B, L, E, K)
        lat_min = np.where(feasible, lat, np.inf).min(axis=3).max(axis=2).T  # (L, B)
        floor = np.full(B, fx.next_load_s)
        if v.storage:
            lower = np.maximum(floor, lat_min)
            clip = lower
        else:
            lower = floor + lat_min
            clip = lat_min
        priced[i] = dict(feasible=feasible, cost=np.take(usd, at_u, axis=0).mean(axis=0), lat=lat,
                         lower=lower, clip=clip, floor=floor)

    jobs = []  # (variants of one method, their betas): a few betas per call of the cost model
    for method in sorted({v.method for v in variants}):
        which = [i for i, v in enumerate(variants) if v.method == method]
        betas = np.asarray([float(variants[i].pipeline_degree) for i in which])[:, None, None]
        # A few betas per call: the pipelined model's ~60 temporaries stay in cache (32,768
        # cells, 0.25 MB each; one call over every beta was ~2 ms slower on bert-moe-8), and
        # the jobs are small enough for the two threads to finish together.
        step = max(1, TIMES_CHUNK_CELLS // (len(key_r) * len(per_m)))
        jobs += [(which[lo:lo + step], betas[lo:lo + step]) for lo in range(0, len(which), step)]
    gates = {m: lm.gate_cpu_s(key_tokens, tb, m, c) for m in {v.method for v in variants}}

    def price_job(job: tuple[list[int], np.ndarray]) -> None:
        which, betas = job
        method = variants[which[0]].method
        times = lm.replica_times(method, key_r, fetch[per_m], per_token[per_m], betas,
                                 **timing, cpu=cpu_k[per_m], gate_s=gates[method])
        part = (len(which), len(key_r), len(per_m))
        for j, i in enumerate(which):  # (P, M) grids of this variant
            price_variant(i, np.broadcast_to(times.billed_s, part)[j],
                          np.broadcast_to(times.finish_s, part)[j])

    _on_two_threads(price_job, jobs)
    ok_any = {name: np.logical_or.reduce([k[name] for k in evidence]) for name in (*OPTION_CONSTRAINTS, "all")}

    binding: set[str] = set()
    for layer in range(L):
        if not ok_any["all"][layer].all():
            lost = ~ok_any["all"][layer]
            named = {n for n in OPTION_CONSTRAINTS if ok_any[n][layer][lost].all()}
            binding |= named or set(OPTION_CONSTRAINTS)
        elif not fits[:, layer].any():  # each expert fits some variant, no variant every expert
            binding.add("payload" if any(v.method == lm.DIRECT for v in variants) else "memory")

    options_before = L * problem.experts * len(g_k) * len(variants)
    empty = Tables(problem, mem_k, g_k.astype(int), arm_k, (), fx.head_tail_s + np.zeros(B), 0.0,
                   np.inf, False, (), options_before)
    if binding:
        return _replace(empty, binding=tuple(sorted(binding)))

    # Lower bounds of each layer's latency under each variant, then the time-limit slack.
    fixed = fx.head_tail_s + float(fx.nonmoe_compute_s.sum()) + np.zeros(B)
    lowers = np.full((V, L, B), np.inf)
    for i, tv in enumerate(priced):
        if tv:
            lowers[i, fits[i]] = tv["lower"][fits[i]]
    layer_lower = lowers.min(axis=0)  # (L, B)
    slack = problem.slo.time_limit_s - fixed - layer_lower.sum(axis=0)
    if (slack < 0).any():
        return _replace(empty, binding=("time_limit",))

    # Per layer, the most (least) replicas its variants can have running per batch; none of
    # it when every option of every expert together stays within the limit (same sum order).
    limit = c.lambda_concurrency_limit
    most = np.full((V, L, B), -np.inf)
    least = np.full((V, L, B), np.inf)
    ceiling = np.ascontiguousarray(active.max(axis=3).transpose(2, 1, 0)).sum(axis=0)  # (L, B)
    for i, tv in enumerate(priced):
        if tv and (ceiling > limit).any():
            f = tv["feasible"][None]
            hi = np.where(f, active, 0.0).max(axis=3)  # (B, L, E)
            lo = np.where(f, active, np.inf).min(axis=3)
            most[i, fits[i]] = np.ascontiguousarray(hi.transpose(2, 1, 0)).sum(axis=0)[fits[i]]
            least[i, fits[i]] = np.ascontiguousarray(lo.transpose(2, 1, 0)).sum(axis=0)[fits[i]]
    concurrency = bool((most.max(axis=0) > limit).any())
    if concurrency and (least.min(axis=0) > limit).any():
        return _replace(empty, binding=("concurrency",))

    cold = problem.start_s if problem.start == "cold" else 0.0
    nonmoe: list[NonMoeBilling | None] = [None] * L
    if full:
        for layer in range(L):
            compute = float(fx.nonmoe_compute_s[layer])
            direct_s = lm.billed_seconds(fx.nonmoe_fetch_s + compute + cold, c)
            nonmoe[layer] = NonMoeBilling(fx.nonmoe_price_usd_per_s, problem.start_s, compute, cold,
                                          float(direct_s) * fx.nonmoe_price_usd_per_s, c)

    # Drop the variants that alone break the time limit, then prune the remaining (variant,
    # layer)s a few variants at a time: options slower than the time limit allows, then
    # dominated ones. Option vectors are term-major (D, rows, K): cost, latencies, [active].
    max_lat = (layer_lower + slack + 1e-12).T  # (B, L)
    tables: dict[tuple[int, int], VariantTable] = {}
    D = 1 + B * (2 if concurrency else 1)
    batches: list[list[tuple[int, np.ndarray]]] = [[]]  # (variant, its layers) per pass
    size = 0
    for i, tv in enumerate(priced):
        ls = np.flatnonzero(fits[i] & ~(tv["lower"] - layer_lower > slack).any(axis=1)) if tv else []
        if len(ls):
            if size and size + D * ls.size * E * K > 2**22:  # bound one pass's memory
                batches.append([])
                size = 0
            batches[-1].append((i, ls))
            size += D * ls.size * E * K
    for batch in batches:
        if not batch:
            continue
        starts = np.cumsum([0] + [ls.size * E for _, ls in batch])  # each variant's rows in vec
        vec = np.empty((D, int(starts[-1]), K))
        feas: list[np.ndarray] = [np.empty(0)] * len(batch)

        def fill(k: int, batch: list[tuple[int, np.ndarray]] = batch, vec: np.ndarray = vec,
                 feas: list[np.ndarray] = feas, starts: np.ndarray = starts) -> None:
            i, ls = batch[k]
            tv, v, every = priced[i], variants[i], ls.size == L
            part = vec[:, starts[k]:starts[k + 1]].reshape(D, ls.size, E, K)
            part[0] = tv["cost"] if every else tv["cost"][ls]
            clipped = part[1:1 + B]
            np.maximum(tv["lat"] if every else tv["lat"][:, ls], tv["clip"][ls].T[:, :, None, None],
                       out=clipped)
            own = clipped if v.storage else tv["floor"][:, None, None, None] + clipped
            f = tv["feasible"][ls] & (own <= max_lat[:, ls, None, None]).all(axis=0)
            if concurrency:
                part[1 + B:] = active if every else active[:, ls]
            np.copyto(part, np.inf, where=~f)
            feas[k] = f

        _on_two_threads(fill, list(range(len(batch))))
        dominated = _dominated(vec)

        def extract(k: int, batch: list[tuple[int, np.ndarray]] = batch, feas: list[np.ndarray] = feas,
                    dominated: np.ndarray = dominated, starts: np.ndarray = starts) -> None:
            (i, ls), f = batch[k], feas[k]
            tv = priced[i]
            keep = f & ~dominated[starts[k]:starts[k + 1]].reshape(f.shape)
            j_idx, e_idx, k_idx = np.nonzero(keep)  # layer by layer, as np.nonzero per layer
            l_idx = ls[j_idx]
            cost = tv["cost"][l_idx, e_idx, k_idx]
            lat = np.ascontiguousarray(tv["lat"][:, l_idx, e_idx, k_idx].T)
            act = np.ascontiguousarray(active[:, l_idx, e_idx, k_idx].T)
            cut = np.searchsorted(j_idx, np.arange(ls.size + 1))
            made = []
            for j, layer in enumerate(ls):
                rows = slice(cut[j], cut[j + 1])
                made.append(VariantTable(
                    layer=int(layer), variant=variants[i], expert=e_idx[rows], option=k_idx[rows],
                    cost=cost[rows], lat=lat[rows], active=act[rows], floor=tv["floor"].copy(),
                    lower=tv["lower"][layer].copy(), nonmoe=nonmoe[layer],
                ))
                tables[int(layer), i] = made[-1]
            _derive(made, cost, lat, j_idx * E + e_idx, cut, E)

        _on_two_threads(extract, list(range(len(batch))))

    layers: list[tuple[VariantTable, ...]] = []
    lower_bound = 0.0
    for layer in range(L):
        kept = [tables[layer, i] for i in range(V) if (layer, i) in tables]
        layers.append(tuple(kept))
        lower_bound += min(t.cheapest_bound_usd for t in kept)
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


def _on_two_threads(work: Callable[[Job], None], jobs: list[Job]) -> None:
    """``work`` over ``jobs`` on two threads, each taking the next job when it is free (give
    the big jobs first): numpy releases the GIL in its loops, so two streams of numpy-bound
    work use both cores. An error on the second thread is raised here."""
    queue = iter(jobs)  # next() on a list iterator is atomic under the GIL
    failed: list[BaseException] = []

    def other() -> None:
        try:
            for job in queue:
                work(job)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the calling thread
            failed.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        for job in queue:
            work(job)
    finally:
        thread.join()
    if failed:
        raise failed[0]


def _derive(made: list[VariantTable], cost: np.ndarray, lat: np.ndarray, group: np.ndarray,
            cut: np.ndarray, E: int) -> None:
    """Fill in the derived arrays of one variant's tables (:attr:`VariantTable.flat` and what
    it is made of) for all of them at once: their rows sit in one array (``cost``, ``lat``:
    table j's are rows cut[j]:cut[j + 1]), each table's rows expert by expert (``group`` =
    table * E + expert, nondecreasing; every expert has a row). The same values as each
    table's own properties (the same minima, sort orders and sequential sums:
    tests/solvers/test_ilp_tables.py), in a few numpy calls instead of a dozen per table."""
    J = len(made)
    if not J:
        return
    starts = np.searchsorted(group, np.arange(J * E))
    lengths = np.diff(np.append(starts, len(group)))
    assert (lengths > 0).all(), "every expert of a table has a row"
    least_cost = np.minimum.reduceat(cost, starts).reshape(J, E)
    least_finish = np.minimum.reduceat(lat, starts, axis=0).reshape(J, E, -1)
    order = np.argsort(-least_finish.max(axis=2), axis=1, kind="stable")  # (J, E)
    ordered = np.take_along_axis(least_cost, order, axis=1)
    rest = np.zeros((J, E))
    rest[:, :-1] = np.cumsum(ordered[:, ::-1], axis=1)[:, ::-1][:, 1:]
    by_cost = np.lexsort((cost, group))  # table, expert, cost, row
    # Each table's rows, experts in ``order``: runs of consecutive rows, concatenated.
    run = (np.arange(J)[:, None] * E + order).ravel()
    run_len = lengths[run]
    run_at = np.repeat(starts[run] - np.cumsum(run_len) + run_len, run_len)
    groups = np.arange(len(group)) + run_at  # global rows
    offsets = np.zeros((J, E + 1), dtype=np.int64)
    offsets[:, 1:] = np.cumsum(run_len.reshape(J, E), axis=1)
    first = np.repeat(cut[:-1], np.diff(cut)).astype(np.int64)  # each row's table's first row
    groups, by_cost = groups - first, by_cost - first  # rows within their table
    for j, t in enumerate(made):
        lo, hi = int(cut[j]), int(cut[j + 1])
        t.__dict__.update(  # cached_property values (frozen: no __setattr__)
            experts=E, least_cost=least_cost[j], least_finish=least_finish[j],
            slowest_first=(order[j], rest[j]), rows_slowest_first=(groups[lo:hi], offsets[j]),
            by_expert_cost=by_cost[lo:hi],
        )
        t.flat  # noqa: B018 - converted now, from the values above (0.4 ms for bert-moe-8's 132)


def _dominated(vec: np.ndarray) -> np.ndarray:
    """(D, R, K) -> (R, K), rows independent: another option is no worse in every term (ties:
    the cheaper, then the lower index wins); term 0 is the cost.

    First the cheap cut: the cheapest option whose latency terms all sit at the row's floor
    dominates every dearer option; then an exact check on what is left, unless more than
    PAIRWISE_MAX options are left. Compiled where the extension is built (the same options:
    tests/solvers/test_ilp_cprice.py).
    """
    from solvers import _ilp_model  # the one switch of the compiled paths (it imports this module)

    D, R, K = vec.shape
    if _ilp_model._cprice is not None and vec.dtype == np.float64:
        out = np.zeros((R, K), dtype=bool)
        _ilp_model._cprice.dominated(np.ascontiguousarray(vec), D, R, K, PAIRWISE_MAX, out)
        return out
    finite = np.isfinite(vec[0])
    # Rank each row's options by cost (stable), so only earlier options can dominate.
    order = np.argsort(vec[0], axis=1, kind="stable")
    at_floor = finite.copy()
    for term in vec[1:]:
        floor = term.min(axis=1)  # (R,) the least finite term (+inf when none)
        if np.isnan(floor).any() or (floor == -np.inf).any():
            floor = np.where(np.isfinite(term), term, np.inf).min(axis=1)
        at_floor &= term <= floor[:, None]
    at_floor_sorted = np.take_along_axis(at_floor, order, axis=1)
    first = np.where(at_floor_sorted.any(axis=1), at_floor_sorted.argmax(axis=1), K)
    dominated_sorted = np.arange(K)[None, :] > first[:, None]
    live = ~dominated_sorted & np.take_along_axis(finite, order, axis=1)
    counts = live.sum(axis=1)
    check = (counts > 1) & (counts <= PAIRWISE_MAX)
    # The live options come first in cost order (infinite costs sort last), unless a cost is
    # -inf or NaN: then gather them first.
    prefix = bool((live == (np.arange(K)[None, :] < counts[:, None])).all())
    for rows, width in _buckets(counts, check):
        if prefix:
            pos = np.broadcast_to(np.arange(width), (len(rows), width))
            alive = pos < counts[rows, None]
        else:
            pos = np.argsort(~live[rows], axis=1, kind="stable")[:, :width]
            alive = np.take_along_axis(live[rows], pos, axis=1)
        idx = np.take_along_axis(order[rows], pos, axis=1)  # (n, w) into the unsorted options
        cv = np.where(alive[None], vec[1:, rows[:, None], idx], np.inf)  # (D-1, n, w)
        hit = _exact(cv, alive)
        if prefix:
            dominated_sorted[rows, :width] |= hit
        else:
            found = np.zeros((len(rows), K), dtype=bool)
            np.put_along_axis(found, pos, hit, axis=1)
            dominated_sorted[rows] |= found
    out = np.zeros((R, K), dtype=bool)
    np.put_along_axis(out, order, dominated_sorted, axis=1)
    return out & finite


def _buckets(counts: np.ndarray, check: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The checked rows in buckets of similar width, so short rows do not pay for the longest
    one's: (rows, width)."""
    edges = np.unique(np.geomspace(2, PAIRWISE_MAX, 16).round().astype(int))
    bucket = np.searchsorted(edges, counts)  # counts <= edges[bucket]
    out = []
    for b in np.unique(bucket[check]):
        rows = np.flatnonzero(check & (bucket == b))
        out.append((rows, int(counts[rows].max())))
    return out


def _exact(cv: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """(T, n, w) latency terms of options in cost order, (n, w) which are live (the first ones)
    -> (n, w): a live option that an earlier one is no worse than in every term (it is no
    dearer: it is earlier).

    Three steps, each exact: an option no better in any term than the earlier option of least
    term sum is dominated (this finds almost all; when many are left, also against the least
    sum of terms scaled to their row's largest, and against the option just before); one
    better in some term than every earlier option is not; what is left is compared with every
    earlier option not known dominated.
    """
    T, n, width = cv.shape
    rows = np.arange(n)[:, None]

    def witness(total: np.ndarray) -> np.ndarray:  # the earlier option of least ``total``
        best = np.minimum.accumulate(total, axis=1)
        best_at = np.maximum.accumulate(np.where(total == best, np.arange(width), 0), axis=1)
        by = np.zeros_like(best_at)
        by[:, 1:] = best_at[:, :-1]  # strictly earlier
        found = (cv[:, rows, by] <= cv).all(axis=0)
        found[:, 0] = False
        return found

    dom = witness(cv.sum(axis=0)) & alive
    prior = np.full_like(cv, np.inf)  # least of each term among the earlier options
    np.minimum.accumulate(cv[:, :, :-1], axis=2, out=prior[:, :, 1:])
    doubt = alive & ~dom & ~(cv < prior).any(axis=0)
    if doubt.sum() > n:  # terms of unlike scales (replicas beside seconds), or many equal
        top = np.where(np.isfinite(cv), cv, -np.inf).max(axis=2, keepdims=True)  # (T, n, 1)
        scale = np.where(np.isfinite(top) & (top > 0), 1.0 / np.where(top > 0, top, 1.0), 1.0)
        dom |= witness((cv * scale).sum(axis=0)) & alive
        dom[:, 1:] |= (cv[:, :, :-1] <= cv[:, :, 1:]).all(axis=0) & alive[:, 1:]  # the one before
        doubt &= ~dom
    r, k = np.nonzero(doubt)
    if r.size:
        # A dominated option has an undominated dominator: compare with the options not yet
        # known dominated only (the front, and the few still in doubt), gathered first.
        left = alive & ~dom
        wide = int(left.sum(axis=1).max())
        at = np.argsort(~left, axis=1, kind="stable")[:, :wide]  # (n, wide) positions
        front = np.where(np.take_along_axis(left, at, axis=1)[None],
                         np.take_along_axis(cv, np.broadcast_to(at[None], (T, n, wide)), axis=2),
                         np.inf)
        step = max(1, 2**20 // (T * wide))  # bound the memory of one comparison
        for s in range(0, r.size, step):
            rr, kk = r[s:s + step], k[s:s + step]
            no_worse = (front[:, rr, :] <= cv[:, rr, kk][:, :, None]).all(axis=0)  # (C, wide)
            dom[rr, kk] = (no_worse & (at[rr] < kk[:, None])).any(axis=1)
    return dom


def _replace(t: Tables, **changes: object) -> Tables:
    from dataclasses import replace

    return replace(t, **changes)
