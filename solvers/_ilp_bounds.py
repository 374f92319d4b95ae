"""Lower bounds and the exact search for the layer-curve program (docs/ilp.md, "Bounds").

The problem is a multiple-choice knapsack over layers: each layer takes one configuration
(a variant and one option per expert) with a cost and a latency per batch, and the latencies
of all layers must fit one capacity per batch (the end-to-end time rows). Three tools:

- :func:`price_layer`: the **Lagrangian subproblem** of one layer, exactly: for multipliers
  ``mu >= 0`` on the time rows, the least ``cost + mu . latency`` over all its configurations.
  Dynamic programming over the experts (slowest first) whose partial states ``(cost, latency)``
  are pruned by mu-dominance: A beats B in every completion when ``cost_A + sum_b (h_b(A) -
  h_b(B))^+ <= cost_B`` with ``h_b`` the (monotone) price of latency on batch b. Exact, and the
  fronts stay small even with 128-256 experts.
- :func:`column_generation`: the LP over all layer configurations (the convex hull of each
  layer's curve; its value is the best Lagrangian bound) by column generation with exact
  pricing. Every iterate gives a proven bound ``sum_l min_l(mu) - mu . capacity``.
- :func:`search`: the exact optimum of the program over given layer curves, by a breadth-first
  dynamic program over layers, pruned by partial-Lagrangian bounds: keep one batch's time row
  exactly (a two-dimensional Pareto front of the remaining layers, per batch) and relax the
  others with ``mu``. It either returns the best plan below a target or proves there is none.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import highspy
import numpy as np

from solvers import _ilp_model
from solvers._ilp_model import TIME_MARGIN_S, Choice, LayerCurve
from solvers._ilp_tables import Tables, VariantTable

#: Stop a search whose candidate states at one layer exceed this (memory: ~100 B each).
MAX_SEARCH_CANDIDATES = 4_000_000
#: Pricing keeps this many more configurations of each variant's final front (by value) ...
EXTRA_COLUMNS = 4
#: ... when their value is within this fraction of the least: candidates for the incumbent.
NEAR_COLUMNS = 2e-3
#: Keep one batch's row exact per bound (2-D fronts of the remaining layers).
PARTIAL_FRONTS = True
#: LP cuts are generated at a layer only when its survivors times the next layer's options
#: (the candidates they would expand to) exceed this: a cut round costs a few HiGHS LPs
#: (~0.3 ms each), about what expanding ~100,000 candidates costs in the compiled search.
CUT_MIN_CANDIDATES = 100_000
#: A mu-dominance front of at least this many states runs in the compiled sweep
#: (:mod:`solvers._ilp_kernels`). Paper problems never reach it (their fronts stay under 100
#: states), so they do not pay the half second numba takes to load.
COMPILED_FRONT_MIN = 256
#: Pricing expands states x options in the compiled loop from this many candidates on.
COMPILED_EXPAND_MIN = 32_768
#: The compiled sweep checks the deadline between chunks of this many states.
COMPILED_CHUNK = 16_384


def capacity(tables: Tables) -> np.ndarray:
    """Per batch, the seconds the MoE layers may take together (the time rows' right sides)."""
    limit = tables.problem.slo.time_limit_s
    return limit - TIME_MARGIN_S - 1e-9 * limit - tables.fixed_s


# -- the Lagrangian subproblem of one layer ------------------------------------------------------


def _batch_prices(t: VariantTable, mu: np.ndarray, slowest: np.ndarray) -> np.ndarray:
    """h_b: what a slowest-replica finish ``slowest`` (..., B) costs on each batch under
    multipliers ``mu``: mu . layer latency plus (full scope) the non-MoE function's billed
    wait, each batch's share of the mean. Monotone in ``slowest``."""
    lat = t.latency_of(slowest)
    h = lat * mu
    if t.nonmoe is not None and t.variant.storage:
        n = t.nonmoe
        from cost_models import lambda_model as lm

        billed = lm.billed_seconds(lat - n.start_s + n.compute_s + n.cold_s, n.constants)
        h = h + billed * (n.price_usd_per_s / lat.shape[-1])
    return h


def _price_table(
    t: VariantTable, mu: np.ndarray, upper: float, deadline: float, extra: int = 0,
    values: list[float] | None = None,
) -> list[Choice]:
    """The configuration of ``t`` with the least ``cost + mu . latency`` if it is below
    ``upper`` (else an empty list), then up to ``extra`` more of the final front by value
    (other mu-efficient configurations: candidates for the incumbent); raises TimeoutError
    past ``deadline``. The compiled DP (:mod:`solvers._ilp_cprice`) where it was built, else
    :func:`_price_table_numpy`: the same configurations. ``values`` collects the DP's value of
    each (without ``t.direct_usd``)."""
    if _ilp_model._cprice is not None:  # the one switch (tests turn it off there)
        return _price_table_compiled(t, mu, upper, deadline, extra, values)
    return _price_table_numpy(t, mu, upper, deadline, extra, values)


def _price_table_compiled(
    t: VariantTable, mu: np.ndarray, upper: float, deadline: float, extra: int,
    values: list[float] | None = None,
) -> list[Choice]:
    """:func:`_price_table` by the compiled DP (one call per table, no numpy inside); ``values``
    collects the DP's value of each configuration returned (tests compare them bit for bit)."""
    cprice = _ilp_model._cprice
    assert cprice is not None
    a = t.flat
    E, B = t.experts, t.lat.shape[1]
    step, start, compute, cold, price = t.billing
    picks = np.empty((1 + extra, E), dtype=np.int64)
    value = np.empty(1 + extra)
    found = cprice.price_table(
        a.cost, a.lat, a.groups, a.offsets, a.rest, a.least_slowest, a.add, a.base,
        np.ascontiguousarray(mu, dtype=float), picks, value, B, 1 + extra, step, start, compute,
        cold, price / B, float(upper - t.direct_usd), float(deadline),
    )
    out, _, _ = _ilp_model.choices_of(t, t.rows_of_steps(picks[:found]))
    if values is not None:
        values.extend(value[:found].tolist())
    return out


def _price_table_numpy(
    t: VariantTable, mu: np.ndarray, upper: float, deadline: float, extra: int = 0,
    values: list[float] | None = None,
) -> list[Choice]:
    """:func:`_price_table` in numpy (the reference the compiled DP is tested against);
    ``values`` collects the DP's value of each configuration returned."""
    order, rest = t.slowest_first
    const = t.direct_usd
    start = t.least_slowest
    cost = np.zeros(1)
    slow = start[None].copy()
    picks = np.zeros((1, 0), dtype=np.int64)
    limit = upper - const
    for step, e in enumerate(order):
        if time.perf_counter() > deadline:
            raise TimeoutError
        rows = t.expert_rows[e]
        if len(rows) > 64:
            # Options of one expert that another beats from the least state on are beaten from
            # every state (the gap between two options only shrinks as the state's latency grows).
            h0 = _batch_prices(t, mu, np.maximum(start, t.lat[rows]))
            v0 = t.cost[rows] + h0.sum(axis=1)
            o = np.argsort(v0, kind="stable")
            rows = rows[o][_mu_front(t.cost[rows][o], h0[o], deadline=deadline)]
        if len(cost) * len(rows) >= COMPILED_EXPAND_MIN:
            si, ki, c, s, h = _compiled_expand(t, mu, cost, slow, rows, rest[step], limit)
        else:
            si, ki, c, s, h = _expand(t, mu, cost, slow, rows)
        value = c + h.sum(axis=1)
        ok = np.isfinite(c) & (value + rest[step] <= limit + 1e-12 * abs(limit))
        idx = np.flatnonzero(ok)
        idx = idx[np.argsort(value[idx], kind="stable")]
        keep = _mu_front(c[idx], h[idx], deadline=deadline)
        idx = idx[keep]
        cost, slow = c[idx], s[idx]
        picks = np.concatenate([picks[si[idx]], rows[ki[idx]][:, None]], axis=1)
        if not len(cost):
            return []
    value = cost + _batch_prices(t, mu, slow).sum(axis=1)
    least = np.argsort(value, kind="stable")[: 1 + extra]
    if values is not None:
        values.extend(value[least].tolist())
    return [Choice(t, rows) for rows in t.rows_of_steps(picks[least])]


def _mu_front(c: np.ndarray, h: np.ndarray, chunk: int = 256, deadline: float = math.inf) -> np.ndarray:
    """States (sorted by value) that no earlier state mu-dominates: A dominates B when
    c_A + sum_b (h_A - h_B)^+ <= c_B (then A's completions are never worse than B's).
    Raises TimeoutError past ``deadline`` (checked once per block)."""
    n = len(c)
    if h.ndim == 1:
        h = h[:, None]
    if h.shape[1] > 1 and n > 1:
        # A batch whose price is the same for every state adds nothing to any comparison.
        varies = h.max(axis=0) > h.min(axis=0)
        if not varies.all():
            h = h[:, varies]
    # One contiguous row per batch: the pairwise terms are summed batch by batch on 2-D
    # arrays (a reduction over a short last axis of a 3-D temporary is several times slower).
    hT = np.ascontiguousarray(h.T, dtype=float)
    if n >= COMPILED_FRONT_MIN:
        return _compiled_front(np.ascontiguousarray(c, dtype=float), hT, deadline)

    def excess(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """[i, j] = sum over batches of (h_a[j] - h_b[i])^+, for states a (columns), b (rows)."""
        out = np.zeros((len(b), len(a)))
        tmp = np.empty_like(out)
        for row in hT:
            np.subtract(row[a][None, :], row[b][:, None], out=tmp)
            np.maximum(tmp, 0.0, out=tmp)
            out += tmp
        return out

    # Dominance is transitive ((x)^+ is subadditive), so a state dominated by any earlier state
    # is dominated by an earlier survivor. Sweep: the first ``block`` states still alive are
    # checked among themselves (those left are survivors: nothing before them is alive), then
    # every later state is checked against those survivors at once.
    keep = np.zeros(n, dtype=bool)
    alive = np.arange(n)
    block = max(1, min(chunk, 32))
    while len(alive):
        if time.perf_counter() > deadline:
            raise TimeoutError
        idx, rest = alive[:block], alive[block:]
        cc = c[idx]
        m = len(idx)
        inner = cc[None, :] + excess(idx, idx)  # [b, a]
        inner = (inner <= cc[:, None]) & (np.arange(m)[None, :] < np.arange(m)[:, None])
        surv = ~inner.any(axis=1)
        keep[idx[surv]] = True
        if not len(rest):
            break
        si = idx[surv]
        d = c[si][None, :] + excess(si, rest)  # (rest, surv)
        alive = rest[~(d <= c[rest][:, None]).any(axis=1)]
        if len(alive) > 4 * block and surv.all():
            block = min(4 * block, 256)  # few states fall: take bigger blocks
    return keep


def _expand(
    t: VariantTable, mu: np.ndarray, cost: np.ndarray, slow: np.ndarray, rows: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One expert of the pricing DP: every state (``cost``, ``slow`` (S, B)) with every option of
    ``rows``, in (state, option) order: (state, option, cost, slowest finish, batch prices).
    An option that fits under a state's latency leaves it as it is: only the cheapest such
    option stays (the others get cost inf)."""
    B = slow.shape[1]
    c = cost[:, None] + t.cost[rows][None]  # (S, K)
    s = np.maximum(slow[:, None], t.lat[rows][None])  # (S, K, B)
    fits = (s == slow[:, None]).all(axis=2)
    if fits.any():
        cheapest = np.where(fits, c, np.inf).argmin(axis=1)
        drop = fits.copy()
        drop[np.arange(len(c)), cheapest] = False
        c = np.where(drop, np.inf, c)
    c, s = c.ravel(), s.reshape(-1, B)
    si, ki = np.divmod(np.arange(len(c)), len(rows))
    return si, ki, c, s, _batch_prices(t, mu, s)


def _compiled_expand(
    t: VariantTable, mu: np.ndarray, cost: np.ndarray, slow: np.ndarray, rows: np.ndarray,
    rest: float, limit: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The numpy expansion of :func:`_price_table` (every state with every option of ``rows``,
    the cheapest fitting option per state, batch prices) by the compiled loop, keeping only
    candidates that may pass the value test (a superset: the caller's test is the exact one).
    Same floats: the loop prices batches as :func:`_batch_prices` does."""
    from solvers._ilp_kernels import expand_states

    step, start, compute, cold, price = t.billing
    price = price / t.lat.shape[1]
    f = np.ascontiguousarray
    return expand_states(
        f(cost, dtype=float), f(slow, dtype=float), f(t.cost[rows], dtype=float),
        f(t.lat[rows], dtype=float), f(t.add, dtype=float), f(t.base, dtype=float),
        f(mu, dtype=float), float(step), float(start), float(compute), float(cold), float(price),
        float(rest), float(limit),
    )


def _compiled_front(c: np.ndarray, hT: np.ndarray, deadline: float) -> np.ndarray:
    """:func:`_mu_front` by the compiled sweep (same states kept), chunk by chunk so that the
    deadline is still checked."""
    from solvers._ilp_kernels import mu_front_sweep

    n = len(c)
    keep = np.zeros(n, dtype=bool)
    surv = np.empty(n, dtype=np.int64)
    m = 0
    for start in range(0, n, COMPILED_CHUNK):
        if time.perf_counter() > deadline:
            raise TimeoutError
        m = mu_front_sweep(c, hT, start, min(start + COMPILED_CHUNK, n), surv, m, keep)
    return keep


def variant_floor(t: VariantTable, mu: np.ndarray) -> float:
    """A lower bound of the least ``cost + mu . latency`` over the configurations of ``t``: every
    expert at its cheapest option, except one that also pays the latency price of its own option
    (the layer is at least as slow as any of its experts); the best such expert. At least the
    cheapest options at the layer's latency lower bound, often far more: it lets pricing skip
    variants whole. The numpy reference; pricing and the proof take a whole layer's floors in
    one compiled call (:func:`layer_floors`)."""
    start = t.least_slowest
    own = t.cost + _batch_prices(t, mu, np.maximum(start, t.lat)).sum(axis=1)  # (n,)
    least = t.least_cost
    least_own = np.full(t.experts, np.inf)
    np.minimum.at(least_own, t.expert, own)
    return float(least.sum() + (least_own - least).max() + t.direct_usd)


def layer_floors(tables: Tables, layer: int, mu: np.ndarray) -> list[float]:
    """:func:`variant_floor` of every table of a layer: one compiled call where the extension
    is built (the same floats: tests/solvers/test_ilp_cprice.py)."""
    cprice = _ilp_model._cprice
    if cprice is None:
        return [variant_floor(t, mu) for t in tables.layers[layer]]
    f = tables.layer_flats[layer]
    return np.frombuffer(cprice.variant_floors(
        f.cost, f.lat, f.expert, f.least, f.start, f.add, f.base, np.ascontiguousarray(mu, dtype=float),
        f.rows, f.experts, f.params, f.lat.shape[1]), dtype=np.float64).tolist()


def price_layer(
    tables: Tables, layer: int, mu: np.ndarray, upper: float = math.inf,
    deadline: float = math.inf, extra: list[Choice] | None = None,
) -> tuple[float, Choice | None]:
    """The least ``cost + mu . latency`` over every configuration of a layer (concurrency
    relaxed), with a configuration that attains it; ``upper`` (a value some configuration is
    known to reach) prunes: when nothing is below it, returns (upper, None). ``extra``, when
    given, collects a few more near-least configurations (for the incumbent). One compiled
    call where the extension is built (:func:`_price_layer_compiled`), else the loop."""
    if _ilp_model._cprice is not None:
        return _price_layer_compiled(tables, layer, mu, upper, deadline, extra)
    return _price_layer_loop(tables, layer, mu, upper, deadline, extra)


def _price_layer_loop(
    tables: Tables, layer: int, mu: np.ndarray, upper: float, deadline: float,
    extra: list[Choice] | None,
) -> tuple[float, Choice | None]:
    """:func:`price_layer`, table by table: the floors, then each table's DP in their order
    until a floor reaches the least value so far."""
    best: Choice | None = None
    value = upper
    floors = layer_floors(tables, layer, mu)
    for i in np.argsort(floors, kind="stable"):
        t = tables.layers[layer][i]
        if floors[i] >= value:
            break  # this variant and every later one cannot go below ``value``
        # When near-least configurations are wanted, let them through the prune.
        slack = 1e-12 if extra is None else NEAR_COLUMNS
        values: list[float] = []
        found = _price_table(t, mu, value + slack * abs(value), deadline,
                             0 if extra is None else EXTRA_COLUMNS, values)
        if found:
            v = values[0] + t.direct_usd  # the DP's value: what the compiled layer pricing compares
            if v < value:
                best, value = found[0], v
            if extra is not None:
                extra.extend(found)
    if extra is not None and best is not None:
        extra.append(best)
    return value, best


def _price_layer_compiled(
    tables: Tables, layer: int, mu: np.ndarray, upper: float, deadline: float,
    extra: list[Choice] | None,
) -> tuple[float, Choice | None]:
    """:func:`price_layer` in one compiled call (floors, their order, every table's DP); the
    same value, configuration and ``extra``, in the same order (tests/solvers/test_ilp_cprice.py)."""
    cprice = _ilp_model._cprice
    assert cprice is not None
    f = tables.layer_flats[layer]
    want = 1 if extra is None else 1 + EXTRA_COLUMNS
    T = len(f.params)
    picks = np.empty(want * len(f.least), dtype=np.int64)
    which = np.empty(want * T, dtype=np.int64)
    values = np.empty(want * T)
    found, at_best, value = cprice.price_layer(
        f.cost, f.lat, f.expert, f.least, f.start, f.add, f.base, np.ascontiguousarray(mu, dtype=float),
        f.rows, f.experts, f.params, f.groups, f.offsets, f.rest, picks, which, values, f.lat.shape[1],
        float(upper), 1e-12 if extra is None else NEAR_COLUMNS, want, float(deadline))
    best: Choice | None = None
    k = at = 0
    while k < found:  # each table's configurations are consecutive
        t = tables.layers[layer][int(which[k])]
        n = int(np.count_nonzero(which[k:found] == which[k]))
        chs, _, _ = _ilp_model.choices_of(t, t.rows_of_steps(picks[at:at + n * t.experts].reshape(n, t.experts)))
        if k == at_best:  # the least one is the first of its table's
            best = chs[0]
        if extra is not None:
            extra.extend(chs)
        k, at = k + n, at + n * t.experts
    if extra is not None and best is not None:
        extra.append(best)
    return value, best


# -- the LP over layer curves, by column generation ---------------------------------------------


@dataclass(frozen=True)
class LpResult:
    value_usd: float  # LP optimum (USD, with the tables' constant)
    mu: np.ndarray  # (B,) time-row duals, USD per second
    pi: np.ndarray  # (L,) convexity duals, USD
    weights: list[np.ndarray]  # per layer, the LP weight of each configuration
    slack: float  # artificial time slack in use (0 when the LP is feasible)


class KnapsackLp:
    """The LP relaxation of one multiple-choice knapsack over layer points (a HiGHS model
    built once; the capacities can change and the LP re-solves warm). Each time row has an
    artificial, expensive slack so the LP is always feasible and its duals stay bounded: its
    value is then a lower bound of the LP without slack, and so of every plan."""

    PENALTY = 1e3  # scaled USD per second of missing capacity

    def __init__(self, costs: list[np.ndarray], lats: list[np.ndarray], cap: np.ndarray,
                 scale: float) -> None:
        B, L = len(cap), len(costs)
        sizes = [len(c) for c in costs]
        n = sum(sizes)
        self.L, self.B, self.n, self.sizes, self.scale = L, B, n, sizes, scale
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n + B, L + B
        flat = np.concatenate(costs) if costs else np.zeros(0)
        lp.col_cost_ = np.concatenate([flat / scale, np.full(B, self.PENALTY)])
        lp.col_lower_ = np.zeros(n + B)
        lp.col_upper_ = np.concatenate([np.ones(n), np.full(B, highspy.kHighsInf)])
        lp.row_lower_ = np.concatenate([np.ones(L), np.full(B, -highspy.kHighsInf)])
        lp.row_upper_ = np.concatenate([np.ones(L), cap])
        layer_of = np.repeat(np.arange(L), sizes)
        lat = np.concatenate(lats) if lats else np.zeros((0, B))
        index = np.column_stack([layer_of, L + np.tile(np.arange(B), (n, 1))]).ravel()
        value = np.column_stack([np.ones(n), lat]).ravel()
        index = np.concatenate([index, L + np.arange(B)])
        value = np.concatenate([value, -np.ones(B)])
        start = np.concatenate([np.arange(0, (B + 1) * n + 1, B + 1), (B + 1) * n + 1 + np.arange(B)])
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = start.astype(np.int32)
        lp.a_matrix_.index_ = index.astype(np.int32)
        lp.a_matrix_.value_ = value
        self.highs = highspy.Highs()
        self.highs.setOptionValue("output_flag", False)
        # One thread, as every HiGHS run of ilp: HiGHS keeps one thread pool per process and
        # refuses a run that asks for another size (see solve()).
        self.highs.setOptionValue("threads", 1)
        self.highs.passModel(lp)
        self.slack_cols = np.arange(n, n + B)

    @classmethod
    def over(cls, tables: Tables, curves: list[LayerCurve]) -> KnapsackLp:
        """The LP over layer curves at the tables' capacity (costs scaled by the
        cheapest-options bound)."""
        return cls([cv.cost for cv in curves], [cv.latency for cv in curves], capacity(tables),
                   max(tables.lower_bound_usd, 1e-12))

    def add_points(self, layer: np.ndarray, cost: np.ndarray, lat: np.ndarray) -> None:
        """New points (configurations; ``layer``: each one's layer): columns appended to the
        built model, so the next :meth:`solve` starts from the last basis (column generation
        adds a few per layer and round)."""
        k, B = len(cost), self.B
        if not k:
            return
        index = np.column_stack([layer, self.L + np.tile(np.arange(B), (k, 1))]).ravel()
        value = np.column_stack([np.ones(k), lat]).ravel()
        self.highs.addCols(k, np.asarray(cost, dtype=float) / self.scale, np.zeros(k), np.ones(k),
                           k * (B + 1), np.arange(0, k * (B + 1), B + 1, dtype=np.int32),
                           index.astype(np.int32), value)

    def solve(self, cap: np.ndarray | None = None) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """(value in USD, mu (B,), pi (L,), x) at capacities ``cap`` (default: as built)."""
        h = self.highs
        if cap is not None:
            rows = np.arange(self.L, self.L + self.B, dtype=np.int32)
            h.changeRowsBounds(self.B, rows, np.full(self.B, -highspy.kHighsInf), np.asarray(cap, dtype=float))
        if h.run() == highspy.HighsStatus.kError and h.getModelStatus() == highspy.HighsModelStatus.kNotset:
            h.setOptionValue("threads", 0)  # the pool was started with another size: take it
            h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise RuntimeError(f"HiGHS did not solve the knapsack LP: {h.getModelStatus()}")
        sol = h.getSolution()
        dual = np.asarray(sol.row_dual)
        mu = np.maximum(-dual[self.L :], 0.0) * self.scale
        return (h.getInfo().objective_function_value * self.scale, mu, dual[: self.L] * self.scale,
                np.asarray(sol.col_value))


def curve_lp(tables: Tables, curves: list[LayerCurve]) -> LpResult:
    """The LP relaxation of the program over ``curves`` (see :class:`KnapsackLp`)."""
    lp = KnapsackLp.over(tables, curves)
    value, mu, pi, x = lp.solve()
    weights = np.split(x[:lp.n], np.cumsum(lp.sizes)[:-1])
    return LpResult(float(value + tables.cost_const_usd), mu, pi, weights, float(x[lp.slack_cols].sum()))


@dataclass(frozen=True)
class Bound:
    """A proven lower bound and how it was obtained."""

    usd: float
    mu: np.ndarray
    how: str
    curves: list[LayerCurve]  # the configurations generated on the way (for the incumbent)
    iterations: int
    minima: np.ndarray  # (L,) each layer's least cost + mu . latency at ``mu``


def lagrangian_bound(tables: Tables, mu: np.ndarray, minima: np.ndarray) -> float:
    """sum_l min_l(mu) - mu . capacity + constant: a lower bound of every plan (weak duality)."""
    return float(minima.sum() - mu @ capacity(tables) + tables.cost_const_usd)


def column_generation(
    tables: Tables, curves: list[LayerCurve], deadline: float, upper: float = math.inf,
    tolerance: float = 1e-7, max_iterations: int = 200,
) -> Bound | None:
    """Lagrangian dual of the time rows by column generation over layer configurations.

    Each round solves the LP over the known configurations, prices every layer exactly at its
    duals (adding the configuration when its reduced cost is negative) and records the bound
    ``sum_l min_l(mu) - mu . capacity``: valid whatever mu is, so the best seen is kept. Stops at
    LP optimality (the bound then equals the LP over every configuration), when the bound
    reaches ``upper``, at ``max_iterations``, or at ``deadline`` (returns what it has; None if
    not even one round finished)."""
    curves = list(curves)
    best: Bound | None = None
    L = len(curves)
    model = KnapsackLp.over(tables, curves)
    for it in range(1, max_iterations + 1):
        value_usd, mu, pi, x = model.solve()
        lp = LpResult(float(value_usd + tables.cost_const_usd), mu, pi, [],
                      float(x[model.slack_cols].sum()))
        minima = np.empty(L)
        added = 0
        new: list[tuple[int, LayerCurve, int]] = []  # (layer, its curve, points it had)
        try:
            for li in range(L):
                cv = curves[li]
                known = float((cv.cost + cv.latency @ mu).min())
                near: list[Choice] = []
                value, ch = price_layer(tables, li, mu, known, deadline, near)
                minima[li] = value
                if ch is not None and value < lp.pi[li] - tolerance * abs(lp.pi[li]):
                    added += 1
                # The least one enters the LP; its near-least neighbours serve the incumbent.
                curves[li] = _extend(cv, [other for other in near if other.cost_usd + float(
                    mu @ other.latency_s) <= value + NEAR_COLUMNS * abs(value)], tables.concurrency)
                if len(curves[li].cost) > len(cv.cost):
                    new.append((li, curves[li], len(cv.cost)))
        except TimeoutError:
            break
        if new:  # one call to HiGHS per round
            model.add_points(np.concatenate([np.full(len(cv.cost) - had, li) for li, cv, had in new]),
                             np.concatenate([cv.cost[had:] for _, cv, had in new]),
                             np.concatenate([cv.latency[had:] for _, cv, had in new]))
        bound = lagrangian_bound(tables, mu, minima)
        if best is None or bound > best.usd:
            best = Bound(bound, mu, "Lagrangian relaxation of the time rows (column generation, "
                         "exact layer pricing)", curves, it, minima)
        else:
            best = Bound(best.usd, best.mu, best.how, curves, it, best.minima)
        if added == 0 or lp.slack <= 0 and best.usd >= lp.value_usd * (1 - tolerance):
            break
        if best.usd >= upper * (1 - 1e-9):
            break
    return best


def _extend(cv: LayerCurve, chs: list[Choice], concurrency: bool) -> LayerCurve:
    """``cv`` (no two configurations of it alike) with the configurations ``chs`` appended in
    order, but none equal in cost and latency to one already there: a repeat adds nothing to
    an LP or a search, only work."""
    seen = set(zip(cv.cost.tolist(), map(tuple, cv.latency.tolist()), strict=True))
    new = []
    for ch in chs:
        key = (ch.cost_usd, tuple(ch.latency_s.tolist()))
        if key not in seen:
            seen.add(key)
            new.append(ch)
    if not new:
        return cv
    lat = np.array([ch.latency_s for ch in new])
    active = (np.array([ch.table.active[ch.rows].sum(axis=0) for ch in new]) if concurrency
              else np.zeros_like(lat))
    return LayerCurve(
        (*cv.choices, *new), np.append(cv.cost, [ch.cost_usd for ch in new]),
        np.vstack([cv.latency, lat]), np.vstack([cv.active, active]),
    )


# -- exact search over layer curves ---------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    """``status``: "optimal" (``picks`` is the best plan at most ``target``), "none" (proved:
    no plan of the curves costs at most ``target``) or "aborted" (deadline or size)."""

    status: str
    picks: tuple[int, ...] | None
    cost_usd: float | None  # program cost of ``picks`` (without the tables' constant)
    candidates: int


def _front(c: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D Pareto front (least c for each t), sorted by t ascending, c strictly descending."""
    o = np.argsort(t)  # among equal times a dearer point may stay: harmless, _front_at takes the last
    c, t = c[o], t[o]
    run = np.minimum.accumulate(c)
    keep = np.ones(len(c), dtype=bool)
    keep[1:] = c[1:] < run[:-1]
    return c[keep], t[keep]


def _front_of_sum(front: tuple[np.ndarray, np.ndarray], c: np.ndarray, t: np.ndarray,
                  limit: float) -> tuple[np.ndarray, np.ndarray]:
    """The front of every front point plus every point (c, t), kept where the cost is at most
    ``limit``: as :func:`_front` of all the sums, with the same least value at every time
    (what :func:`_front_at` reads). Only the points' own front can help (a weakly dominated
    point gives weakly dominated sums), and the sums of one point with the front, sorted by
    time, are a sorted run: a stable sort (timsort) merges the runs instead of sorting them."""
    fc, ft = front
    pc, pt = _front(c, t)
    sc = (pc[:, None] + fc[None]).ravel()
    st = (pt[:, None] + ft[None]).ravel()
    ok = sc <= limit
    sc, st = sc[ok], st[ok]
    o = np.argsort(st, kind="stable")
    sc, st = sc[o], st[o]
    run = np.minimum.accumulate(sc)
    keep = np.ones(len(sc), dtype=bool)
    keep[1:] = sc[1:] < run[:-1]
    return sc[keep], st[keep]


@dataclass(frozen=True)
class _Fronts:
    """The per-batch fronts of one :func:`search`: front set f relaxes batch ``batch[f]`` by
    multipliers ``m[f]`` (mu with that batch's entry 0); its front of layers order[j:] is
    ``fc, ft[at[j * F + f]:at[j * F + f + 1]]``, fronts stored layer by layer (a layer's F
    fronts side by side, as the compiled search layer reads them)."""

    batch: np.ndarray  # (F,) int64
    m: np.ndarray  # (F, B)
    fc: np.ndarray
    ft: np.ndarray
    at: np.ndarray  # ((L + 1) * F + 1,) int64

    def front(self, j: int, f: int) -> tuple[np.ndarray, np.ndarray]:
        F = len(self.batch)
        lo, hi = self.at[j * F + f], self.at[j * F + f + 1]
        return self.fc[lo:hi], self.ft[lo:hi]


def _batch_fronts(vals: list[list[np.ndarray]], lats: list[np.ndarray], order: list[int],
                  limits: np.ndarray, batch: np.ndarray, m: np.ndarray, deadline: float) -> _Fronts:
    """The fronts of :func:`search` for front sets f (values ``vals[f][layer]``, times on batch
    ``batch[f]``): for j = 0..L, the least value at every time of layers order[j:], kept up to
    ``limits[f, j]`` (front L: the point (0, 0)). One compiled call where the extension is
    built (the same least value at every time: tests/solvers/test_ilp_cprice.py), else
    :func:`_front_of_sum` layer by layer."""
    L, F = len(order), len(batch)
    cprice = _ilp_model._cprice
    if cprice is None:
        sets = []
        for f in range(F):
            fr: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(1), np.zeros(1))]
            for j in range(L - 1, -1, -1):
                if time.perf_counter() > deadline:
                    raise TimeoutError("search fronts passed their deadline")
                fr.insert(0, _front_of_sum(fr[0], vals[f][order[j]], lats[order[j]][:, batch[f]],
                                           float(limits[f, j])))
            sets.append(fr)
        parts = [sets[f][j] for j in range(L + 1) for f in range(F)]
        at = np.zeros(len(parts) + 1, dtype=np.int64)
        at[1:] = np.cumsum([len(c) for c, _ in parts])
        fc = np.concatenate([c for c, _ in parts]) if parts else np.zeros(0)
        ft = np.concatenate([t for _, t in parts]) if parts else np.zeros(0)
        return _Fronts(batch, m, fc, ft, at)
    offsets = np.zeros(L + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(la) for la in lats])
    f = np.ascontiguousarray
    fc, ft, st = cprice.suffix_fronts(
        f(np.concatenate([np.concatenate(v) for v in vals]) if F else np.zeros(0), dtype=np.float64),
        f(np.concatenate(lats), dtype=np.float64), offsets, np.asarray(order, dtype=np.int64),
        f(limits, dtype=np.float64), f(batch, dtype=np.int64), lats[0].shape[1], deadline)
    return _Fronts(batch, m, np.frombuffer(fc, dtype=np.float64), np.frombuffer(ft, dtype=np.float64),
                   np.frombuffer(st, dtype=np.int64))


