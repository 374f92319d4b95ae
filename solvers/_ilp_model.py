"""The MILP over option tables, built with PuLP and solved by HiGHS (or CBC).

Variables: ``x`` one-hot per (layer, variant, expert) over surviving options, ``z`` one-hot per
layer over variants (``sum_k x[l,v,i,k] = z[l,v]``), ``lat[l,b] >= 0`` per layer and batch, and
for direct invocation ``T[l,b]`` (slowest replica). The max terms of evaluate.py's layer latency
become ``lat >= ...`` rows; because the x of unchosen variants are 0, no big-M is needed. End to
end: ``fixed[b] + sum_l lat[l,b] <= time limit`` per batch. Full cost scope: the non-MoE function
after a storage layer bills its wait, rounded up to the millisecond: an integer ``n[l,b] >=
(latency of the storage variant - start + compute + cold) / 1 ms`` priced in the objective.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pulp

from moeopt.native_io import highs_banner_to_stderr
from moeopt.solver import Objective
from solvers._ilp_tables import Tables, VariantTable

# The compiled layer DPs, built at install (setup.py); optional: numpy stands in without them.
# The one switch for every compiled path (_ilp_bounds reads it here; tests set it to None).
try:
    from solvers import _ilp_cprice as _cprice
except ImportError:  # pragma: no cover - depends on the install
    _cprice = None

highs_banner_to_stderr()

#: Seconds kept free under the time limit so solver tolerances (HiGHS: 1e-7 absolute) can never
#: hand back a plan the evaluator finds a hair too slow.
TIME_MARGIN_S = 1e-6
#: Pair caps (two experts' options) are skipped above this many pairs: they only seed the
#: incumbent, and their cost grows with the square of the options.
MAX_PAIR_CAPS = 400
MAX_DP_CELLS = 50_000_000  # states x options x values of one exact-curve step (400 MB)
MAX_CURVE_CAPS = 4096  # caps per table for the layer curves (not the exact ones)
#: The full x-program is only built below this many option rows (PuLP builds it in Python).
MAX_X_ROWS = 60_000


@dataclass(frozen=True)
class Choice:
    """One layer's decision: the variant table and, per expert, its row in that table."""

    table: VariantTable
    rows: np.ndarray  # (E,)

    # Cached: the solvers price the same choice many times (incumbents, curves, the search);
    # nothing mutates a choice's table or rows.
    @cached_property
    def cost_usd(self) -> float:
        """The layer's cost: its experts, plus (full scope) the next non-MoE function."""
        return float(self.table.cost[self.rows].sum()) + float(self.table.extra_usd(self.latency_s))

    @cached_property
    def latency_s(self) -> np.ndarray:
        lat = self.table.latency(self.rows)
        lat.flags.writeable = False  # shared by every caller
        return lat


def choices_of(t: VariantTable, rows: np.ndarray) -> tuple[list[Choice], np.ndarray, np.ndarray]:
    """The configurations ``rows`` (P, E) of table ``t`` as Choices, with their costs (P,) and
    latencies (P, B) computed for all at once and filled in (the same floats as each Choice's
    own: a row's sum and max reduce as the 1-D ones do; tests/solvers/test_ilp_cprice.py)."""
    latency = t.latency_of(t.lat[rows].max(axis=1))
    cost = t.cost[rows].sum(axis=1) + t.extra_usd(latency)
    latency.flags.writeable = False  # shared by every caller, as Choice.latency_s
    out = []
    for r, c, la in zip(rows, cost.tolist(), latency, strict=True):
        ch = Choice(t, r)
        ch.__dict__.update(cost_usd=c, latency_s=la)  # cached_property values
        out.append(ch)
    return out, cost, latency


@dataclass(frozen=True)
class MilpResult:
    """``status``: optimal, time_limit (incumbent, not proven), infeasible, no_solution, or
    cutoff (proved that nothing beats ``cutoff_usd``; ``bound_usd`` is then that cost)."""

    status: str
    choices: tuple[Choice, ...] | None
    objective_usd: float | None  # the program's cost of the choices
    bound_usd: float | None  # proven lower bound of the program (cheapest objective only)
    seconds: float
    variables: int
    constraints: int


