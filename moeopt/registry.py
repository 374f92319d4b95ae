"""Solver registry: built-ins by short name, plugins through the ``moeopt.solvers`` entry points.

A plugin that fails to import is listed with its error, never fatal (as PuLP lists solvers
whose backend is missing). A name claimed twice (a plugin reusing a built-in's name, or two
distributions registering the same name) is listed once, as unavailable, with every claimant
named: never silently dropped, never doubled (Nevergrad's registry refuses a duplicate too).

Built-ins are a name table of ``"module:Class"`` strings resolved with importlib on lookup,
the same way entry points are, so ``moeopt`` has no import of ``solvers`` at module level and a
missing optional dependency only affects its own solver. Looking one name up imports only that
solver's module; listing imports all of them.

The name a solver is registered under is its name everywhere: :func:`make_solver` sets the
instance's ``name`` to it, so results, plans, ``--json`` and tables agree even when an entry
point is an alias of a class whose ``name`` says otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from moeopt.errors import InputError
from moeopt.solver import Solver

ENTRY_POINT_GROUP = "moeopt.solvers"
BUILTIN = "built-in"

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
class Claim:
    """One registration of a name: where it points and who made it."""

    target: str  # "module:Class"
    origin: str  # "built-in" or the plugin's distribution name
    version: str | None = None

    def describe(self) -> str:
        who = self.origin if self.version is None else f"{self.origin} {self.version}"
        return f"{who} ({self.target})"


@dataclass(frozen=True)
class SolverEntry:
    name: str
    target: str
    origin: str  # "built-in", the plugin's distribution, or every claimant joined by " + "
    solver_class: type[Solver] | None
    available: bool
    reason: str
    conflicts: tuple[Claim, ...] = ()  # every claim of a name registered more than once

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(sorted(self.solver_class.tags)) if self.solver_class else ()

    @property
    def state(self) -> str:
        """``ok``, ``unavailable: why`` or ``error: why`` (a collision is an error)."""
        if self.available:
            return "ok"
        return f"{'error' if self.conflicts else 'unavailable'}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "origin": self.origin,
            "target": self.target,
            "tags": list(self.tags),
            "available": self.available,
            "reason": self.reason,
            "conflicts": [
                {"origin": c.origin, "version": c.version, "target": c.target} for c in self.conflicts
            ],
        }


def claims() -> dict[str, list[Claim]]:
    """Every registered name with every claim on it, built-ins first; imports nothing."""
    out: dict[str, list[Claim]] = {n: [Claim(t, BUILTIN)] for n, t in BUILTIN_SOLVERS.items()}
    plugins: dict[str, list[Claim]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        claim = Claim(ep.value, dist.name if dist is not None else "plugin",
                      dist.version if dist is not None else None)
        (out if ep.name in out else plugins).setdefault(ep.name, []).append(claim)
    # Discovery order follows directory listings: sort, so every listing reads the same.
    for found in out.values():
        found[1:] = sorted(found[1:], key=lambda c: (c.origin, c.target))
    for name in sorted(plugins):
        out[name] = sorted(plugins[name], key=lambda c: (c.origin, c.target))
    return out


def _load(name: str, found: list[Claim]) -> SolverEntry:
    if len(found) > 1:
        who = " and ".join(c.describe() for c in found)
        return SolverEntry(
            name, found[0].target, " + ".join(c.origin for c in found), None, False,
            f"name collision: {name!r} is registered by {who}; uninstall one, or register "
            "the plugin under another name",
            tuple(found),
        )
    claim = found[0]
    module, _, attr = claim.target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Solver)):
            raise TypeError(f"{claim.target} is not a moeopt Solver subclass")
    except Exception as exc:  # a broken plugin is a listed fact, not a crash
        return SolverEntry(name, claim.target, claim.origin, None, False, f"{type(exc).__name__}: {exc}")
    ok, reason = cls.available()
    return SolverEntry(name, claim.target, claim.origin, cls, ok, reason)


def list_solvers() -> list[SolverEntry]:
    """One entry per registered name: built-ins first, then plugins by name."""
    return [_load(name, found) for name, found in claims().items()]


def get_entry(name: str) -> SolverEntry:
    """The entry of one name (importing only that solver's module); InputError if unknown."""
    found = claims()
    if name not in found:
        raise InputError("--solver", name, f"unknown solver; registered: {', '.join(found)}")
    return _load(name, found[name])


def get_solver_class(name: str) -> type[Solver]:
    entry = get_entry(name)
    if entry.solver_class is None or not entry.available:
        raise InputError("--solver", name, f"not available here: {entry.reason}")
    return entry.solver_class


def make_solver(name: str, *, seed: int = 0, **options: Any) -> Solver:
    """A solver instance by registered name: ``make_solver("ilp", seed=0)``.

    The instance answers to the registered name (an alias entry point included)."""
    solver = get_solver_class(name)(seed=seed, **options)
    solver.name = name
    return solver


def plugin_names(entries: Iterable[SolverEntry] | None = None) -> list[str]:
    """The available solvers that come from installed plugins, in registry order."""
    entries = list_solvers() if entries is None else entries
    return [e.name for e in entries if e.available and e.origin != BUILTIN]


def select_solvers(
    text: str | None, default: Iterable[str], *, option: str = "--solvers",
    exclude_tags: frozenset[str] = frozenset(),
) -> list[str]:
    """Names from a ``--solvers`` value, each checked against the registry.

    ``None``/empty: ``default`` (those available here) plus every available plugin.
    ``all``: every available solver not tagged with one of ``exclude_tags``.
    Otherwise ``a,b,...``; an unknown, unavailable or colliding name is an InputError."""
    entries = list_solvers()
    by_name = {e.name: e for e in entries}
    if not text or not text.strip():
        names = [n for n in default if n in by_name and by_name[n].available]
        names += [n for n in plugin_names(entries) if n not in names]
    elif text.strip() == "all":
        names = [e.name for e in entries if e.available and not (exclude_tags & set(e.tags))]
    else:
        names = [s.strip() for s in text.split(",") if s.strip()]
    for n in names:
        if n not in by_name:
            raise InputError(option, n, f"unknown solver; registered: {', '.join(by_name)}")
        if not by_name[n].available:
            raise InputError(option, n, f"not available here: {by_name[n].reason}")
    return names
