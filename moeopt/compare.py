"""Run several solvers on one problem and tabulate them (``moeopt compare``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from moeopt.problem import DeploymentProblem
from moeopt.registry import list_solvers, make_solver
from moeopt.solver import Budget, SolutionStatus, SolveResult

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
            "seeds": [x.seed for x in self.results],
            "cost_usd_mean": float(np.mean(costs)) if costs else None,
            "gap_to_best": (r.cost_usd - best_cost) / best_cost
            if math.isfinite(r.cost_usd) and math.isfinite(best_cost) and best_cost > 0 else None,
            "solve_seconds": float(np.mean([x.wall_seconds for x in self.results])),
        })
        return d


def default_solvers() -> list[str]:
    ok = {e.name for e in list_solvers() if e.available}
    return [s for s in DEFAULT_COMPARE if s in ok]


def compare(
    problem: DeploymentProblem,
    solvers: Iterable[str],
    seeds: int,
    budget: Budget | None,
    options: dict[str, Any] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> list[CompareRow]:
    rows = []
    for name in solvers:
        results = []
        for seed in range(seeds):
            results.append(make_solver(name, seed=seed, **(options or {})).solve(problem, budget))
            if progress:
                progress(name, seed)
        rows.append(CompareRow(name, tuple(results)))
    return rows


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
