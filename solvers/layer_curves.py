"""A problem's per-layer cost-vs-time curves, and the plans they suggest (warm starts).

Once a layer's scatter-gather method, pipeline degree and bottleneck time T are fixed, its
experts are independent: each takes its cheapest (memory, replicas) option that finishes within
T on every batch. So a layer is a curve of (time, cost) points, one per (variant, T), and a plan
is one point per layer. The curves come from the per-expert option tables
(:mod:`solvers._options`, the cost_models formulas), without pricing a plan: they give
black-box searchers a compact coordinate per layer (position on its curve), a warm start (the
plans on the Lagrangian path: each layer at the point minimising cost + lambda x time, for every
lambda) and, through :func:`expert_estimate`, the per-expert part of any plan's cost and time.

What they leave out is what the evaluator adds per layer (scatter and gather stages, the floor of
starting the next function) and per plan (head, tail, the worst batch of the sum): a searcher
learns that from evaluations (``solvers.bayes``).

>>> from moeopt.problem import load_problem
>>> curves = LayerCurves.of(load_problem("bert-moe-4"))
>>> path = curves.lagrangian_path()   # fastest plan first, then one layer one step slower each
>>> bool((curves.time_s(path[0]).sum() <= curves.time_s(path[-1]).sum()))
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cost_models import lambda_model as lm
from moeopt.evaluate import fixed_parts
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem
from moeopt.space import PIPELINE_DEGREES
from solvers._options import expert_options


@dataclass(frozen=True, eq=False)
class ExpertEstimate:
    """The per-expert part of P plans' cost and time (cost_models formulas, no evaluator)."""

    cost_usd: np.ndarray  # (P,) experts' billed cost, mean over batches (the paper's cost)
    bottleneck_s: np.ndarray  # (P, B, L) each layer's latency on each batch: its last replica's finish
    tokens_max: np.ndarray  # (P, L) most tokens any replica of the layer gets (worst batch)
    active_max: np.ndarray  # (P,) most replicas running at once in one layer (concurrency)
    memory_ok: np.ndarray  # (P,) every expert's memory need fits (heaviest batch)
    payload_ok: np.ndarray  # (P,) every direct layer's payloads fit


def expert_estimate(problem: DeploymentProblem, plans: PlanArrays, chunk: int = 64) -> ExpertEstimate:
    """Price the experts of ungrouped plans, in chunks so memory stays bounded on large problems."""
    parts = [_estimate(problem, _rows(plans, s, s + chunk)) for s in range(0, plans.size, chunk)]
    if not parts:
        parts = [_estimate(problem, plans)]
    return ExpertEstimate(*(np.concatenate(f) for f in zip(*(_fields(p) for p in parts), strict=True)))


def _fields(e: ExpertEstimate) -> tuple[np.ndarray, ...]:
    return (e.cost_usd, e.bottleneck_s, e.tokens_max, e.active_max, e.memory_ok, e.payload_ok)


def _rows(p: PlanArrays, a: int, b: int) -> PlanArrays:
    return PlanArrays(p.memory_mb[a:b], p.replicas[a:b], p.method[a:b], p.pipeline_degree[a:b])


