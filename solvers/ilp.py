"""Exact MILP through PuLP (HiGHS, or CBC): the monolithic program and the paper's ODS.

The search space is every ungrouped plan: per expert a memory from the problem's options, a
replica count 1..G and (when the problem allows arm64) an architecture; per layer a method and,
for pipelined storage, a pipeline degree from ``pipeline_degrees`` (default: the same menu as
:data:`moeopt.space.PIPELINE_DEGREES`, so the proof covers the space every black-box solver
searches). See docs/ilp.md.

>>> from moeopt.problem import load_problem
>>> result = IlpSolver().solve(load_problem("bert-moe-4"))
>>> str(result.solution_status)
'proven_optimal'
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from typing import Any, ClassVar

import numpy as np
from threadpoolctl import ThreadpoolController

from cost_models import lambda_model as lm
from moeopt.errors import InputError
from moeopt.plan import PlanArrays
from moeopt.problem import DeploymentProblem
from moeopt.solver import Budget, BudgetExhausted, Outcome, Solver, SolverStatus, Tracker
from moeopt.space import PIPELINE_DEGREES
from solvers._ilp_bounds import (
    Bound,
    _extend,
    capacity,
    column_generation,
    curve_lp,
    layer_floors,
    lp_rounding_columns,
    price_layer,
    search,
)
from solvers._ilp_model import (
    MAX_X_ROWS,
    Choice,
    Lagrangian,
    LayerCurve,
    MilpResult,
    cheapest_choice,
    exact_curve,
    quick_incumbent,
    solve_curves,
    solve_milp,
)
from solvers._ilp_tables import PAIRWISE_MAX, Tables, build_tables, variants_of


def one_blas_thread() -> contextlib.AbstractContextManager:
    """numpy's BLAS on one thread while ilp runs: its products are small (layers x batches),
    and OpenBLAS's extra thread only spun: on bert-moe-4 it took 0.96 CPU s for a 0.58 s
    solve, 0.56 CPU s on one thread, with the same wall time. HiGHS runs single-threaded too."""
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The BLAS libraries loaded at the first solve, looked up once (a lookup reads the
    process's memory map: ~0.8 ms per solve). ilp's products are numpy's, and numpy's BLAS is
    loaded with numpy; one loaded later does not run them."""
    return ThreadpoolController()

MODES = ("monolithic", "ods")
#: A proof gives up on a layer whose exact Pareto DP holds more partial configurations.
MAX_PROOF_FRONT = 4_000
BACKENDS = ("highs", "cbc")
#: Share of the time column generation (the root bound) may take; where an expert keeps more
#: than PAIRWISE_MAX options (a full memory range: ~700 per expert and variant) pricing is slow,
#: the exact curves of a proof do not finish, nor does a round of perturbed pricing (mixtral-8x7b,
#: 60 s: 0.75 gave 8 rounds and a gap of 0.061 %, 0.9 gives 9 rounds and 0.013 %).
BOUND_SHARE = 0.45
BOUND_SHARE_WIDE = 0.9
#: The incumbent search over the generated configurations (a heuristic: they are not every
#: configuration): its first target's distance above the bound (relative), the candidates one
#: search may expand, and how many more searches bisect the targets once one gave up on size.
SEARCH_FIRST_ROOM = 2e-4
INCUMBENT_SEARCH_CANDIDATES = 200_000
SEARCH_BACKOFFS = 3
#: The search after LP rounding (only where the first found nothing: large problems) keeps
#: the candidates and time share the one search had before the first one was added.
ROUNDED_SEARCH_CANDIDATES = 500_000


