"""The exact solvers' benchmark: time to a proven optimum, monolithic against ODS, and what every
solver reaches against the MILP bound in a fixed time.

    python benchmarks/bench_ilp.py [--budget 20] [--quick]

Figures are printed with ratios against baselines measured in the same run: seconds also as a
multiple of one vectorized pricing of 1,000 plans (the machine's speed), costs against the MILP
bound and against random search.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from moeopt.builtin_problems import PAPER_PROBLEMS, builtin_problem
from moeopt.evaluate import evaluate_batch
from moeopt.registry import list_solvers, make_solver
from moeopt.solver import Budget
from moeopt.space import PlanSpace

PAPER_ODS_SECONDS = 2.27  # the paper's ODS with Gurobi (three MIQCP solves), on bert-moe-4


def machine_unit() -> float:
    """Seconds to price 1,000 random plans of bert-moe-4 (best of 3)."""
    problem = builtin_problem("bert-moe-4")
    space = PlanSpace.of(problem)
    plans = space.decode(space.sample(np.random.default_rng(0), 1000))
    times = []
    for _ in range(3):
        t = time.perf_counter()
        evaluate_batch(problem, plans)
        times.append(time.perf_counter() - t)
    return min(times)


def run(name: str, problem, seconds: float, **options):  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    result = make_solver(name, **options).solve(problem, Budget(evaluations=10**9, seconds=seconds))
    return result, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=20.0, help="seconds per solver on the scale problems")
    ap.add_argument("--ilp-seconds", type=float, default=90.0, help="seconds for ilp per problem")
    ap.add_argument("--quick", action="store_true", help="bert-moe-4 only")
    ap.add_argument("--parts", default="123", help="which parts to run, e.g. 13")
    ap.add_argument("--solvers", default="", help="part 3: comma-separated solvers (default: all)")
    args = ap.parse_args()
    unit = machine_unit()
    print(f"machine unit: {unit * 1000:.1f} ms to price 1,000 plans of bert-moe-4\n")

    if "1" not in args.parts:
        return section_rest(args)
    print("1. bert-moe-4: time to a proven optimum")
    problem = builtin_problem("bert-moe-4")
    mono, t_mono = run("ilp", problem, args.ilp_seconds)
    ods, t_ods = run("ilp", problem, args.ilp_seconds, mode="ods")
    print(f"  ilp (monolithic): {mono.solution_status}, {mono.cost_usd:.9g} USD in {t_mono:.2f} s "
          f"({t_mono / unit:.0f} units; paper's ODS {PAPER_ODS_SECONDS} s, ratio "
          f"{t_mono / PAPER_ODS_SECONDS:.2f})")
    print(f"  ilp mode=ods:     {ods.solution_status}, {ods.cost_usd:.9g} USD in {t_ods:.2f} s "
          f"(cost / proven optimum {ods.cost_usd / mono.cost_usd:.6f})")
    if args.quick:
        return
    section_rest(args)


def section_rest(args: argparse.Namespace) -> None:
    if "2" in args.parts:
        paper_problems(args)
    if "3" in args.parts:
        scale_problems(args)


def paper_problems(args: argparse.Namespace) -> None:
    print("\n2. monolithic against ODS on the paper's problems")
    print(f"  {'problem':18} {'mono USD':>12} {'status':>15} {'gap':>9} {'s':>6} | "
          f"{'ODS USD':>12} {'s':>6} {'ODS/mono':>9}")
    for name in PAPER_PROBLEMS:
        problem = builtin_problem(name)
        mono, t_mono = run("ilp", problem, args.ilp_seconds)
        ods, t_ods = run("ilp", problem, args.ilp_seconds, mode="ods")
        gap = "n/a" if mono.gap is None else f"{mono.gap:.2e}"
        print(f"  {name:18} {mono.cost_usd:12.9f} {mono.solution_status!s:>15} {gap:>9} "
              f"{t_mono:6.1f} | {ods.cost_usd:12.9f} {t_ods:6.1f} {ods.cost_usd / mono.cost_usd:9.5f}")


def scale_problems(args: argparse.Namespace) -> None:
    print(f"\n3. every available solver after {args.budget:g} s, against the MILP bound")
    names = [e.name for e in list_solvers() if e.available]
    if args.solvers:
        names = [n for n in names if n in args.solvers.split(",")]
    for name in ("switch-base-128", "deepseek-v3"):
        problem = builtin_problem(name)
        options = {} if name == "switch-base-128" else {"pipeline_degrees": (64, 256, 1024)}
        ilp, t_ilp = run("ilp", problem, args.ilp_seconds, **options)
        bound = ilp.lower_bound_usd
        rand, _ = run("random", problem, args.budget)
        print(f"  {name}: ilp {ilp.solver_status}/{ilp.solution_status} {ilp.cost_usd:.9g} USD in "
              f"{t_ilp:.1f} s, bound {bound}, gap {ilp.gap}")
        print(f"    {'solver':22} {'USD':>12} {'feasible':>8} {'/bound':>8} {'/random':>8} {'s':>6}")
        for solver in names:
            if solver in ("exhaustive", "oracle", "cpu-cluster"):
                continue  # refuses large spaces / not a plan
            try:
                res, t = run(solver, problem, args.budget, **(options if solver.startswith("ilp") else {}))
            except Exception as exc:  # a solver that refuses is a row, not a crash
                print(f"    {solver:22} {type(exc).__name__}: {exc}")
                continue
            feasible = res.solution_status != "none"
            cost = res.cost_usd
            ratio_b = cost / bound if bound and np.isfinite(cost) else float("nan")
            ratio_r = cost / rand.cost_usd if np.isfinite(rand.cost_usd) and np.isfinite(cost) else float("nan")
            print(f"    {solver:22} {cost:12.9f} {feasible!s:>8} {ratio_b:8.4f} {ratio_r:8.4f} {t:6.1f}")


if __name__ == "__main__":
    main()
