"""The CPU cluster done properly: always on at a stated rate, and the break-even sweep.

For each of Fig. 14's models, the Lambda plan is the regime's optimum at 0.8124 x LambdaML's
throughput (the plan the paper's savings are about); the cluster is the paper's two 64-core
EPYC sockets as an on-demand EC2 instance (cost_models/data/constants.toml), always on.
"""

from __future__ import annotations

from typing import Any

from moeopt.baselines import DEFAULT_CLUSTER_REQUESTS_PER_HOUR
from moeopt.breakeven import PAPER_CPU_SAVING, break_even
from reproduce.config import PAPER_RATIO
from reproduce.context import Context


def cluster(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"requests_per_hour": DEFAULT_CLUSTER_REQUESTS_PER_HOUR,
                           "paper_saving": PAPER_CPU_SAVING, "profiles": {}}
    for label in ctx.profiles:
        per = {}
        for name in ctx.cfg.overall_problems:
            problem, opt = ctx.regime(label, name, PAPER_RATIO)
            if not opt.feasible:
                per[name] = None
                continue
            be = break_even(problem, opt.cost_usd, f"{opt.solver}, {opt.status}, "
                            f"{PAPER_RATIO:.4g} x LambdaML's throughput")
            ev = opt.evaluation
            per[name] = {**be.to_dict(), "summary": be.summary(),
                         "lambda_tokens_per_s": ev.throughput_tokens_per_s if ev else None}
        out["profiles"][label] = per
    return out