class IlpSolver(Solver):
    """Monolithic MILP by default (the only mode that proves optimality); ``mode="ods"`` runs
    the paper's decomposition on the same tables."""

    name = "ilp"
    tags = frozenset({"exact", "deterministic", "milp", "objectives"})
    requires: ClassVar[tuple[str, ...]] = ("pulp", "highspy")
    default_options: ClassVar[dict[str, Any]] = {
        "mode": "monolithic",
        "backend": "highs",
        "time_limit_s": None,  # None: the budget's seconds
        "mip_gap": 1e-6,
        "pipeline_degrees": PIPELINE_DEGREES,
    }
    default_budget: ClassVar[Budget] = Budget(evaluations=100, seconds=60.0)

    def _check_options(self) -> None:
        o = self.options
        where = f"solver {self.name}"
        if o["mode"] not in MODES:
            raise InputError(where, "mode", f"{o['mode']!r}; allowed: {', '.join(MODES)}")
        if o["backend"] not in BACKENDS:
            raise InputError(where, "backend", f"{o['backend']!r}; allowed: {', '.join(BACKENDS)}")
        degrees = o["pipeline_degrees"]
        if not degrees or any(isinstance(b, bool) or int(b) != b or b < 1 for b in degrees):
            raise InputError(where, "pipeline_degrees", f"{degrees!r}; need integers >= 1")
        if not 0 <= float(o["mip_gap"]) < 1:
            raise InputError(where, "mip_gap", f"{o['mip_gap']!r}; allowed: 0 <= gap < 1")

    def _seconds(self, tracker: Tracker) -> float | None:
        """Solver time left: the option (counted from the start), capped by the budget."""
        limits = [float(x) - tracker.elapsed() for x in (self.options["time_limit_s"],) if x is not None]
        left = tracker.remaining_seconds()
        if left is not None:
            limits.append(max(left - 0.3, 0.05))
        return max(min(limits), 0.05) if limits else None

    def _solve(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        with one_blas_thread():
            return self._solve_one_thread(problem, tracker)

    def _solve_one_thread(self, problem: DeploymentProblem, tracker: Tracker) -> Outcome | None:
        self._check_options()
        degrees = tuple(sorted({int(b) for b in self.options["pipeline_degrees"]}))
        tables = build_tables(problem, variants_of(problem, degrees))
        if tables.binding:
            return Outcome(
                status=SolverStatus.INFEASIBLE,
                message=f"no plan of the space is feasible: {', '.join(tables.binding)} "
                f"cannot be met (checked before the MILP)",
                binding_constraints=tables.binding,
            )
        try:
            if self.options["mode"] == "ods":
                return self._ods(tables, tracker)
            return self._monolithic(tables, tracker)
        except BudgetExhausted:
            # Out of budget before a plan could be priced: the bound holds all the same.
            cheapest = self.objective.kind == "cheapest"
            return Outcome(
                status=SolverStatus.TIME_LIMIT,
                lower_bound_usd=tables.lower_bound_usd if cheapest else None,
                message="budget used up before the search ended; bound "
                f"{tables.lower_bound_usd:.9g} USD (cheapest options, time limit ignored)"
                if cheapest else "budget used up before the search ended",
            )

    # -- monolithic -------------------------------------------------------------------------------

    def _milp(self, tables: Tables, tracker: Tracker, **kw: Any) -> MilpResult:
        return solve_milp(
            tables, backend=self.options["backend"], time_limit_s=kw.pop("time_limit_s", self._seconds(tracker)),
            mip_gap=float(self.options["mip_gap"]), seed=self.seed, objective=self.objective, **kw,
        )

    def _monolithic(self, tables: Tables, tracker: Tracker) -> Outcome:
        """Cheapest objective with HiGHS: the layered route (bounds, then the proof); other
        objectives and CBC: the x-program."""
        if self.objective.kind == "cheapest" and self.options["backend"] == "highs":
            incumbent = quick_incumbent(tables)
            if incumbent is not None and tables.concurrency and not _meets_concurrency(tables, incumbent):
                incumbent = None
            if incumbent is not None:
                return self._layered(tables, tracker, incumbent)
        return self._x_program(tables, tracker)

    def _layered(self, tables: Tables, tracker: Tracker, incumbent: tuple[Choice, ...]) -> Outcome:
        """1. the Lagrangian bound of the time rows by column generation with exact layer
        pricing (and the configurations it generates); 2. the best plan over those
        configurations (exact searches below rising targets; only where they find nothing, the
        LP rounding's plan and configurations too); 3. every configuration whose reduced
        cost fits the gap (exact curves, Lagrangian-pruned), and the exact search over them:
        the proof. Out of time, the best plan and the best proven bound, named."""
        start = time.perf_counter()
        seconds = self._seconds(tracker)
        end = start + (seconds if seconds is not None else 3600.0)
        self._price(tables, incumbent, tracker)
        upper = milp_cost(tables, incumbent)
        B = len(tables.fixed_s)
        # Column generation starts from the incumbent and each layer's cheapest configuration,
        # so its first LP already weighs cost against time (a round at zero multipliers would
        # only find the cheapest ones).
        none = LayerCurve((), np.zeros(0), np.zeros((0, B)), np.zeros((0, B)))
        columns = [_extend(none, [ch, cheapest_choice(layer)], tables.concurrency)
                   for ch, layer in zip(incumbent, tables.layers, strict=True)]
        share = BOUND_SHARE_WIDE if _widest(tables) > PAIRWISE_MAX else BOUND_SHARE
        bound = column_generation(tables, columns, start + share * (end - start), upper)
        lower = tables.lower_bound_usd
        how = "cheapest options, time limit ignored"
        if bound is not None and bound.usd > lower:
            lower, how = bound.usd, bound.how
        steps = [f"root bound {lower:.9g} USD ({how}"
                 + (f", {bound.iterations} rounds" if bound is not None else "") + ")"]
        if bound is not None:  # the best plan over the generated configurations
            columns = bound.curves
            found = self._search(tables, columns, lower, upper,
                                 time.perf_counter() + 0.1 * max(end - time.perf_counter(), 0.0))
            if found is None:
                columns, rounded = lp_rounding_columns(tables, bound.curves, deadline=end)
                if (usd := self._adopt(tables, rounded, upper, tracker)) is not None:
                    incumbent, upper = rounded, usd
                found = self._search(tables, columns, lower, upper,
                                     time.perf_counter() + 0.2 * max(end - time.perf_counter(), 0.0),
                                     max_candidates=ROUNDED_SEARCH_CANDIDATES)
            if (usd := self._adopt(tables, found, upper, tracker)) is not None:
                incumbent, upper = found, usd
            steps.append(f"incumbent {upper:.9g} USD over {sum(len(c.cost) for c in columns)} "
                         "generated configurations")
        gap_ok = float(self.options["mip_gap"])
        proven = upper <= lower * (1 + gap_ok) + 1e-15
        if not proven and bound is not None and time.perf_counter() < end:
            lower, choices, proven, how_proved = self._prove(
                tables, bound, lower, upper, time.perf_counter() + 0.5 * max(end - time.perf_counter(), 0.0))
            steps.append(how_proved)
            if (usd := self._adopt(tables, choices, upper, tracker)) is not None:
                incumbent, upper = choices, usd
            elif choices is not None and milp_cost(tables, choices) < upper:
                proven = False  # found, but the budget ended before it could be priced
                steps.append("its plan could not be priced within the budget")
        if not proven and bound is not None and time.perf_counter() < end:
            found, rounds = self._improve(tables, bound, columns, lower, upper, end)
            if (usd := self._adopt(tables, found, upper, tracker)) is not None:
                incumbent, upper = found, usd
            steps.append(f"{rounds} rounds of perturbed pricing for the incumbent")
        cost = tracker.best_eval.cost_usd if tracker.best_eval is not None else upper
        # The bound as proven, never raised to the plan's cost: a proof at mip_gap shows as a
        # reported gap of up to mip_gap (raising it hid a proof claimed at a looser gap).
        lower = min(lower, cost)
        gap = _gap(cost, lower)
        return Outcome(
            status=SolverStatus.OPTIMAL if proven else SolverStatus.TIME_LIMIT,
            lower_bound_usd=lower,
            proven_optimal=proven and tracker.seen_feasible,
            message=(
                f"{'optimal' if proven else 'time limit'}: cost {cost:.9g} USD, best bound "
                f"{lower:.9g} USD, gap {'n/a' if gap is None else f'{gap:.3g}'}; "
                + "; ".join(steps) + "; "
                f"{tables.rows} of {tables.options_before} options kept, "
                f"{time.perf_counter() - start:.2f} s"
            ),
        )

    def _search(
        self, tables: Tables, curves: list[LayerCurve], lower: float, upper: float,
        deadline: float, max_candidates: int = INCUMBENT_SEARCH_CANDIDATES,
    ) -> tuple[Choice, ...] | None:
        """A plan over ``curves`` cheaper than ``upper`` (a heuristic here: the curves are only
        the generated configurations), by exact searches below targets rising from ``lower``
        or from the LP over ``curves`` (no plan of them is below it), pruned with that LP's
        duals (its Lagrangian bound over these curves is the LP's value)."""
        costs, lats, keep = _feasible_points(tables, curves)
        const = tables.cost_const_usd
        try:
            lp = curve_lp(tables, [LayerCurve(tuple(cv.choices[i] for i in k), c, la, cv.active[k])
                                   for cv, c, la, k in zip(curves, costs, lats, keep, strict=True)])
        except RuntimeError:
            return None
        mu = lp.mu
        if lp.slack <= 0:
            lower = max(lower, lp.value_usd)
        if lower >= upper:
            return None
        # Targets rise from the bound: a search's work grows steeply with its target, so the
        # steps are small (x2). Once a search gives up on size, the targets bisect between the
        # last one proven empty and that one (at most SEARCH_BACKOFFS more searches; none when
        # even the first target was too much: then the curves are too large to search).
        room = max(min(upper - lower, SEARCH_FIRST_ROOM * abs(lower)), 1e-12 * abs(upper))
        empty = 0.0  # no plan of the curves costs at most lower + empty
        ceiling = math.inf  # the search below lower + ceiling gave up on size
        backoffs = 0
        while time.perf_counter() < deadline:
            target = min(lower + room, upper)
            found = search(costs, lats, capacity(tables), mu, (target - const) * (1 + 1e-9),
                           deadline, max_candidates=max_candidates)
            if found.status == "optimal":
                return tuple(curves[li].choices[keep[li][p]] for li, p in enumerate(found.picks))
            if found.status == "aborted":
                if not empty:
                    return None
                ceiling = room
            elif target >= upper:
                return None
            else:
                empty = room
            if ceiling < math.inf:  # bisect between the last empty target and the give-up
                backoffs += 1
                if backoffs > SEARCH_BACKOFFS:
                    return None
                room = (empty + ceiling) / 2
            else:
                room *= 2
        return None

    def _improve(
        self, tables: Tables, bound: Bound, columns: list[LayerCurve], lower: float, upper: float,
        end: float,
    ) -> tuple[tuple[Choice, ...] | None, int]:
        """Better plans while time is left: price every layer at multipliers shifted towards
        one batch or away from it (configurations that trade that batch's time differently),
        add them and the LP-rounding caps, and search the generated configurations again."""
        B = len(bound.mu)
        shifts = [(b, f) for f in (2.0, 0.5, 4.0, 0.25) for b in range(B)] + [(-1, 1.5), (-1, 0.67)]
        best: tuple[Choice, ...] | None = None
        rounds = 0
        for b, f in shifts:
            if time.perf_counter() > end:
                break
            mu = bound.mu * (f if b < 0 else 1.0)
            if b >= 0:
                mu = mu.copy()
                mu[b] = (mu[b] if mu[b] > 0 else float(bound.mu.mean())) * f
            try:
                extended = []
                for li, cv in enumerate(columns):
                    near: list[Choice] = []
                    # What the known configurations reach prunes (the near ones still pass).
                    known = float((cv.cost + cv.latency @ mu).min())
                    price_layer(tables, li, mu, known, end, near)
                    extended.append(_extend(cv, near, tables.concurrency))
            except TimeoutError:
                break
            columns, rounded = lp_rounding_columns(tables, extended, deadline=end)
            rounds += 1
            if rounded is not None and milp_cost(tables, rounded) < upper:
                best, upper = rounded, milp_cost(tables, rounded)
            found = self._search(tables, columns, lower, upper,
                                 time.perf_counter() + 0.25 * max(end - time.perf_counter(), 0.0))
            if found is not None and milp_cost(tables, found) < upper:
                best, upper = found, milp_cost(tables, found)
                if upper <= lower * (1 + float(self.options["mip_gap"])):
                    break
        return best, rounds

    def _prove(
        self, tables: Tables, bound: Bound, lower: float, upper: float, end: float
    ) -> tuple[float, tuple[Choice, ...] | None, bool, str]:
        """Raise the bound until it meets a plan. Each round takes a target T between the
        bound and the incumbent, builds every layer's exact curve kept only where its reduced
        cost fits T - bound (Lagrangian pruning), and searches it exactly: a plan at most T is
        the optimum; none proves T a lower bound. The target's distance grows 4x each round.
        Returns (bound, best plan found or None, proven optimal, what was done)."""
        done = ""
        # The incumbent is usually close (it comes from a search): then one round; when it is
        # far, the rounds start small so that the curves stay small.
        room = upper - lower if upper - lower <= 1e-3 * abs(lower) else 1e-4 * abs(lower)
        room = max(min(upper - lower, max(room, 1e-4 * abs(lower))), 1e-12 * abs(upper))
        floors = [layer_floors(tables, li, bound.mu) for li in range(tables.problem.layers)]
        while time.perf_counter() < end:
            target = min(lower + room, upper)
            prunes = [Lagrangian(bound.mu, float(m) + (target - bound.usd)) for m in bound.minima]
            curves = []
            for li in range(tables.problem.layers):
                curve = exact_curve(tables, li, end, prune=prunes[li], max_front=MAX_PROOF_FRONT,
                                    floors=floors[li])
                if curve is None:
                    return lower, None, False, done or "exact curves too large for the time left"
                curves.append(curve)
            n = sum(len(c.cost) for c in curves)
            self.final_curves = (tables, curves)  # the last program of the proof (benchmarks)
            costs, lats, keep = _feasible_points(tables, curves)
            goal = (target - tables.cost_const_usd) * (1 + 1e-9)
            found = search(costs, lats, capacity(tables), bound.mu, goal, end)
            if found.status == "optimal":
                picks = tuple(curves[li].choices[keep[li][p]] for li, p in enumerate(found.picks))
                # Every plan at most T survives the pruning, so the exact optimum over the kept
                # curves is the optimum: its cost is the bound.
                return (max(lower, min(milp_cost(tables, picks), upper)), picks, True,
                        f"proved by exact search over {n} layer configurations")
            if found.status == "aborted":
                left = max(end - time.perf_counter(), 0.05)
                status, choices, hb = solve_curves(
                    tables, curves, time_limit_s=left, seed=self.seed,
                    mip_gap=float(self.options["mip_gap"]), with_bound=True, cutoff_usd=target,
                )
                if status == "optimal" and choices is not None:
                    proved = lower if hb is None else max(lower, min(hb, target))
                    return proved, choices, True, f"proved by HiGHS over {n} layer configurations"
                if status != "cutoff":
                    if hb is not None and status != "infeasible":
                        lower = max(lower, min(hb, target))
                    return lower, choices, False, f"HiGHS over {n} layer configurations ran out of time"
            # Nothing costs at most the target: it is a lower bound.
            lower = max(lower, target)
            done = f"exact search: no plan below {lower:.9g} USD"
            if target >= upper:
                return upper, None, True, f"exact search over {n} layer configurations: nothing cheaper"
            room *= 4
        return lower, None, False, done or "out of time before the exact curves"

    def _x_program(self, tables: Tables, tracker: Tracker) -> Outcome:
        """The full x-program (CBC, or objectives other than cost), with the quick incumbent
        as cutoff where the objective is cost."""
        incumbent: tuple[Choice, ...] | None = None
        if self.objective.kind == "cheapest":
            incumbent = quick_incumbent(tables)
            if incumbent is not None and tables.concurrency and not _meets_concurrency(tables, incumbent):
                incumbent = None
            if incumbent is not None:
                self._price(tables, incumbent, tracker)
        cutoff = None if incumbent is None else milp_cost(tables, incumbent)
        if tables.rows > MAX_X_ROWS:
            bound = tables.lower_bound_usd if self.objective.kind == "cheapest" else None
            gap = _gap(cutoff, bound)
            if incumbent is None:
                return Outcome(status=SolverStatus.TIME_LIMIT, lower_bound_usd=bound,
                               message=f"no incumbent in time; {tables.rows} option rows are too "
                               "many for the x-program; give more seconds or fewer pipeline_degrees")
            return Outcome(
                status=SolverStatus.TIME_LIMIT, lower_bound_usd=bound,
                message=f"incumbent {cutoff:.9g} USD; {tables.rows} option rows are too many for "
                f"the x-program; bound {bound} (cheapest options, time limit ignored), gap "
                f"{'n/a' if gap is None else f'{gap:.3g}'}",
            )
        # Concurrency rows are added only when the plan found without them breaks the limit:
        # the program without them is a relaxation, so a solution that meets it is optimal.
        result = self._milp(tables, tracker, concurrency_rows=False, cutoff_usd=cutoff)
        if result.choices is not None and tables.concurrency and not _meets_concurrency(
            tables, result.choices
        ):
            result = self._milp(tables, tracker, cutoff_usd=cutoff)
        if result.status == "infeasible":
            return self._infeasible(tables, tracker)
        choices = result.choices
        cost = result.objective_usd
        if choices is None or (cutoff is not None and cost is not None and cutoff <= cost):
            choices, cost = incumbent, cutoff
        if choices is None:
            return Outcome(status=SolverStatus.TIME_LIMIT, lower_bound_usd=result.bound_usd,
                           message=f"no incumbent within {result.seconds:.1f} s")
        if choices is not incumbent:
            self._price(tables, choices, tracker)
        proven = result.status in ("optimal", "cutoff")
        bound = None
        how = ""
        if self.objective.kind == "cheapest":
            # Both are valid bounds; the x-program's may be weaker when it had little time.
            candidates = [(result.bound_usd, "the x-program's dual bound"),
                          (tables.lower_bound_usd, "cheapest options, time limit ignored")]
            bound, how = max((b, h) for b, h in candidates if b is not None)
            if proven:
                bound = min(bound, tracker.best_eval.cost_usd)
        cost = tracker.best_eval.cost_usd
        gap = _gap(cost, bound)
        return Outcome(
            status=SolverStatus.OPTIMAL if proven else SolverStatus.TIME_LIMIT,
            lower_bound_usd=bound,
            proven_optimal=proven and tracker.seen_feasible,
            message=(
                f"{'optimal' if proven else 'time limit'}: MILP cost {cost:.9g} USD, "
                f"bound {bound if bound is not None else 'n/a'}{f' ({how})' if how else ''}, gap "
                f"{'n/a' if gap is None else f'{gap:.3g}'}; {result.variables} variables, "
                f"{result.constraints} rows, {tables.rows} of {tables.options_before} options "
                f"kept, {result.seconds:.2f} s in the MILP"
            ),
        )

    def _infeasible(self, tables: Tables, tracker: Tracker) -> Outcome:
        """The program has no solution: find the constraint that binds by relaxing it."""
        relaxed = self._milp(tables, tracker, time_rows=False, concurrency_rows=True)
        binding = ("time_limit",) if relaxed.choices is not None else ("concurrency",)
        if relaxed.choices is not None:
            self._price(tables, relaxed.choices, tracker)  # the least-violating plan, for reference
        return Outcome(
            status=SolverStatus.INFEASIBLE,
            binding_constraints=binding,
            message=f"the MILP is infeasible; without the {binding[0]} constraint it is not",
        )

    # -- ODS (the paper's Alg. 1) -----------------------------------------------------------------

    def _ods(self, tables: Tables, tracker: Tracker) -> Outcome:
        """One program per method; per layer the cheapest method; while the time limit breaks,
        drop the method of the slowest layer (the paper prints argmin; its prose says highest
        latency, which is what we do); at most 2|layers| rounds; else one method everywhere."""
        problem = tables.problem
        methods = sorted({t.variant.method for layer in tables.layers for t in layer})
        per_method: dict[int, tuple[Choice, ...]] = {}
        for i, m in enumerate(methods):
            seconds = self._seconds(tracker)
            share = None if seconds is None else seconds / (len(methods) - i)
            choices = self._method_program(tables, m, share)
            if choices is not None:
                per_method[m] = choices
        if not per_method:
            fallback = quick_incumbent(tables)
            if fallback is None:
                return self._infeasible(tables, tracker)
            self._price(tables, fallback, tracker)  # out of time, not infeasible
            return Outcome(status=SolverStatus.TIME_LIMIT, lower_bound_usd=tables.lower_bound_usd,
                           message="ODS: no per-method program finished in time; returned the "
                           "equal-slack incumbent")
        L = problem.layers
        cost = np.full((len(methods), L), np.inf)
        for j, m in enumerate(methods):
            if m in per_method:
                cost[j] = [ch.cost_usd for ch in per_method[m]]
        limit = problem.slo.time_limit_s
        chosen: tuple[Choice, ...] | None = None
        rounds = 0
        for rounds in range(1, 2 * L + 1):  # noqa: B007 - reported below
            if not np.isfinite(cost.min(axis=0)).all():
                break
            pick = cost.argmin(axis=0)
            layers = tuple(per_method[methods[pick[li]]][li] for li in range(L))
            lat = np.array([ch.latency_s for ch in layers])  # (L, B)
            if (tables.fixed_s + lat.sum(axis=0) <= limit).all():
                chosen = layers
                break
            slowest = int(lat.max(axis=1).argmax())
            cost[pick[slowest], slowest] = np.inf
        how = f"mixed methods after {rounds} round(s)"
        if chosen is None:
            totals = {m: sum(ch.cost_usd for ch in per_method[m]) for m in per_method}
            best = min(totals, key=lambda m: totals[m])
            chosen = per_method[best]
            how = f"fallback: {lm.METHODS[best]} in every layer"
        self._price(tables, chosen, tracker)
        return Outcome(
            status=SolverStatus.COMPLETED,
            lower_bound_usd=tables.lower_bound_usd,  # cheapest options, time limit ignored
            message=f"ODS ({how}); a heuristic: use mode='monolithic' for a proof; bound "
            f"{tables.lower_bound_usd:.9g} USD (cheapest options, time limit ignored)",
        )

    def _method_program(
        self, tables: Tables, method: int, seconds: float | None
    ) -> tuple[Choice, ...] | None:
        """ODS's sub-program: the method fixed in every layer, solved exactly over the exact
        layer curves when they come in time, else by the x-program."""
        start = time.perf_counter()
        deadline = start + (0.6 * seconds if seconds is not None else 3600.0)
        curves = []
        for li in range(tables.problem.layers):
            curve = exact_curve(tables, li, deadline, methods={method})
            if curve is None:
                break
            curves.append(curve)
        left = None if seconds is None else max(seconds - (time.perf_counter() - start), 0.05)
        if len(curves) == tables.problem.layers and self.options["backend"] == "highs":
            _, choices = solve_curves(tables, curves, time_limit_s=left, seed=self.seed,
                                      mip_gap=float(self.options["mip_gap"]))
            return choices
        return solve_milp(
            tables, methods={method}, backend=self.options["backend"], time_limit_s=left,
            mip_gap=float(self.options["mip_gap"]), seed=self.seed,
        ).choices

    # -- pricing ----------------------------------------------------------------------------------

    def _price(self, tables: Tables, choices: tuple[Choice, ...], tracker: Tracker) -> None:
        tracker.evaluate(plan_arrays(tables, choices))

    def _adopt(
        self, tables: Tables, choices: tuple[Choice, ...] | None, upper: float, tracker: Tracker
    ) -> float | None:
        """The cost of ``choices`` when it is a plan cheaper than ``upper`` and was priced; None
        otherwise, also when the budget has ended before it could be priced (the plan is then
        not used, and the bounds computed so far still stand rather than being lost)."""
        if choices is None or (usd := milp_cost(tables, choices)) >= upper:
            return None
        try:
            self._price(tables, choices, tracker)
        except BudgetExhausted:
            return None
        return usd


def plan_arrays(tables: Tables, choices: tuple[Choice, ...]) -> PlanArrays:
    """The chosen options as one plan in array form (ungrouped)."""
    problem = tables.problem
    L, E = problem.layers, problem.experts
    memory = np.zeros((1, L, E))
    replicas = np.ones((1, L, E), dtype=np.int64)
    arm = np.zeros((1, L, E), dtype=bool)
    method = np.zeros((1, L), dtype=np.int64)
    beta = np.ones((1, L))
    for li, ch in enumerate(choices):
        k = ch.table.option[ch.rows]
        memory[0, li] = tables.memory_mb[k]
        replicas[0, li] = tables.replicas[k]
        arm[0, li] = tables.arm64[k]
        method[0, li] = ch.table.variant.method
        beta[0, li] = ch.table.variant.pipeline_degree
    return PlanArrays(memory, replicas, method, beta, None, arm if arm.any() else None)


def milp_cost(tables: Tables, choices: tuple[Choice, ...]) -> float:
    """The program's objective (cheapest) for these choices, to check against the evaluator."""
    return sum(ch.cost_usd for ch in choices) + tables.cost_const_usd


def _feasible_points(
    tables: Tables, curves: list[LayerCurve]
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per layer the (cost, latency) of its configurations that meet the concurrency limit,
    and their indices in the curve."""
    limit = tables.problem.constants.lambda_concurrency_limit
    costs, lats, keep = [], [], []
    for cv in curves:
        ok = np.flatnonzero((cv.active <= limit).all(axis=1)) if tables.concurrency else np.arange(len(cv.cost))
        costs.append(cv.cost[ok])
        lats.append(cv.latency[ok])
        keep.append(ok)
    return costs, lats, keep


def _widest(tables: Tables) -> int:
    """The most options any expert keeps under any variant."""
    return max((int(np.bincount(t.expert).max()) for layer in tables.layers for t in layer),
               default=0)


def _meets_concurrency(tables: Tables, choices: tuple[Choice, ...]) -> bool:
    limit = tables.problem.constants.lambda_concurrency_limit
    return all((ch.table.active[ch.rows].sum(axis=0) <= limit).all() for ch in choices)


def _gap(cost: float | None, bound: float | None) -> float | None:
    if cost is None or bound is None or not math.isfinite(cost) or cost <= 0:
        return None
    return max(cost - bound, 0.0) / cost


class MonolithicIlpSolver(IlpSolver):
    """Methods chosen jointly with everything else: the exact optimum over the space."""

    name = "ilp-monolithic"
    default_options: ClassVar[dict[str, Any]] = {**IlpSolver.default_options, "mode": "monolithic"}


class OdsIlpSolver(IlpSolver):
    """The paper's ODS decomposition (also ``ilp`` with mode="ods")."""

    name = "ilp-ods"
    default_options: ClassVar[dict[str, Any]] = {**IlpSolver.default_options, "mode": "ods"}


class CbcIlpSolver(IlpSolver):
    """The monolithic program solved by CBC (bundled with PuLP 3) instead of HiGHS."""

    name = "ilp-cbc"
    default_options: ClassVar[dict[str, Any]] = {**IlpSolver.default_options, "backend": "cbc"}

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import pulp

            ok = bool(pulp.PULP_CBC_CMD(msg=False).available())
        except Exception as exc:  # PuLP missing or broken: a listed fact
            return False, f"{type(exc).__name__}: {exc}"
        return ok, "" if ok else "PuLP's bundled CBC binary is not available"
