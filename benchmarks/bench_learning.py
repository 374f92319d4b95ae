"""The paper's learning loop (Alg. 2) against No-BO, single-eps, random and the oracle.

On a profiled trace of the converted MiniLM MoE (8 experts, top-1): the first ``--profile``
batches build the key-value table, the next ``--learn`` batches are the learning batches
(their token ids are predicted, their real loads billed in every trial), the last ``--test``
batches are held out from both and score the learned table. Every deployment is the ``ilp``
solver in ODS mode on the predicted loads, billed on the real loads (Alg. 2's replicate step
applied), so cost and feasibility are those of the real batches.

    moeopt popularity profile --experts 8 --top-k 1 --tokens 41000 -o /tmp/minilm8.jsonl
    python benchmarks/bench_learning.py --trace /tmp/minilm8.jsonl --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from moeopt.builtin_problems import builtin_spec
from moeopt.popularity.predictors import make_predictor
from moeopt.popularity.traces import batch_loads, read_trace
from moeopt.problem import DeploymentProblem, problem_from_dict
from solvers.bo_popularity_learn import learn
from solvers.bo_popularity_trial import LearningConfig, Trial, deploy, oracle

VARIANTS = ("egreedy", "single-eps", "random")


def minilm_problem(loads: np.ndarray, batch_size: int, tps: float) -> DeploymentProblem:
    """minilm-moe-8 with ``batch_size``-token batches at the same throughput target."""
    spec = copy.deepcopy(builtin_spec("minilm-moe-8"))
    spec["name"] = f"minilm-moe-8@{batch_size}"
    spec["workload"]["tokens_per_batch"] = batch_size
    spec["slo"] = {"throughput_tokens_per_s": tps}
    spec["popularity"] = {"source": "loads", "loads": loads.tolist()}
    return problem_from_dict(spec, spec["name"])


def summary(trial: Trial) -> dict[str, Any]:
    ev = trial.evaluation
    return {
        "cost_usd": trial.cost_usd,
        "score": trial.score,
        "feasible": trial.feasible,
        "broken": ev.broken() if ev else ["no plan"],
    }


def mae(predictor: Any, tokens: np.ndarray, real: np.ndarray, bs: int) -> float:
    return float(np.abs(predictor.predict_loads(tokens, bs) - real).mean())


def fmt(row: dict[str, Any]) -> str:
    c = row["cost_usd"]
    cost = f"{c * 1e6:.2f}" if math.isfinite(c) else "–"
    s = row["score"]
    score = f"{s * 1e6:.2f}" if math.isfinite(s) else "inf"
    ok = "yes" if row["feasible"] else "no (" + ", ".join(row["broken"]) + ")"
    return f"{cost} | {score} | {ok}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", default="/tmp/minilm8.jsonl")
    ap.add_argument("--batch-size", type=int, default=5120)
    ap.add_argument("--throughput", type=float, default=1600.0, help="tokens/s target")
    ap.add_argument("--profile", type=int, default=4, help="batches for the table")
    ap.add_argument("--learn", type=int, default=2, help="learning batches")
    ap.add_argument("--test", type=int, default=2, help="held-out test batches")
    ap.add_argument("--predictor", default="bayes")
    ap.add_argument("--q", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--lambda-iters", type=int, default=LearningConfig.lambda_iters)
    ap.add_argument("--max-iterations", type=int, default=LearningConfig.max_iterations)
    ap.add_argument("--eps0-changes", type=float, default=LearningConfig.eps0_changes)
    ap.add_argument("--time-margin", type=float, default=0.0, help="plan to (1-m) x the limit")
    ap.add_argument("--no-spread", action="store_true", help="new keys from the top keys only")
    ap.add_argument("--out", default=None, help="write all results as JSON")
    args = ap.parse_args()

    trace = read_trace(args.trace)
    bs = args.batch_size
    need = (args.profile + args.learn + args.test) * bs
    if trace.tokens < need:
        raise SystemExit(f"trace has {trace.tokens} tokens; need {need}")
    cut1, cut2 = args.profile * bs, (args.profile + args.learn) * bs
    profile = trace.select(slice(0, cut1))
    learning = trace.select(slice(cut1, cut2))
    test = trace.select(slice(cut2, need))
    real_l = batch_loads(learning.experts, trace.num_experts, bs)
    real_t = batch_loads(test.experts, trace.num_experts, bs)
    problem = minilm_problem(np.concatenate([real_l, real_t]), bs, args.throughput)
    predictor = make_predictor(args.predictor).fit(profile)
    base = LearningConfig(q=args.q, spread=not args.no_spread, time_margin=args.time_margin)

    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    no_bo_l = deploy(predictor, problem, learning.token_ids, real_l, base)
    no_bo_t = deploy(predictor, problem, test.token_ids, real_t, base)
    rows.append({"variant": "no-bo", "seed": None, "learn": summary(no_bo_l),
                 "test": summary(no_bo_t), "trials": 1, "seconds": time.perf_counter() - t0,
                 "mae_test": mae(predictor, test.token_ids, real_t, bs)})
    for variant in args.variants:
        for seed in args.seeds:
            cfg = LearningConfig(
                q=args.q, acquisition=variant, seed=seed, spread=not args.no_spread,
                lambda_iters=args.lambda_iters, max_iterations=args.max_iterations,
                eps0_changes=args.eps0_changes, time_margin=args.time_margin,
            )
            t0 = time.perf_counter()
            result = learn(predictor, problem, learning.token_ids, real_l, cfg)
            seconds = time.perf_counter() - t0
            on_test = deploy(result.predictor, problem, test.token_ids, real_t, cfg)
            rows.append({
                "variant": variant, "seed": seed, "learn": summary(result.trial),
                "test": summary(on_test), "trials": len(result.records), "seconds": seconds,
                "stopped": result.stopped, "best_tau": result.best_tau,
                "mae_test": mae(result.predictor, test.token_ids, real_t, bs),
                "records": [r.to_dict() for r in result.records],
            })
            print(f"{variant} seed {seed}: {len(result.records)} trials, {seconds:.1f} s", flush=True)
    orc_l, orc_t = oracle(problem, real_l, base), oracle(problem, real_t, base)
    rows.append({"variant": "oracle", "seed": None, "learn": summary(orc_l),
                 "test": summary(orc_t), "trials": 1, "seconds": 0.0, "mae_test": 0.0})

    print(f"\n{trace.model}, {trace.tokens} tokens; batches of {bs}: profile {args.profile}, "
          f"learn {args.learn}, test {args.test}; predictor {args.predictor}, Q = {args.q}, "
          f"spread new keys: {not args.no_spread}, time margin {args.time_margin}; "
          f"time limit {problem.slo.time_limit_s:.2f} s\n")
    print("| variant | seed | trials | learning: cost (µ$) | score (µ$) | feasible | "
          "test: cost (µ$) | score (µ$) | feasible | test MAE (tokens) | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        seed = "–" if r["seed"] is None else r["seed"]
        print(f"| {r['variant']} | {seed} | {r['trials']} | {fmt(r['learn'])} | "
              f"{fmt(r['test'])} | {r['mae_test']:.1f} | {r['seconds']:.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, default=float))


if __name__ == "__main__":
    main()
