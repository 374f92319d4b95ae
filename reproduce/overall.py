"""Fig. 14: the overall comparison, cost and throughput, for BERT-MoE and GPT-2-MoE.

The paper's rows: ours (BO-predicted popularity), the oracle (planned on the real
distribution), No-BO, LambdaML-style and the CPU cluster. The paper's models have no public
routing traces (their popularity here is synthetic Zipf), so their rows are: ours = the plan
solved on the problem's sample batches, priced on held-out batches drawn like them; the oracle
re-plans every held-out batch on its true loads; LambdaML-style; the cluster always on at the
stated rate. BO against No-BO runs on the converted MiniLM model, which has a real trace
(reproduce.minilm, Fig. 13). Measured: the regime's plan against LambdaML on the local backend,
for a scaled-down BERT-MoE.
"""

from __future__ import annotations

from typing import Any

from moeopt.baselines import cpu_cluster, lambdaml_plan
from moeopt.evaluate import evaluate
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus
from reproduce.config import PAPER_RATIO
from reproduce.context import Context
from reproduce.solving import heldout, optimum, problem_at, with_ratio

HELDOUT_SEED = 1000


def _ev(ev: Any) -> dict[str, Any]:
    return {"cost_usd": ev.cost_usd, "tokens_per_s": ev.throughput_tokens_per_s,
            "latency_s": ev.latency_s, "feasible": ev.feasible, "binding": ev.broken()}


def overall(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    out: dict[str, Any] = {"ratio": PAPER_RATIO, "heldout_batches": cfg.heldout_batches,
                           "profiles": {}}
    for label in ctx.profiles:
        per = {}
        for name in cfg.overall_problems:
            problem, opt = ctx.regime(label, name, PAPER_RATIO)
            held = heldout(problem, cfg.heldout_batches, HELDOUT_SEED)
            oracle = make_solver("oracle", seed=cfg.seed).solve(  # a proven bound: ilp per batch
                held, Budget(seconds=cfg.oracle_seconds * cfg.heldout_batches))
            cluster = cpu_cluster(held)
            rows = {
                "ours": _ev(evaluate(held, opt.plan)) if opt.plan else None,
                "oracle": {**_ev(oracle.evaluation), "feasible": oracle.solution_status != SolutionStatus.NONE}
                if oracle.evaluation else None,
                "lambdaml": _ev(evaluate(held, lambdaml_plan(held))),
                "cpu_cluster": {"cost_usd": cluster.cost_usd, "tokens_per_s": cluster.throughput_tokens_per_s,
                                "latency_s": cluster.worst_wall_time_s,
                                "feasible": cluster.worst_wall_time_s <= held.slo.time_limit_s,
                                "assumption": cluster.assumption},
            }
            per[name] = {"time_limit_s": problem.slo.time_limit_s, "planned_on": "sample batches",
                         "oracle_planner": "ilp", "rows": rows}
        out["profiles"][label] = per
    return out


def measured_overall(ctx: Context) -> dict[str, Any]:
    """Ours against LambdaML-style on the local backend (scaled-down BERT-MoE, the largest
    measured batch): ours is solved with this machine's calibration at the paper's ratio of
    LambdaML's predicted throughput; both run, each held to its prediction on this host."""
    from reproduce.measure import scaled_problem

    cfg, lab = ctx.cfg, ctx.lab
    base = problem_at(cfg.overall_problems[0], cfg.profile)
    tokens = max(cfg.measured_tokens)
    problem = with_ratio(lab.calibrated(scaled_problem(base, cfg.measured_layers, tokens)), PAPER_RATIO)
    opt = optimum(problem, cfg.greedy_seconds, cfg.ilp_seconds, cfg.seed)
    moe = lab.model(problem)
    rows = {}
    for name, plan in (("lambdaml", lambdaml_plan(problem)), ("ours", opt.plan)):
        if plan is None:
            rows[name] = None
            continue
        ev = evaluate(problem, plan)
        m = lab.measure(f"overall-{name}", plan, problem, moe, cfg.measured_requests + 2,
                        cfg.measured_warmup)
        rows[name] = {"model_cost_usd": ev.cost_usd, "model_tokens_per_s": ev.throughput_tokens_per_s,
                      **m.to_dict()}
    saving = None
    if rows.get("ours") and rows.get("lambdaml"):
        saving = {k: 1 - rows["ours"][k]["cost_gb_s"] / rows["lambdaml"][k]["cost_gb_s"]
                  for k in ("predicted", "measured")}
    return {"model": problem.description, "tokens": tokens, "ratio": PAPER_RATIO,
            "optimum": opt.to_dict(), "rows": rows, "saving": saving,
            "host_vcpus": lab.host_vcpus}
