"""Figs. 4 and 11: the three scatter-gather designs at 256 and 2,560 tokens.

The paper: every function at 3,008 MB, no replicas; at 256 tokens direct invocation beats both
storage designs on cost and time; at 2,560 direct is impossible (the 6 MB payload) and the
storage designs cost much more; throughput rises with the batch. Predicted here for the
full-size BERT-MoE and GPT-2-MoE under each profile, and measured on the local backend for a
scaled-down BERT-MoE (its experts and routing, fewer layers), each against its prediction.
"""

from __future__ import annotations

from typing import Any

from cost_models.lambda_model import METHODS, wire_token_bytes
from moeopt.baselines import lambdaml_memory_mb
from moeopt.evaluate import evaluate
from moeopt.model import ServiceLevel
from moeopt.plan import DeploymentPlan
from moeopt.problem import DeploymentProblem
from moeopt.space import PIPELINE_DEGREES
from reproduce.context import Context
from reproduce.solving import problem_at, with_tokens


def design_plan(problem: DeploymentProblem, method: str) -> DeploymentPlan:
    """Every expert at LambdaML's memory, no replicas, one method; pipelined storage at the
    pipeline degree the model prices cheapest (feasible first)."""
    memory = lambdaml_memory_mb(problem)
    if method != "pipelined_storage":
        return DeploymentPlan.uniform(problem, memory, 1, method)
    plans = [DeploymentPlan.uniform(problem, memory, 1, method, b) for b in PIPELINE_DEGREES
             if b <= problem.workload.tokens_per_batch]
    evs = [evaluate(problem, p) for p in plans]
    best = min(range(len(plans)), key=lambda i: (not evs[i].feasible, evs[i].cost_usd))
    return plans[best]


def largest_payload_mb(problem: DeploymentProblem) -> float:
    """The largest direct invocation of a one-replica-per-expert plan: the heaviest expert's
    tokens of the heaviest batch, as payload (base64 in JSON), in MiB."""
    c, m = problem.constants, problem.model
    tokens = float(problem.popularity.loads.max())
    return (tokens * wire_token_bytes(m.token_bytes, c) + c.lambda_payload_envelope_bytes) / 2**20


def design_row(problem: DeploymentProblem, method: str) -> dict[str, Any]:
    plan = design_plan(problem, method)
    ev = evaluate(problem, plan)
    c = problem.constants
    return {"largest_payload_mb": largest_payload_mb(problem) if method == "direct" else None,
            "payload_limit_mb": c.lambda_payload_limit_bytes / 2**20,
            "method": method, "tokens": problem.workload.tokens_per_batch,
            "memory_mb": plan.layers[0].functions[0].memory_mb,
            "pipeline_degree": plan.layers[0].pipeline_degree if method == "pipelined_storage" else None,
            "cost_usd": ev.cost_usd, "cost_gb_s": ev.cost_gb_s, "latency_s": ev.latency_s,
            "tokens_per_s": ev.throughput_tokens_per_s, "feasible": ev.feasible,
            "binding": ev.broken()}


#: The designs are compared without a time limit (the paper's Figs. 4 and 11 set none): only
#: the payload and memory limits can rule one out.
NO_TIME_LIMIT = ServiceLevel(1e9)


def designs(ctx: Context, tokens: tuple[int, ...] = (256, 2560)) -> dict[str, Any]:
    out: dict[str, Any] = {"tokens": list(tokens), "predicted": {}}
    for label, prof in ctx.profiles.items():
        per = {}
        for name in ctx.cfg.overall_problems:
            base = problem_at(name, prof).with_slo(NO_TIME_LIMIT)
            per[name] = [design_row(with_tokens(base, n), m) for n in tokens for m in METHODS]
        out["predicted"][label] = per
    return out


def measured_designs(ctx: Context) -> dict[str, Any]:
    """The same designs on the local backend: a scaled-down BERT-MoE, predicted with this
    machine's calibration for the loads each request served."""
    from reproduce.measure import scaled_problem

    cfg, lab = ctx.cfg, ctx.lab
    base = problem_at(cfg.overall_problems[0], ctx.cfg.profile)
    rows = []
    for n in cfg.measured_tokens:
        problem = lab.calibrated(scaled_problem(base, cfg.measured_layers, n)).with_slo(NO_TIME_LIMIT)
        moe = lab.model(problem)
        for method in METHODS:
            row = design_row(problem, method)
            if not row["feasible"]:
                rows.append({**row, "measured": None,
                             "note": f"not run: the model says it breaks {', '.join(row['binding'])}"})
                continue
            plan = design_plan(problem, method)
            m = lab.measure(f"{method}-{n}", plan, problem, moe, cfg.measured_requests,
                            cfg.measured_warmup)
            rows.append({**row, **m.to_dict(), "method": method})
    return {"model": f"{base.name}, {cfg.measured_layers} MoE layers, no non-MoE part",
            "host_vcpus": lab.host_vcpus, "calibration": list(lab.calibrations.values()),
            "rows": rows}