def replica_times(
    problem: DeploymentProblem,
    method: np.ndarray,
    tokens: np.ndarray,
    memory_mb: np.ndarray,
    pipeline_degree: np.ndarray,
    layer_tokens: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(billed seconds, finish time) of one expert's replicas, with the cost model's timelines
    (``lambda_model.replica_times``) wired as the evaluator and ``solvers._options`` wire them
    (start, weights, data vCPUs, the gate's CPU for the layer's ``layer_tokens``, the next
    function's start); the finish includes what the layer adds after its slowest replica, so a
    layer's latency on a batch is the largest finish of its replicas. Arguments broadcast.
    tests/solvers/test_layer_curves.py checks this against the evaluator on every build."""
    c, m = problem.constants, problem.model
    next_load = fixed_parts(problem).next_load_s
    cpu = lm.data_vcpus(memory_mb, c)
    times = lm.replica_times(
        method, tokens, lm.weights_fetch_s(m.expert_param_bytes, c, problem.fetch_weights, cpu),
        lm.compute_time_per_token(memory_mb, m.expert_flops_per_token, c), pipeline_degree,
        m.token_bytes, c, problem.start_s, next_load, problem.start == "cold",
        cpu=cpu, gate_s=lm.gate_cpu_s(layer_tokens, m.token_bytes, method, c),
    )
    finish = np.where(tokens > 0, times.finish_s + lm.layer_offset_s(method, next_load), 0.0)
    return times.billed_s, finish


def _estimate(problem: DeploymentProblem, plans: PlanArrays) -> ExpertEstimate:
    c, m = problem.constants, problem.model
    loads = problem.popularity.loads.astype(float)[None]  # (1, B, L, E)
    memory = np.asarray(plans.memory_mb, dtype=float)[:, None]  # (P, 1, L, E)
    replicas = np.asarray(plans.replicas, dtype=float)[:, None]
    method = np.asarray(plans.method)[:, None, :, None]
    beta = np.asarray(plans.pipeline_degree, dtype=float)[:, None, :, None]
    r = np.ceil(loads / replicas)  # (P, B, L, E)
    layer_tokens = fixed_parts(problem).layer_tokens[None, :, :, None]  # (1, B, L, 1)
    billed, t = replica_times(problem, method, r, memory, beta, layer_tokens)
    active = np.minimum(replicas, loads)
    price = lm.price_per_mb_second(False, c) * memory
    cost = (lm.billed_seconds(billed, c) * active * price).sum(axis=(2, 3)).mean(axis=1)
    r_max = r.max(axis=1)  # (P, L, E)
    need = lm.memory_required_mb(
        method[:, 0], r_max, m.expert_param_bytes, beta[:, 0], m.token_bytes,
        m.intermediate_bytes_per_token, c,
    )
    used = r_max > 0
    memory_ok = ~(need > memory[:, 0]).any(axis=(1, 2))
    pay = lm.payload_bytes(r_max, m.token_bytes, c) > c.lambda_payload_limit_bytes
    payload_ok = ~(used & (method[:, 0] == lm.DIRECT) & pay).any(axis=(1, 2))
    return ExpertEstimate(
        cost, t.max(axis=3), r_max.max(axis=2), active.sum(axis=3).max(axis=(1, 2)), memory_ok,
        payload_ok,
    )


@dataclass(frozen=True, eq=False)
class LayerCurve:
    """One layer's Pareto-efficient points, fastest first (time up, cost down)."""

    time_s: np.ndarray  # (K,) the layer's latency on its worst batch (last replica's finish)
    batch_time_s: np.ndarray  # (K, B) the layer's latency on each batch
    cost_usd: np.ndarray  # (K,)
    variant: np.ndarray  # (K,) index into LayerCurves.variants
    memory_index: np.ndarray  # (K, E) into problem.memory_options
    replicas: np.ndarray  # (K, E) replica counts

    def __len__(self) -> int:
        return len(self.time_s)


@dataclass(frozen=True, eq=False)
class LayerCurves:
    """Every layer's curve; index vectors ``k`` (one point per layer) stand for plans."""

    problem: DeploymentProblem
    variants: tuple[tuple[int, float], ...]  # (method index, pipeline degree)
    layers: tuple[LayerCurve, ...]

    @classmethod
    def of(
        cls,
        problem: DeploymentProblem,
        degrees: tuple[int, ...] | None = None,
        max_levels: int = 256,
    ) -> LayerCurves:
        """Build the curves; at most ``max_levels`` time levels per layer and variant (a quantile
        grid over the distinct option times where there are more: deepseek-v3 has 28,672).
        ``degrees``: pipeline degrees tried (default: all of the plan space's up to 2,000
        experts, else 64, 256 and 1,024, which keeps deepseek-v3's curves near a second)."""
        if degrees is None:
            cells = problem.layers * problem.experts
            degrees = PIPELINE_DEGREES if cells <= 2000 else (64, 256, 1024)
        variants = []
        for name in problem.methods:
            m = lm.METHODS.index(name)
            for b in degrees if m == lm.PIPELINED_STORAGE else (1,):
                variants.append((m, float(b)))
        curves = [
            _layer_curve(problem, layer, variants, max_levels) for layer in range(problem.layers)
        ]
        return cls(problem, tuple(variants), tuple(curves))

    @property
    def sizes(self) -> np.ndarray:
        return np.asarray([len(c) for c in self.layers])

    def time_s(self, k: np.ndarray) -> np.ndarray:
        """(…, L) each layer's curve time at positions ``k``."""
        return np.stack([c.time_s[k[..., i]] for i, c in enumerate(self.layers)], axis=-1)

    def cost_usd(self, k: np.ndarray) -> np.ndarray:
        return np.stack([c.cost_usd[k[..., i]] for i, c in enumerate(self.layers)], axis=-1)

    def time_lower_bound(self, k: np.ndarray) -> np.ndarray:
        """(n,) max over batches of the summed slowest-replica times: a lower bound on the
        latency of the plans at ``k`` (the evaluator adds stages around each layer, never less)."""
        k = np.atleast_2d(k)
        per_batch = sum(c.batch_time_s[k[:, i]] for i, c in enumerate(self.layers))
        return np.asarray(per_batch).max(axis=1)

    def design(self, n: int) -> np.ndarray:
        """``n`` evenly spaced positions on the Lagrangian path, among the plans whose latency
        lower bound meets the time limit (a warm start for searchers), the cheapest one last."""
        path = self.lagrangian_path()
        ok = self.time_lower_bound(path) <= self.problem.slo.time_limit_s
        last = int(np.flatnonzero(ok).max()) if ok.any() else len(path) - 1
        idx = np.unique(np.linspace(0, last, max(n, 1)).round().astype(np.int64))
        return path[idx]

    def walk_to_limit(
        self, price: Callable[[np.ndarray], np.ndarray], n: int = 16, rounds: int = 3
    ) -> np.ndarray:
        """Find the cheapest feasible plan on the Lagrangian path in ``rounds`` x ``n`` prices.

        Each round prices ``n`` evenly spaced path points between the last feasible and the
        first infeasible point priced so far (the path is slower and cheaper at every step, so
        feasibility ends somewhere along it); plans whose latency lower bound breaks the time
        limit are never priced. ``price(k)`` prices positions (m, L) and returns per row 1
        (feasible), 0 (infeasible) or -1 (not priced: budget over, or priced before). Returns
        the positions priced, in order.
        """
        path = self.lagrangian_path()
        ok = self.time_lower_bound(path) <= self.problem.slo.time_limit_s
        lo, hi = 0, int(np.flatnonzero(ok).max()) if ok.any() else len(path) - 1
        priced = []
        for _ in range(rounds):
            if hi < lo:
                break
            idx = np.unique(np.linspace(lo, hi, n).round().astype(np.int64))
            result = np.asarray(price(path[idx]))
            if not (result >= 0).any():
                break
            priced.append(path[idx][result >= 0])
            if (result == 1).any():
                lo = int(idx[result == 1].max())
            bad = idx[(result == 0) & (idx > lo)]
            hi = int(bad.min()) if len(bad) else hi
            if hi - lo <= 1:
                break
            lo, hi = lo + 1, hi - 1
        return np.concatenate(priced) if priced else np.zeros((0, len(self.layers)), np.int64)

    def clip(self, k: np.ndarray) -> np.ndarray:
        return np.clip(k, 0, self.sizes - 1)

    def plans(self, k: np.ndarray) -> PlanArrays:
        """The plans at curve positions ``k`` (n, L)."""
        k = np.atleast_2d(k)
        menu = np.asarray(self.problem.memory_options, dtype=float)
        var = np.asarray(self.variants)
        cols = [(c.memory_index[k[:, i]], c.replicas[k[:, i]], c.variant[k[:, i]]) for i, c in enumerate(self.layers)]
        mem = np.stack([menu[m] for m, _, _ in cols], axis=1)
        reps = np.stack([r for _, r, _ in cols], axis=1)
        v = np.stack([v for _, _, v in cols], axis=1)
        return PlanArrays(mem, reps, var[v, 0].astype(np.int64), var[v, 1])

    def locate(self, plans: PlanArrays, bottleneck_s: np.ndarray) -> np.ndarray:
        """(n, L) the curve point nearest each plan's layer: same variant where the curve has
        it, then nearest time (``bottleneck_s`` (n, B, L) from :func:`expert_estimate`)."""
        worst = bottleneck_s.max(axis=1)
        out = np.zeros(worst.shape, dtype=np.int64)
        var = np.asarray(self.variants)
        for i, c in enumerate(self.layers):
            same = (var[c.variant, 0][None] == plans.method[:, i, None]) & (
                (var[c.variant, 0][None] != lm.PIPELINED_STORAGE)
                | (var[c.variant, 1][None] == plans.pipeline_degree[:, i, None])
            )
            gap = np.abs(np.log(c.time_s[None]) - np.log(np.maximum(worst[:, i, None], 1e-9)))
            out[:, i] = np.where(same, gap, gap + 1e6).argmin(axis=1)
        return out

    def lagrangian_path(self, time_s: list[np.ndarray] | None = None) -> np.ndarray:
        """Every plan that minimises cost + lambda x time for some lambda, fastest first.

        Per layer, the lower convex hull of its (time, cost) points; the path starts with every
        layer at its fastest point and then moves one layer one hull vertex slower at a time,
        the move saving the most cost per second first. ``time_s``: per layer, times to use
        instead of the curve's (a searcher's learnt layer latencies). Returns (n, L) positions.
        """
        times = time_s if time_s is not None else [c.time_s for c in self.layers]
        hulls = [_lower_hull(t, c.cost_usd) for t, c in zip(times, self.layers, strict=True)]
        moves = []  # (saving per second, layer, step)
        for layer, (hull, t) in enumerate(zip(hulls, times, strict=True)):
            cost = self.layers[layer].cost_usd
            for j in range(len(hull) - 1):
                a, b = hull[j], hull[j + 1]
                moves.append(((cost[a] - cost[b]) / max(t[b] - t[a], 1e-12), layer, j + 1))
        moves.sort(key=lambda mv: -mv[0])
        k = np.asarray([h[0] for h in hulls], dtype=np.int64)
        path = [k.copy()]
        for _, layer, j in moves:
            k[layer] = hulls[layer][j]
            path.append(k.copy())
        return np.asarray(path)


def _lower_hull(time_s: np.ndarray, cost: np.ndarray) -> list[int]:
    """Indices of the lower convex hull of (time, cost), by increasing time."""
    order = np.lexsort((cost, time_s))
    hull: list[int] = []
    for i in order:
        if hull and cost[i] >= cost[hull[-1]]:
            continue  # slower and no cheaper: never on the hull
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies on or above the segment a -> i: drop it
            cross = (time_s[b] - time_s[a]) * (cost[i] - cost[a]) - (cost[b] - cost[a]) * (time_s[i] - time_s[a])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(int(i))
    return hull


def _layer_curve(
    problem: DeploymentProblem, layer: int, variants: list[tuple[int, float]], max_levels: int
) -> LayerCurve:
    E = problem.experts
    G = problem.max_replicas
    times, costs, var, mems, reps, batch_t = [], [], [], [], [], []
    for v, (method, beta) in enumerate(variants):
        opts = expert_options(problem, layer, method, beta)
        t = np.where(opts.feasible, opts.time_s, np.inf).reshape(E, -1)  # (E, M*G)
        cost = np.where(opts.feasible, opts.cost_usd, np.inf).reshape(E, -1)
        if not np.isfinite(t).any(axis=1).all():
            continue  # some expert fits nowhere under this variant
        order = np.argsort(t, axis=1, kind="stable")
        t_sorted = np.take_along_axis(t, order, axis=1)
        c_sorted = np.take_along_axis(cost, order, axis=1)
        # Prefix minimum of cost by time: the cheapest option finishing within each time.
        running = np.minimum.accumulate(c_sorted, axis=1)
        cols = np.arange(c_sorted.shape[1])
        best_at = np.maximum.accumulate(np.where(c_sorted <= running, cols, 0), axis=1)
        floor = t_sorted[:, 0].max()  # the slowest expert's fastest option
        levels = np.unique(t_sorted[np.isfinite(t_sorted) & (t_sorted >= floor)])
        if len(levels) > max_levels:
            levels = levels[np.unique(np.linspace(0, len(levels) - 1, max_levels).round().astype(int))]
        pos = np.stack([np.searchsorted(t_sorted[e], levels, side="right") - 1 for e in range(E)])
        pick = np.take_along_axis(order, np.take_along_axis(best_at, pos, axis=1), axis=1)  # (E, n)
        flat_c = np.take_along_axis(cost, pick, axis=1)
        flat_t = np.take_along_axis(t, pick, axis=1)
        batch_t.append(_batch_times(problem, layer, method, beta, pick // G, pick % G + 1))
        times.append(flat_t.max(axis=0))
        costs.append(flat_c.sum(axis=0))
        var.append(np.full(len(levels), v))
        mems.append((pick // G).T)
        reps.append((pick % G + 1).T)
    if not times:
        raise ValueError(f"layer {layer}: no variant fits every expert")
    t_all, c_all = np.concatenate(times), np.concatenate(costs)
    order = np.lexsort((c_all, t_all))
    keep, best = [], np.inf
    for i in order:  # Pareto: strictly cheaper than every faster point
        if c_all[i] < best * (1 - 1e-12):
            keep.append(i)
            best = c_all[i]
    keep_a = np.asarray(keep)
    return LayerCurve(
        t_all[keep_a], np.concatenate(batch_t)[keep_a], c_all[keep_a], np.concatenate(var)[keep_a],
        np.concatenate(mems)[keep_a], np.concatenate(reps)[keep_a],
    )


def _batch_times(
    problem: DeploymentProblem, layer: int, method: int, beta: float, mem: np.ndarray, reps: np.ndarray
) -> np.ndarray:
    """(n, B) slowest replica per batch for n per-expert choices (``mem``, ``reps``: (E, n))."""
    loads = problem.popularity.loads[:, layer, :].astype(float)[:, :, None]  # (B, E, 1)
    memory = np.asarray(problem.memory_options, dtype=float)[mem][None]  # (1, E, n)
    r = np.ceil(loads / reps[None])
    layer_tokens = fixed_parts(problem).layer_tokens[:, layer, None, None]  # (B, 1, 1)
    _, finish = replica_times(problem, np.asarray(method), r, memory, np.asarray(beta), layer_tokens)
    return finish.max(axis=1).T
