"""Solver registry: built-ins by short name, plugins through the ``moeopt.solvers`` entry points.

A plugin that fails to import is listed with its error, never fatal (as PuLP lists solvers
whose backend is missing). Built-ins are imported lazily so a missing optional dependency only
affects its own solver.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from moeopt.errors import InputError
from moeopt.solver import Solver

ENTRY_POINT_GROUP = "moeopt.solvers"

# name -> "module:Class"
BUILTIN_SOLVERS: dict[str, str] = {
    "ilp": "solvers.ilp:IlpSolver",
    "ilp-monolithic": "solvers.ilp:MonolithicIlpSolver",
    "ilp-ods": "solvers.ilp:OdsIlpSolver",
    "ilp-cbc": "solvers.ilp:CbcIlpSolver",
    "bayes-egreedy": "solvers.bayes:BayesEGreedySolver",
    "bayes-single-eps": "solvers.bayes:BayesSingleEpsSolver",
    "bayes-random": "solvers.bayes:BayesRandomSolver",
    "nevergrad": "solvers.nevergrad_solver:NGOptSolver",
    "nevergrad-cma": "solvers.nevergrad_solver:CMASolver",
    "nevergrad-de": "solvers.nevergrad_solver:DESolver",
    "nevergrad-oneplusone": "solvers.nevergrad_solver:OnePlusOneSolver",
    "nevergrad-pso": "solvers.nevergrad_solver:PSOSolver",
    "optuna-tpe": "solvers.optuna_solver:OptunaTPESolver",
    "optuna-cmaes": "solvers.optuna_solver:OptunaCmaEsSolver",
    "optuna-gp": "solvers.optuna_solver:OptunaGPSolver",
    "greedy": "solvers.greedy:GreedySolver",
    "exhaustive": "solvers.exhaustive:ExhaustiveSolver",
    "random": "solvers.random_search:RandomSearchSolver",
    "lambdaml": "solvers.baselines:LambdaMLSolver",
    "cpu-cluster": "solvers.baselines:CpuClusterSolver",
    "eplb": "solvers.baselines:EplbSolver",
    "oracle": "solvers.baselines:OracleSolver",
    "bo-popularity": "solvers.bo_popularity:BoPopularitySolver",
}


@dataclass(frozen=True)
class SolverEntry:
    name: str
    target: str
    origin: str  # "built-in" or the plugin's distribution
    solver_class: type[Solver] | None
    available: bool
    reason: str

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(sorted(self.solver_class.tags)) if self.solver_class else ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "target": self.target,
            "tags": list(self.tags),
            "available": self.available,
            "reason": self.reason,
        }


def _load(name: str, target: str, origin: str) -> SolverEntry:
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Solver)):
            raise TypeError(f"{target} is not a moeopt Solver subclass")
    except Exception as exc:  # a broken plugin is a listed fact, not a crash
        return SolverEntry(name, target, origin, None, False, f"{type(exc).__name__}: {exc}")
    ok, reason = cls.available()
    return SolverEntry(name, target, origin, cls, ok, reason)


def list_solvers() -> list[SolverEntry]:
    """Built-ins first, then plugins (a plugin may not shadow a built-in name)."""
    entries = [_load(n, t, "built-in") for n, t in BUILTIN_SOLVERS.items()]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_SOLVERS:
            continue
        dist = ep.dist.name if ep.dist is not None else "plugin"
        entries.append(_load(ep.name, ep.value, dist))
    return entries


def get_solver_class(name: str) -> type[Solver]:
    entries = {e.name: e for e in list_solvers()}
    entry = entries.get(name)
    if entry is None:
        raise InputError("--solver", name, f"unknown solver; registered: {', '.join(entries)}")
    if entry.solver_class is None or not entry.available:
        raise InputError("--solver", name, f"not available here: {entry.reason}")
    return entry.solver_class


def make_solver(name: str, *, seed: int = 0, **options: Any) -> Solver:
    """A solver instance by registered name: ``make_solver("ilp", seed=0)``."""
    return get_solver_class(name)(seed=seed, **options)
