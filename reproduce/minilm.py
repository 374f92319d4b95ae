"""The experiments that need a real model's token-level routing: the predictors (Fig. 10), the
paper's Alg. 2 against No-BO (Fig. 13) and the overall comparison on that model (Fig. 14).

The paper's models have no public routing traces, so these run on moeopt's converted
all-MiniLM-L6-v2 MoE (docs/popularity.md), profiled on the bundled corpus: its gates are fitted
on the first tokens, the trace is recorded on the next ones, and the trace is cut into
consecutive batches: profile (the key-value table), learning (Alg. 2's batches) and test
(held out from both).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from moeopt.baselines import cpu_cluster, lambdaml_plan
from moeopt.builtin_problems import minilm_spec
from moeopt.popularity import Popularity
from moeopt.popularity.evaluation import DEFAULT_PREDICTORS, evaluate_predictors
from moeopt.popularity.predictors import make_predictor
from moeopt.popularity.traces import RoutingTrace, batch_loads
from moeopt.problem import DeploymentProblem, problem_from_dict
from moeopt.profiles import apply_profile
from reproduce.config import PAPER_RATIO, MiniLMSetup
from reproduce.context import Context
from reproduce.solving import with_ratio

PAPER_PROFILING_S_PER_100_BATCHES = 28.89
PAPER_PREDICTION_S_PER_10_BATCHES = 20.31
PAPER_BO_ITERATION_S = 62.15
PAPER_BO_CONVERGENCE_S = 1257.89
ACQUISITIONS = ("egreedy", "single-eps", "random")


def learning_api() -> Any:
    """The paper's Alg. 2 (``learn``, ``deploy``, ``bill``, ``oracle``, ``LearningConfig``),
    which lives in solvers/bo_popularity_*.py; this is the one place that names its modules."""
    from types import SimpleNamespace

    from solvers.bo_popularity_learn import learn
    from solvers.bo_popularity_trial import LearningConfig, bill, deploy, oracle

    return SimpleNamespace(learn=learn, LearningConfig=LearningConfig, bill=bill,
                           deploy=deploy, oracle=oracle)


@dataclass(frozen=True)
class Profiled:
    trace: RoutingTrace
    convert_s: float
    capture_s: float


def profiled(ctx: Context, setup: MiniLMSetup) -> Profiled:
    """Convert the model and record its routing on the bundled corpus (cached per run)."""
    if setup not in ctx.traces:
        from moeopt.models import convert
        from moeopt.popularity.corpus import load_corpus
        from moeopt.popularity.traces import capture

        corpus = load_corpus(None)
        cal = setup.calibration_tokens
        t0 = time.perf_counter()
        model = convert(setup.experts, setup.top_k, corpus.token_ids[:cal], seed=ctx.cfg.seed)
        t1 = time.perf_counter()
        stream = corpus.token_ids[cal : cal + setup.tokens]
        trace = capture(model, stream, corpus=f"{corpus.name}[{cal}:{cal + len(stream)}]")
        ctx.traces[setup] = Profiled(trace, t1 - t0, time.perf_counter() - t1)
    return ctx.traces[setup]


def predictors(ctx: Context) -> dict[str, Any]:
    """Fig. 10 with the paper's metric: mean |real - predicted| tokens per expert and batch,
    cross-validated over contiguous blocks (docs/popularity.md)."""
    cfg = ctx.cfg
    setups = (*cfg.predictor_setups, cfg.bo_setup)
    rows = []
    for setup in sorted(set(setups), key=lambda s: (s.top_k, s.experts)):
        p = profiled(ctx, setup)
        folds = cfg.predictor_folds
        batch = min(cfg.predictor_batch, p.trace.tokens // folds)
        report = evaluate_predictors(p.trace, DEFAULT_PREDICTORS, folds, batch)
        for s in report.scores:
            rows.append({"experts": setup.experts, "top_k": setup.top_k, "predictor": s.predictor,
                         "mae_per_expert": s.mae_per_expert, "mae_relative": s.mae_relative,
                         "topk_accuracy": s.topk_accuracy, "batches": s.batches,
                         "batch_tokens": batch})
    # the paper's overheads: profiling and predicting, per its batch counts
    p = profiled(ctx, cfg.bo_setup)
    per_token = p.capture_s / p.trace.tokens
    bayes = make_predictor("bayes").fit(p.trace)
    ten = np.resize(p.trace.token_ids, 10 * 10_240)
    t0 = time.perf_counter()
    bayes.predict_loads(ten, 10_240)
    predict_s = time.perf_counter() - t0
    return {"rows": rows, "overheads": {
        "profiling_s_per_100_batches": per_token * 100 * 10_240,
        "profiled_tokens": p.trace.tokens, "capture_s": p.capture_s, "convert_s": p.convert_s,
        "prediction_s_per_10_batches": predict_s,
    }}


def bo_problem(setup: MiniLMSetup, batch: int, loads: np.ndarray, profile: str | None) -> DeploymentProblem:
    """The converted model's deployment problem on ``loads``, at the paper's ratio of its
    LambdaML-style plan's throughput."""
    spec = minilm_spec(setup.experts, setup.top_k,
                       {"source": "loads", "loads": np.asarray(loads).tolist()}, 1.0)
    spec["workload"] = {"tokens_per_batch": batch}
    problem = apply_profile(problem_from_dict(spec, f"built-in:{spec['name']}"), profile)
    return with_ratio(problem, PAPER_RATIO)


