"""What a sweep runs: instances x solvers x seeds, each a :class:`RunSpec` with the identity
used to resume, and which solvers enter by default."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moeopt.bench.results import run_key
from moeopt.bench.suite import Suite
from moeopt.solver import Budget

# Solvers entered by default: the main zoo available here (variants and no-plan baselines
# out), plus every available plugin.
DEFAULT_SOLVERS = ("ilp", "greedy", "bayes-egreedy", "nevergrad", "exhaustive", "random", "eplb",
                   "lambdaml")
BASELINE = "random"


@dataclass(frozen=True)
class RunSpec:
    """One run: what the child process needs, and the identity used to resume."""

    suite: str
    instance: str
    problem_file: str
    fingerprint: str
    solver: str
    seed: int
    seed_index: int
    master_seed: int
    budget: Budget
    timeout_s: float
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def budget_dict(self) -> dict[str, Any]:
        return {"evaluations": self.budget.evaluations, "seconds": self.budget.seconds}

    @property
    def key(self) -> str:
        return run_key(self.fingerprint, self.solver, self.seed, self.budget_dict)


def derive_seeds(master_seed: int, count: int) -> list[int]:
    """Seed k of every run, from one master seed (numpy SeedSequence, so streams are independent)."""
    children = np.random.SeedSequence(master_seed).spawn(count)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def default_timeout(budget: Budget) -> float:
    """Hard wall limit: the seconds budget plus room for start-up and a late stop."""
    return 600.0 if budget.seconds is None else max(3.0 * budget.seconds, budget.seconds + 30.0)


def available_default_solvers() -> list[str]:
    """The default zoo that is available here, plus every available plugin."""
    from moeopt.registry import select_solvers

    return select_solvers(None, DEFAULT_SOLVERS)


def plan_runs(
    suite: Suite,
    solvers: list[str],
    seeds: int,
    budget: Budget,
    master_seed: int = 0,
    timeout_s: float | None = None,
    repeat_deterministic: bool = False,
) -> list[RunSpec]:
    """Instances x solvers x seeds, instance-major so early results cover every solver.

    Solvers tagged ``deterministic`` run once (seed index 0) unless ``repeat_deterministic``:
    another seed would repeat the same run; scoring pairs that run with every seed.
    """
    timeout = timeout_s or suite.timeout_s or default_timeout(budget)
    once = set() if repeat_deterministic else {s for s in solvers if "deterministic" in _solver_tags(s)["tags"]}
    out = []
    for inst in suite.instances:
        for k, seed in enumerate(derive_seeds(master_seed, seeds)):
            for solver in solvers:
                if k > 0 and solver in once:
                    continue  # the same seed-free run again: scoring reuses seed 0's
                out.append(RunSpec(suite.name, inst.name, str(inst.path.resolve()), inst.fingerprint,
                                   solver, seed, k, master_seed, budget, float(timeout)))
    return out


def _solver_tags(name: str) -> dict[str, Any]:
    from moeopt.bench.records import solver_info

    return solver_info(name)


def parse_solvers(text: str | None) -> list[str]:
    """``a,b`` -> names, checked against the registry; ``all`` = every available solver that
    returns a plan (``no-plan`` baselines out); none: the default set plus plugins."""
    from moeopt.registry import select_solvers

    return select_solvers(text, DEFAULT_SOLVERS, exclude_tags=frozenset({"no-plan"}))


def with_baseline(names: Iterable[str]) -> list[str]:
    """Random search is the score's 1: enter it whenever it is not already entered."""
    names = list(names)
    return names if BASELINE in names else [*names, BASELINE]