def _front_at(front: tuple[np.ndarray, np.ndarray], t: np.ndarray) -> np.ndarray:
    """Least value of the front with time at most ``t`` (inf where none fits)."""
    fc, ft = front
    if not len(fc):  # no completion fits the target's budget
        return np.full(np.shape(t), np.inf)
    i = np.searchsorted(ft, t + 1e-12 * np.abs(t) + 1e-15, side="right") - 1
    return np.where(i >= 0, fc[np.maximum(i, 0)], np.inf)


def search(
    costs: list[np.ndarray], lats: list[np.ndarray], cap: np.ndarray, mu: np.ndarray,
    target: float, deadline: float, max_candidates: int = MAX_SEARCH_CANDIDATES,
    cuts: bool = True,
) -> SearchResult:
    """Least total cost with every batch's summed latency within ``cap``, if at most ``target``.

    Breadth-first over layers; a partial plan (cost c, latency s) survives only if some
    completion could cost at most ``target``: for each batch b, the remaining layers' least
    cost with batch b's row exact and the others relaxed by ``mu`` (a 2-D front per batch,
    precomputed backwards) bounds every completion. Where many partial plans survive, the LP
    relaxation of the remaining layers is solved at a few of their residual capacities and its
    duals join a pool of multipliers: each gives the Lagrangian bound ``sum of the remaining
    layers' least cost + mu' . latency - mu' . residual`` to every partial plan (the LP bound
    of each partial plan, approximated from below). Exact: nothing that can reach ``target``
    is dropped, and the last layer is checked against every row."""
    L, B = len(costs), len(cap)
    total = 0
    if L == 0:
        return SearchResult("optimal", (), 0.0, 0)
    gap_like = [c + la @ mu for c, la in zip(costs, lats, strict=True)]
    spread = [int((v - v.min() <= max(target - 0.0, 0) * 1e-3).sum()) for v in gap_like]
    order = list(np.argsort(spread, kind="stable")[::-1])  # most near-equal choices first
    # Per batch b: mu with b's entry 0 (b's row kept exact), and its fronts of the remaining layers.
    batch = np.arange(B if PARTIAL_FRONTS else 0, dtype=np.int64)
    ms = np.repeat(mu[None], len(batch), axis=0)
    ms[batch, batch] = 0.0
    vals, limits = [], np.empty((len(batch), L))
    for f, m in enumerate(ms):
        vals.append([c + la @ m for c, la in zip(costs, lats, strict=True)])
        minv = np.array([v.min() for v in vals[-1]])
        pre = np.concatenate([[0.0], np.cumsum(minv[order])])
        budget = target + float(m @ cap) - pre  # a suffix's value above this cannot be used
        limits[f] = budget[:L] + 1e-12 * np.abs(budget[:L])
    try:
        fronts = _batch_fronts(vals, lats, order, limits, batch, ms, deadline)
    except TimeoutError:
        return SearchResult("aborted", None, None, total)
    minima = np.array([v.min() for v in gap_like])
    rest_min = np.concatenate([np.cumsum(minima[order][::-1])[::-1], [0.0]])  # suffix sums
    pool = _CutPool(costs, lats, order, cap, abs(target))

    st_c = np.zeros(1)
    st_s = np.zeros((1, B))
    trail: list[np.ndarray] = []  # per layer: survivors' flat index (state * options + option)
    limit = target + 1e-12 * abs(target)
    for j, li in enumerate(order):
        if time.perf_counter() > deadline:
            return SearchResult("aborted", None, None, total)
        n_s, n_p = len(st_c), len(costs[li])
        if n_s * n_p > max_candidates:
            return SearchResult("aborted", None, None, total)
        total += n_s * n_p
        if j == L - 1:
            k = _last_layer(st_c, st_s, costs[li], lats[li], cap, limit)
            if k < 0:
                return SearchResult("none", None, None, total)
            cost = float(st_c[k // n_p] + costs[li][k % n_p])
            chosen = [0] * L
            for jj in range(L - 1, -1, -1):  # back along the survivors' flat indices
                si, chosen[order[jj]] = divmod(k, len(costs[order[jj]]))
                k = int(trail[jj - 1][si]) if jj else 0
            return SearchResult("optimal", tuple(chosen), cost, total)
        use_cuts = cuts and j < L - 2
        try:
            ok, st_c, st_s = _layer(st_c, st_s, costs[li], lats[li], cap, mu, rest_min[j + 1], limit,
                                    pool if use_cuts else None, j + 1, fronts, deadline)
        except TimeoutError:
            return SearchResult("aborted", None, None, total)
        if use_cuts and len(ok) * len(costs[order[j + 1]]) > CUT_MIN_CANDIDATES:
            keep = pool.prune(j + 1, st_c, st_s, np.arange(len(ok)), limit, deadline)
            ok, st_c, st_s = ok[keep], st_c[keep], st_s[keep]
        if not len(ok):
            return SearchResult("none", None, None, total)
        trail.append(ok)
    raise AssertionError("unreachable")


def _layer(
    st_c: np.ndarray, st_s: np.ndarray, cost: np.ndarray, lat: np.ndarray, cap: np.ndarray,
    mu: np.ndarray, rest: float, limit: float, pool: _CutPool | None, j: int, fronts: _Fronts,
    deadline: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One non-final layer of :func:`search`: the partial plans (every state with every option)
    whose plain Lagrangian bound, pool cuts (``pool``, for layers ``order[j:]``) and per-batch
    fronts all stay within ``limit``, as (flat index state * options + option, cost, latency)."""
    cprice = _ilp_model._cprice
    if cprice is None:
        return _layer_numpy(st_c, st_s, cost, lat, cap, mu, rest, limit, pool, j, fronts)
    B = len(cap)
    pool_mu, pool_rest = pool.at(j) if pool is not None else (np.zeros((0, B)), np.zeros(0))
    F = len(fronts.batch)
    at = fronts.at[j * F:(j + 1) * F + 1]  # layer j's F fronts, side by side
    off = at - at[0]
    fc, ft = fronts.fc[at[0]:at[-1]], fronts.ft[at[0]:at[-1]]
    k, c, s = cprice.search_layer(
        np.ascontiguousarray(st_c, dtype=np.float64), np.ascontiguousarray(st_s, dtype=np.float64),
        np.ascontiguousarray(cost, dtype=np.float64), np.ascontiguousarray(lat, dtype=np.float64),
        np.ascontiguousarray(cap, dtype=np.float64), np.ascontiguousarray(mu, dtype=np.float64),
        float(rest), float(limit), pool_mu, pool_rest, fronts.batch, off, fronts.m, fc, ft,
        B, deadline)
    return (np.frombuffer(k, dtype=np.int64), np.frombuffer(c, dtype=np.float64),
            np.frombuffer(s, dtype=np.float64).reshape(-1, B))


def _layer_numpy(
    st_c: np.ndarray, st_s: np.ndarray, cost: np.ndarray, lat: np.ndarray, cap: np.ndarray,
    mu: np.ndarray, rest: float, limit: float, pool: _CutPool | None, j: int, fronts: _Fronts,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    B = len(cap)
    c = (st_c[:, None] + cost[None]).ravel()
    s = (st_s[:, None] + lat[None]).reshape(-1, B)
    # The plain Lagrangian bound first (one product), then each batch's front on what is left.
    ok = np.flatnonzero(c + rest - (cap - s) @ mu <= limit)
    if pool is not None:
        ok = pool.apply(j, c, s, ok, limit)
    for f, (b, m) in enumerate(zip(fronts.batch, fronts.m, strict=True)):
        if not len(ok):
            break
        b_ok = c[ok] + _front_at(fronts.front(j, f), cap[b] - s[ok, b]) - (cap - s[ok]) @ m
        ok = ok[b_ok <= limit]
    return ok, c[ok], s[ok]


def _last_layer(st_c: np.ndarray, st_s: np.ndarray, cost: np.ndarray, lat: np.ndarray,
                cap: np.ndarray, limit: float) -> int:
    """The final layer of :func:`search`: the flat index of the cheapest complete plan within
    every row and ``limit`` (the first of equals), or -1."""
    cprice = _ilp_model._cprice
    if cprice is not None:
        return int(cprice.search_last(
            np.ascontiguousarray(st_c, dtype=np.float64), np.ascontiguousarray(st_s, dtype=np.float64),
            np.ascontiguousarray(cost, dtype=np.float64), np.ascontiguousarray(lat, dtype=np.float64),
            np.ascontiguousarray(cap, dtype=np.float64), float(limit), len(cap)))
    c = (st_c[:, None] + cost[None]).ravel()
    s = (st_s[:, None] + lat[None]).reshape(-1, len(cap))
    ok = (s <= cap + 1e-12 * np.abs(cap)).all(axis=1) & (c <= limit)
    if not ok.any():
        return -1
    return int(np.flatnonzero(ok)[np.argmin(c[ok])])


class _CutPool:
    """Multipliers from LP relaxations of the remaining layers, shared by all stages of one
    search: any mu >= 0 bounds every partial plan (weak duality), good ones tightly."""

    SAMPLES, ROUNDS = 4, 2

    def __init__(self, costs: list[np.ndarray], lats: list[np.ndarray], order: list[int],
                 cap: np.ndarray, scale: float) -> None:
        self.costs, self.lats, self.order, self.cap = costs, lats, order, cap
        self.scale = max(scale, 1e-12)
        self.mus: list[np.ndarray] = []
        self.suffix: list[np.ndarray] = []  # per mu: (L+1,) sums of least cost + mu . lat
        self.lps: dict[int, KnapsackLp] = {}

    def _add(self, mu: np.ndarray) -> None:
        least = np.array([(self.costs[li] + self.lats[li] @ mu).min() for li in self.order])
        self.mus.append(mu)
        self.suffix.append(np.concatenate([np.cumsum(least[::-1])[::-1], [0.0]]))

    def apply(self, j: int, c: np.ndarray, s: np.ndarray, ok: np.ndarray, limit: float) -> np.ndarray:
        """Survivors ``ok`` within ``limit`` under every multiplier of the pool."""
        if not self.mus or not len(ok):
            return ok
        return self._keep(ok, c, s, *self.at(j), limit)

    def at(self, j: int, since: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The pool's multipliers from the ``since``-th on (K, B) and their least cost of
        layers order[j:] (K,)."""
        return (np.array(self.mus[since:], dtype=np.float64).reshape(-1, len(self.cap)),
                np.array([sf[j] for sf in self.suffix[since:]], dtype=np.float64))

    def _keep(self, ok: np.ndarray, c: np.ndarray, s: np.ndarray, mus: np.ndarray, rest: np.ndarray,
              limit: float) -> np.ndarray:
        """The survivors ``ok`` whose bound under the multipliers ``mus`` (their suffix sums
        ``rest``) is within ``limit``: one compiled pass where the extension is built."""
        cprice = _ilp_model._cprice
        if cprice is None:
            bound = c[ok] + (rest[None, :] - (self.cap - s[ok]) @ mus.T).max(axis=1)
            return ok[bound <= limit]
        f = np.ascontiguousarray
        kept = cprice.pool_keep(f(ok, dtype=np.int64), f(c, dtype=np.float64), f(s, dtype=np.float64),
                                f(self.cap, dtype=np.float64), f(mus, dtype=np.float64),
                                f(rest, dtype=np.float64), float(limit), len(self.cap))
        return np.frombuffer(kept, dtype=np.int64)

    def prune(self, j: int, c: np.ndarray, s: np.ndarray, ok: np.ndarray, limit: float,
              deadline: float) -> np.ndarray:
        """Survivors ``ok`` (indices into c, s) whose best cut bound for layers order[j:] is
        within ``limit``; solves a few LPs at sampled survivors' residual capacities."""
        if j not in self.lps:
            rest = self.order[j:]
            self.lps[j] = KnapsackLp([self.costs[li] for li in rest], [self.lats[li] for li in rest],
                                     self.cap, self.scale)
        lp = self.lps[j]
        for _ in range(self.ROUNDS):
            if len(ok) * len(self.costs[self.order[j]]) <= CUT_MIN_CANDIDATES or (
                    time.perf_counter() > deadline):
                break
            before = len(ok)
            picks = ok[np.linspace(0, len(ok) - 1, min(self.SAMPLES, len(ok))).round().astype(int)]
            new = len(self.mus)
            for i in picks:
                _, mu, _, _ = lp.solve(self.cap - s[i])
                self._add(mu)
            ok = self._keep(ok, c, s, *self.at(j, since=new), limit)  # the new multipliers
            if len(ok) > 0.8 * before:
                break
        return ok


def cap_choice(tables: Tables, layer: int, cap: np.ndarray) -> Choice | None:
    """The cheapest configuration of a layer whose latency is at most ``cap`` on every batch
    (each expert takes its cheapest option that fits; concurrency not checked), or None."""
    best: Choice | None = None
    for t in tables.layers[layer]:
        if (t.lower > cap + 1e-12).any():
            continue
        rows = _ilp_model.cheapest_within(t, cap + 1e-12)
        if rows is None:
            continue
        ch = Choice(t, rows)
        if best is None or ch.cost_usd < best.cost_usd:
            best = ch
    return best


def lp_rounding_columns(
    tables: Tables, curves: list[LayerCurve], factors=(0.97, 0.985, 1.0, 1.01, 1.02),
    deadline: float = math.inf,
) -> tuple[list[LayerCurve], tuple[Choice, ...] | None]:
    """Add, per layer, the cheapest configurations under caps at the LP solution's latency of
    that layer (scaled). Also returns the plan of the factor 1 (each layer its cheapest
    configuration within its LP latency: the caps sum within the capacity, so the plan meets
    the time rows, and it costs at most the LP plus what its few fractional layers lose) when
    it meets every row and the concurrency limit; else None (also past ``deadline``)."""
    lp = curve_lp(tables, curves)
    out = []
    plan: list[Choice | None] = []
    for li, (cv, w) in enumerate(zip(curves, lp.weights, strict=True)):
        if time.perf_counter() > deadline:  # out of time: the columns so far, no plan
            return out + list(curves[li:]), None
        mean = w @ cv.latency / max(w.sum(), 1e-12)
        at_lp = None
        caps = []
        for f in factors:
            ch = cap_choice(tables, li, mean * f)
            if ch is not None:
                caps.append(ch)
                if f == 1.0:
                    at_lp = ch
        plan.append(at_lp)
        out.append(_extend(cv, caps, tables.concurrency))
    return out, _checked_plan(tables, plan)


def _checked_plan(tables: Tables, plan: list[Choice | None]) -> tuple[Choice, ...] | None:
    """``plan`` when every layer has a configuration and together they meet every time row
    (as the exact search checks them) and the concurrency limit; else None."""
    if not plan or any(ch is None for ch in plan):
        return None
    cap = capacity(tables)
    lat = np.sum([ch.latency_s for ch in plan], axis=0)
    if not (lat <= cap + 1e-12 * np.abs(cap)).all():
        return None
    if tables.concurrency:
        limit = tables.problem.constants.lambda_concurrency_limit
        if any((ch.table.active[ch.rows].sum(axis=0) > limit).any() for ch in plan):
            return None
    return tuple(plan)