def _mae(predictor: Any, tokens: np.ndarray, real: np.ndarray, batch: int) -> float:
    return float(np.abs(predictor.predict_loads(tokens, batch) - real).mean())


def acquisition(ctx: Context, labels: tuple[str, ...] | None = None, progress: Any = None) -> dict[str, Any]:
    """Fig. 13: Alg. 2 with the paper's multi-dimensional eps-greedy search against single eps,
    random adjustment and No-BO (the profiled table as it is): billed cost and prediction error
    on held-out batches; and the oracle (ODS on the held-out batches' real loads)."""
    cfg = ctx.cfg
    L = learning_api()
    p = profiled(ctx, cfg.bo_setup)
    trace, bs = p.trace, cfg.bo_batch
    batches = trace.tokens // bs
    n_test = n_learn = max(1, batches // 4)
    n_prof = batches - n_learn - n_test
    if n_prof < 1:
        raise ValueError(f"{trace.tokens} tokens make {batches} batches of {bs}; need 3")
    cut = np.cumsum([0, n_prof, n_learn, n_test]) * bs
    profile, learning, test = (trace.select(slice(int(a), int(b))) for a, b in zip(cut, cut[1:], strict=False))
    real_learn = batch_loads(learning.experts, trace.num_experts, bs)
    real_test = batch_loads(test.experts, trace.num_experts, bs)
    table = make_predictor("bayes").fit(profile)
    out: dict[str, Any] = {
        "model": trace.model, "corpus": trace.corpus, "batch_tokens": bs,
        "batches": {"profile": n_prof, "learning": n_learn, "test": n_test},
        "q": cfg.bo_q, "max_iterations": cfg.bo_iterations, "seeds": list(cfg.bo_seeds),
        "time_margin": cfg.bo_time_margin, "profiles": {},
    }
    for label in labels or (ctx.ours,):
        problem = bo_problem(cfg.bo_setup, bs, real_learn, ctx.profiles[label])
        test_problem = problem.with_popularity(Popularity(real_test, source="test"))
        runs = []
        variants = [("no-bo", "egreedy", 1, (cfg.bo_seeds[0],))] + [
            (a, a, cfg.bo_iterations, cfg.bo_seeds) for a in ACQUISITIONS]
        for variant, acq, iterations, seeds in variants:
            for seed in seeds:
                config = L.LearningConfig(q=cfg.bo_q, acquisition=acq, max_iterations=iterations,
                                          seed=seed, time_margin=cfg.bo_time_margin)
                t0 = time.perf_counter()
                result = L.learn(table, problem, learning.token_ids, real_learn, config)
                seconds = time.perf_counter() - t0
                scores = [r.score for r in result.records]
                row = {"variant": variant, "seed": seed, "trials": len(result.records),
                       "trials_that_moved_the_bill": sum(
                           abs(x - scores[0]) > 1e-9 * abs(scores[0]) for x in scores[1:]),
                       "stopped": result.stopped, "seconds": seconds,
                       "seconds_per_trial": seconds / max(len(result.records), 1),
                       "learning": {"cost_usd": result.trial.cost_usd, "score": result.trial.score,
                                    "feasible": result.trial.feasible},
                       "learning_mae": _mae(result.predictor, learning.token_ids, real_learn, bs),
                       "test_mae": _mae(result.predictor, test.token_ids, real_test, bs)}
                if result.plan is not None:
                    ev, score = L.bill(problem, result.plan, real_test)
                    row["test"] = {"cost_usd": ev.cost_usd, "score": score, "feasible": ev.feasible,
                                   "tokens_per_s": ev.throughput_tokens_per_s,
                                   "binding": ev.broken()}
                else:
                    row["test"] = None
                runs.append(row)
                if progress:
                    progress()
        oracle = L.oracle(test_problem, real_test, L.LearningConfig(seed=cfg.seed))
        lm_ev, _ = L.bill(problem, lambdaml_plan(problem), real_test)
        cluster = cpu_cluster(test_problem)
        out["profiles"][label] = {
            "time_limit_s": problem.slo.time_limit_s,
            "runs": runs,
            "oracle": {"cost_usd": oracle.cost_usd, "feasible": oracle.feasible,
                       "tokens_per_s": oracle.evaluation.throughput_tokens_per_s if oracle.evaluation else None},
            "lambdaml": {"cost_usd": lm_ev.cost_usd, "feasible": lm_ev.feasible,
                         "tokens_per_s": lm_ev.throughput_tokens_per_s},
            "cluster": {"cost_usd": cluster.cost_usd, "tokens_per_s": cluster.throughput_tokens_per_s,
                        "assumption": cluster.assumption},
            "summary": summarize(runs),
        }
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: mean held-out cost and error over seeds, and their ratios to No-BO."""
    out: dict[str, Any] = {}
    for variant in ("no-bo", *ACQUISITIONS):
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        tests = [r["test"] for r in mine if r["test"] is not None]
        out[variant] = {
            "runs": len(mine),
            "test_cost_usd": float(np.mean([t["cost_usd"] for t in tests])) if tests else None,
            "test_score": float(np.mean([t["score"] for t in tests])) if tests else None,
            "test_tokens_per_s": float(np.mean([t["tokens_per_s"] for t in tests])) if tests else None,
            "test_feasible": sum(t["feasible"] for t in tests),
            "learning_score": float(np.mean([r["learning"]["score"] for r in mine])),
            "learning_feasible": sum(r["learning"]["feasible"] for r in mine),
            "test_mae": float(np.mean([r["test_mae"] for r in mine])),
            "trials": float(np.mean([r["trials"] for r in mine])),
            "trials_that_moved_the_bill": int(sum(r["trials_that_moved_the_bill"] for r in mine)),
            "trials_total": int(sum(r["trials"] for r in mine)),
            "seconds": float(np.mean([r["seconds"] for r in mine])),
            "seconds_per_trial": float(np.mean([r["seconds_per_trial"] for r in mine])),
        }
    base = out.get("no-bo")
    for v in out.values():
        if base and base["test_score"] and v["test_score"] is not None:
            v["test_score_vs_no_bo"] = v["test_score"] / base["test_score"]
            v["test_mae_vs_no_bo"] = v["test_mae"] / base["test_mae"] if base["test_mae"] else None
    return out
