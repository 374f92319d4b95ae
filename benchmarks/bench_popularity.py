"""Expert-popularity benchmark: conversion closeness and predictor error per (experts, top-k).

For each configuration: convert all-MiniLM-L6-v2 (gates fitted on the first
``--calibration-tokens`` of the corpus), measure closeness to the dense model on the corpus
tail, profile the next ``--tokens`` tokens, and cross-validate the predictors on batches of
10,240 tokens. Writes one JSON line per configuration (append-only) and prints Markdown tables.

    python benchmarks/bench_popularity.py --out results/popularity.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from moeopt.models import convert, load_dense
from moeopt.models.fidelity import closeness
from moeopt.popularity.corpus import load_corpus
from moeopt.popularity.evaluation import evaluate_predictors, format_table
from moeopt.popularity.traces import capture, read_trace, write_trace

CONFIGS = [(4, 1), (4, 2), (8, 1), (8, 2), (16, 1), (16, 2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--calibration-tokens", type=int, default=8000)
    ap.add_argument("--closeness-tokens", type=int, default=6000)
    ap.add_argument("--tokens", type=int, default=62_000)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=10_240)
    ap.add_argument("--traces", default=None, help="Folder to keep (and reuse) traces in.")
    ap.add_argument("--out", default=None, help="Append one JSON line per configuration.")
    args = ap.parse_args()

    corpus = load_corpus(args.corpus)
    ids = corpus.token_ids
    cal = ids[: args.calibration_tokens]
    held = ids[-args.closeness_tokens :]
    profile = ids[args.calibration_tokens : args.calibration_tokens + args.tokens]
    if args.calibration_tokens + args.tokens > len(ids) - args.closeness_tokens:
        raise SystemExit("corpus too short: profiled text would overlap the closeness text")
    dense = load_dense()
    reports, rows = [], []
    for experts, k in CONFIGS:
        t0 = time.perf_counter()
        path = Path(args.traces or ".") / f"trace-e{experts}-k{k}.jsonl"
        model = convert(experts, k, cal, dense=dense)
        close = closeness(model, held)
        if args.traces and path.exists():
            trace = read_trace(path)
        else:
            trace = capture(model, profile, corpus=f"{corpus.name}[profile]", progress=True)
            if args.traces:
                write_trace(trace, path)
        report = evaluate_predictors(trace, folds=args.folds, batch_size=args.batch_size)
        reports.append(report)
        row = {
            "closeness": asdict(close),
            "evaluation": report.to_dict(),
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    print("| experts | top-k | cosine (mean) | cosine (min) | relative L2 |")
    print("|---|---|---|---|---|")
    for r in rows:
        c = r["closeness"]
        print(
            f"| {c['experts']} | {c['top_k']} | {c['cosine_mean']:.3f} | "
            f"{c['cosine_min']:.3f} | {c['relative_l2']:.3f} |"
        )
    print()
    print(format_table(reports))


if __name__ == "__main__":
    main()
