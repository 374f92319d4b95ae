"""build_tables (ilp's option tables), vectorized across layers, against the per-layer code it
replaced (tests/solvers/_tables_reference.py), measured in the same run.

    OMP_NUM_THREADS=1 nice -n -19 python benchmarks/bench_tables.py [--repeats 5] [problem ...]

Best-of-``repeats`` wall and CPU seconds per problem (the paper's five, switch-base-128 and
mixtral-8x7b by default), variants from ``moeopt.space.PIPELINE_DEGREES``; each run checks that
both give the same number of rows (tests/solvers/test_ilp_tables.py checks the tables bit for
bit). The new code runs first on each problem: after the reference's many small arrays the
allocator hands the new code's larger ones fresh pages (page faults, a few ms).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.solvers._tables_reference

from moeopt.builtin_problems import PAPER_PROBLEMS, builtin_problem  # noqa: E402
from moeopt.space import PIPELINE_DEGREES  # noqa: E402
from solvers._ilp_tables import build_tables, variants_of  # noqa: E402
from tests.solvers._tables_reference import reference_build_tables  # noqa: E402

DEFAULT = (*PAPER_PROBLEMS, "switch-base-128", "mixtral-8x7b")


def best_of(fn, repeats: int) -> tuple[float, float, object]:
    out = fn()  # warm up
    wall = cpu = float("inf")
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    return wall, cpu, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("problems", nargs="*", default=list(DEFAULT))
    args = ap.parse_args()
    print(f"{'problem':16} {'rows':>9} {'old wall s':>10} {'old cpu s':>10} {'new wall s':>10} "
          f"{'new cpu s':>10} {'wall ratio':>10}")
    for name in args.problems:
        problem = builtin_problem(name)
        variants = variants_of(problem, PIPELINE_DEGREES)
        new_w, new_c, new = best_of(lambda p=problem, v=variants: build_tables(p, v), args.repeats)
        old_w, old_c, old = best_of(lambda p=problem, v=variants: reference_build_tables(p, v),
                                    args.repeats)
        assert new.rows == old.rows, (name, new.rows, old.rows)
        print(f"{name:16} {new.rows:>9,} {old_w:>10.4f} {old_c:>10.4f} {new_w:>10.4f} {new_c:>10.4f} "
              f"{old_w / new_w:>9.1f}x")


if __name__ == "__main__":
    main()