def solve_milp(
    tables: Tables,
    *,
    methods: set[int] | None = None,
    backend: str = "highs",
    time_limit_s: float | None = None,
    mip_gap: float = 1e-6,
    seed: int = 0,
    objective: Objective | None = None,
    time_rows: bool = True,
    concurrency_rows: bool = True,
    cutoff_usd: float | None = None,
) -> MilpResult:
    """Build and solve; ``methods`` restricts the variants (ODS's per-method programs)."""
    t0 = time.perf_counter()
    problem = tables.problem
    B = len(tables.fixed_s)
    scale = max(tables.lower_bound_usd, 1e-12)
    prob = pulp.LpProblem("moeopt", pulp.LpMinimize)
    names = iter(range(10**9))

    def var(low: float | None = 0, cat: str = pulp.LpContinuous) -> pulp.LpVariable:
        return pulp.LpVariable(f"v{next(names)}", lowBound=low, upBound=1 if cat != pulp.LpContinuous else None, cat=cat)

    objective_terms: list[tuple[pulp.LpVariable, float]] = []
    layer_lat: list[list[pulp.LpVariable]] = []
    layout: list[list[tuple[VariantTable, pulp.LpVariable, list[pulp.LpVariable]]]] = []
    concurrency = tables.concurrency and concurrency_rows
    for tabs in tables.layers:
        tabs = tuple(t for t in tabs if methods is None or t.variant.method in methods)
        if not tabs:
            return MilpResult("infeasible", None, None, None, time.perf_counter() - t0, 0, 0)
        lat = [var() for _ in range(B)]
        layer_lat.append(lat)
        entries = []
        zs = []
        for t in tabs:
            z = var(cat=pulp.LpBinary)
            zs.append(z)
            xs = [var(cat=pulp.LpBinary) for _ in range(len(t.cost))]
            for i in np.unique(t.expert):
                idx = np.flatnonzero(t.expert == i)
                prob += pulp.LpAffineExpression([(xs[k], 1.0) for k in idx] + [(z, -1.0)]) == 0
            objective_terms += [(x, float(cst) / scale) for x, cst in zip(xs, t.cost, strict=True)]
            if t.nonmoe is not None and not t.variant.storage:
                objective_terms.append((z, t.nonmoe.direct_usd / scale))
            entries.append((t, z, xs))
        prob += pulp.lpSum(zs) == 1
        layout.append(entries)
        storage = [(t, z, xs) for t, z, xs in entries if t.variant.storage]
        direct = [(t, z, xs) for t, z, xs in entries if not t.variant.storage]
        T = [var() for _ in range(B)] if direct else []
        # Full scope: the storage variants' latency gets a variable of its own, which the
        # non-MoE function's billed milliseconds n[b] follow (0 when a direct variant is chosen).
        billing = next((t.nonmoe for t, _, _ in storage if t.nonmoe is not None), None)
        lat_s = [var() for _ in range(B)] if billing is not None else lat
        for b in range(B):
            # lat >= the variant's lower bound (weighted by z: tightens the relaxation)
            prob += pulp.LpAffineExpression(
                [(lat[b], 1.0)] + [(z, -float(t.lower[b])) for t, z, _ in entries]
            ) >= 0
            if direct:  # lat >= T_load + slowest replica
                prob += pulp.LpAffineExpression(
                    [(lat[b], 1.0), (T[b], -1.0)] + [(z, -float(t.floor[b])) for t, z, _ in direct]
                ) >= 0
                _max_rows(prob, T[b], direct, lambda t, b=b: t.lat[:, b], None)
            if billing is not None:
                prob += pulp.LpAffineExpression([(lat[b], 1.0), (lat_s[b], -1.0)]) >= 0
                prob += pulp.LpAffineExpression(
                    [(lat_s[b], 1.0)] + [(z, -float(t.lower[b])) for t, z, _ in storage]
                ) >= 0
                step = billing.constants.lambda_billing_granularity_ms / 1000.0
                n = pulp.LpVariable(f"v{next(names)}", lowBound=0, cat=pulp.LpInteger)
                offset = billing.compute_s + billing.cold_s - billing.start_s
                # n >= (lat_s + offset)/step - 1e-9 where a storage variant is chosen
                prob += pulp.LpAffineExpression(
                    [(n, step), (lat_s[b], -1.0)] + [(z, -offset + 1e-9 * step) for _, z, _ in storage]
                ) >= 0
                objective_terms.append((n, billing.price_usd_per_s * step / B / scale))
            _max_rows(prob, lat_s[b], storage, lambda t, b=b: t.lat[:, b], lambda t, b=b: t.lower[b])
            if concurrency:
                expr = [(x, float(a)) for t, _, xs in entries for x, a in zip(xs, t.active[:, b], strict=True)]
                prob += pulp.LpAffineExpression(expr) <= problem.constants.lambda_concurrency_limit
    limit = problem.slo.time_limit_s - TIME_MARGIN_S - 1e-9 * problem.slo.time_limit_s
    e2e = [pulp.LpAffineExpression([(layer_lat[li][b], 1.0) for li in range(len(layer_lat))])
           for b in range(B)]
    if time_rows:
        for b in range(B):
            prob += e2e[b] <= limit - float(tables.fixed_s[b])
    objective = objective or Objective()
    cost_expr = pulp.LpAffineExpression(objective_terms)
    if objective.kind == "cheapest":
        prob += cost_expr
    else:
        zlat = var()
        for b in range(B):
            prob += pulp.LpAffineExpression([(zlat, 1.0)]) - e2e[b] >= float(tables.fixed_s[b])
        if objective.kind == "fastest":
            prob += zlat * (1.0 / problem.slo.time_limit_s) + cost_expr * 1e-6
        else:
            from moeopt.solver import _references

            cost_ref, lat_ref = _references(problem)
            prob += (cost_expr * (objective.weight * scale / cost_ref)
                     + zlat * ((1 - objective.weight) / lat_ref))
    n_vars, n_rows = len(prob.variables()), len(prob.constraints)
    remaining = None if time_limit_s is None else max(time_limit_s - (time.perf_counter() - t0), 0.05)
    cutoff = None
    if cutoff_usd is not None and objective.kind == "cheapest":
        cutoff = (cutoff_usd - tables.cost_const_usd) / scale * (1 + 1e-9)
    status, bound = _run(prob, backend, remaining, mip_gap, seed, cutoff)
    seconds = time.perf_counter() - t0
    if status == "infeasible" and cutoff is not None:
        # Nothing cheaper than the cutoff exists: the plan that set it is optimal.
        return MilpResult("cutoff", None, None, cutoff_usd, seconds, n_vars, n_rows)
    if status in ("infeasible", "no_solution"):
        return MilpResult(status, None, None, None, seconds, n_vars, n_rows)
    choices = []
    for entries in layout:
        zi = int(np.argmax([z.varValue or 0.0 for _, z, _ in entries]))
        t, _, xs = entries[zi]
        values = np.array([x.varValue or 0.0 for x in xs])
        E = int(t.expert.max()) + 1
        best = np.full(E, -1.0)
        rows = np.zeros(E, dtype=int)
        for k, (e, val) in enumerate(zip(t.expert, values, strict=True)):
            if val > best[e]:
                best[e], rows[e] = val, k
        choices.append(Choice(t, rows))
    cost = sum(ch.cost_usd for ch in choices) + tables.cost_const_usd
    if objective.kind != "cheapest":
        bound = None
    elif bound is not None:
        bound = bound * scale + tables.cost_const_usd
        if status == "optimal":
            bound = min(bound, cost)
    return MilpResult(status, tuple(choices), cost, bound, seconds, n_vars, n_rows)


