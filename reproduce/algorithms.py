"""Fig. 12: deployment algorithms across throughput targets, cost and solve time.

The paper: ODS (three MIQCPs with the method fixed, then per-layer choice and repair; 60 s
limit, about 2.27 s) gives the lowest cost, ahead of the monolithic MIQCP (180 s limit; it cannot
find the optimum at high targets) and of random method choice. Here: ``ilp`` with
``mode=ods`` (the paper's Alg. 1 over the same exact tables), ``ilp`` monolithic (an exact MILP
that proves optimality when it finishes), and random method choice: each layer takes its plan
from the single-method optimum of a method drawn at random (single-method optima by greedy),
priced as one plan; the mean of the draws and how many were feasible.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cost_models.lambda_model import METHODS
from moeopt.builtin_problems import builtin_spec
from moeopt.evaluate import evaluate
from moeopt.plan import DeploymentPlan
from moeopt.problem import DeploymentProblem, problem_from_dict
from moeopt.profiles import apply_profile
from moeopt.registry import make_solver
from moeopt.solver import Budget, SolutionStatus, SolveResult
from reproduce.config import PAPER_RATIO
from reproduce.context import Context
from reproduce.solving import problem_at, with_ratio


def single_method(name: str, profile: str | None, method: str, like: DeploymentProblem) -> DeploymentProblem:
    """``name`` with only ``method`` allowed, at ``like``'s time limit."""
    spec = builtin_spec(name)
    spec.setdefault("deployment", {})["methods"] = [method]
    problem = apply_profile(problem_from_dict(spec, f"built-in:{name}"), profile)
    return problem.with_slo(like.slo)


def _row(r: SolveResult) -> dict[str, Any]:
    ev = r.evaluation
    ok = r.solution_status != SolutionStatus.NONE
    return {"cost_usd": ev.cost_usd if ok and ev else None, "feasible": ok,
            "status": f"{r.solver_status}/{r.solution_status}", "seconds": r.wall_seconds,
            "lower_bound_usd": r.lower_bound_usd,
            "methods": sorted({layer.method for layer in r.plan.layers}) if r.plan else []}


def random_methods(
    problem: DeploymentProblem, singles: dict[str, DeploymentPlan | None], draws: int, seed: int
) -> dict[str, Any] | None:
    """Each layer from the single-method plan of a random method; mean cost of the feasible
    draws (None when none is feasible) and how many were."""
    rng = np.random.default_rng(seed)
    usable = [m for m in METHODS if singles.get(m) is not None]
    if not usable:
        return None
    costs, flags = [], []
    for _ in range(draws):
        pick = rng.choice(usable, size=problem.layers)
        layers = tuple(singles[m].layers[i] for i, m in enumerate(pick))  # type: ignore[union-attr]
        ev = evaluate(problem, DeploymentPlan(problem.name, problem.fingerprint, layers))
        costs.append(ev.cost_usd)
        flags.append(ev.feasible)
    ok = [c for c, f in zip(costs, flags, strict=True) if f]
    return {"draws": draws, "feasible": len(ok),
            "cost_usd_mean": float(np.mean(ok)) if ok else None,
            "cost_usd_mean_all": float(np.mean(costs)), "methods_available": usable}


