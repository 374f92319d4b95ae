"""Scores, as Bayesmark normalises them: 0 = best known cost, 1 = random search at the same budget.

A run's score is ``(cost - best) / (baseline - best)`` on its re-priced, feasible plan. Runs
without a feasible plan (infeasible, crashed, timed out, error, no plan to check) score
``CLIP`` and are counted; feasible scores above ``CLIP`` are clipped to it too. The baseline
is random search's mean best cost over its seeds at the same budget when every one of those
seeds found a feasible plan; otherwise (tight SLOs, where uniform sampling rarely fits) it is
the worst feasible cost any run reached on the instance, and the report says which was used.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from moeopt.bench.references import Reference

CLIP = 2.0
TARGETS = (0.01, 0.05)
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
BASELINE = "random"


@dataclass(frozen=True)
class InstanceScale:
    """What 0 and 1 mean on one instance at one budget."""

    instance: str
    fingerprint: str
    budget: str
    best_usd: float | None
    mark: str  # proven_optimal | best_found | infeasible | unknown
    best_solver: str | None
    baseline_usd: float | None
    baseline_source: str  # random | worst-feasible | none


@dataclass(frozen=True)
class RunScore:
    run_id: str
    instance: str
    fingerprint: str
    budget: str
    solver: str
    seed_index: int
    status: str
    feasible: bool
    cost_usd: float | None
    score: float
    clipped: bool
    wall_seconds: float
    evaluations: int | None
    hit_seconds: dict[float, float]  # target -> solver seconds to reach it (inf: never)
    hit_evaluations: dict[float, float]
    deterministic: bool = False


@dataclass(frozen=True)
class SolverRow:
    solver: str
    origin: str
    version: str | None
    runs: int
    mean: float
    ci_low: float
    ci_high: float
    feasible_rate: float
    failures: dict[str, int]  # status -> count (error, crashed, timeout)
    clipped: int
    median_wall_seconds: float
    gap_to_proven: float | None  # mean relative gap on instances with a proven optimum
    proven_runs: int
    own_gap: float | None  # mean gap the solver proved itself (exact solvers)


@dataclass(frozen=True)
class Leaderboard:
    rows: tuple[SolverRow, ...]
    scales: tuple[InstanceScale, ...]
    runs: tuple[RunScore, ...]
    solvers: tuple[str, ...]
    win_rate: np.ndarray  # [i, j]: share of paired runs where solver i beat solver j
    clip: float = CLIP

    def instance_scores(self) -> dict[str, dict[str, float]]:
        """instance -> solver -> mean score (for the per-instance table)."""
        acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in self.runs:
            acc[r.instance][r.solver].append(r.score)
        return {i: {s: float(np.mean(v)) for s, v in d.items()} for i, d in acc.items()}


def budget_label(budget: dict[str, Any]) -> str:
    e, s = budget.get("evaluations"), budget.get("seconds")
    return f"{e if e is not None else '-'} evals / {f'{s:g}' if s is not None else '-'} s"


def score(records: list[dict[str, Any]], references: dict[str, Reference] | None = None) -> Leaderboard:
    """Score every run of a results file (later records of the same run replace earlier ones)."""
    latest = {r["run_id"]: r for r in records}
    records = list(latest.values())
    refs = references or {}
    best: dict[str, tuple[float, str | None]] = {}
    worst: dict[str, float] = {}
    for r in records:
        fp, c = r["instance"]["fingerprint"], r["cost_usd"]
        if c is None:
            continue
        if fp not in best or c < best[fp][0]:
            best[fp] = (c, r["solver"]["name"])
        worst[fp] = max(worst.get(fp, -math.inf), c)
    for fp, ref in refs.items():
        if ref.cost_usd is not None and (fp not in best or ref.cost_usd < best[fp][0]):
            best[fp] = (ref.cost_usd, ref.solver)

    scales: dict[tuple[str, str], InstanceScale] = {}
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["instance"]["fingerprint"], budget_label(r["budget"]))].append(r)
    for (fp, label), runs in groups.items():
        rand = [r["cost_usd"] for r in runs if r["solver"]["name"] == BASELINE]
        if rand and all(c is not None for c in rand):
            base, source = float(np.mean(rand)), "random"
        elif fp in worst:
            base, source = worst[fp], "worst-feasible"
        else:
            base, source = None, "none"
        ref = refs.get(fp)
        mark = ref.status if ref else ("best_found" if fp in best else "unknown")
        b = best.get(fp)
        scales[(fp, label)] = InstanceScale(runs[0]["instance"]["name"], fp, label,
                                            b[0] if b else None, mark, b[1] if b else None,
                                            base, source)

    scored = [_score_run(r, scales[(r["instance"]["fingerprint"], budget_label(r["budget"]))])
              for r in records]
    solvers = _ordered_solvers(scored)
    rows = [_row(s, [x for x in scored if x.solver == s], records, refs) for s in solvers]
    rows.sort(key=lambda row: (row.mean, row.solver))
    solvers = tuple(row.solver for row in rows)
    return Leaderboard(tuple(rows), tuple(sorted(scales.values(), key=lambda s: (s.instance, s.budget))),
                       tuple(scored), solvers, win_rates(scored, solvers))


def _ordered_solvers(scored: list[RunScore]) -> list[str]:
    return sorted({s.solver for s in scored})


def _score_run(r: dict[str, Any], scale: InstanceScale) -> RunScore:
    c = r["cost_usd"]
    if c is None or scale.best_usd is None or scale.baseline_usd is None:
        value, clipped = CLIP, True
    else:
        spread = max(scale.baseline_usd - scale.best_usd, 1e-9 * scale.best_usd)
        raw = (c - scale.best_usd) / spread
        value, clipped = min(max(raw, 0.0), CLIP), raw > CLIP
    hit_s: dict[float, float] = {}
    hit_e: dict[float, float] = {}
    for tau in TARGETS:
        hit_s[tau] = hit_e[tau] = math.inf
        if c is None or scale.best_usd is None:
            continue
        goal = scale.best_usd * (1 + tau)
        for p in r.get("trajectory") or []:
            if p["cost_usd"] is not None and p["cost_usd"] <= goal:
                hit_s[tau], hit_e[tau] = float(p["seconds"]), float(p["evaluations"])
                break
        else:  # no trajectory (a recipe baseline): it reached its final cost when it finished
            if c <= goal and not r.get("trajectory"):
                hit_s[tau] = float(r.get("solve_seconds") or r["wall_seconds"])
                hit_e[tau] = float(r.get("evaluations") or 0)
    return RunScore(r["run_id"], r["instance"]["name"], r["instance"]["fingerprint"], scale.budget,
                    r["solver"]["name"], int(r["seed_index"]), r["status"], bool(r["feasible"]), c,
                    float(value), bool(clipped or c is None), float(r["wall_seconds"]),
                    r.get("evaluations"), hit_s, hit_e,
                    "deterministic" in r["solver"].get("tags", []))


def bootstrap_ci(values: np.ndarray, n: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile interval of the mean, from a seeded bootstrap over runs."""
    if len(values) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _row(solver: str, runs: list[RunScore], records: list[dict[str, Any]],
         refs: dict[str, Reference]) -> SolverRow:
    values = np.array([r.score for r in runs])
    lo, hi = bootstrap_ci(values)
    mine = [r for r in records if r["solver"]["name"] == solver]
    failures: dict[str, int] = defaultdict(int)
    for r in runs:
        if r.status != "ok":
            failures[r.status] += 1
    proven = [r for r in runs if r.fingerprint in refs and refs[r.fingerprint].status == "proven_optimal"]
    gaps = [(r.cost_usd - refs[r.fingerprint].cost_usd) / refs[r.fingerprint].cost_usd  # type: ignore[operator]
            for r in proven if r.cost_usd is not None]
    own = [r["gap"] for r in mine if r.get("gap") is not None]
    return SolverRow(
        solver=solver,
        origin=mine[0]["solver"].get("origin", "?"),
        version=mine[0]["solver"].get("version"),
        runs=len(runs),
        mean=float(values.mean()),
        ci_low=lo,
        ci_high=hi,
        feasible_rate=float(np.mean([r.feasible for r in runs])),
        failures=dict(failures),
        clipped=sum(r.clipped for r in runs),
        median_wall_seconds=float(np.median([r.wall_seconds for r in runs])),
        gap_to_proven=float(np.mean(gaps)) if gaps else None,
        proven_runs=len(proven),
        own_gap=float(np.mean(own)) if own else None,
    )