def _max_rows(prob, target, entries, values, lower) -> None:  # type: ignore[no-untyped-def]
    """target >= sum_k x_k * value_k for every expert (the linearised max over experts).

    An expert's row is left out when no option of it can exceed the variant's proven lower
    bound, which the row of the expert attaining that bound (always kept) already enforces.
    """
    if not entries:
        return
    experts = np.unique(np.concatenate([t.expert for t, _, _ in entries]))
    per_variant = []
    for t, _, _ in entries:
        val = values(t)
        mins = np.full(len(experts), np.inf)
        maxs = np.full(len(experts), -np.inf)
        np.minimum.at(mins, t.expert, val)
        np.maximum.at(maxs, t.expert, val)
        low = mins.max() if lower is None else max(lower(t), mins.max())
        per_variant.append((val, low, mins, maxs))
    needed = np.zeros(len(experts), dtype=bool)
    for _, low, mins, maxs in per_variant:
        needed[int(np.argmax(mins))] = True  # the expert that sets the lower bound
        needed |= maxs > low
    for i in np.flatnonzero(needed):
        expr = [(target, 1.0)]
        for (t, _, xs), (val, low, _, _) in zip(entries, per_variant, strict=True):
            # max(value, the variant's bound): valid for integer points, tighter for the LP.
            expr += [(xs[k], -float(max(val[k], low))) for k in np.flatnonzero(t.expert == i)]
        prob += pulp.LpAffineExpression(expr) >= 0


class OneThreadHiGHS(pulp.HiGHS):
    """PuLP's HiGHS with one thread, or, when HiGHS's thread pool was already started in this
    process with another size (HiGHS keeps one pool per process and refuses a run that asks
    for a different one: the run errs before it starts), with the pool there is."""

    def callSolver(self, lp: pulp.LpProblem) -> None:
        import highspy

        model = lp.solverModel
        if (model.run() == highspy.HighsStatus.kError
                and model.getModelStatus() == highspy.HighsModelStatus.kNotset):
            model.setOptionValue("threads", 0)
            model.run()