def algorithms(ctx: Context, progress: Any = None) -> dict[str, Any]:
    """Each algorithm at every target under the run's profile, and at the paper's regime
    (``algorithms_paper_ratios``) under ``paper-lambda``, where compute dominates."""
    cfg = ctx.cfg
    name = cfg.algorithms_problem
    out: dict[str, Any] = {"problem": name, "ods_seconds_limit": cfg.ods_seconds,
                           "monolithic_seconds_limit": cfg.monolithic_seconds, "profiles": {}}
    for label, prof in ctx.profiles.items():
        ratios = cfg.algorithms_ratios if label == ctx.ours else cfg.algorithms_paper_ratios
        rows = []
        for ratio in ratios:
            problem = with_ratio(problem_at(name, prof), ratio)
            ods = make_solver("ilp", seed=cfg.seed, mode="ods").solve(problem, Budget(seconds=cfg.ods_seconds))
            mono = make_solver("ilp", seed=cfg.seed).solve(problem, Budget(seconds=cfg.monolithic_seconds))
            singles: dict[str, DeploymentPlan | None] = {}
            for method in METHODS:
                r = make_solver("greedy", seed=cfg.seed).solve(
                    single_method(name, prof, method, problem), Budget(seconds=cfg.greedy_seconds))
                singles[method] = r.plan if r.solution_status != SolutionStatus.NONE else None
            rows.append({
                "ratio": ratio,
                "target_tokens_per_s": problem.slo.throughput_target(problem.workload.tokens_per_batch),
                "ods": _row(ods), "monolithic": _row(mono),
                "random": random_methods(problem, singles, cfg.random_draws, cfg.seed),
            })
            if progress:
                progress()
        if rows:
            out["profiles"][label] = {"rows": rows}
    return out


def measured_algorithms(ctx: Context) -> dict[str, Any]:
    """The algorithms' plans run on the local backend: a scaled-down BERT-MoE (its experts and
    routing, fewer layers) solved with this machine's calibration at the paper's ratio of
    LambdaML's throughput; ODS, the monolithic MILP and one random method choice, each run and
    held to its prediction on this host (identical plans run once)."""
    from reproduce.measure import scaled_problem

    cfg, lab = ctx.cfg, ctx.lab
    base = problem_at(cfg.algorithms_problem, cfg.profile)
    tokens = max(cfg.measured_tokens)
    problem = with_ratio(lab.calibrated(scaled_problem(base, cfg.measured_layers, tokens)), PAPER_RATIO)
    plans: dict[str, DeploymentPlan | None] = {
        "ods": make_solver("ilp", seed=cfg.seed, mode="ods").solve(problem, Budget(seconds=cfg.ods_seconds)).plan,
        "monolithic": make_solver("ilp", seed=cfg.seed).solve(problem, Budget(seconds=cfg.monolithic_seconds)).plan,
    }
    rng = np.random.default_rng(cfg.seed)
    singles = {}
    for method in METHODS:
        r = make_solver("greedy", seed=cfg.seed).solve(_only(problem, method),
                                                       Budget(seconds=cfg.greedy_seconds))
        singles[method] = r.plan if r.solution_status != SolutionStatus.NONE else None
    usable = [m for m in METHODS if singles[m] is not None]
    pick = rng.choice(usable, size=problem.layers)
    plans["random"] = DeploymentPlan(problem.name, problem.fingerprint,
                                     tuple(singles[m].layers[i] for i, m in enumerate(pick)))  # type: ignore[union-attr]
    moe = lab.model(problem)
    rows: dict[str, Any] = {}
    done: dict[Any, dict[str, Any]] = {}
    for name, plan in plans.items():
        if plan is None:
            rows[name] = None
            continue
        key = json.dumps(plan.to_dict()["layers"], sort_keys=True)
        ev = evaluate(problem, plan)
        if key not in done:
            done[key] = lab.measure(f"alg-{name}", plan, problem, moe, cfg.measured_requests,
                                    cfg.measured_warmup).to_dict()
        rows[name] = {"model_cost_usd": ev.cost_usd, "model_feasible": ev.feasible,
                      "methods": [la.method for la in plan.layers], **done[key], "name": name}
    return {"model": problem.description, "tokens": tokens, "ratio": PAPER_RATIO,
            "host_vcpus": lab.host_vcpus, "rows": rows}


def _only(problem: DeploymentProblem, method: str) -> DeploymentProblem:
    """``problem`` (built from a file dict) with only ``method`` allowed."""
    spec = json.loads(json.dumps(problem.spec))
    spec.setdefault("deployment", {})["methods"] = [method]
    only = problem_from_dict(spec, f"{problem.name}[{method}]")
    return only.with_constants(problem.constants).with_slo(problem.slo)
