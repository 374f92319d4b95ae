"""Black-box solvers against random search: best cost after N evaluations, several seeds.

    python benchmarks/bench_blackbox.py                      # 3 problems x 9 solvers x 3 seeds, N = 2000
    python benchmarks/bench_blackbox.py --evals 500 --seeds 1 --problems bert-moe-4

Prints, per problem and solver, the mean best cost, how many seeds found a feasible plan, the
ratio to random search measured in the same run (cost / random's cost: < 1 is better; "n/a"
when random found nothing feasible) and to the best cost any solver reached in the run, and
the mean wall time. `greedy` is printed as a constructive reference. With --out, one JSON line
per run is appended (append-only, no pickles).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

from moeopt.problem import load_problem
from moeopt.registry import make_solver
from moeopt.solver import Budget

PROBLEMS = ("bert-moe-4", "bert-moe-16", "switch-base-128")
SOLVERS = (
    "random",
    "bayes-egreedy",
    "bayes-single-eps",
    "bayes-random",
    "nevergrad",
    "nevergrad-cma",
    "nevergrad-de",
    "nevergrad-oneplusone",
    "nevergrad-pso",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--evals", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=300.0, help="safety cap per run")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", help="append one JSON line per run to this file")
    args = ap.parse_args()
    solvers = args.solvers.split(",")
    budget = Budget(evaluations=args.evals, seconds=args.seconds)
    for name in args.problems.split(","):
        problem = load_problem(name)
        costs: dict[str, list[float]] = {}
        walls: dict[str, list[float]] = {}
        evals: dict[str, list[int]] = {}
        for solver in solvers:
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                result = make_solver(solver, seed=seed).solve(problem, budget)
                wall = time.perf_counter() - t0
                costs.setdefault(solver, []).append(result.cost_usd)
                walls.setdefault(solver, []).append(wall)
                evals.setdefault(solver, []).append(result.evaluations)
                if args.out:
                    row = {
                        "problem": name,
                        "solver": solver,
                        "seed": seed,
                        "budget_evals": args.evals,
                        "cost_usd": result.cost_usd if math.isfinite(result.cost_usd) else None,
                        "evaluations": result.evaluations,
                        "wall_seconds": wall,
                        "solver_status": str(result.solver_status),
                    }
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
        greedy = make_solver("greedy").solve(problem).cost_usd
        _report(name, args.evals, costs, walls, evals, greedy)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if len(finite) == len(values) else math.inf


def _report(
    name: str,
    n: int,
    costs: dict[str, list[float]],
    walls: dict[str, list[float]],
    evals: dict[str, list[int]],
    greedy: float,
) -> None:
    best = min((min(v) for v in costs.values()), default=math.inf)
    rand = _mean(costs.get("random", [math.inf]))
    print(
        f"\n{name}: best cost after {n} evaluations (mean over seeds); greedy reference ${greedy:.6f}"
    )
    print(
        f"{'solver':22} {'mean $':>10} {'feasible':>8} {'/random':>8} {'/best':>7} {'/greedy':>8} {'evals':>6} {'wall s':>7}"
    )
    for solver, values in costs.items():
        mean = _mean(values)
        feasible = sum(math.isfinite(v) for v in values)
        vs_random = (
            f"{mean / rand:8.3f}" if math.isfinite(rand) and math.isfinite(mean) else "     n/a"
        )
        vs_best = f"{mean / best:7.3f}" if math.isfinite(mean) else "    inf"
        vs_greedy = (
            f"{mean / greedy:8.3f}" if math.isfinite(mean) and math.isfinite(greedy) else "     n/a"
        )
        cost = f"{mean:10.6f}" if math.isfinite(mean) else "       inf"
        print(
            f"{solver:22} {cost} {feasible:>4}/{len(values):<3} {vs_random} {vs_best} {vs_greedy} "
            f"{statistics.fmean(evals[solver]):6.0f} {statistics.fmean(walls[solver]):7.2f}"
        )


if __name__ == "__main__":
    main()