def _run(prob: pulp.LpProblem, backend: str, time_limit: float | None, mip_gap: float,
         seed: int, cutoff: float | None = None) -> tuple[str, float | None]:
    """Solve; returns (status, proven lower bound of the scaled objective or None)."""
    if backend == "highs":
        extra = {} if cutoff is None else {"objective_bound": float(cutoff)}
        solver = OneThreadHiGHS(msg=False, timeLimit=time_limit, gapRel=mip_gap, gapAbs=0.0,
                                threads=1, random_seed=seed, **extra)
        prob.solve(solver)
        import highspy

        model = prob.solverModel
        ms = model.getModelStatus()
        info = model.getInfo()
        has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
        if ms == highspy.HighsModelStatus.kInfeasible or (
            cutoff is not None and ms == highspy.HighsModelStatus.kObjectiveBound
            and info.primal_solution_status != 2
        ):
            return "infeasible", None
        bound = info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else None
        if ms == highspy.HighsModelStatus.kOptimal and has_solution:
            return "optimal", bound
        return ("time_limit" if has_solution else "no_solution"), bound
    options = [f"randomSeed {seed + 1}"]
    if cutoff is not None:
        options.append(f"cutoff {cutoff!r}")
    solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=mip_gap, gapAbs=0.0,
                               threads=1, options=options)
    prob.solve(solver)
    if prob.status == pulp.LpStatusInfeasible:
        return "infeasible", None
    if prob.status != pulp.LpStatusOptimal:
        return "no_solution", None
    if prob.sol_status == pulp.LpSolutionOptimal:
        return "optimal", pulp.value(prob.objective)
    return "time_limit", None


@dataclass(frozen=True, eq=False)
class LayerCurve:
    """Candidate configurations of one layer: each the cheapest choice under a latency cap
    taken from one option's own latency (the issue's cost-vs-time curve, one per batch)."""

    choices: tuple[Choice, ...]
    cost: np.ndarray  # (P,)
    latency: np.ndarray  # (P, B)
    active: np.ndarray  # (P, B)


def layer_curve(
    tables: Tables, layer: int, methods: set[int] | None = None, deadline: float | None = None
) -> LayerCurve | None:
    """The layer's cost-vs-latency curve from caps; None once ``deadline`` passes."""
    choices: list[tuple[VariantTable, np.ndarray]] = []
    vectors: list[np.ndarray] = []
    for t in tables.layers[layer]:
        if methods is not None and t.variant.method not in methods:
            continue
        E = t.experts
        values = [t.lat]
        # Caps: each option's own latency, and the max of one option of each of the two
        # slowest experts (their bottlenecks may alternate between batches).
        slow = np.argsort([-t.lat[t.expert == e].min(axis=0).max() for e in range(E)])[:2]
        pairs = [np.flatnonzero(t.expert == e) for e in slow]
        if len(pairs) == 2 and len(pairs[0]) * len(pairs[1]) <= MAX_PAIR_CAPS:
            a, b = (x.ravel() for x in np.meshgrid(*pairs, indexing="ij"))
        else:
            a = b = pairs[0]
        caps = [np.concatenate([v, np.maximum(v[a], v[b])]) for v in values]
        if t.variant.storage:
            caps[0] = np.maximum(caps[0], t.floor)
        # A large table (the full memory range) gets an even subset of its caps: the curve is
        # only the incumbent's, the proof uses exact curves, and all caps cost caps x rows.
        pick = _spread(caps[0].max(axis=1), MAX_CURVE_CAPS)
        caps = [c[pick] for c in caps]
        fits = np.ones((len(caps[0]), len(t.cost)), dtype=bool)  # [cap, option row]
        for cap, val in zip(caps, values, strict=True):
            fits &= (val[None, :, :] <= cap[:, None, :] + 1e-12).all(axis=2)
        # Scalar caps: every expert within one option's worst-batch latency (the bottleneck
        # may move between experts from batch to batch).
        worst = [v.max(axis=1) for v in values]
        pick = _spread(worst[0], MAX_CURVE_CAPS)
        scalar = np.ones((len(pick), len(t.cost)), dtype=bool)
        for w in worst:
            scalar &= w[None, :] <= w[pick, None] + 1e-12
        fits = np.vstack([fits, scalar])
        cost = np.where(fits, t.cost[None, :], np.inf)
        # Per cap and expert, the cheapest fitting row (the lowest index among equals); an
        # expert that fits no row under a cap takes its cheapest row.
        best = np.empty((len(fits), E), dtype=int)
        for e in range(E):
            rows_e = np.flatnonzero(t.expert == e)
            sub = cost[:, rows_e]
            j = sub.argmin(axis=1)
            fitting = np.isfinite(sub[np.arange(len(sub)), j])
            best[:, e] = np.where(fitting, rows_e[j], rows_e[np.argmin(t.cost[rows_e])])
        rows = np.unique(best, axis=0)  # (P, E), priced all at once
        choices += [(t, r) for r in rows]
        lat = _latencies(t, rows)
        vectors.append(np.concatenate(
            [(t.cost[rows].sum(axis=1) + t.extra_usd(lat))[:, None], lat, t.active[rows].sum(axis=1)],
            axis=1,
        ))
        if deadline is not None and time.perf_counter() > deadline:
            return None
    vec = np.concatenate(vectors)
    keep = _pareto(vec)
    assert keep is not None  # no deadline
    B = len(tables.fixed_s)
    return LayerCurve(tuple(Choice(*choices[p]) for p in keep), vec[keep, 0], vec[keep, 1 : 1 + B],
                      vec[keep, 1 + B :])


