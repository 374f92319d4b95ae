"""Run several solvers on one problem and tabulate them (``moeopt compare``, ``moeopt.compare``).

>>> from moeopt.compare import compare
>>> result = compare("bert-moe-4", ["greedy", "lambdaml"])
>>> [row.solver for row in result.ranked()]
['greedy', 'lambdaml']
>>> print(result)  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
bert-moe-4: time limit 34.1 s, 1 seed(s), each solver's default budget
solver cost USD gap feasible latency s tokens/s evaluations solve s status
---...
greedy ... yes ... completed/feasible
lambdaml ... no ... completed/none
gap: against the cheapest Lambda plan (rows without a plan are never the reference)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from moeopt.problem import DeploymentProblem
from moeopt.registry import make_solver, select_solvers
from moeopt.solver import Budget, SolutionStatus, SolveResult, describe_budget
from moeopt.tables import WIDE, render, table

# The default set: the main zoo available here, then every available plugin (plugins are in
# by default so an installed solver is compared without being named).
DEFAULT_COMPARE = ("ilp", "greedy", "bayes-egreedy", "nevergrad", "random", "eplb", "lambdaml",
                   "cpu-cluster")


@dataclass(frozen=True)
class CompareRow:
    """One solver's results over seeds: the best-of-seeds result, and its spread."""

    solver: str
    results: tuple[SolveResult, ...]

    @property
    def best(self) -> SolveResult:
        return min(self.results, key=lambda r: (r.solution_status == SolutionStatus.NONE, r.cost_usd))

    def to_dict(self, best_cost: float) -> dict[str, Any]:
        r = self.best
        d = r.to_dict()
        d.pop("trajectory")
        costs = [x.cost_usd for x in self.results if math.isfinite(x.cost_usd)]
        d.update({
            "solver": self.solver,
            "seeds": [x.seed for x in self.results],
            "cost_usd_mean": float(np.mean(costs)) if costs else None,
            "gap_to_best": (r.cost_usd - best_cost) / best_cost
            if math.isfinite(r.cost_usd) and math.isfinite(best_cost) and best_cost > 0 else None,
            "solve_seconds": float(np.mean([x.wall_seconds for x in self.results])),
        })
        return d


@dataclass(frozen=True)
class Comparison:
    """Solvers side by side on one problem; ``str()`` is the ``moeopt compare`` table."""

    problem: DeploymentProblem
    rows: tuple[CompareRow, ...]
    seeds: int
    budget: Budget | None  # None: each solver's own default

    @property
    def best_cost(self) -> float:
        """The cheapest feasible Lambda plan any solver returned (inf: none): what gaps are
        measured against (see :func:`best_cost`)."""
        return best_cost(list(self.rows))

    def cluster_assumption(self) -> str | None:
        """What the cpu-cluster row's cost assumes (the request rate decides it), if there is one."""
        if not any(r.solver == "cpu-cluster" for r in self.rows):
            return None
        from moeopt.baselines import cpu_cluster

        return cpu_cluster(self.problem).assumption

    def ranked(self) -> list[CompareRow]:
        """Feasible rows first, cheapest first."""
        return sorted(self.rows, key=lambda r: (r.best.solution_status == SolutionStatus.NONE,
                                                r.best.cost_usd))

    def row(self, solver: str) -> CompareRow:
        return next(r for r in self.rows if r.solver == solver)

    def to_dicts(self) -> list[dict[str, Any]]:
        """One dict per solver, in the order they ran (``moeopt compare --json``)."""
        best = self.best_cost
        out = [r.to_dict(best) for r in self.rows]
        for d in out:
            if d["solver"] == "cpu-cluster":
                d["assumption"] = self.cluster_assumption()
        return out

    def header(self) -> str:
        budget = "each solver's default budget" if self.budget is None else \
            f"budget {describe_budget(self.budget)}"
        return (f"{self.problem.name}: time limit {self.problem.slo.time_limit_s:.1f} s, "
                f"{self.seeds} seed(s), {budget}")

    def notes(self) -> str:
        """What the gaps and the cluster's cost mean (printed under the table)."""
        cluster = self.cluster_assumption()
        return ("gap: against the cheapest Lambda plan (rows without a plan are never the reference)"
                + (f"\ncpu-cluster: {cluster} (moeopt breakeven for other rates)" if cluster else ""))

    def table(self) -> Any:
        """The comparison as a rich Table."""
        best = self.best_cost
        rows = []
        for row in self.ranked():
            d = row.to_dict(best)
            ev = row.best.evaluation
            cost = ev.cost_usd if ev is not None and math.isfinite(ev.cost_usd) else None
            rows.append((
                row.solver,
                None if cost is None else f"{cost:.6f}",
                None if d["gap_to_best"] is None else f"{d['gap_to_best']:.1%}",
                "yes" if d["feasible"] else "no",
                None if ev is None else f"{ev.latency_s:.2f}",
                None if ev is None else f"{ev.throughput_tokens_per_s:.1f}",
                f"{row.best.evaluations:,}",
                f"{d['solve_seconds']:.2f}",
                f"{d['solver_status']}/{d['solution_status']}",
            ))
        columns = ("solver", "cost USD", "gap", "feasible", "latency s", "tokens/s", "evaluations",
                   "solve s", "status")
        return table(columns, rows, right=columns[1:8])

    def render(self, width: int = WIDE) -> str:
        return render(self.header(), self.table(), self.notes(), width=width)

    def __str__(self) -> str:
        return self.render()

    def plot(self, path: str, title: str | None = None) -> None:
        """Best cost against seconds (PNG), one step line per solver (best seed)."""
        plot_trajectories(list(self.rows), path, title or f"{self.problem.name}: best feasible cost over time")


