"""Black-box solvers against the proven optimum: gap after N evaluations, per problem and seed.

    python benchmarks/bench_blackbox.py            # 5 paper problems x seeds 0-4 x 5 solvers, N = 200
    python benchmarks/bench_blackbox.py --solvers bayes-egreedy,nevergrad --seeds 2
    python benchmarks/bench_blackbox.py --problems switch-base-128 --evals 2000 --out runs.jsonl

For every problem, ``ilp`` solves it first in the same run (its status, cost and seconds are
printed: the reference is a proven optimum only where the status says so). Each solver then runs
on each seed with N evaluations and a seconds cap per run (--seconds); the table gives the gap
(cost - reference) / reference in %, "inf" where a run found no feasible plan, and "@n" after a
gap where the run stopped after n < N evaluations (seconds cap or convergence). A summary counts,
per solver, the runs within 1 % of the reference. With --out, one JSON line per run is appended
(append-only, no pickles).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

from moeopt.problem import load_problem
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus

PROBLEMS = ("bert-moe-4", "bert-moe-8", "bert-moe-16", "gpt2-moe-4", "bert2bert-moe-4")
SOLVERS = ("bayes-egreedy", "nevergrad", "optuna-tpe", "optuna-cmaes", "optuna-gp")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--evals", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=600.0, help="cap per run")
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..K-1")
    ap.add_argument("--ilp-seconds", type=float, default=120.0)
    ap.add_argument("--out", help="append one JSON line per run to this file")
    args = ap.parse_args()
    solvers = args.solvers.split(",")
    budget = Budget(evaluations=args.evals, seconds=args.seconds)
    within: dict[str, list[bool]] = {s: [] for s in solvers}
    worst: dict[str, float] = dict.fromkeys(solvers, 0.0)
    for name in args.problems.split(","):
        problem = load_problem(name)
        t0 = time.perf_counter()
        ref = make_solver("ilp").solve(problem, Budget(seconds=args.ilp_seconds))
        ilp_s = time.perf_counter() - t0
        proven = ref.solution_status == SolutionStatus.PROVEN_OPTIMAL
        print(
            f"\n{name}: ilp {ref.solution_status} ${ref.cost_usd:.9f} in {ilp_s:.1f} s"
            f"{'' if proven else ' (NOT proven: gaps are to the best plan ilp found)'}"
        )
        seeds = range(args.seeds)
        print(f"{'solver':16}" + "".join(f"{'seed ' + str(s):>12}" for s in seeds) + f"{'max %':>9}{'wall s':>9}")
        for solver in solvers:
            cells, gaps, walls = [], [], []
            for seed in seeds:
                t1 = time.perf_counter()
                result = make_solver(solver, seed=seed).solve(problem, budget)
                wall = time.perf_counter() - t1
                gap = 100.0 * (result.cost_usd - ref.cost_usd) / ref.cost_usd
                gaps.append(gap)
                walls.append(wall)
                cell = f"{gap:.2f}" if math.isfinite(gap) else "inf"
                if result.evaluations < args.evals:
                    cell += f"@{result.evaluations}"
                cells.append(cell)
                within[solver].append(gap <= 1.0)
                worst[solver] = max(worst[solver], gap)
                if args.out:
                    row = {
                        "problem": name, "solver": solver, "seed": seed, "budget_evals": args.evals,
                        "reference_usd": ref.cost_usd, "reference_proven": proven,
                        "cost_usd": result.cost_usd if math.isfinite(result.cost_usd) else None,
                        "gap_percent": gap if math.isfinite(gap) else None,
                        "evaluations": result.evaluations, "wall_seconds": wall,
                        "solver_status": str(result.solver_status),
                    }
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
            print(
                f"{solver:16}" + "".join(f"{c:>12}" for c in cells)
                + f"{max(gaps):9.2f}{statistics.fmean(walls):9.1f}",
                flush=True,
            )
    print(f"\nwithin 1 % of the reference after {args.evals} evaluations:")
    for solver in solvers:
        ok = within[solver]
        print(f"  {solver:16} {sum(ok):3d}/{len(ok):<3d} worst {worst[solver]:.2f} %")


if __name__ == "__main__":
    main()