def _latencies(t: VariantTable, rows: np.ndarray) -> np.ndarray:
    """:meth:`VariantTable.latency` of many choices at once: ``rows`` (P, E) -> (P, B)."""
    return t.latency_of(t.lat[rows].max(axis=1))


def solve_curves(
    tables: Tables, curves: list[LayerCurve], *, time_limit_s: float | None = None, seed: int = 0,
    mip_gap: float = 1e-6, with_bound: bool = False, cutoff_usd: float | None = None,
) -> tuple[str, tuple[Choice, ...] | None] | tuple[str, tuple[Choice, ...] | None, float | None]:
    """The layers' coupling alone: one configuration per layer under the end-to-end limit."""
    prob, ys = curve_program(tables, curves)
    scale = max(tables.lower_bound_usd, 1e-12)
    cutoff = None
    if cutoff_usd is not None:
        cutoff = (cutoff_usd - tables.cost_const_usd) / scale * (1 + 1e-9)
    status, bound = _run(prob, "highs", time_limit_s, mip_gap, seed, cutoff)
    if status == "infeasible" and cutoff is not None:
        return ("cutoff", None, cutoff_usd) if with_bound else ("cutoff", None)
    if status in ("infeasible", "no_solution"):
        return (status, None, None) if with_bound else (status, None)
    picks = tuple(
        cv.choices[int(np.argmax([v.varValue or 0.0 for v in y]))] for cv, y in zip(curves, ys, strict=True)
    )
    if with_bound:
        return status, picks, None if bound is None else bound * scale + tables.cost_const_usd
    return status, picks


def curve_program(
    tables: Tables, curves: list[LayerCurve]
) -> tuple[pulp.LpProblem, list[list[pulp.LpVariable]]]:
    """The curve program as a PuLP model (binary y per configuration; objective in units of
    the tables' cheapest-options bound, without the constant): what :func:`solve_curves`
    solves, and what ``benchmarks/bench_ilp.py`` writes to a file for other solvers."""
    problem = tables.problem
    B = len(tables.fixed_s)
    scale = max(tables.lower_bound_usd, 1e-12)
    prob = pulp.LpProblem("curves", pulp.LpMinimize)
    ys = []
    n = 0
    for cv in curves:
        y = [pulp.LpVariable(f"y{n + p}", cat=pulp.LpBinary) for p in range(len(cv.cost))]
        n += len(y)
        ys.append(y)
        prob += pulp.lpSum(y) == 1
        if tables.concurrency:
            for b in range(B):
                prob += pulp.LpAffineExpression(list(zip(y, cv.active[:, b].tolist(), strict=True))) <= problem.constants.lambda_concurrency_limit
    limit = problem.slo.time_limit_s - TIME_MARGIN_S - 1e-9 * problem.slo.time_limit_s
    for b in range(B):
        prob += pulp.LpAffineExpression(
            [(v, float(cv.latency[p, b])) for cv, y in zip(curves, ys, strict=True) for p, v in enumerate(y)]
        ) <= limit - float(tables.fixed_s[b])
    prob += pulp.LpAffineExpression(
        [(v, float(cv.cost[p]) / scale) for cv, y in zip(curves, ys, strict=True) for p, v in enumerate(y)]
    )
    return prob, ys


@dataclass(frozen=True)
class Lagrangian:
    """Keep a layer configuration only if ``cost + mu . latency <= limit``.

    With multipliers ``mu >= 0`` on the end-to-end time rows, any plan's cost is at least
    sum over layers of (cost + mu . latency) - mu . capacity, so a configuration whose own term
    exceeds ``limit`` (the incumbent's cost plus mu . capacity minus the other layers' smallest
    terms) cannot be part of a cheaper plan. ``mu = 0`` prunes by cost alone.
    """

    mu: np.ndarray  # (B,) >= 0, USD per second of latency on each batch
    limit: float  # USD

    def admits(self, cost: np.ndarray, latency: np.ndarray) -> np.ndarray:
        value = cost + latency @ self.mu
        return value <= self.limit + 1e-9 * abs(self.limit)


