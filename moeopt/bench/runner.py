"""Run solvers on a suite: one process per run, a hard time limit, results appended as they land.

The jobs live in their own modules, re-exported here:

- :mod:`moeopt.bench.runs`: what to run (:class:`RunSpec`, seeds, default solvers);
- :mod:`moeopt.bench.isolation`: one run in a fresh process (``crashed``/``timeout`` recorded);
- :mod:`moeopt.bench.records`: the JSONL record, with every returned plan re-priced;
- :mod:`moeopt.bench.executors`: local threads, dask or ray; resume; the sweep.
"""

from __future__ import annotations

import sys

from moeopt.bench.executors import EXECUTORS, execute, pending, run_bench
from moeopt.bench.isolation import _child_main, run_isolated
from moeopt.bench.records import (
    PACKAGES,
    RECORDED_OUTPUTS,
    environment,
    make_record,
    resolve_instance_file,
    solver_info,
    verify_plan,
)
from moeopt.bench.runs import (
    BASELINE,
    DEFAULT_SOLVERS,
    RunSpec,
    available_default_solvers,
    default_timeout,
    derive_seeds,
    parse_solvers,
    plan_runs,
    with_baseline,
)

__all__ = [
    "BASELINE", "DEFAULT_SOLVERS", "EXECUTORS", "PACKAGES", "RECORDED_OUTPUTS", "RunSpec",
    "available_default_solvers", "default_timeout", "derive_seeds", "environment", "execute",
    "make_record", "parse_solvers", "pending", "plan_runs", "resolve_instance_file", "run_bench",
    "run_isolated", "solver_info", "verify_plan", "with_baseline",
]

if __name__ == "__main__":  # the child of older sweeps: same as moeopt.bench.isolation
    _child_main(sys.argv[1], sys.argv[2])
