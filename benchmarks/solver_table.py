"""Every registered solver on every built-in problem, default budgets: feasible? at what cost?

    python benchmarks/solver_table.py [--problems a,b] [--solvers a,b] [--seconds T]

Prints a Markdown table: cost per batch (USD) of each solver's returned plan, marked `*` when
proven optimal and `✗` when infeasible, with the status; the last column is the best feasible
cost and which solver reached it. ``--seconds`` caps each solver's default time budget.
"""

from __future__ import annotations

import argparse
import math

from moeopt.builtin_problems import BUILTIN_PROBLEMS, builtin_problem
from moeopt.errors import InputError
from moeopt.registry import list_solvers, make_solver
from moeopt.solver import Budget, SolutionStatus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default=",".join(BUILTIN_PROBLEMS))
    ap.add_argument("--solvers", default=None)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    available = [e for e in list_solvers() if e.available]
    names = args.solvers.split(",") if args.solvers else [e.name for e in available]
    problems = args.problems.split(",")
    print("| solver | " + " | ".join(problems) + " |")
    print("|---" * (len(problems) + 1) + "|")
    best: dict[str, tuple[float, str]] = {p: (math.inf, "-") for p in problems}
    for name in names:
        cells = []
        for pname in problems:
            solver = make_solver(name, seed=0)
            default = solver.default_budget
            seconds = min(default.seconds or args.seconds, args.seconds)
            try:
                r = solver.solve(builtin_problem(pname), Budget(default.evaluations, seconds))
            except InputError as exc:  # e.g. exhaustive refuses a space it cannot cover
                cells.append("refused: " + exc.message.split(";")[0])
                continue
            ev = r.evaluation
            if ev is None:
                cells.append(f"– ({r.solver_status})")
                continue
            mark = {SolutionStatus.PROVEN_OPTIMAL: "*", SolutionStatus.FEASIBLE: "",
                    SolutionStatus.NONE: " ✗"}[r.solution_status]
            cells.append(f"{ev.cost_usd:.5f}{mark} ({r.solver_status}, {r.wall_seconds:.1f}s)")
            plan_free = "no-plan" in solver.tags  # oracle, cpu-cluster: a bound or a baseline, no plan
            if r.solution_status != SolutionStatus.NONE and not plan_free and ev.cost_usd < best[pname][0]:
                best[pname] = (ev.cost_usd, name)
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("| **best feasible** | " + " | ".join(f"{c:.5f} ({n})" for c, n in best.values()) + " |")


if __name__ == "__main__":
    main()
