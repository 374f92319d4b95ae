"""Vectorized against one-by-one plan evaluation (plans/s), measured in the same run.

    OMP_NUM_THREADS=1 python benchmarks/bench_evaluate.py [--seconds 2]

Random plans over each problem's memory menu, replicas 1..G, all three methods. The
one-by-one baseline prices each plan with ``evaluate`` (one DeploymentPlan at a time).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

from moeopt.builtin_problems import builtin_problem  # noqa: E402
from moeopt.evaluate import evaluate, evaluate_batch  # noqa: E402
from moeopt.plan import PlanArrays  # noqa: E402


def random_plans(problem, n: int, seed: int) -> PlanArrays:
    rng = np.random.default_rng(seed)
    L, E = problem.layers, problem.experts
    menu = np.array(problem.memory_options, dtype=float)
    return PlanArrays(
        memory_mb=menu[rng.integers(0, len(menu), (n, L, E))],
        replicas=rng.integers(1, problem.max_replicas + 1, (n, L, E)),
        method=rng.integers(0, 3, (n, L)),
        pipeline_degree=rng.integers(1, 512, (n, L)).astype(float),
    )


def rate(fn, seconds: float) -> float:
    fn()  # warm up caches
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += fn()
    return done / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    print(f"{'problem':14} {'chunk':>5} {'vectorized plans/s':>19} {'one-by-one plans/s':>19} {'ratio':>7}")
    for name, chunk in (("bert-moe-16", 128), ("bert-moe-16", 1024), ("deepseek-v3", 16)):
        problem = builtin_problem(name)
        arrays = random_plans(problem, chunk, seed=0)
        plans = [arrays.plan(p, problem) for p in range(min(chunk, 64))]
        vec = rate(lambda pr=problem, a=arrays, n=chunk: (evaluate_batch(pr, a), n)[1], args.seconds)
        one = rate(lambda pr=problem, ps=plans: sum(1 for p in ps if evaluate(pr, p)), args.seconds)
        print(f"{name:14} {chunk:>5} {vec:>19,.0f} {one:>19,.0f} {vec / one:>6.1f}x")


if __name__ == "__main__":
    main()
