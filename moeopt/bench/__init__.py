"""The benchmark leaderboard: suite -> runner -> results (JSONL) -> references -> scores -> report.

Read it like COCO's example experiment::

    suite = load_suite("smoke")                       # instances: problem files
    runs = plan_runs(suite, ["greedy", "random"], seeds=2, budget=Budget(evaluations=500))
    run_bench(runs, Path("results/smoke.jsonl"))      # one process per run, hard time limit
    board = score(read_results(Path("results/smoke.jsonl")))
    write_markdown(board, Path("LEADERBOARD.md"))
"""

from __future__ import annotations