def time_multipliers(tables: Tables, curves: list[LayerCurve]) -> np.ndarray:
    """Multipliers of the end-to-end time rows: the duals of the LP relaxation of the program
    over ``curves`` (concurrency rows left out: any mu >= 0 gives a valid bound, good duals a
    tight one). Zeros when the LP does not solve."""
    B = len(tables.fixed_s)
    prob = pulp.LpProblem("multipliers", pulp.LpMinimize)
    scale = max(tables.lower_bound_usd, 1e-12)
    ys = [[pulp.LpVariable(f"y{li}_{p}", 0, 1) for p in range(len(cv.cost))] for li, cv in enumerate(curves)]
    for y in ys:
        prob += pulp.lpSum(y) == 1
    rows = []
    for b, cap in enumerate(_capacity(tables)):
        row = pulp.LpAffineExpression(
            [(v, float(cv.latency[p, b])) for cv, y in zip(curves, ys, strict=True) for p, v in enumerate(y)]
        ) <= float(cap)
        prob += row
        rows.append(row)
    prob += pulp.LpAffineExpression(
        [(v, float(cv.cost[p]) / scale) for cv, y in zip(curves, ys, strict=True) for p, v in enumerate(y)]
    )
    prob.solve(OneThreadHiGHS(msg=False, threads=1))
    if prob.status != pulp.LpStatusOptimal:
        return np.zeros(B)
    return np.array([max(-(row.pi or 0.0), 0.0) * scale for row in rows])


def _capacity(tables: Tables) -> np.ndarray:
    """Per batch, the seconds the MoE layers may take together (the time rows' right sides)."""
    limit = tables.problem.slo.time_limit_s
    return limit - TIME_MARGIN_S - 1e-9 * limit - tables.fixed_s


def lagrangian_prunes(
    tables: Tables, upper_usd: float, mu: np.ndarray, curves: list[LayerCurve], deadline: float
) -> list[Lagrangian] | None:
    """Per layer, the prune that keeps every configuration of a plan cheaper than
    ``upper_usd``; None past ``deadline``.

    Needs each layer's exact smallest ``cost + mu . latency``: the DP finds it, pruned by the
    smallest value among the layer's known configurations ``curves`` (an upper bound of it).
    """
    smallest = []
    for li, cv in enumerate(curves):
        known = float((cv.cost + cv.latency @ mu).min())
        front = exact_curve(tables, li, deadline, prune=Lagrangian(mu, known))
        if front is None:
            return None
        smallest.append(min(known, float((front.cost + front.latency @ mu).min())))
    total = sum(smallest)
    room = upper_usd - tables.cost_const_usd + float(mu @ _capacity(tables))
    return [Lagrangian(mu, room - (total - m)) for m in smallest]


def exact_curve(
    tables: Tables, layer: int, deadline: float, methods: set[int] | None = None,
    prune: Lagrangian | None = None, max_front: int | None = None,
    floors: list[float] | None = None,
) -> LayerCurve | None:
    """Every Pareto-optimal configuration of a layer (cost, latency per batch), by dynamic
    programming over its experts with Pareto pruning of partial states; None past ``deadline``.

    Exact because cost adds and latency is a max: a partial state no cheaper and no faster than
    another can never complete to anything better. ``prune``: configurations it does not admit
    cannot be part of a plan cheaper than a known one, so partial states whose cheapest
    completion (the remaining experts' cheapest options, latency as it stands, since it only
    grows) it does not admit are dropped early. ``floors``: each table's lower bound of
    ``cost + prune.mu . latency`` (solvers/_ilp_bounds.py:layer_floors); a table whose floor is
    past the prune's limit (by twice its tolerance: the floats are summed in another order)
    has no configuration to give, and its DP is not run.
    """
    choices: list[Choice] = []
    vectors: list[np.ndarray] = []
    conc = tables.concurrency
    for i, t in enumerate(tables.layers[layer]):
        if methods is not None and t.variant.method not in methods:
            continue
        if floors is not None and prune is not None and floors[i] > prune.limit + 2e-9 * abs(prune.limit):
            continue
        dp = _exact_table_compiled if _cprice is not None else _exact_table_numpy
        picks = dp(t, conc, deadline, prune, max_front)
        if picks is None:
            return None
        if not len(picks):
            continue
        rows = t.rows_of_steps(picks)
        made, cost, latency = choices_of(t, rows)  # Choice.cost_usd and .latency_s of all at once
        active = t.active[rows].sum(axis=1) if conc else np.zeros((len(rows), 0))
        choices.extend(made)
        vectors.append(np.column_stack([cost, latency, active]))
    if not choices:
        return None
    vec = np.concatenate(vectors)
    keep = _pareto(vec, deadline=deadline)
    if keep is None:
        return None
    B = len(tables.fixed_s)
    return LayerCurve(
        tuple(choices[p] for p in keep), vec[keep, 0], vec[keep, 1 : 1 + B],
        vec[keep, 1 + B :] if tables.concurrency else np.zeros((len(keep), B)),
    )