def win_rates(runs: list[RunScore], solvers: tuple[str, ...]) -> np.ndarray:
    """Pairs runs by (instance, budget, seed index); a win is a lower score, a tie half a win."""
    by: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    for r in runs:
        by[(r.fingerprint, r.budget, r.seed_index)][r.solver] = r.score
    # A deterministic solver's one run stands for every seed of its instance and budget.
    for r in runs:
        if r.deterministic:
            for (fp, budget, _), cell in by.items():
                if fp == r.fingerprint and budget == r.budget:
                    cell.setdefault(r.solver, r.score)
    n = len(solvers)
    wins, pairs = np.zeros((n, n)), np.zeros((n, n))
    for cell in by.values():
        for i, a in enumerate(solvers):
            for j, b in enumerate(solvers):
                if i == j or a not in cell or b not in cell:
                    continue
                pairs[i, j] += 1
                d = cell[a] - cell[b]
                wins[i, j] += 1.0 if d < -1e-12 else 0.5 if abs(d) <= 1e-12 else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.maximum(pairs, 1), np.nan)


def time_to_target(board: Leaderboard, axis: str, tau: float, grid: np.ndarray) -> dict[str, np.ndarray]:
    """solver -> fraction of its runs within ``tau`` of best known by each ``grid`` value."""
    out = {}
    for s in board.solvers:
        runs = [r for r in board.runs if r.solver == s]
        hits = np.array([(r.hit_seconds if axis == "seconds" else r.hit_evaluations)[tau] for r in runs])
        out[s] = (hits[None, :] <= grid[:, None]).mean(axis=1) if len(runs) else np.zeros(len(grid))
    return out