def default_solvers() -> list[str]:
    """The default set: :data:`DEFAULT_COMPARE` where available, plus every available plugin."""
    return select_solvers(None, DEFAULT_COMPARE)


def solve(
    problem: DeploymentProblem | str,
    solver: str = "ilp",
    *,
    seed: int = 0,
    budget: Budget | None = None,
    **options: Any,
) -> SolveResult:
    """Solve ``problem`` (a problem, a built-in name or a problem file) with a registered
    solver: ``moeopt.solve("bert-moe-4", "greedy", seed=1)``; ``budget`` None: the solver's
    default (the result says so)."""
    return make_solver(solver, seed=seed, **options).solve(_problem(problem), budget)


def _problem(problem: DeploymentProblem | str) -> DeploymentProblem:
    if isinstance(problem, str):
        from moeopt.problem import load_problem

        return load_problem(problem)
    return problem


def compare(
    problem: DeploymentProblem | str,
    solvers: Iterable[str] | str | None = None,
    seeds: int = 1,
    budget: Budget | None = None,
    options: dict[str, Any] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> Comparison:
    """Run ``solvers`` (names, ``"a,b"``, ``"all"`` or None for the default set) on ``problem``
    (a problem or a built-in name / problem file) with seeds 0..seeds-1 each.

    ``budget`` None gives each solver its own default budget (the result's header says so);
    ``options`` go to every solver (``objective``/``weight`` are accepted by all)."""
    problem = _problem(problem)
    if solvers is None or isinstance(solvers, str):
        names = select_solvers(solvers, DEFAULT_COMPARE)
    else:
        names = select_solvers(",".join(solvers), DEFAULT_COMPARE)
    rows = []
    for name in names:
        results = []
        for seed in range(seeds):
            results.append(make_solver(name, seed=seed, **(options or {})).solve(problem, budget))
            if progress:
                progress(name, seed)
        rows.append(CompareRow(name, tuple(results)))
    return Comparison(problem, tuple(rows), seeds, budget)


def best_cost(rows: list[CompareRow]) -> float:
    """The cheapest feasible Lambda plan of the rows: what every gap is measured against.

    Rows without a plan (the CPU cluster, the oracle's per-batch re-plans) are not Lambda plans
    one can deploy, so they are never the reference."""
    costs = [r.best.cost_usd for r in rows
             if r.best.plan is not None and r.best.solution_status != SolutionStatus.NONE]
    return min(costs) if costs else math.inf


def plot_trajectories(rows: list[CompareRow], path: str, title: str) -> None:
    """Best cost against seconds, one step line per solver (best seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        r = row.best
        if not r.trajectory:
            continue
        t = [max(p.seconds, 1e-4) for p in r.trajectory] + [max(r.wall_seconds, 1e-4)]
        c = [p.cost_usd for p in r.trajectory] + [r.trajectory[-1].cost_usd]
        ax.step(t, c, where="post", label=row.solver)
        ax.plot(t[:-1], c[:-1], "o", ms=3, color=ax.lines[-1].get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds")
    ax.set_ylabel("best feasible cost per batch (USD)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