def _exact_table_numpy(
    t: VariantTable, conc: bool, deadline: float, prune: Lagrangian | None, max_front: int | None,
) -> np.ndarray | None:
    """The exact DP of one variant table (experts slowest first; states (cost, slowest finish,
    active replicas when ``conc``) Pareto-pruned after each expert): the rows of every surviving
    configuration, (P, E) in step order; None past ``deadline`` or past the size limits."""
    B = t.lat.shape[1]
    start = t.least_slowest
    state = np.concatenate([[0.0], start, np.zeros(B) if conc else []])[None]
    picks = np.zeros((1, 0), dtype=np.int64)
    order, rest = t.slowest_first
    for step, e in enumerate(order):
        if time.perf_counter() > deadline:
            return None
        rows = t.expert_rows[e]
        opt = np.concatenate(
            [t.cost[rows, None], t.lat[rows], t.active[rows] if conc else np.zeros((len(rows), 0))],
            axis=1,
        )
        S, K = len(state), len(rows)
        if S * K * state.shape[1] > MAX_DP_CELLS:
            return None  # the front outgrew memory: the caller falls back
        if max_front is not None and max_front * 16 < S * K:
            return None
        new = np.empty((S, K, state.shape[1]))
        new[:, :, 0] = state[:, None, 0] + opt[None, :, 0]
        new[:, :, 1 : 1 + B] = np.maximum(state[:, None, 1 : 1 + B], opt[None, :, 1 : 1 + B])
        if conc:
            new[:, :, 1 + B :] = state[:, None, 1 + B :] + opt[None, :, 1 + B :]
        else:
            # Options that fit under a state's latencies all leave it as it is: only the
            # cheapest of them can matter.
            fits = (new[:, :, 1:] == state[:, None, 1:]).all(axis=2)
            cheapest = np.where(fits, new[:, :, 0], np.inf).argmin(axis=1)
            drop = fits.copy()
            drop[np.arange(S), cheapest] = False
            new[drop, 0] = np.inf
        new = new.reshape(S * K, -1)
        ok = np.isfinite(new[:, 0])
        if prune is not None:
            lat_now = t.latency_of(new[:, 1 : 1 + B])  # what the state has committed to
            ok &= prune.admits(new[:, 0] + rest[step] + t.extra_usd(lat_now), lat_now)
        keep = np.flatnonzero(ok)
        front = _pareto(new[keep], deadline=deadline)
        if front is None:
            return None
        keep = keep[front]
        if max_front is not None and len(keep) > max_front:
            return None  # too many partial configurations to finish in useful time
        si, ki = np.divmod(keep, K)
        state = new[keep]
        picks = np.concatenate([picks[si], rows[ki][:, None]], axis=1)
        if not len(state):
            return np.zeros((0, t.experts), dtype=np.int64)
    return picks


def _exact_table_compiled(
    t: VariantTable, conc: bool, deadline: float, prune: Lagrangian | None, max_front: int | None,
) -> np.ndarray | None:
    """:func:`_exact_table_numpy` by the compiled DP (solvers/_ilp_cprice.c): the same
    configurations in the same order (its prune test sums mu . latency in its own order, so a
    configuration within a few ulps of the 1e-9 tolerance may be judged differently)."""
    assert _cprice is not None
    a = t.flat
    B = t.lat.shape[1]
    step, start, compute, cold, price = t.billing
    kind = 0 if t.nonmoe is None else 2 if t.variant.storage else 1
    mu = prune.mu if prune is not None else np.zeros(B)
    try:
        out = _cprice.exact_table(
            a.cost, a.lat, a.active, a.groups, a.offsets, a.rest, a.least_slowest, a.add, a.base,
            np.ascontiguousarray(mu, dtype=float), B, conc, kind, t.direct_usd, step, start, compute,
            cold, price, prune is not None, float(prune.limit) if prune is not None else 0.0,
            max_front or 0, MAX_DP_CELLS, float(deadline),
        )
    except TimeoutError:
        return None
    if out is None:
        return None
    return np.frombuffer(out, dtype=np.int64).reshape(-1, t.experts)


def _spread(values: np.ndarray, most: int) -> np.ndarray:
    """Indices of at most ``most`` entries spread evenly over ``values`` in sorted order."""
    if len(values) <= most:
        return np.arange(len(values))
    order = np.argsort(values, kind="stable")
    return np.sort(order[np.unique(np.linspace(0, len(values) - 1, most).round().astype(int))])


def _upper_triangle(n: int) -> np.ndarray:
    """(n, n) bool, True above the diagonal: within a chunk, point i precedes point j."""
    return np.triu(np.ones((n, n), dtype=bool), 1)


_UPPER_256 = _upper_triangle(256)
_UPPER_256.flags.writeable = False


def _pareto(vec: np.ndarray, chunk: int = 256, deadline: float | None = None) -> np.ndarray | None:
    """Indices of the points no other point weakly dominates (the first of equal points);
    None once ``deadline`` (perf_counter seconds) passes: a front can take minutes."""
    order = np.lexsort(vec.T[::-1])
    v = vec[order]
    keep = np.zeros(len(v), dtype=bool)
    front = v[:0]
    upper = _UPPER_256 if chunk <= 256 else _upper_triangle(chunk)  # its top-left corner serves
    for s in range(0, len(v), chunk):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        c = v[s : s + chunk]
        n = len(c)
        dominated = (front[None] <= c[:, None]).all(axis=2).any(axis=1) if len(front) else np.zeros(n, dtype=bool)
        dominated |= ((c[:, None] <= c[None]).all(axis=2) & upper[:n, :n]).any(axis=0)
        keep[s : s + n] = ~dominated
        front = np.vstack([front, c[~dominated]])
    return np.sort(order[keep])


def cheapest_within(t: VariantTable, cap: np.ndarray) -> np.ndarray | None:
    """Per expert its cheapest row (the first of equals) with ``add + lat <= cap`` on every
    batch, or None when some expert has none: ``t.cheapest_fitting`` of that mask, in one
    compiled pass where the extension is built (the LP rounding asks this of every table
    five times per layer)."""
    if _cprice is None:
        return t.cheapest_fitting((t.add + t.lat <= cap).all(axis=1))
    a = t.flat
    rows = np.empty(t.experts, dtype=np.int64)
    cap = np.ascontiguousarray(cap, dtype=np.float64)
    return rows if _cprice.cheapest_within(a.lat, a.add, a.by_expert_cost, a.expert, cap, rows,
                                           len(a.add)) else None


def cheapest_choice(layer: tuple[VariantTable, ...]) -> Choice:
    """The layer's configuration with every expert at its cheapest option (the first of
    equals), in the variant where that costs least (its latency-dependent cost included; the
    first of equals): what pricing at zero multipliers finds, when time costs nothing. Only
    the variants whose bound (that cost at the variant's latency lower bound: the cost is
    monotone in latency) does not exceed the best found are priced."""
    best: Choice | None = None
    best_usd, best_at = math.inf, len(layer)
    for i in sorted(range(len(layer)), key=lambda i: layer[i].cheapest_bound_usd):
        if layer[i].cheapest_bound_usd > best_usd:
            break
        t = layer[i]
        rows = cheapest_within(t, np.full(t.lat.shape[1], np.inf))
        assert rows is not None, "every expert of a table has a row"
        ch = Choice(t, rows)
        if (ch.cost_usd, i) < (best_usd, best_at):
            best, best_usd, best_at = ch, ch.cost_usd, i
    assert best is not None, "a layer has a table"
    return best


def quick_incumbent(tables: Tables) -> tuple[Choice, ...] | None:
    """A feasible plan in milliseconds: every layer gets its latency lower bound plus an equal
    share of the slack, and takes its cheapest variant whose experts each fit that cap."""
    problem = tables.problem
    lowers = np.array([np.min([t.lower for t in layer], axis=0) for layer in tables.layers])
    slack = problem.slo.time_limit_s - TIME_MARGIN_S - 1e-9 * problem.slo.time_limit_s
    slack = (slack - tables.fixed_s - lowers.sum(axis=0)) / len(tables.layers)
    if (slack < 0).any():
        return None
    choices = []
    for layer, low in zip(tables.layers, lowers, strict=True):
        cap = low + slack
        best: Choice | None = None
        best_usd = np.inf
        for t in layer:
            rows = cheapest_within(t, cap)
            if rows is not None:
                latency = t.latency(rows)  # Choice(t, rows).latency_s, .cost_usd
                if (latency <= cap + 1e-12).all():
                    usd = float(t.cost[rows].sum()) + float(t.extra_usd(latency))
                    if best is None or usd < best_usd:
                        best, best_usd = Choice(t, rows), usd
        if best is None:
            return None
        choices.append(best)
    return tuple(choices)
